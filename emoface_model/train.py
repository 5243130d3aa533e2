"""Training: self-growing schedule, atomic checkpoints, exact resume, CSV and TensorBoard logs.

``RUN_DIR`` holds ``config.yaml`` (the full configuration), ``run.json`` (data and model facts),
``regions.npz`` (evaluation regions, when FLAME_masks.pkl is found), ``checkpoints/last.pt``,
``metrics.csv`` and ``tensorboard/``.
"""

from __future__ import annotations

import csv
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from emoface_model.config import TrainConfig
from emoface_model.data import Batch, ClipData, collate, epoch_batches
from emoface_model.mesh import MeshHierarchy, build_hierarchy
from emoface_model.metrics import Regions
from emoface_model.models import MM, TalkingFace, build_model
from emoface_model.schedule import teacher_ratio
from recon3d import __version__
from recon3d.errors import Recon3dError
from recon3d.atomic import atomic_path, write_json
from recon3d.shards.reader import Dataset3D, open_dataset

CSV_FIELDS = ["step", "epoch", "split", "loss", "mse", "velocity", "teacher_ratio", "lr", "seconds"]


class TrainError(Recon3dError, ValueError):
    """Training cannot start as asked; the message says why."""


@dataclass
class RunDir:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def info(self) -> Path:
        return self.root / "run.json"

    @property
    def regions(self) -> Path:
        return self.root / "regions.npz"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoints" / "last.pt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"


def find_regions(dataset: Dataset3D, masks_path: str | Path | None = None) -> Regions | None:
    """Evaluation regions from FLAME_masks.pkl: given, else beside the FLAME model the data was built with."""
    from recon3d.flame.masks import find_masks, load_flame_masks

    try:
        model_path = dataset.manifest.get("build", {}).get("flame_model")
        path = find_masks(masks_path, Path(model_path) if model_path else None)
        return Regions.from_masks(load_flame_masks(path))
    except (ValueError, FileNotFoundError):
        if masks_path:
            raise
        return None


def load_regions(run: RunDir) -> Regions:
    if not run.regions.exists():
        raise TrainError(f"{run.regions} missing: the run found no FLAME_masks.pkl; retrain with --flame-masks PATH "
                         "or pass --flame-masks to evaluate")
    with np.load(run.regions) as d:
        return Regions(d["lips"], d["eyes"], d["upper"])


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_model(run_dir: str | Path, device: str = "cpu") -> tuple[TalkingFace, dict]:
    """The model of a run (its last checkpoint) and the checkpoint's metadata."""
    run = RunDir(Path(run_dir))
    if not run.checkpoint.exists():
        raise TrainError(f"{run.root}: no checkpoint (checkpoints/last.pt); train first with `recon3d train`")
    state = torch.load(run.checkpoint, map_location=device, weights_only=False)
    config = TrainConfig.from_dict(state["config"])
    hierarchy = MeshHierarchy.from_dict(state["hierarchy"]) if state.get("hierarchy") else None
    model = build_model(config.model, state["n_vertices"], len(state["actors"]), hierarchy)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def sequence_loss(pred: torch.Tensor, gt: torch.Tensor, weights: torch.Tensor, velocity_weight: float):
    """Weighted vertex MSE + velocity (frame-difference) MSE, in mm^2."""
    err = (pred - gt) * MM
    w = weights[None, None, :, None]
    mse = (err.square() * w).sum() / (w.sum() * err.shape[0] * err.shape[1] * 3)
    vel = torch.zeros((), device=pred.device)
    if err.shape[1] > 1:
        d = err[:, 1:] - err[:, :-1]  # the velocity error is the difference of the errors
        vel = (d.square() * w).sum() / (w.sum() * d.shape[0] * d.shape[1] * 3)
    return mse + velocity_weight * vel, mse, vel


def teacher_forced(model: TalkingFace, batch: Batch, feats: torch.Tensor, inputs: torch.Tensor):
    """One parallel pass with the given motion inputs (``inputs[:, t]`` is frame t's); returns the
    offsets and the motion inputs the model would feed itself."""
    return model(feats, inputs, batch.has_initial, batch.emotion, batch.intensity, batch.actor, batch.template)


def ground_truth_inputs(model: TalkingFace, batch: Batch) -> torch.Tensor:
    """``[initial, x_0, ..., x_{T-2}]``: each frame's input is the previous frame's true motion."""
    return model.motion_input(torch.cat([batch.initial[:, None], batch.offsets[:, :-1]], 1))


