"""EmoFace against the FaceFormer baseline, and what each of EmoFace's parts buys: one protocol.

Data: a synthetic multi-speaker set written through the dataset writer (recon3d.synth.dataset:
espeak-ng speech, mouth and jaw following the audio, one expression per emotion scaled by
intensity, blinks and random expression drift), ``--actors`` speakers of ``--clips`` clips (all
eight emotions), the last ``--held-out`` speakers held out for testing and the ``--val`` before
them for validation; or ``--shards`` for any built dataset with a test split.

Every run keeps the epoch whose generated validation clips score lowest (``best_on``: LVE + EVE,
checked every ``best_every`` epochs); the table evaluates that checkpoint, and a second table the
last one, so what the selection buys is shown beside it.

Each model trains with the same configuration and number of steps for every seed; the table gives
mean and standard deviation over seeds of LVE, EVE, FDD and MVE on the held-out speakers, overall
and per emotion, beside the template-only (no motion) row, and the steps and wall time each model
used. Ablations (same data and evaluation, a shorter budget: ``--ablation-epochs``, ``--ablation-seeds``): EmoFace without Mesh Attention (the two
streams' offsets added), without the emotion stream (one stream with the emotion), with teacher
forcing only, and with scheduled sampling only (a constant share of own predictions from the first
epoch), each a configuration switch.

    python benchmarks/model_quality.py [--seeds 0 1 2] [--epochs 30] [--ablation-epochs 8] [--ablation-seeds 0 1]
                                       [--actors 7] [--val 1] [--held-out 2] [--clips 8] [--shards DIR] [--no-ablations]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import add_model_option, flame_model_path, print_json

METRICS = ("lve", "eve", "fdd", "mve")


def train_and_evaluate(shards: Path, run: Path, model: str, seed: int, epochs: int, overrides: dict, split: str) -> dict:
    """Train a run (or continue it, when an earlier protocol was stopped; a finished run is only
    evaluated) and evaluate its best and last checkpoints on ``split``, and the last on the
    validation speakers (which that checkpoint was not selected on)."""
    from emoface_model.config import TrainConfig
    from emoface_model.infer import evaluate_run
    from emoface_model.run import RunDir, load_model, load_regions
    from emoface_model.train import train
    from recon3d.shards.reader import open_dataset

    cfg = TrainConfig.from_dict(overrides)
    cfg.model.model = model
    cfg.optim.epochs = epochs
    cfg.schedule.decay_epochs = min(cfg.schedule.decay_epochs, epochs)
    cfg.seed = seed
    summary = train(shards, run, cfg, resume=RunDir(run).checkpoint.exists(), progress=False)
    has_val = bool(open_dataset(shards).clips("val"))
    regions = load_regions(RunDir(run))
    results = {}
    for key, checkpoint, on in (("best", "best", split), ("last", "last", split), ("last_val", "last", "val")):
        if on == "val" and not has_val:
            continue
        net, state = load_model(run, checkpoint=checkpoint)
        results[key] = evaluate_run(net, state["actors"], shards, on, regions, progress=False)
        results[key]["epochs"] = state["epoch"]
    params = sum(p.numel() for p in net.parameters())
    return {**results["best"], "last": results["last"], "last_val": results.get("last_val"),
            "train_seconds": logged_seconds(RunDir(run).metrics), "steps": summary["steps"], "params": params}


def logged_seconds(metrics: Path) -> float:
    """A run's training wall time from its metrics.csv (the clock restarts in a resumed stretch)."""
    total = last = 0.0
    with open(metrics, newline="") as f:
        for row in csv.DictReader(f):
            if row["split"] == "train":
                seconds = float(row["seconds"])
                total, last = (total + last, seconds) if seconds < last else (total, seconds)
    return total + last


def aggregate(results: list[dict], key: str = "overall") -> dict:
    """Mean and sd over seeds of each metric of ``results[i][key]``."""
    out = {}
    for m in METRICS:
        values = np.array([r[key][m] for r in results])
        out[m], out[f"{m}_sd"] = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return out


