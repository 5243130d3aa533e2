"""The EmoFace animator on small synthetic shards written through the dataset writer."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from emoface_model.checkpoint import load_checkpoint
from emoface_model.config import ScheduleConfig, TrainConfig
from emoface_model.data import ClipData, collate
from emoface_model.infer import predict
from emoface_model.metrics import Regions, lip_vertex_error
from emoface_model.schedule import teacher_ratio
from emoface_model.run import load_model
from emoface_model.schedule import ground_truth_inputs, teacher_forced
from emoface_model.train import train
from recon3d.synth.dataset import write_synthetic_dataset
from tests import media
from tests.conftest import HYBRID, STAND_IN, need


def tiny_config(model: str = "emoface", epochs: int = 30) -> TrainConfig:
    cfg = TrainConfig()
    cfg.model.model = model
    cfg.model.dim, cfg.model.heads, cfg.model.layers = 48, 4, 1
    cfg.model.n_coarse, cfg.model.attention_channels = 64, 8
    cfg.data.window_frames, cfg.data.batch_size, cfg.data.windows_per_clip = 24, 2, 2
    cfg.optim.epochs, cfg.optim.lr, cfg.optim.warmup_steps = epochs, 3e-3, 5
    cfg.schedule.decay_epochs = epochs
    cfg.checkpoint_every = 10
    return cfg


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory) -> Path:
    """One speaker, two clips of different emotions (speech-like noise: no espeak needed)."""
    out = tmp_path_factory.mktemp("syn") / "shards"
    write_synthetic_dataset(out, need(STAND_IN), n_actors=1, clips_per_actor=2, seconds=2.0, test_actors=0,
                            prefer_espeak=False, emotions=(3, 6), seed=3)
    return out


@pytest.fixture(scope="module")
def overfit_run(two_clips, tmp_path_factory) -> tuple[Path, dict]:
    run = tmp_path_factory.mktemp("run") / "emoface"
    cfg = tiny_config(epochs=60)
    cfg.data.windows_per_clip = 4
    cfg.schedule = ScheduleConfig(curve="linear", start=1.0, end=0.5, decay_epochs=60)
    summary = train(two_clips, run, cfg, progress=False)
    return run, summary


def _train_losses(run: Path) -> list[float]:
    rows = [line.split(",") for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    return [float(r[3]) for r in rows if r[2] == "train"]


def _clip_arrays(shards: Path, run: Path):
    model, state = load_model(run)
    from recon3d.shards import open_dataset

    ds = open_dataset(shards)
    data = ClipData(ds, ds.clip_ids("train"), state["actors"])
    return model, data


def test_overfitting_two_clips(two_clips, overfit_run):
    run, summary = overfit_run
    losses = _train_losses(run)
    assert np.mean(losses[:3]) / np.mean(losses[-3:]) >= 10.0, (losses[:3], losses[-3:])
    model, data = _clip_arrays(two_clips, run)
    regions = Regions.from_masks(__import__("recon3d.flame.masks", fromlist=["x"]).load_flame_masks(
        need(STAND_IN.parent / "FLAME_masks.pkl")))
    for entry in data.entries:
        clip = data.clip(entry)
        emotion, intensity = int(entry["labels"]["emotion_id"]) - 1, int(entry["labels"]["intensity"]) - 1
        offsets = predict(model, clip["audio"], entry["fps"], emotion, intensity, clip["actor"], clip["template"],
                          n_frames=len(clip["offsets"]))
        gt = clip["offsets"] + clip["template"]
        model_lve = lip_vertex_error(offsets + clip["template"], gt, regions.lips)
        still_lve = lip_vertex_error(np.repeat(clip["template"][None], len(gt), 0), gt, regions.lips)
        assert model_lve < still_lve, (entry["id"], model_lve, still_lve)


@pytest.mark.parametrize("model", ["emoface", "faceformer"])
def test_bf16_training_runs_and_keeps_fp32_weights(two_clips, tmp_path, model):
    """--precision bf16 (autocast; on a GPU in practice, the same code on the CPU here)."""
    cfg = tiny_config(model, epochs=2)
    cfg.precision = "bf16"
    summary = train(two_clips, tmp_path / "run", cfg, progress=False, max_steps=3)
    assert summary["steps"] == 3 and np.isfinite(summary["last_loss"])
    weights = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float32}


def test_the_gpu_check_says_in_one_line_that_there_is_no_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: benchmarks/gpu_check.py would run in full")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=script.parent)
    assert proc.returncode == 0 and proc.stdout.splitlines()[0].startswith("gpu_check: ") and "nothing was run" in proc.stdout
    assert json.loads(proc.stdout.splitlines()[-1]) == {"gpu": None}


def test_the_summary_says_when_the_loss_still_falls(overfit_run):
    from emoface_model.train import STILL_FALLING, loss_trend

    assert loss_trend([1.0] * 9) is None
    assert loss_trend([1.0] * 50) == 0.0
    falling = list(np.linspace(2.0, 1.0, 50))
    assert loss_trend(falling) < -STILL_FALLING
    assert loss_trend(falling + [1.0] * 50) > -STILL_FALLING
    _, summary = overfit_run
    assert summary["epochs"] == 60 and summary["still_improving"] == (summary["loss_trend_last_fifth"] < -STILL_FALLING)


def test_lve_equals_torchmetrics():
    torchmetrics = pytest.importorskip("torchmetrics.multimodal", reason="torchmetrics (extra 'train') not installed")
    rng = np.random.default_rng(0)
    pred, gt = rng.normal(size=(2, 17, 60, 3)).astype(np.float32)
    lips = np.array([3, 7, 11, 20, 41])
    ours = lip_vertex_error(pred, gt, lips)
    theirs = torchmetrics.LipVertexError(mouth_map=lips.tolist())(torch.from_numpy(pred), torch.from_numpy(gt))
    assert ours == pytest.approx(float(theirs), rel=1e-5)


@pytest.mark.parametrize("model_name", ["emoface", "faceformer"])
def test_step_by_step_decoding_fed_the_truth_equals_teacher_forcing(two_clips, model_name):
    torch.manual_seed(1)
    cfg = tiny_config(model_name)
    from recon3d.shards import open_dataset
    from emoface_model.mesh import build_hierarchy
    from emoface_model.models import build_model

    ds = open_dataset(two_clips)
    data = ClipData(ds, ds.clip_ids("train"), ["01"])
    hierarchy = build_hierarchy(data.template(data.entries[0]), ds.faces(), cfg.model.n_coarse) if model_name == "emoface" else None
    model = build_model(cfg.model, 5023, 1, hierarchy).eval()
    for p in model.parameters():  # non-trivial weights everywhere
        torch.nn.init.normal_(p, std=0.05)
    batch = collate([data.window(data.entries[1], 10, 20)])
    with torch.no_grad():
        feats = model.encode_audio(batch.audio, 20)
        parallel, _ = teacher_forced(model, batch, feats, ground_truth_inputs(model, batch))
        stepwise = model.generate(feats, batch.emotion, batch.intensity, batch.actor, batch.template, batch.initial,
                                  teacher=batch.offsets)
    np.testing.assert_allclose(stepwise.numpy(), parallel.numpy(), atol=1e-6 * float(parallel.abs().max()) + 1e-9)


def test_generation_from_a_non_neutral_frame(two_clips, overfit_run):
    run, _ = overfit_run
    model, data = _clip_arrays(two_clips, run)
    entry = data.entries[1]
    start = 25
    window = data.window(entry, start, int(entry["frames"]) - start)
    assert window["has_initial"] and np.abs(window["initial"]).max() > 1e-4  # a frame in motion, not neutral
    emotion, intensity = int(entry["labels"]["emotion_id"]) - 1, int(entry["labels"]["intensity"]) - 1
    offsets = predict(model, window["audio"], entry["fps"], emotion, intensity, window["actor"], window["template"],
                      initial=window["initial"], n_frames=len(window["offsets"]))
    assert np.isfinite(offsets).all()
    err = np.linalg.norm(offsets - window["offsets"], axis=-1).mean()
    still = np.linalg.norm(window["offsets"], axis=-1).mean()
    assert err < still
    # The first generated frame continues from the given one.
    first_step = np.linalg.norm(offsets[0] - window["initial"], axis=-1).mean()
    assert first_step < np.linalg.norm(window["initial"], axis=-1).mean()


@pytest.mark.parametrize("curve, expected", [
    ("linear", [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]),
    ("exponential", [1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125]),
    ("inverse_sigmoid", [2 / (2 + np.exp(e / 2)) for e in range(6)]),
])
def test_self_growing_schedule(curve, expected):
    s = ScheduleConfig(curve=curve, start=1.0, end=0.0, decay_epochs=4, rate=0.5, k=2.0)
    assert [teacher_ratio(e, s) for e in range(6)] == pytest.approx(expected)


def test_scheduled_sampling_uses_the_configured_share(two_clips, tmp_path):
    cfg = tiny_config(epochs=3)
    cfg.schedule = ScheduleConfig(curve="linear", start=1.0, end=0.0, decay_epochs=2)
    train(two_clips, tmp_path / "run", cfg, progress=False)
    rows = [line.split(",") for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    ratios = {int(r[1]): float(r[6]) for r in rows if r[2] == "train"}
    assert ratios == {0: 1.0, 1: 0.5, 2: 0.0}


def test_resume_after_kill_continues_the_same_run(two_clips, tmp_path):
    """SIGKILL a real `recon3d train` after a checkpoint; --resume continues with the same steps,
    ending exactly where an uninterrupted run ends."""
    cfg_path = tmp_path / "tiny.yaml"
    import yaml

    cfg = tiny_config(epochs=6)
    cfg.checkpoint_every = 4
    cfg_path.write_text(yaml.safe_dump(cfg.to_dict()))
    run = tmp_path / "killed"
    cmd = [sys.executable, "-m", "recon3d", "train", str(two_clips), "--out", str(run), "--config", str(cfg_path),
           "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        lines = (run / "metrics.csv").read_text().splitlines() if (run / "metrics.csv").exists() else []
        if (run / "checkpoints" / "last.pt").exists() and len(lines) > 6:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = load_checkpoint(run / "checkpoints" / "last.pt")["step"]
    total = 6 * 2  # epochs x batches per epoch (two clips, two windows each, batches of two)
    assert 0 < at_kill < total
    out = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, check=True).stdout
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["resumed_at"] == at_kill and summary["steps"] == total
    steps = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]
             if line.split(",")[2] == "train"]
    assert steps == list(range(1, total + 1)), "every step logged once: rows after the checkpoint were redone"
    straight = tmp_path / "straight"
    subprocess.run(cmd[:6] + [str(straight)] + cmd[7:], check=True, env=env, capture_output=True)
    a, b = load_model(run)[0].state_dict(), load_model(straight)[0].state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_resume_drops_the_rows_logged_after_the_checkpoint(tmp_path):
    """A kill after validation was logged but before last.pt moved on: that epoch's val row and
    the train rows past the checkpoint go (they are logged again); an old header gets today's columns."""
    from emoface_model.run import RunDir
    from emoface_model.train import CSV_FIELDS, _trim_metrics

    run = RunDir(tmp_path)
    rows = ["step,epoch,split,loss", "1,0,train,1.0", "2,0,train,0.9", "2,0,val,0.8", "3,1,train,0.7",
            "4,1,train,0.6", "4,1,val,0.5"]
    run.metrics.write_text("\n".join(rows) + "\n")
    _trim_metrics(run, step=4, epoch=1)  # checkpoint written at the end of epoch 1's batches, before its val
    lines = run.metrics.read_text().splitlines()
    assert lines[0] == ",".join(CSV_FIELDS)
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["1", "0", "train"], ["2", "0", "train"], ["2", "0", "val"], ["3", "1", "train"], ["4", "1", "train"]]
    _trim_metrics(run, step=2, epoch=1)  # checkpoint(0, 1) after epoch 0's val
    assert [line.split(",")[:3] for line in run.metrics.read_text().splitlines()[1:]] == [
        ["1", "0", "train"], ["2", "0", "train"], ["2", "0", "val"]]


