"""The training loop: self-growing schedule, atomic checkpoints, exact resume, CSV and TensorBoard logs
(the run folder: :mod:`emoface_model.run`; losses: :mod:`emoface_model.losses`)."""

from __future__ import annotations

import csv
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from emoface_model.checkpoint import load_checkpoint, save_checkpoint
from emoface_model.config import BEST_ON, PRECISIONS, TrainConfig
from emoface_model.data import ClipData, collate, epoch_batches, to_device
from emoface_model.features import FrozenFeatures, caches_features
from emoface_model.infer import clip_predictions
from emoface_model.losses import sequence_loss
from emoface_model.mesh import MeshHierarchy, build_hierarchy
from emoface_model.metrics import MetricSums, Regions
from emoface_model.models import TalkingFace, build_model
from emoface_model.run import RunDir, load_regions, prepare_run, run_shards
from emoface_model.schedule import ground_truth_inputs, mixed_inputs, teacher_forced, teacher_ratio
from recon3d import __version__
from recon3d.atomic import atomic_path
from recon3d.config_io import ConfigError
from recon3d.device import torch_device
from recon3d.shards.union import open_datasets

CSV_FIELDS = ["step", "epoch", "split", "loss", "mse", "velocity", "teacher_ratio", "lr", "seconds",
              "lve", "eve", "fdd", "best"]


def _writer(run: RunDir):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run.root / "tensorboard"))


def _log(run: RunDir, row: dict, writer) -> None:
    new = not run.metrics.exists()
    with open(run.metrics, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in CSV_FIELDS})
    if writer is not None:
        for key in ("loss", "mse", "velocity", "teacher_ratio", "lr", "lve", "eve", "fdd"):
            if key in row and row[key] != "":
                writer.add_scalar(f"{row['split']}/{key}", float(row[key]), int(row["step"]))
        writer.flush()


def _trim_metrics(run: RunDir, step: int, epoch: int) -> None:
    """Before a resume from the checkpoint at ``step`` / ``epoch``: drop the rows logged after it
    (a killed stretch is redone and logs them again) and rewrite the header with today's columns."""
    if not run.metrics.exists():
        return
    with open(run.metrics, newline="") as f:
        rows = list(csv.DictReader(f))
    kept = [r for r in rows if int(r["step"]) < step
            or int(r["step"]) == step and (r["split"] == "train" or int(r["epoch"]) < epoch)]
    with atomic_path(run.metrics) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        w.writerows({k: r.get(k) or "" for k in CSV_FIELDS} for r in kept)