def mixed_inputs(model: TalkingFace, batch: Batch, feats: torch.Tensor, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """Scheduled sampling in two passes: a teacher-forced pass predicts every frame; each frame's
    input is then the truth with probability ``ratio``, else that prediction."""
    truth = ground_truth_inputs(model, batch)
    if ratio >= 1.0:
        return truth
    with torch.no_grad():
        _, own_inputs = teacher_forced(model, batch, feats, truth)
    own = torch.cat([truth[:, :1], own_inputs[:, :-1]], 1)
    keep = torch.rand(truth.shape[:2], generator=gen, device=truth.device) < ratio
    keep[:, 0] = True  # the first input is the given initial frame (or the start vector)
    return torch.where(keep[..., None, None], truth, own)


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
        for key in ("loss", "mse", "velocity", "teacher_ratio", "lr"):
            if key in row and row[key] != "":
                writer.add_scalar(f"{row['split']}/{key}", float(row[key]), int(row["step"]))
        writer.flush()


def prepare_run(shards_dir: Path, run: RunDir, config: TrainConfig, resume: bool, masks: str | None) -> TrainConfig:
    """Create RUN_DIR (or check it for --resume); returns the configuration to use."""
    if run.checkpoint.exists() and not resume:
        raise TrainError(f"{run.root} already holds a run; pass --resume to continue it, or choose another --out")
    if resume and run.config.exists():
        saved = TrainConfig.from_dict(yaml.safe_load(run.config.read_text())["train"])
        saved.optim.epochs = max(saved.optim.epochs, config.optim.epochs)
        saved.device = config.device
        config = saved
    run.root.mkdir(parents=True, exist_ok=True)
    dataset = open_dataset(shards_dir)
    train = dataset.clips("train")
    if not train:
        raise TrainError(f"{shards_dir}: no clips in the 'train' split")
    actors = sorted({str(c["actor"]) for c in train})
    if not run.info.exists():
        regions = find_regions(dataset, masks)
        if regions is not None:
            with atomic_path(run.regions) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, lips=regions.lips, eyes=regions.eyes, upper=regions.upper)
        write_json(run.info, {"shards_dir": str(Path(shards_dir).resolve()), "actors": actors,
                              "recon3d_version": __version__, "lip_regions": regions is not None})
    with atomic_path(run.config) as tmp:
        tmp.write_text(yaml.safe_dump({"shards_dir": str(Path(shards_dir).resolve()), "train": config.to_dict()},
                                      sort_keys=False))
    return config


def train(shards_dir: str | Path, run_dir: str | Path, config: TrainConfig, resume: bool = False,
          masks: str | None = None, progress: bool = True, max_steps: int | None = None) -> dict:
    """Train (or, with ``resume``, continue) a run. ``max_steps`` stops early (for tests and jobs)."""
    from tqdm import tqdm

    run = RunDir(Path(run_dir))
    config = prepare_run(Path(shards_dir), run, config, resume, masks)
    info = json.loads(run.info.read_text())
    device = torch.device(config.device)
    dataset = open_dataset(info["shards_dir"])
    data = ClipData(dataset, "train", info["actors"])
    val = ClipData(dataset, "val", info["actors"])
    faces = dataset.faces()
    n_vertices = int(data.template(data.entries[0]).shape[0])
    state = torch.load(run.checkpoint, map_location=device, weights_only=False) if resume and run.checkpoint.exists() else None
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
    weights = torch.ones(n_vertices, device=device)
    if config.optim.lip_weight != 1.0 and run.regions.exists():
        weights[torch.as_tensor(load_regions(run).lips, device=device)] = config.optim.lip_weight
    step, epoch, skip = 0, 0, 0
    gen = torch.Generator(device=device)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, epoch, skip = state["step"], state["epoch"], state["batch_in_epoch"]
        torch.set_rng_state(state["rng"]["torch"])
        gen.set_state(state["rng"]["sampling"])
        random.setstate(state["rng"]["python"])
    else:
        gen.manual_seed(config.seed)
    resumed_at = step
    d = config.data
    per_epoch = len(epoch_batches(data, 0, config.seed, d.window_frames, d.batch_size, d.windows_per_clip))
    total = config.optim.epochs * per_epoch
    writer = _writer(run)
    first_loss = last_loss = None

    def checkpoint(batch_in_epoch: int, at_epoch: int) -> None:
        save_checkpoint(run.checkpoint, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "epoch": at_epoch,
            "batch_in_epoch": batch_in_epoch, "config": config.to_dict(), "actors": info["actors"],
            "hierarchy": hierarchy.to_dict() if hierarchy else None, "n_vertices": n_vertices,
            "rng": {"torch": torch.get_rng_state(), "sampling": gen.get_state(), "python": random.getstate()},
            "recon3d_version": __version__})

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
                    return _summary(step, resumed_at, first_loss, last_loss)
                batch = collate([data.window(*item) for item in batches[index]]).to(device)
                model.train()
                lr = config.optim.lr * min(1.0, (step + 1) / max(1, config.optim.warmup_steps))
                for group in opt.param_groups:
                    group["lr"] = lr
                feats = model.encode_audio(batch.audio, batch.offsets.shape[1])
                inputs = mixed_inputs(model, batch, feats, ratio, gen)
                pred, _ = teacher_forced(model, batch, feats, inputs)
                loss, mse, vel = sequence_loss(pred, batch.offsets, weights, config.optim.velocity_weight)
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
            checkpoint(0, epoch)
            if len(val):
                _log(run, {"step": step, "epoch": epoch - 1, "split": "val",
                           "loss": validation_loss(model, val, weights, config, device)}, writer)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return _summary(step, resumed_at, first_loss, last_loss)


def _summary(step: int, resumed_at: int, first: float | None, last: float | None) -> dict:
    return {"steps": step, "resumed_at": resumed_at, "first_loss": first, "last_loss": last}


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
