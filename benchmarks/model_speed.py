"""EmoFace and the FaceFormer baseline side by side: inference speed, training speed, memory, size.

Each model is measured in a fresh process (for its peak memory) with the default configuration
(pipelines/emoface.yaml) on the FLAME topology: real-time factor of autoregressive inference on
10 s of audio (audio seconds per second of compute; speed does not depend on the weights),
training frames per second (batches of 8 windows of 60 frames, teacher forcing), peak resident
memory and parameter count.

    python benchmarks/model_speed.py [--seconds 10] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _common import flame_model_path, print_json


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024.0
    return float("nan")


def measure(model_name: str, seconds: float, threads: int) -> dict:
    import torch

    from emoface_model.config import TrainConfig
    from emoface_model.infer import predict
    from emoface_model.mesh import build_hierarchy
    from emoface_model.models import build_model
    from emoface_model.losses import sequence_loss
    from recon3d.flame import load_flame_model
    from recon3d.synth.speech import shaped_noise

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    flame = load_flame_model(flame_model_path(), n_shape=1, n_expr=1)
    cfg = TrainConfig()
    cfg.model.model = model_name
    hierarchy = build_hierarchy(flame.v_template, flame.faces, cfg.model.n_coarse) if model_name == "emoface" else None
    model = build_model(cfg.model, flame.n_vertices, 8, hierarchy)
    params = sum(p.numel() for p in model.parameters())
    template = flame.v_template.astype(np.float32)
    audio = shaped_noise(np.random.default_rng(0), seconds)
    model.eval()
    predict(model, audio[:16000], 30.0, 2, 1, 0, template)  # warm-up
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        predict(model, audio, 30.0, 2, 1, 0, template)
        times.append(time.perf_counter() - t0)
    rtf = seconds / min(times)

    b, t = cfg.data.batch_size, cfg.data.window_frames
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n_audio = int(round(t / 30.0 * 16000))
    batch_audio = torch.from_numpy(np.stack([audio[i * 1000:i * 1000 + n_audio] for i in range(b)]))
    gt = torch.randn(b, t, flame.n_vertices, 3) * 1e-3
    tmpl = torch.from_numpy(template).expand(b, -1, -1)
    labels = torch.arange(b) % 8, torch.arange(b) % 2, torch.arange(b) % 8
    weights = torch.ones(flame.n_vertices)

    def step():
        feats = model.encode_audio(batch_audio, t)
        prev = model.motion_input(torch.cat([torch.zeros_like(gt[:, :1]), gt[:, :-1]], 1))
        pred, _ = model(feats, prev, torch.zeros(b, dtype=torch.bool), labels[0], labels[1], labels[2], tmpl)
        loss = sequence_loss(pred, gt, weights, 1.0)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    n_steps = 5
    for _ in range(n_steps):
        step()
    train_fps = n_steps * b * t / (time.perf_counter() - t0)
    return {"rtf": rtf, "inference_s": min(times), "train_fps": train_fps, "params": params,
            "peak_rss_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (this machine has 2 cores)")
    parser.add_argument("--child", choices=["emoface", "faceformer"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.seconds, args.threads)))
        return
    results = {}
    for name in ("emoface", "faceformer"):
        out = subprocess.run([sys.executable, __file__, "--child", name, "--seconds", str(args.seconds),
                              "--threads", str(args.threads)], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).parent).stdout
        results[name] = json.loads(out.strip().splitlines()[-1])
    print(f"model speed: {args.seconds:g} s of audio at 30 fps, CPU, {args.threads} threads, default config")
    print(f"{'':12s} {'RT factor':>10s} {'infer s':>8s} {'train fr/s':>11s} {'params':>10s} {'peak MB':>8s}")
    for name, r in results.items():
        print(f"{name:12s} {r['rtf']:10.1f} {r['inference_s']:8.2f} {r['train_fps']:11.0f} {r['params']:10,d} "
              f"{r['peak_rss_mb']:8.0f}")
    e, f = results["emoface"], results["faceformer"]
    print_json({"emoface_rtf": round(e["rtf"], 2), "faceformer_rtf": round(f["rtf"], 2),
                "emoface_train_fps": round(e["train_fps"], 1), "faceformer_train_fps": round(f["train_fps"], 1),
                "emoface_peak_rss_mb": round(e["peak_rss_mb"], 1), "faceformer_peak_rss_mb": round(f["peak_rss_mb"], 1),
                "emoface_params": e["params"], "faceformer_params": f["params"]})


if __name__ == "__main__":
    main()