def _write_wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def test_animate_writes_meshes_and_video_for_any_rate(overfit_run, tmp_path):
    run, _ = overfit_run
    rng = np.random.default_rng(0)
    wav = _write_wav(tmp_path / "speech.wav", 0.3 * rng.standard_normal(int(44100 * 1.5)), 44100)
    out = subprocess.run([sys.executable, "-m", "recon3d", "animate", str(run), str(wav), "--emotion", "happy",
                          "--intensity", "strong", "--actor", "01", "--out", str(tmp_path / "anim"), "--meshes", "obj"],
                         capture_output=True, text=True, check=True).stdout
    written = json.loads(out)
    vertices = np.load(written["npy"])
    assert vertices.shape == (45, 5023, 3) and written["frames"] == 45
    assert len(list(Path(written["meshes"]).glob("*.obj"))) == 45
    import av

    with av.open(written["mp4"]) as c:
        assert c.streams.video and c.streams.audio
        face = next(c.decode(video=0)).to_ndarray(format="gray")
    assert written["framing"] == "face"
    head = json.loads(subprocess.run(
        [sys.executable, "-m", "recon3d", "animate", str(run), str(wav), "--out", str(tmp_path / "head"),
         "--framing", "head"], capture_output=True, text=True, check=True).stdout)
    assert head["framing"] == "head"
    with av.open(head["mp4"]) as c:
        whole = next(c.decode(video=0)).to_ndarray(format="gray")
    covered = [float((image > 50).mean()) for image in (face, whole)]  # background is grey 31
    assert covered[0] > 0.6 and covered[0] > 3 * covered[1], covered  # measured: 0.68 and 0.15