def table(rows: list[tuple[str, dict, str]]) -> None:
    print(f"{'':26s} " + " ".join(f"{m.upper():>20s}" for m in METRICS) + "   budget")
    for name, r, budget in rows:
        cells = " ".join(f"{r[m]:10.3e}±{r.get(m + '_sd', 0.0):8.1e}" for m in METRICS)
        print(f"{name:26s} {cells}   {budget}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", type=Path, default=None, help="a built dataset (default: a synthetic one)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--ablation-epochs", type=int, default=8,
                        help="the ablations' epochs (shorter than the main comparison's, to fit the hour)")
    parser.add_argument("--ablation-seeds", type=int, nargs="+", default=[0, 1],
                        help="the ablations' seeds (fewer than the main comparison's, to fit the hour)")
    parser.add_argument("--actors", type=int, default=7)
    parser.add_argument("--val", type=int, default=1, help="validation speakers (checkpoint selection)")
    parser.add_argument("--held-out", type=int, default=2)
    parser.add_argument("--clips", type=int, default=8, help="clips per actor (synthetic data)")
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--split", default="test")
    parser.add_argument("--no-ablations", action="store_true")
    parser.add_argument("--work", type=Path, default=None, help="keep the data and runs here")
    add_model_option(parser)
    args = parser.parse_args()

    import torch

    from emoface_model.config import ABLATIONS
    from recon3d.synth.dataset import write_synthetic_dataset

    torch.set_num_threads(2)
    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="recon3d-model-quality-"))
    shards = args.shards
    if shards is None:
        shards = work / "shards"
        if not (shards / "manifest.json").exists():
            write_synthetic_dataset(shards, flame_model_path(args.flame_model), n_actors=args.actors,
                                    clips_per_actor=args.clips, seed=args.data_seed, val_actors=args.val,
                                    test_actors=args.held_out)
    main_runs = {name: [train_and_evaluate(shards, work / f"{name}_s{s}", name, s, args.epochs, {}, args.split)
                        for s in args.seeds] for name in ("emoface", "faceformer")}
    ablation_runs = {}
    if not args.no_ablations:
        for name, overrides in ABLATIONS.items():
            ablation_runs[name] = [train_and_evaluate(shards, work / f"ablation_{name}_s{s}", "emoface", s,
                                                      args.ablation_epochs, overrides, args.split)
                                   for s in args.ablation_seeds]

    e = main_runs["emoface"]
    held = e[0]["overall"]
    template = {m: e[0]["template_only"][m] for m in METRICS}
    rows = []
    print(f"model quality: {len(args.seeds)} seeds, {args.epochs} epochs, split '{args.split}' "
          f"({held['sequences']} clips, {held['frames']} frames of {args.held_out} held-out speakers); "
          "mean ± sd over seeds; LVE/EVE/FDD in m^2, MVE in m")
    for name, runs in main_runs.items():
        budget = (f"{runs[0]['steps']} steps, {np.mean([r['train_seconds'] for r in runs]):.0f} s, "
                  f"{runs[0]['params']:,} params, best epochs {[r['epochs'] for r in runs]}")
        rows.append((name, aggregate(runs), budget))
    rows.append(("template only", template, ""))
    table(rows)
    print("the same runs' last checkpoints (no selection):")
    last_rows = [(name, aggregate([r["last"] for r in runs]), f"{runs[0]['last']['epochs']} epochs")
                 for name, runs in main_runs.items()]
    table(last_rows)
    if e[0]["last_val"] is not None:
        val = e[0]["last_val"]["overall"]
        print(f"the last checkpoints on the validation speakers ({val['sequences']} clips, not used to select them):")
        val_rows = [(name, aggregate([r["last_val"] for r in runs]), "") for name, runs in main_runs.items()]
        val_rows.append(("template only", {m: e[0]["last_val"]["template_only"][m] for m in METRICS}, ""))
        table(val_rows)
    print("per emotion, LVE / EVE (mean over seeds), emoface | faceformer | template:")
    for emotion in sorted(e[0]["per_emotion"]):
        cells = []
        for runs in main_runs.values():
            lve, eve = (float(np.mean([r["per_emotion"][emotion][m] for r in runs])) for m in ("lve", "eve"))
            cells.append(f"{lve:.2e} / {eve:.2e}")
        base = e[0]["per_emotion_template"][emotion] if "per_emotion_template" in e[0] else None
        print(f"  {emotion:10s} " + " | ".join(cells) + (f" | {base['lve']:.2e} / {base['eve']:.2e}" if base else ""))
    ablation_rows = []
    if ablation_runs:
        print(f"\nablations ({args.ablation_epochs} epochs, seeds {args.ablation_seeds}):")
        for name, runs in ablation_runs.items():
            ablation_rows.append((name, aggregate(runs), f"{runs[0]['steps']} steps, "
                                  f"{np.mean([r['train_seconds'] for r in runs]):.0f} s, {runs[0]['params']:,} params, "
                                  f"best epochs {[r['epochs'] for r in runs]}"))
        table(ablation_rows)
    print(f"whole protocol: {(time.perf_counter() - started) / 60:.1f} min")
    out_rows = [{"model": name, **r} for name, r, _ in rows[:2]] + [{"model": "template", **template}]
    for row, (name, runs) in zip(out_rows, main_runs.items()):
        row.update(steps=runs[0]["steps"], train_seconds=float(np.mean([r["train_seconds"] for r in runs])),
                   best_epochs=[r["epochs"] for r in runs],
                   per_emotion={k: {m: float(np.mean([r["per_emotion"][k][m] for r in runs])) for m in METRICS}
                                for k in runs[0]["per_emotion"]})
    print_json({"rows": out_rows, "seeds": len(args.seeds), "held_out_speakers": args.held_out, "epochs": args.epochs,
                "last_checkpoint_rows": [{"model": name, **r} for name, r, _ in last_rows],
                "last_checkpoint_val_rows": ([{"model": name, **r} for name, r, _ in val_rows]
                                             if e[0]["last_val"] is not None else []),
                "ablations": [{"model": name, **r} for name, r, _ in ablation_rows],
                "ablation_epochs": args.ablation_epochs, "minutes": round((time.perf_counter() - started) / 60, 1)})


if __name__ == "__main__":
    main()
