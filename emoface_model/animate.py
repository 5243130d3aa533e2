"""``recon3d animate``: a trained run turns speech into a mesh sequence, mesh files and a video."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emoface_model.infer import predict
from emoface_model.run import RunDir, load_model, load_regions, run_shards
from recon3d.errors import SetupError
from recon3d.io.mesh import read_mesh, write_obj, write_ply
from recon3d.io.labels import EMOTION_NAMES
from recon3d.io.ravdess import INTENSITIES
from recon3d.io.video import load_audio, write_video
from recon3d.shards.reader import open_dataset
from recon3d.shards.schema import AUDIO_RATE, audio_samples
from recon3d.shards.union import open_datasets

MIN_SECONDS = 0.1


def emotion_id(value: str, n_emotions: int = len(EMOTION_NAMES)) -> int:
    """0-8 from a name (``happy``) or a number (``3``, RAVDESS's; 9 is MEAD's contempt), among
    the first ``n_emotions`` (those a model was trained with)."""
    v = str(value).strip().lower()
    names = EMOTION_NAMES[:n_emotions]
    if v in names:
        return names.index(v)
    if v.isdigit() and 1 <= int(v) <= len(names):
        return int(v) - 1
    hint = " (a model trained with MEAD's labels knows contempt)" if v in EMOTION_NAMES else ""
    raise SetupError(f"unknown emotion '{value}': use one of {', '.join(names)} (or 1-{len(names)}){hint}")


def intensity_id(value: str, n_intensities: int = 2) -> int:
    """0-2 from ``normal``/``strong`` or a level ``1``-``n_intensities`` (3: MEAD's and CREMA-D's
    highest, for a model trained with them)."""
    v = str(value).strip().lower()
    names = {n: k - 1 for k, n in INTENSITIES.items()}
    if v in names:
        return names[v]
    if v.isdigit() and 1 <= int(v) <= n_intensities:
        return int(v) - 1
    raise SetupError(f"unknown intensity '{value}': use normal or strong (or 1-{n_intensities})")


def speaker(run: RunDir, actors: list[str], actor: str | None, template: Path | None, n_vertices: int):
    """(style index, template (V, 3)): a training actor's, or a given mesh with the mean style."""
    if template is not None:
        verts, _ = read_mesh(template)
        if verts.shape != (n_vertices, 3):
            raise SetupError(f"{template}: has {len(verts)} vertices, the model animates {n_vertices} (FLAME topology)")
        return -1, verts.astype(np.float32)
    info = json.loads(run.info.read_text())
    name = actor if actor is not None else actors[0]
    name = name.zfill(2) if name.isdigit() else name
    if name not in actors:
        raise SetupError(f"unknown actor '{actor}': the run was trained on {', '.join(actors)} (or pass --template mesh.ply)")
    ds = open_datasets(run_shards(info))
    entry = next(c for c in ds.clips() if str(c["actor"]) == name)
    return actors.index(name), ds.template(name, entry["shard"]).astype(np.float32)


def lips_to_frame(runs: list[RunDir], framing: str) -> tuple[np.ndarray | None, str]:
    """The lip vertices a ``face`` framing centres on (from the first run with evaluation regions)
    and the framing used: ``head`` when asked, or when no run found FLAME_masks.pkl."""
    if framing not in ("face", "head"):
        raise SetupError(f"framing '{framing}': choose face or head")
    if framing == "face":
        for run in runs:
            if run.regions.exists():
                return load_regions(run).lips, "face"
    return None, "head" if framing == "head" else "head (no lip regions: the runs found no FLAME_masks.pkl)"


