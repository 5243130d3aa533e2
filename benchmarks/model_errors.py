"""Where the animators' eye-region error (EVE) and upper-face dynamics error (FDD) come from, on the
runs `model_quality.py --work DIR` kept.

For every run and held-out clip, the per-frame eye + forehead error (as EVE: max over the region's
vertices of the squared error) is taken apart:

* **blink frames** (the 10 % of held-out frames whose true eye region moves furthest from the
  clip's median face, i.e. blinks and other fast eyelid motion) against the other 90 %;
* **static** (the clip's mean error: a wrong emotion offset held for the whole clip) against
  **dynamic** (what changes over time around it);
* **|FDD|**: the mean over clips of the absolute upper-face dynamics deviation; the community's
  FDD is signed and averaged, so a model that moves too much on some clips and too little on
  others can score near zero.

    python benchmarks/model_errors.py --work DIR [--split test] [--checkpoints best last]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from _common import print_json
from emoface_model.run_files import CHECKPOINTS

BLINK_SHARE = 0.10


def clip_errors(pred: np.ndarray, gt: np.ndarray, template: np.ndarray, regions) -> dict:
    """Per-frame parts of the eye-region error of one clip (arrays ``(T,)``) and its signed FDD."""
    from emoface_model.metrics import face_dynamics_deviation, max_region_error

    eyes = regions.eyes
    err = pred[:, eyes] - gt[:, eyes]
    static = err.mean(0, keepdims=True)
    eyelid = ((gt[:, eyes] - np.median(gt[:, eyes], axis=0, keepdims=True)) ** 2).sum(-1).max(-1)
    return {"eve": max_region_error(pred, gt, eyes),
            "static": np.repeat((static ** 2).sum(-1).max(-1), len(err)),
            "dynamic": ((err - static) ** 2).sum(-1).max(-1),
            "eyelid": eyelid,
            "fdd": face_dynamics_deviation(pred, gt, template, regions.upper)}


def run_errors(run: Path, shards: Path, split: str, with_template: bool, checkpoint: str) -> tuple[dict, dict | None]:
    """The parts of EVE and the FDD figures of one run's ``checkpoint`` on ``split``, and
    (``with_template``) of the template (no motion)."""
    from emoface_model.infer import clip_predictions, split_data
    from emoface_model.run import RunDir, load_model, load_regions

    net, state = load_model(run, checkpoint=checkpoint)
    regions = load_regions(RunDir(run))
    parts, still = defaultdict(list), defaultdict(list)
    for _, pred, gt, template in clip_predictions(net, split_data(shards, split, state["actors"])):
        for name, values in clip_errors(pred, gt, template, regions).items():
            parts[name].append(values)
        if with_template:
            for name, values in clip_errors(np.repeat(template[None], len(gt), 0), gt, template, regions).items():
                still[name].append(values)
    join = lambda p: {name: (np.array(v) if name == "fdd" else np.concatenate(v)) for name, v in p.items()}  # noqa: E731
    return join(parts), (join(still) if with_template else None)


def summary(parts: dict) -> dict:
    blink = parts["eyelid"] >= np.quantile(parts["eyelid"], 1 - BLINK_SHARE)
    eve = parts["eve"]
    return {"eve": float(eve.mean()), "eve_blink": float(eve[blink].mean()), "eve_other": float(eve[~blink].mean()),
            "eve_blink_share": float(eve[blink].sum() / eve.sum()),
            "static": float(parts["static"].mean()), "dynamic": float(parts["dynamic"].mean()),
            "fdd": float(parts["fdd"].mean()), "fdd_abs": float(np.abs(parts["fdd"]).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="model_quality.py's --work folder")
    parser.add_argument("--split", default="test")
    parser.add_argument("--runs", nargs="+", default=["emoface", "faceformer"],
                        help="run name prefixes (folders <prefix>_s<seed>)")
    parser.add_argument("--checkpoints", nargs="+", choices=CHECKPOINTS, default=["best"],
                        help="which of each run's checkpoints (best on validation, last)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(2)
    shards = args.work / "shards"
    rows, template = [], None
    for prefix, checkpoint in ((p, c) for p in args.runs for c in args.checkpoints):
        per_seed = []
        for run in sorted(args.work.glob(f"{prefix}_s*")):
            parts, still = run_errors(run, shards, args.split, template is None, checkpoint)
            per_seed.append(summary(parts))
            template = template or {"model": "template", "seeds": 1, **summary(still)}
        if not per_seed:
            raise SystemExit(f"no runs {prefix}_s* in {args.work}")
        keys = per_seed[0].keys()
        rows.append({"model": prefix, "checkpoint": checkpoint, "seeds": len(per_seed),
                     **{k: float(np.mean([s[k] for s in per_seed])) for k in keys},
                     **{f"{k}_sd": float(np.std([s[k] for s in per_seed], ddof=1)) if len(per_seed) > 1 else 0.0
                        for k in keys}})
    rows.append({**template, **{f"{k}_sd": 0.0 for k in keys}})
    print(f"eye-region error taken apart ({args.split} split of {shards}; mean over seeds, m^2; blink frames: "
          f"the {BLINK_SHARE:.0%} of frames whose true eye region moves most)")
    cols = ("eve", "eve_blink", "eve_other", "eve_blink_share", "static", "dynamic", "fdd", "fdd_abs")
    print(f"{'':20s} " + " ".join(f"{c:>16s}" for c in cols))
    for row in rows:
        name = f"{row['model']} ({row['checkpoint']})" if "checkpoint" in row else row["model"]
        print(f"{name:20s} " + " ".join(f"{row[c]:9.2e}±{row[c + '_sd']:6.0e}" for c in cols))
    print_json({"rows": rows, "split": args.split})


if __name__ == "__main__":
    main()
