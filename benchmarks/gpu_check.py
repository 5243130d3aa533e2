"""The GPU path, checked in one go (under 5 minutes on one GPU): train, evaluate and animate with
``--device cuda`` against the CPU from the same seed, and ``build-dataset --device cuda`` against
the CPU build.

For each model (EmoFace, the FaceFormer baseline), default configuration, on a small synthetic
3D dataset: the first ``--compare-steps`` steps on the CPU and on the GPU from the same seed (the
losses must agree within ``--tolerance``, relative), then ``--steps`` steps on the GPU in fp32 and
a stretch in bf16 (step time of each, peak GPU memory), evaluate and animate on the GPU. Then the
README's clips are built on the CPU and with ``--device cuda`` (time of each; vertices equal within
1e-5 m). Without a GPU it says so in one line and exits 0; ``--device cpu`` runs the same code
with the CPU standing in for the GPU (a dry run of this script, not a measurement).

    python benchmarks/gpu_check.py [--steps 300] [--compare-steps 20] [--videos ../shared/assets/ravdess/video]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

from _common import REPO, flame_model_path, print_json

MODELS = ("emoface", "faceformer")


def losses_and_steps(run: Path) -> tuple[list[float], np.ndarray]:
    """Training losses and per-step seconds from a run's metrics.csv."""
    with open(run / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    return [float(r["loss"]) for r in rows], np.diff([0.0] + [float(r["seconds"]) for r in rows])


def write_wav(path: Path, audio: np.ndarray, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def train_run(shards: Path, run: Path, model: str, device: str, steps: int, precision: str = "fp32") -> dict:
    import torch

    from emoface_model.config import TrainConfig
    from emoface_model.train import train

    cfg = TrainConfig()
    cfg.model.model, cfg.device, cfg.precision = model, device, precision
    cfg.optim.epochs, cfg.best_on = 10_000, "none"
    cfg.checkpoint_every = 10 * steps  # only the end's checkpoint: steps timed, not disk
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    train(shards, run, cfg, progress=False, max_steps=steps)
    losses, seconds = losses_and_steps(run)
    memory = torch.cuda.max_memory_allocated() / 2 ** 20 if device.startswith("cuda") else None
    return {"losses": losses, "step_s": float(np.median(seconds[min(5, len(seconds) - 1):])), "memory_mb": memory}


def check_model(shards: Path, work: Path, model: str, device: str, steps: int, compare: int, tolerance: float) -> dict:
    import torch

    from emoface_model.animate import animate
    from emoface_model.infer import evaluate_run
    from emoface_model.run import load_model, load_regions
    from emoface_model.run_files import RunDir
    from recon3d.synth.speech import shaped_noise

    torch.backends.cuda.matmul.allow_tf32 = False  # the comparison is of fp32 arithmetic on both sides
    torch.backends.cudnn.allow_tf32 = False
    cpu = train_run(shards, work / f"{model}_cpu", model, "cpu", compare)
    gpu = train_run(shards, work / f"{model}_gpu", model, device, steps)
    bf16 = train_run(shards, work / f"{model}_bf16", model, device, max(compare, steps // 4), "bf16")
    a, b = np.array(cpu["losses"]), np.array(gpu["losses"][:compare])
    rel = float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-12)))
    run = work / f"{model}_gpu"
    net, state = load_model(run, device)
    t0 = time.perf_counter()
    result = evaluate_run(net, state["actors"], shards, "train", load_regions(RunDir(run)), device, progress=False)
    evaluate_s = time.perf_counter() - t0
    wav = work / "speech.wav"
    write_wav(wav, shaped_noise(np.random.default_rng(0), 5.0))
    t0 = time.perf_counter()
    written = animate(run, wav, work / f"{model}_anim", device=device)
    animate_s = time.perf_counter() - t0
    return {"cpu_step_s": cpu["step_s"], "gpu_step_s": gpu["step_s"], "bf16_step_s": bf16["step_s"],
            "cpu_over_gpu": cpu["step_s"] / gpu["step_s"], "gpu_memory_mb": gpu["memory_mb"],
            "bf16_memory_mb": bf16["memory_mb"], "loss_rel_diff": rel, "losses_agree": rel <= tolerance,
            "first_loss": gpu["losses"][0], "last_loss": gpu["losses"][-1], "evaluate_lve": result["overall"]["lve"],
            "evaluate_s": evaluate_s, "animate_frames": written["frames"], "animate_s": animate_s}


def build(videos: Path, out: Path, device: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "recon3d", "build-dataset", str(videos), "--flame-model",
                    str(flame_model_path()), "--out", str(out), "--no-progress", "--device", device],
                   check=True, capture_output=True, text=True, cwd=REPO)
    return time.perf_counter() - t0


