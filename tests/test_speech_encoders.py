"""The animator on pretrained speech encoders, for real: a small wav2vec 2.0 and a small HuBERT built
by ``transformers`` from a config with random weights and written with ``save_pretrained`` (no
download; a downloaded facebook/wav2vec2-base-960h goes through the same loading code), through
``train``, ``--resume``, ``evaluate`` and ``animate``; the run's record of its encoder; the two
training modes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is not installed: pip install 'recon3d[speech]'")

from emoface_model.audio import encoder_fingerprint  # noqa: E402
from emoface_model.checkpoint import load_checkpoint  # noqa: E402
from emoface_model.data import ClipData, epoch_batches  # noqa: E402
from emoface_model.features import FrozenFeatures  # noqa: E402
from emoface_model.infer import audio_features  # noqa: E402
from emoface_model.models import build_model  # noqa: E402
from emoface_model.train import train  # noqa: E402
from recon3d.shards import open_dataset  # noqa: E402
from tests import media  # noqa: E402
from tests.cli import run_cli, tiny_train_config  # noqa: E402
from tests.test_animator import tiny_config, two_clips  # noqa: E402,F401 - the fixture


def save_tiny_encoder(kind: str, folder: Path, seed: int = 0) -> Path:
    """A two-layer ``kind`` (wav2vec2 | hubert) with random weights, as save_pretrained writes it."""
    torch.manual_seed(seed)
    sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    if kind == "wav2vec2":
        model = transformers.Wav2Vec2Model(transformers.Wav2Vec2Config(**sizes))
    else:
        model = transformers.HubertModel(transformers.HubertConfig(**sizes))
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["wav2vec2", "hubert"])
def test_train_resume_evaluate_and_animate_through_a_saved_encoder(kind, two_clips, tmp_path):  # noqa: F811
    encoder = save_tiny_encoder(kind, tmp_path / kind)
    run = tmp_path / "run"
    args = ["train", str(two_clips), "--out", str(run), "--no-progress", "--audio-encoder", kind,
            "--audio-encoder-path", str(encoder), "--config", str(tiny_train_config(tmp_path / "tiny.yaml"))]
    first = json.loads(run_cli(*args, "--max-steps", "2").stdout.strip().splitlines()[-1])
    assert first["steps"] == 2
    recorded = json.loads((run / "run.json").read_text())["audio_encoder"]
    assert recorded == {"kind": kind, "path": str(encoder.resolve()), "mode": "fine_tune",
                        "sha256": encoder_fingerprint(encoder)}
    resumed = json.loads(run_cli(*args, "--max-steps", "4", "--resume").stdout.strip().splitlines()[-1])
    assert resumed["resumed_at"] == 2 and resumed["steps"] == 4
    result = json.loads(run_cli("evaluate", str(run), "--split", "train", "--json").stdout)
    assert result["overall"]["sequences"] == 2 and result["overall"]["lve"] > 0
    wav = media.write_tone_wav(tmp_path / "speech.wav", seconds=1.0)
    written = json.loads(run_cli("animate", str(run), str(wav), "--out", str(tmp_path / "anim")).stdout)
    assert np.load(written["npy"]).shape == (30, 5023, 3) and Path(written["mp4"]).exists()

    # The folder now holds another model: every command that would use it refuses, in one line.
    save_tiny_encoder(kind, encoder, seed=1)
    for command in (["evaluate", str(run), "--split", "train"],
                    ["animate", str(run), str(wav), "--out", str(tmp_path / "again")],
                    [*args, "--max-steps", "6", "--resume"]):
        proc = run_cli(*command, check_exit=2)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "now holds another model" in lines[0] and str(encoder) in lines[0], proc.stderr
    assert not (tmp_path / "again.npy").exists()


@pytest.mark.parametrize("mode", ["fine_tune", "frozen"])
def test_what_each_mode_trains(mode, two_clips, tmp_path):  # noqa: F811
    encoder = save_tiny_encoder("wav2vec2", tmp_path / "w2v")
    cfg = tiny_config("faceformer", epochs=2)
    cfg.model.audio_encoder, cfg.model.audio_encoder_path, cfg.model.audio_encoder_mode = "wav2vec2", str(encoder), mode
    train(two_clips, tmp_path / "run", cfg, progress=False, max_steps=3)
    after = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    before = transformers.Wav2Vec2Model.from_pretrained(str(encoder)).state_dict()
    changed = {k for k, v in before.items() if not torch.equal(v, after[f"audio.model.{k}"])}
    assert not any(k.startswith("feature_extractor.") for k in changed)  # frozen in both modes
    if mode == "frozen":
        assert not changed
    else:
        assert any(k.startswith("encoder.layers.") for k in changed)
    torch.manual_seed(cfg.seed)  # as train builds it
    initial = build_model(cfg.model, 5023, 1, None).audio.project.weight
    assert not torch.equal(after["audio.project.weight"], initial)  # the projection trains in both modes


def test_a_frozen_encoder_runs_once_per_clip_and_gives_what_inference_gives(two_clips, tmp_path):  # noqa: F811
    cfg = tiny_config()
    cfg.model.model = "faceformer"
    cfg.model.audio_encoder, cfg.model.audio_encoder_mode = "wav2vec2", "frozen"
    cfg.model.audio_encoder_path = str(save_tiny_encoder("wav2vec2", tmp_path / "w2v"))
    model = build_model(cfg.model, 5023, 1, None).train()
    ds = open_dataset(two_clips)
    data = ClipData(ds, ds.clip_ids(), ["01"])
    calls = []
    model.audio.model.register_forward_hook(lambda *_: calls.append(1))
    cache = FrozenFeatures(model, data, "cpu")
    for epoch in range(3):
        for items in epoch_batches(data, epoch, 0, 24, 2, 4):
            windows = cache.windows(items, 24)
            assert windows.shape == (len(items), 24, 32)
    assert len(calls) == len(data)  # each clip encoded once, however many windows and epochs
    entry = data.entries[0]
    whole = audio_features(model, data.clip(entry)["audio"], int(entry["frames"]), float(entry["fps"]),
                           encode=model.audio.frame_hidden)[0]
    torch.testing.assert_close(cache.clip(entry), whole)
    model.eval()
    torch.testing.assert_close(model.audio.project(whole)[None],
                               audio_features(model, data.clip(entry)["audio"], int(entry["frames"]),
                                              float(entry["fps"])))