@pytest.mark.parametrize("model", [STAND_IN, HYBRID], ids=["stand-in", "hybrid"])
def test_the_face_framing_makes_the_mouth_a_third_of_the_picture(model):
    from recon3d.flame import load_flame_model
    from recon3d.flame.masks import find_masks, load_flame_masks
    from recon3d.render.preview import frontal_view
    from recon3d.render.rasterizer import project_pinhole

    flame = load_flame_model(need(model))
    regions = Regions.from_masks(load_flame_masks(find_masks(model_path=flame.path), flame.n_vertices))
    template, size, focal = flame.v_template.astype(np.float64), 512, 1451.6

    def image_points(lips):
        centre, distance = frontal_view(template, focal, size, lips)
        return project_pinhole(template - centre + np.array([0.0, 0.0, -distance]), focal, size / 2, size / 2)

    for lips, (low, high) in ((regions.lips, (0.28, 0.4)), (None, (0.08, 0.16))):
        points = image_points(lips)
        mouth = points[regions.lips]
        assert low < np.ptp(mouth[:, 0]) / size < high
        eyes = points[regions.eyes]
        inside = (eyes >= 0) & (eyes < size)
        assert inside.all(axis=1).mean() > 0.5  # the eyes (and part of the forehead) are in the picture


@pytest.mark.parametrize("make, args, message", [
    (lambda p: p.write_text("not audio"), [], "not a readable"),
    (lambda p: _write_wav(p, np.zeros(0), 16000), [], "no samples|at least"),
    (lambda p: _write_wav(p, np.zeros(16000), 16000), ["--emotion", "bored"], "unknown emotion 'bored'"),
    (lambda p: _write_wav(p, np.zeros(16000), 16000), ["--intensity", "extreme"], "unknown intensity"),
    (lambda p: _write_wav(p, np.zeros(16000), 16000), ["--actor", "99"], "unknown actor '99'"),
])
def test_animate_bad_input_is_a_clear_error(overfit_run, tmp_path, make, args, message):
    run, _ = overfit_run
    path = tmp_path / "in.wav"
    make(path)
    proc = subprocess.run([sys.executable, "-m", "recon3d", "animate", str(run), str(path), "--out",
                           str(tmp_path / "x"), *args], capture_output=True, text=True)
    assert proc.returncode == 2 and "error:" in proc.stderr
    assert re.search(message, proc.stderr), proc.stderr