def animate(run_dir: str | Path, audio_path: str | Path, out: str | Path, emotion: str = "neutral",
            intensity: str = "normal", actor: str | None = None, template: Path | None = None, fps: float = 30.0,
            mesh_format: str | None = None, video: bool = True, device: str = "cpu", checkpoint: str = "best",
            framing: str = "face") -> dict:
    """Write ``OUT.npy`` (T, V, 3) metres, optionally ``OUT_meshes/*.obj|ply``, and ``OUT.mp4``
    (``framing``: ``face`` around the mouth, or the whole ``head``; :func:`lips_to_frame`)."""
    audio_path = Path(audio_path)
    if not audio_path.exists():
        raise SetupError(f"{audio_path}: file not found")
    audio = load_audio(audio_path, AUDIO_RATE)
    if len(audio) < MIN_SECONDS * AUDIO_RATE:
        raise SetupError(f"{audio_path}: only {len(audio) / AUDIO_RATE:.3f} s of audio; need at least {MIN_SECONDS} s")
    model, state = load_model(run_dir, device, checkpoint)
    emo = emotion_id(emotion, model.config.n_emotions)
    inten = intensity_id(intensity, model.config.n_intensities)
    run = RunDir(Path(run_dir))
    style, tmpl = speaker(run, state["actors"], actor, template, state["n_vertices"])
    offsets = predict(model, audio, fps, emo, inten, style, tmpl, device=device)
    vertices = (offsets + tmpl[None]).astype(np.float32)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    written = {"npy": str(out.with_suffix(".npy"))}
    np.save(out.with_suffix(".npy"), vertices)
    faces = open_datasets(run_shards(json.loads(run.info.read_text()))).faces()
    if mesh_format:
        folder = out.parent / f"{out.name}_meshes"
        folder.mkdir(exist_ok=True)
        writer = {"obj": write_obj, "ply": write_ply}[mesh_format]
        for i, frame in enumerate(vertices):
            writer(folder / f"frame_{i:05d}.{mesh_format}", frame, faces)
        written["meshes"] = str(folder)
    if video:
        from recon3d.render.preview import frontal_frames

        lips, written["framing"] = lips_to_frame([run], framing)
        write_video(out.with_suffix(".mp4"), frontal_frames(vertices, faces, lips=lips), fps,
                    audio[:audio_samples(len(vertices), fps)], AUDIO_RATE)
        written["mp4"] = str(out.with_suffix(".mp4"))
    written["frames"] = len(vertices)
    return written


def compare_clip(dataset_dir: str | Path, clip_id: str, runs: list[str | Path], out: str | Path,
                 names: list[str] | None = None, size: int = 360, device: str = "cpu",
                 checkpoint: str = "best", framing: str = "face") -> dict:
    """A clip of a built dataset side by side: its fitted meshes | each run's animation from the
    clip's audio, emotion, intensity and speaker; one mp4 with the clip's audio."""
    import cv2

    from emoface_model.data import labels_of
    from recon3d.render.preview import frontal_frames

    ds = open_dataset(dataset_dir)
    entry = ds.info(clip_id)
    clip = ds.load_clip(clip_id)
    faces = ds.faces(entry["shard"])
    emotion, intensity = labels_of(entry)
    panels = [("fitted (truth)", clip.vertices)]
    names = names or [Path(r).name for r in runs]
    if len(names) != len(runs):
        raise SetupError(f"{len(names)} names for {len(runs)} runs")
    for name, run in zip(names, runs):
        model, state = load_model(run, device, checkpoint)
        actor = str(entry["actor"])
        style = state["actors"].index(actor) if actor in state["actors"] else -1
        offsets = predict(model, clip.audio, clip.fps, emotion, intensity, style, clip.template,
                          n_frames=len(clip.vertices), device=device)
        panels.append((name, (offsets + clip.template[None]).astype(np.float32)))

    lips, framed = lips_to_frame([RunDir(Path(r)) for r in runs], framing)

    def frames():
        streams = [frontal_frames(v, faces, size, reference=clip.template, lips=lips) for _, v in panels]
        for images in zip(*streams):
            row = np.concatenate(images, axis=1).copy()
            for k, (name, _) in enumerate(panels):
                cv2.putText(row, name, (k * size + 10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (235, 235, 235), 2)
            yield row

    out = Path(out)
    n = write_video(out, frames(), clip.fps, clip.audio, AUDIO_RATE)
    ds.close()
    return {"mp4": str(out), "frames": n, "panels": [name for name, _ in panels], "framing": framed,
            "emotion": EMOTION_NAMES[emotion], "intensity": INTENSITIES.get(intensity + 1, intensity + 1)}
