"""A run folder: its files, checkpoints (atomic), the model of a run, and evaluation regions.

``RUN_DIR`` holds ``config.yaml`` (the full configuration), ``run.json`` (data and model facts),
``clips.json`` (the clip ids of each split and the excluded clips with their reasons),
``regions.npz`` (evaluation regions, when FLAME_masks.pkl is found), ``checkpoints/last.pt`` (where
training stopped; resumes from here), ``checkpoints/best.pt`` (the epoch best on validation),
``metrics.csv`` and ``tensorboard/`` (names in ``run_files``). Inference needs only this module, not
the training loop.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from emoface_model.audio import encoder_fingerprint
from emoface_model.checkpoint import load_checkpoint
from emoface_model.config import TrainConfig
from emoface_model.data import labels_of, select_clips
from emoface_model.mesh import MeshHierarchy
from emoface_model.metrics import Regions
from emoface_model.models import ModelConfig, TalkingFace, build_model
from emoface_model.run_files import CHECKPOINTS, RunDir
from recon3d import __version__
from recon3d.atomic import atomic_path, write_json
from recon3d.device import torch_device
from recon3d.errors import SetupError
from recon3d.flame.model_file import FlameModelError
from recon3d.shards.reader import Dataset3D
from recon3d.shards.union import DatasetUnion, open_datasets


class TrainError(SetupError):
    """Training cannot start as asked; the message says why."""


def run_shards(info: dict) -> list[str]:
    """The build folders a run was trained on (``run.json``'s ``shards_dirs``; runs from before
    several datasets have only ``shards_dir``)."""
    return list(info.get("shards_dirs") or [info["shards_dir"]])


def find_regions(dataset: Dataset3D | DatasetUnion, masks_path: str | Path | None = None) -> Regions | None:
    """Evaluation regions from FLAME_masks.pkl: given, else beside the FLAME model the data was built with."""
    from recon3d.flame.masks import find_masks, load_flame_masks

    try:
        model_path = dataset.manifest.get("build", {}).get("flame_model")
        path = find_masks(masks_path, Path(model_path) if model_path else None)
        return Regions.from_masks(load_flame_masks(path))
    except FlameModelError:
        if masks_path:
            raise
        return None


def evaluation_clips(run: RunDir, config: TrainConfig, shards_dir: str | Path | None = None) -> dict:
    """The clip lists to evaluate on: the run's own (``clips.json``) on its dataset, or, on another
    dataset, that dataset's clips chosen by the run's rules (:func:`~emoface_model.data.select_clips`)."""
    own = run_shards(json.loads(run.info.read_text()))
    if (shards_dir is None or [Path(shards_dir).resolve()] == [Path(p).resolve() for p in own]) and run.clips.exists():
        return json.loads(run.clips.read_text())
    return select_clips(open_datasets(shards_dir or own).clips(), config.data.include_song)


def load_regions(run: RunDir) -> Regions:
    if not run.regions.exists():
        raise TrainError(f"{run.regions} missing: the run found no FLAME_masks.pkl; retrain with --flame-masks PATH "
                         "or pass --flame-masks to evaluate")
    with np.load(run.regions) as d:
        return Regions(d["lips"], d["eyes"], d["upper"])


def encoder_record(model: ModelConfig) -> dict:
    """``run.json``'s record of a pretrained speech encoder: its kind, folder and fingerprint."""
    if model.audio_encoder == "mel":
        return {}
    path = Path(model.audio_encoder_path).resolve()
    return {"audio_encoder": {"kind": model.audio_encoder, "path": str(path), "mode": model.audio_encoder_mode,
                              "sha256": encoder_fingerprint(path)}}


def check_audio_encoder(run: RunDir) -> None:
    """Refuse a run whose pretrained speech encoder's folder is gone or now holds another model."""
    recorded = json.loads(run.info.read_text()).get("audio_encoder") if run.info.exists() else None
    if not recorded:
        return
    path = Path(recorded["path"])
    if not (path / "config.json").exists():
        raise TrainError(f"{run.root} was trained with the {recorded['kind']} model in {path}, which is gone; "
                         "put that model folder back there")
    now = encoder_fingerprint(path)
    if now != recorded["sha256"]:
        raise TrainError(f"{path} now holds another model than the {recorded['kind']} {run.root} was trained with "
                         f"(sha256 {now[:12]}, recorded {recorded['sha256'][:12]}); "
                         "put the original model back in that folder: the run's weights fit only it")