def test_pretrained_audio_encoder_needs_a_local_folder(two_clips, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "recon3d", "train", str(two_clips), "--out", str(tmp_path / "r"),
                           "--audio-encoder", "wav2vec2", "--audio-encoder-path", str(tmp_path / "missing")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "not a local model folder" in proc.stderr and "nothing is downloaded" in proc.stderr


def test_evaluate_reports_metrics_per_emotion(overfit_run):
    run, _ = overfit_run
    out = subprocess.run([sys.executable, "-m", "recon3d", "evaluate", str(run), "--split", "train", "--json"],
                         capture_output=True, text=True, check=True).stdout
    result = json.loads(out)
    assert set(result["per_emotion"]) == {"happy", "fearful"}
    for key in ("lve", "eve", "fdd", "mve"):
        assert np.isfinite(result["overall"][key])
    assert result["overall"]["lve"] < result["template_only"]["lve"]
    opening = result["lip_opening"]
    assert set(opening["per_clip"]) == set(json.loads((run / "clips.json").read_text())["train"])
    lips = np.load(run / "regions.npz")["lips"]
    assert all(v in lips for v in opening["vertices"])
    assert 0.3 < opening["amplitude_ratio"] < 3 and opening["correlation"] > 0.5  # an overfitted run follows the data
    text = subprocess.run([sys.executable, "-m", "recon3d", "evaluate", str(run), "--split", "train"],
                          capture_output=True, text=True, check=True).stdout
    assert f"amplitude ratio {opening['amplitude_ratio']:.2f}, correlation {opening['correlation']:.2f}" in text


def test_the_lip_opening_pair_is_where_the_mouth_opens():
    from recon3d.flame import FlameLayer, load_flame_model
    from recon3d.flame.masks import find_masks, load_flame_masks
    from emoface_model.metrics import opening_agreement, opening_pair

    for path in (STAND_IN, HYBRID):
        flame = load_flame_model(need(path))
        regions = Regions.from_masks(load_flame_masks(find_masks(model_path=flame.path), flame.n_vertices))
        layer = FlameLayer(flame, dtype=torch.float64)
        jaw = torch.zeros(40, 3, dtype=torch.float64)
        jaw[:, 0] = torch.linspace(0.0, 0.3, 40) * (1 + torch.sin(torch.arange(40.0) / 3)) / 2
        verts = layer(jaw_pose=jaw).vertices.numpy()[:, regions.lips]
        pair = opening_pair([verts[:20], verts[20:]], flame.v_template[regions.lips])
        upper, lower = flame.v_template[regions.lips][list(pair)][:, 1]
        assert max(upper, lower) - min(upper, lower) < 0.03  # two lip vertices, one above the other
        same = opening_agreement(verts, verts, pair)
        assert same == {"amplitude_ratio": 1.0, "correlation": pytest.approx(1.0)}
        half = opening_agreement(verts[:1] + 0.5 * (verts - verts[:1]), verts, pair)
        assert 0.4 < half["amplitude_ratio"] < 0.6
        assert np.isnan(opening_agreement(np.repeat(verts[:1], 40, 0), verts, pair)["correlation"])


@pytest.mark.parametrize("name", ["no_mesh_attention", "no_emotion_stream", "teacher_forcing_only",
                                  "scheduled_sampling_only"])
def test_ablation_switches_change_the_model_and_train(two_clips, tmp_path, name):
    from emoface_model.config import ABLATIONS
    from emoface_model.mesh import build_hierarchy
    from emoface_model.models import build_model
    from recon3d.config_io import config_from_dict
    from recon3d.shards import open_dataset

    full_cfg = tiny_config(epochs=2)
    cfg = config_from_dict(TrainConfig, ABLATIONS[name], base=tiny_config(epochs=2))
    ds = open_dataset(two_clips)
    data = ClipData(ds, ds.clip_ids("train"), ["01"])
    hierarchy = build_hierarchy(data.template(data.entries[0]), ds.faces(), cfg.model.n_coarse)
    full, ablated = build_model(full_cfg.model, 5023, 1, hierarchy), build_model(cfg.model, 5023, 1, hierarchy)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    modules = lambda m: {n for n, _ in m.named_children()}  # noqa: E731
    if name == "no_mesh_attention":
        assert modules(full) - modules(ablated) == {"attention1", "attention2"} and count(ablated) < count(full)
    elif name == "no_emotion_stream":
        assert {"emotion_decoder", "emotion_head", "attention1", "attention2"} <= modules(full) - modules(ablated)
        assert count(ablated) < count(full)
    else:  # schedule ablations: the same network, another share of ground-truth inputs
        assert count(ablated) == count(full)
        assert teacher_ratio(0, cfg.schedule) == teacher_ratio(1, cfg.schedule) == cfg.schedule.start
    summary = train(two_clips, tmp_path / name, cfg, progress=False, max_steps=3)
    assert summary["steps"] == 3 and np.isfinite(summary["last_loss"])
    model, _ = load_model(tmp_path / name)
    clip = data.clip(data.entries[0])
    offsets = predict(model, clip["audio"], data.entries[0]["fps"], 2, 0, 0, clip["template"], n_frames=20)
    assert offsets.shape == (20, 5023, 3) and np.isfinite(offsets).all()


def test_compare_renders_truth_and_runs_side_by_side(two_clips, overfit_run, tmp_path):
    run, _ = overfit_run
    clip_id = json.loads((two_clips / "manifest.json").read_text())["clips"][0]["id"]
    out = tmp_path / "side.mp4"
    written = json.loads(subprocess.run(
        [sys.executable, "-m", "recon3d", "compare", str(two_clips), clip_id, str(run), str(run),
         "--names", "A,B", "--size", "160", "--out", str(out)], capture_output=True, text=True, check=True).stdout)
    assert written["panels"] == ["fitted (truth)", "A", "B"]
    import av

    with av.open(str(out)) as c:
        assert c.streams.audio and c.streams.video[0].width == 3 * 160
        assert sum(1 for _ in c.decode(video=0)) == written["frames"]


class _Touch:
    """Unpickling this creates the file ``path`` (as a crafted checkpoint would run any command)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoints_hold_only_data(overfit_run):
    run, _ = overfit_run
    for name in ("last.pt", "best.pt"):
        path = run / "checkpoints" / name
        if path.exists():
            assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
            torch.load(path, weights_only=True)  # no allow-list needed


def test_a_checkpoint_that_would_run_code_is_refused_by_every_command(two_clips, overfit_run, tmp_path):
    import shutil

    run = tmp_path / "shared_run"
    shutil.copytree(overfit_run[0], run)
    marker = tmp_path / "pwned"
    for name in ("last.pt", "best.pt"):
        state = load_checkpoint(overfit_run[0] / "checkpoints" / "last.pt")
        state["extra"] = _Touch(marker)
        torch.save(state, run / "checkpoints" / name)
    assert not marker.exists()
    wav = tmp_path / "in.wav"
    media.write_tone_wav(wav, seconds=1.0)
    clip_id = json.loads((two_clips / "manifest.json").read_text())["clips"][0]["id"]
    commands = {
        "train --resume": ["train", str(two_clips), "--out", str(run), "--resume", "--no-progress"],
        "evaluate": ["evaluate", str(run), "--split", "train"],
        "animate": ["animate", str(run), str(wav), "--out", str(tmp_path / "anim")],
        "animate --checkpoint last": ["animate", str(run), str(wav), "--out", str(tmp_path / "anim"),
                                      "--checkpoint", "last"],
        "compare": ["compare", str(two_clips), clip_id, str(run), "--out", str(tmp_path / "side.mp4")],
    }
    for what, args in commands.items():
        proc = subprocess.run([sys.executable, "-m", "recon3d", *args], capture_output=True, text=True)
        assert proc.returncode == 2, (what, proc.stderr)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "refused, not loaded" in lines[0] and ".pt" in lines[0], (what, proc.stderr)
        assert re.search(r"\b(io|builtins)\.open\b", lines[0]), lines[0]
        assert not marker.exists(), f"{what} ran the checkpoint's code"
    assert not (tmp_path / "anim").exists() and not (tmp_path / "side.mp4").exists()


@pytest.fixture(scope="module")
def with_val_speaker(tmp_path_factory) -> Path:
    """A training speaker and a validation speaker (clips of different lengths)."""
    out = tmp_path_factory.mktemp("syn_val") / "shards"
    write_synthetic_dataset(out, need(STAND_IN), n_actors=2, clips_per_actor=3, seconds=1.5, val_actors=1,
                            test_actors=0, prefer_espeak=False, emotions=(3, 6, 4), seed=5)
    return out


def test_batched_generation_equals_one_clip_at_a_time(with_val_speaker, overfit_run):
    from emoface_model.data import labels_of
    from emoface_model.infer import clip_predictions
    from recon3d.shards import open_dataset

    model, state = load_model(overfit_run[0])
    ds = open_dataset(with_val_speaker)
    data = ClipData(ds, ds.clip_ids("val"), state["actors"])
    for i, frames in ((1, 30), (2, 38)):  # clips of different lengths in one batch
        data.entries[i] = {**data.entries[i], "frames": frames}
    batched = list(clip_predictions(model, data, batch_clips=3))
    assert [len(p) for _, p, _, _ in batched] == [45, 30, 38]
    for entry, pred, gt, template in batched:
        clip = data.clip(entry)
        emotion, intensity = labels_of(entry)
        one = predict(model, clip["audio"], float(entry["fps"]), emotion, intensity, clip["actor"], template,
                      n_frames=len(gt)) + template
        np.testing.assert_allclose(pred, one, atol=1e-6)


def test_best_checkpoint_is_the_best_scored_validation_epoch(with_val_speaker, tmp_path):
    from emoface_model.run import RunDir, load_regions
    from emoface_model.train import validation_scores
    from recon3d.shards import open_dataset

    cfg = tiny_config(epochs=5)
    cfg.best_every = 2
    train(with_val_speaker, tmp_path / "run", cfg, progress=False)
    rows = [r for r in __import__("csv").DictReader(open(tmp_path / "run" / "metrics.csv")) if r["split"] == "val"]
    scored = [r for r in rows if r["lve"]]
    assert [int(r["epoch"]) for r in scored] == [1, 3, 4]  # every 2nd epoch and the last (0-based)
    scores = [float(r["lve"]) + float(r["eve"]) for r in scored]
    model, state = load_model(tmp_path / "run")  # best by default
    assert state["checkpoint"] == "best.pt"
    assert state["val"]["score"] == pytest.approx(min(scores))
    assert state["epoch"] == int(scored[int(np.argmin(scores))]["epoch"]) + 1
    ds = open_dataset(with_val_speaker)
    data = ClipData(ds, ds.clip_ids("val"), state["actors"])
    again = validation_scores(model, data, load_regions(RunDir(tmp_path / "run")), "cpu")
    assert again["lve"] + again["eve"] == pytest.approx(min(scores), rel=1e-5), "best.pt is not the model scored"
    _, last = load_model(tmp_path / "run", checkpoint="last")
    assert last["checkpoint"] == "last.pt" and last["epoch"] == 5

    cfg.best_on = "none"
    train(with_val_speaker, tmp_path / "no_best", cfg, progress=False, max_steps=4)
    assert not (tmp_path / "no_best" / "checkpoints" / "best.pt").exists()
    assert load_model(tmp_path / "no_best")[1]["checkpoint"] == "last.pt"


def test_unknown_best_on_is_a_setup_error_before_the_run_exists(with_val_speaker, tmp_path):
    from recon3d.config_io import ConfigError

    cfg = tiny_config(epochs=1)
    cfg.best_on = "mve"
    with pytest.raises(ConfigError, match="best_on: 'mve' is not one of lve\\+eve"):
        train(with_val_speaker, tmp_path / "run", cfg, progress=False)
    assert not (tmp_path / "run").exists()