def compare_builds(videos: Path, work: Path, device: str) -> dict:
    from recon3d.shards import open_dataset

    cpu_s = build(videos, work / "build_cpu", "cpu")
    gpu_s = build(videos, work / "build_gpu", device)
    a, b = open_dataset(work / "build_cpu"), open_dataset(work / "build_gpu")
    diff = max(float(np.abs(a.load_clip(c).vertices - b.load_clip(c).vertices).max()) for c in a.clip_ids())
    return {"build_cpu_s": cpu_s, "build_gpu_s": gpu_s, "build_max_abs_diff_m": diff, "build_equal": diff <= 1e-5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu for a dry run of this script")
    parser.add_argument("--steps", type=int, default=300, help="GPU training steps per model")
    parser.add_argument("--compare-steps", type=int, default=20, help="steps trained on both, losses compared")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest relative loss difference")
    parser.add_argument("--videos", type=Path, default=REPO.parent / "shared" / "assets" / "ravdess" / "video",
                        help="clips to build on both devices (the README's)")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        reason = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        print(f"gpu_check: {reason}; nothing was run (run it where a GPU is, e.g. a SLURM job with gres=gpu:1)")
        print_json({"gpu": None})
        return
    from recon3d.synth.dataset import write_synthetic_dataset

    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu (dry run)"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recon3d-gpu-check-") as tmp:
        work = Path(tmp)
        write_synthetic_dataset(work / "shards", flame_model_path(), n_actors=2, clips_per_actor=4, seconds=3.0,
                                test_actors=0, prefer_espeak=False, seed=0)
        results = {m: check_model(work / "shards", work, m, args.device, args.steps, args.compare_steps,
                                  args.tolerance) for m in MODELS}
        builds = compare_builds(args.videos, work, args.device) if args.videos.is_dir() else {}
    print(f"GPU check on {name}: {args.steps} steps per model, default config; the first {args.compare_steps} "
          "also on the CPU from the same seed")
    print(f"{'model':11s} {'CPU s/step':>10s} {'GPU s/step':>10s} {'bf16':>8s} {'CPU/GPU':>8s} {'GPU MB':>8s} "
          f"{'loss diff':>10s} {'evaluate s':>10s} {'animate s':>10s}")
    for m, r in results.items():
        print(f"{m:11s} {r['cpu_step_s']:10.3f} {r['gpu_step_s']:10.4f} {r['bf16_step_s']:8.4f} "
              f"{r['cpu_over_gpu']:8.1f} {r['gpu_memory_mb'] or 0:8.0f} {r['loss_rel_diff']:10.2e} "
              f"{r['evaluate_s']:10.2f} {r['animate_s']:10.2f}")
    if builds:
        print(f"build-dataset {args.videos}: CPU {builds['build_cpu_s']:.1f} s, --device {args.device} "
              f"{builds['build_gpu_s']:.1f} s, largest vertex difference {builds['build_max_abs_diff_m']:.2e} m")
    print_json({"device": name, "seconds": round(time.perf_counter() - started, 1),
                **{f"{m}_{k}": (round(v, 6) if isinstance(v, float) else v) for m, r in results.items()
                   for k, v in r.items()}, **builds})


if __name__ == "__main__":
    main()