def load_model(run_dir: str | Path, device: str = "cpu", checkpoint: str = "best") -> tuple[TalkingFace, dict]:
    """The model of a run and the checkpoint's metadata (``state["checkpoint"]``: the file loaded)."""
    run = RunDir(Path(run_dir))
    if not run.checkpoint.exists():
        raise TrainError(f"{run.root}: not a training run (no checkpoints/last.pt); train first with `recon3d train`")
    if checkpoint not in CHECKPOINTS:
        raise TrainError(f"checkpoint '{checkpoint}': choose best or last")
    device = torch_device(str(device))
    check_audio_encoder(run)
    path = run.best_checkpoint if checkpoint == "best" and run.best_checkpoint.exists() else run.checkpoint
    state = load_checkpoint(path, device)
    state["checkpoint"] = path.name
    config = TrainConfig.from_dict(state["config"])
    hierarchy = MeshHierarchy.from_dict(state["hierarchy"]) if state.get("hierarchy") else None
    model = build_model(config.model, state["n_vertices"], len(state["actors"]), hierarchy)
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def no_train_clips(shards_dir: Path | str, dataset: Dataset3D | DatasetUnion, clips: dict) -> str:
    """Why a dataset gives no training clip, and what re-splits it."""
    from collections import Counter

    excluded = Counter(clips["excluded"].values())
    why = (f"{shards_dir}: no clip with speech audio in the 'train' split (val {len(clips['val'])}, "
           f"test {len(clips['test'])}; excluded: {', '.join(f'{n} {r}' for r, n in excluded.items()) or 'none'})")
    build = dataset.manifest.get("build", {})
    if dataset.manifest.get("split_method") == "take" and build.get("video_dir"):
        return (why + f". Rerun `recon3d build-dataset {build['video_dir']} --out {shards_dir}` with this version: "
                "its split keeps speech takes in train, and the rerun re-plans the splits without refitting a clip")
    return (why + ". The split holds the speech clips out: rebuild with `split: {method: take}` (within each actor) "
            "or other split.val / split.test actors in a --config file, or train on another dataset")


def label_sizes(config: TrainConfig, entries: list[dict]) -> TrainConfig:
    """``config`` with the model's emotion and intensity embeddings large enough for the labels
    of ``entries`` (RAVDESS's 8 and 2 at least: MEAD's contempt and third level grow them)."""
    labels = [labels_of(e) for e in entries]
    model = replace(config.model, n_emotions=max([config.model.n_emotions] + [e + 1 for e, _ in labels]),
                    n_intensities=max([config.model.n_intensities] + [i + 1 for _, i in labels]))
    return replace(config, model=model)


def prepare_run(shards_dirs: list[Path], run: RunDir, config: TrainConfig, resume: bool, masks: str | None) -> TrainConfig:
    """Create RUN_DIR (or check it for --resume) for training on one build folder or several read as
    one (:mod:`recon3d.shards.union`); returns the configuration to use."""
    if run.checkpoint.exists() and not resume:
        raise TrainError(f"{run.root} already holds a run; pass --resume to continue it, or choose another --out")
    if resume and run.config.exists():
        saved = TrainConfig.from_dict(yaml.safe_load(run.config.read_text())["train"])
        saved.optim.epochs = max(saved.optim.epochs, config.optim.epochs)
        saved.device, saved.precision = config.device, config.precision  # the machine of this stretch
        config = saved
    if resume:
        check_audio_encoder(run)
    dataset = open_datasets(shards_dirs)
    clips = json.loads(run.clips.read_text()) if resume and run.clips.exists() else \
        select_clips(dataset.clips(), config.data.include_song)
    if not clips["train"]:
        raise TrainError(no_train_clips(", ".join(map(str, shards_dirs)), dataset, clips))
    if len(shards_dirs) > 1 and "datasets" not in clips:  # each clip's build, by name
        clips["datasets"] = {c: dataset.info(c)["dataset"] for part in ("train", "val", "test") for c in clips[part]}
    if not (resume and run.config.exists()):
        config = label_sizes(config, [dataset.info(c) for part in ("train", "val", "test") for c in clips[part]])
    run.root.mkdir(parents=True, exist_ok=True)
    write_json(run.clips, clips)
    actors = sorted({str(dataset.info(c)["actor"]) for c in clips["train"]})
    roots = [str(Path(p).resolve()) for p in shards_dirs]
    if not run.info.exists():
        regions = find_regions(dataset, masks)
        if regions is not None:
            with atomic_path(run.regions) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, lips=regions.lips, eyes=regions.eyes, upper=regions.upper)
        write_json(run.info, {"shards_dir": roots[0], "shards_dirs": roots, "actors": actors,
                              "recon3d_version": __version__, "lip_regions": regions is not None,
                              **encoder_record(config.model)})
    with atomic_path(run.config) as tmp:
        tmp.write_text(yaml.safe_dump({"shards_dir": roots[0], "shards_dirs": roots, "train": config.to_dict()},
                                      sort_keys=False))
    return config