def train(shards_dir: str | Path | list[str | Path], run_dir: str | Path, config: TrainConfig, resume: bool = False,
          masks: str | None = None, progress: bool = True, max_steps: int | None = None) -> dict:
    """Train (or, with ``resume``, continue) a run on one build folder or several read as one.
    ``max_steps`` stops early (for tests and jobs).

    Every ``config.best_every`` epochs (and at the last) the whole validation clips are generated and
    scored; the epoch with the lowest ``config.best_on`` score is kept as ``checkpoints/best.pt``
    (needs val clips and regions). ``best["epoch"]`` counts from 0, as metrics.csv does."""
    from tqdm import tqdm

    if config.best_on not in BEST_ON:
        raise ConfigError(f"best_on: '{config.best_on}' is not one of {', '.join(BEST_ON)}")
    if config.precision not in PRECISIONS:
        raise ConfigError(f"precision: '{config.precision}' is not one of {', '.join(PRECISIONS)}")
    run = RunDir(Path(run_dir))
    roots = [Path(shards_dir)] if isinstance(shards_dir, (str, Path)) else [Path(p) for p in shards_dir]
    config = prepare_run(roots, run, config, resume, masks)
    info = json.loads(run.info.read_text())
    device = torch_device(config.device)
    dataset = open_datasets(run_shards(info))
    clips = json.loads(run.clips.read_text())
    data = ClipData(dataset, clips["train"], info["actors"])
    val = ClipData(dataset, clips["val"], info["actors"])
    faces = dataset.faces()
    n_vertices = int(data.template(data.entries[0]).shape[0])
    state = load_checkpoint(run.checkpoint, device) if resume and run.checkpoint.exists() else None
    if state is not None:
        hierarchy = MeshHierarchy.from_dict(state["hierarchy"]) if state.get("hierarchy") else None
    elif config.model.model == "emoface":
        mean_template = np.mean([data.template(e) for e in data.entries], axis=0)
        hierarchy = build_hierarchy(mean_template, faces, config.model.n_coarse, config.model.spiral_length)
    else:
        hierarchy = None
    torch.manual_seed(config.seed)
    model = build_model(config.model, n_vertices, len(info["actors"]), hierarchy).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    regions = load_regions(run) if run.regions.exists() else None
    weights = torch.ones(n_vertices, device=device)
    if config.optim.lip_weight != 1.0 and regions is not None:
        weights[torch.as_tensor(regions.lips, device=device)] = config.optim.lip_weight
    select = config.best_on != "none" and len(val) > 0 and regions is not None
    step, epoch, skip = 0, 0, 0
    best = {"score": float("inf"), "epoch": None}
    gen = torch.Generator(device=device)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, epoch, skip = state["step"], state["epoch"], state["batch_in_epoch"]
        _trim_metrics(run, step, epoch)
        best = state.get("best", best)
        torch.set_rng_state(state["rng"]["torch"])
        gen.set_state(state["rng"]["sampling"])
        random.setstate(state["rng"]["python"])
    else:
        gen.manual_seed(config.seed)
    resumed_at = step
    cache = FrozenFeatures(model, data, device) if caches_features(model) else None
    d = config.data
    per_epoch = len(epoch_batches(data, 0, config.seed, d.window_frames, d.batch_size, d.windows_per_clip))
    total = config.optim.epochs * per_epoch
    writer = _writer(run)
    first_loss = last_loss = None

    def model_state(at_epoch: int) -> dict:
        """What inference needs of the model now (best.pt holds only this)."""
        return {"model": model.state_dict(), "step": step, "epoch": at_epoch, "config": config.to_dict(),
                "actors": info["actors"], "hierarchy": hierarchy.to_dict() if hierarchy else None,
                "n_vertices": n_vertices, "recon3d_version": __version__}

    def checkpoint(batch_in_epoch: int, at_epoch: int) -> None:
        save_checkpoint(run.checkpoint, {
            **model_state(at_epoch), "optimizer": opt.state_dict(), "batch_in_epoch": batch_in_epoch, "best": best,
            "rng": {"torch": torch.get_rng_state(), "sampling": gen.get_state(), "python": random.getstate()}})

    bar = tqdm(total=total, initial=step, desc=f"train {config.model.model}", unit="step", disable=not progress,
               dynamic_ncols=True)
    started = time.perf_counter()
    try:
        while epoch < config.optim.epochs:
            ratio = teacher_ratio(epoch, config.schedule)
            batches = epoch_batches(data, epoch, config.seed, d.window_frames, d.batch_size, d.windows_per_clip)
            for index in range(skip, len(batches)):
                if max_steps is not None and step >= max_steps:
                    checkpoint(index, epoch)
                    return _summary(run, step, epoch, resumed_at, first_loss, last_loss)
                batch = to_device(collate([data.window(*item) for item in batches[index]]), device)
                model.train()
                lr = config.optim.lr * min(1.0, (step + 1) / max(1, config.optim.warmup_steps))
                for group in opt.param_groups:
                    group["lr"] = lr
                with torch.autocast(device.type, torch.bfloat16, enabled=config.precision == "bf16"):
                    if cache is not None:
                        feats = model.audio.project(cache.windows(batches[index], batch.offsets.shape[1]))
                    else:
                        feats = model.encode_audio(batch.audio, batch.offsets.shape[1])
                    inputs = mixed_inputs(model, batch, feats, ratio, gen)
                    pred, _ = teacher_forced(model, batch, feats, inputs)
                loss, mse, vel = sequence_loss(pred.float(), batch.offsets, weights, config.optim.velocity_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
                opt.step()
                step += 1
                last_loss = float(loss.detach())
                first_loss = last_loss if first_loss is None else first_loss
                _log(run, {"step": step, "epoch": epoch, "split": "train", "loss": last_loss, "mse": float(mse.detach()),
                           "velocity": float(vel.detach()), "teacher_ratio": ratio, "lr": lr,
                           "seconds": round(time.perf_counter() - started, 2)}, writer)
                bar.update(1)
                bar.set_postfix(loss=f"{last_loss:.3g}", tf=f"{ratio:.2f}", epoch=epoch, refresh=False)
                if step % config.checkpoint_every == 0:
                    checkpoint(index + 1, epoch)
            epoch, skip = epoch + 1, 0
            if len(val):
                row = {"step": step, "epoch": epoch - 1, "split": "val",
                       "loss": validation_loss(model, val, weights, config, device)}
                if select and (epoch % max(1, config.best_every) == 0 or epoch == config.optim.epochs):
                    scores = validation_scores(model, val, regions, device)
                    score = sum(scores[k] for k in config.best_on.split("+"))
                    improved = score < best["score"]
                    row.update(scores, best=int(improved))
                    if improved:
                        best = {"score": score, "epoch": epoch - 1, "step": step, **scores}
                        save_checkpoint(run.best_checkpoint, {**model_state(epoch), "val": best})
                _log(run, row, writer)
            checkpoint(0, epoch)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return _summary(run, step, epoch, resumed_at, first_loss, last_loss)


#: A run whose training loss still falls by more than this over its last fifth (against the fifth
#: before) stopped before it converged.
STILL_FALLING = 0.05


def loss_trend(losses: list[float]) -> float | None:
    """Relative change of the mean training loss over the last fifth of the steps against the fifth
    before it (negative: still falling); None for runs of fewer than 10 steps."""
    if len(losses) < 10:
        return None
    k = len(losses) // 5
    before, last = float(np.mean(losses[-2 * k:-k])), float(np.mean(losses[-k:]))
    return last / before - 1.0 if before > 0 else None


def _summary(run: RunDir, step: int, epoch: int, resumed_at: int, first: float | None, last: float | None) -> dict:
    losses = []
    if run.metrics.exists():
        with open(run.metrics, newline="") as f:
            losses = [float(r["loss"]) for r in csv.DictReader(f) if r["split"] == "train"]
    trend = loss_trend(losses)
    return {"steps": step, "epochs": epoch, "resumed_at": resumed_at, "first_loss": first, "last_loss": last,
            "loss_trend_last_fifth": trend, "still_improving": trend is not None and trend < -STILL_FALLING}


def validation_scores(model: TalkingFace, val: ClipData, regions: Regions, device) -> dict[str, float]:
    """LVE / EVE / FDD of the whole validation clips, generated as evaluation generates them."""
    model.eval()
    sums = MetricSums()
    for _, pred, gt, template in clip_predictions(model, val, device):
        sums.add(pred, gt, template, regions)
    result = sums.result()
    return {k: result[k] for k in ("lve", "eve", "fdd")}


@torch.no_grad()
def validation_loss(model: TalkingFace, val: ClipData, weights: torch.Tensor, config: TrainConfig, device) -> float:
    """Teacher-forced loss over whole validation clips."""
    model.eval()
    losses = []
    for entry in val.entries:
        batch = collate([val.clip(entry)]).to(device)
        feats = model.encode_audio(batch.audio, batch.offsets.shape[1])
        pred, _ = teacher_forced(model, batch, feats, ground_truth_inputs(model, batch))
        losses.append(float(sequence_loss(pred, batch.offsets, weights, config.optim.velocity_weight)[0]))
    return float(np.mean(losses))
