"""The work of one shard, stage by stage; every stage is idempotent and records its results atomically.

Stages and what each leaves in the shard's work folder (``OUT_DIR/work/shards/<shard>/``; a
later run skips what is there):

1. ``landmarks``: decode the video and its 16 kHz audio in one pass (PyAV), track MediaPipe landmarks ->
   ``landmarks/<clip>.npz``
2. ``identity``: fit each actor's shape from its neutral clips (also those in other shards of the
   same actor, whose landmarks this shard computes for itself) -> ``identity/<actor>.npz``
3. ``fit``: fit the clip with the actor's shape, QC, write -> ``clips/<clip>.h5``
4. ``shard``: copy the shard's finished clips into ``OUT_DIR/shards/<shard>.h5``

Errors follow :mod:`recon3d.errors`: a :class:`~recon3d.errors.ClipError` fails its clip
(``failures/<clip>.json``: stage, reason and what the failure depended on, for
:mod:`recon3d.pipeline.retry`) and the rest goes on; a :class:`~recon3d.errors.SetupError` stops
the build; anything else is recorded as an internal error with its traceback. The model, fitter
and detector are created once per process (:func:`resources`, :func:`check_setup`) before any
clip. :mod:`recon3d.pipeline.schedule` runs the stages of a build (locally, or of one shard in a
SLURM task).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recon3d import __version__
from recon3d.atomic import atomic_path, write_json
from recon3d.errors import ClipError, SetupError
from recon3d.flame import load_fan68_embedding, load_flame_model, load_mediapipe_dlib_embedding, load_mediapipe_embedding
from recon3d.io.fingerprint import fingerprint
from recon3d.io.npz_rows import NpzRows, Rows, write_npz_blocks
from recon3d.io.video import DecodedAudio, VideoReader, audio_blocks, load_audio
from recon3d.landmarks import create_detector, track_video
from recon3d.landmarks.mouth_flow import MouthFlowTracker
from recon3d.landmarks.schemes import FAN68, MEDIAPIPE, MEDIAPIPE_DLIB
from recon3d.pipeline.chunks import PER_FRAME, chunk_count, chunk_span, load_parts, part_path, read_plan, write_plan
from recon3d.pipeline.config import BuildConfig, resolve_landmark_sources
from recon3d.pipeline.disk import no_space
from recon3d.pipeline.landmark_cache import (cached_inter_ocular_px, cached_shot_starts, landmark_cache,
                                             load_landmarks, scheme_of, sequence_of)
from recon3d.pipeline.plan import PlannedClip
from recon3d.pipeline.qc import clip_qc
from recon3d.pipeline.workspace import ShardWork, Workspace
from recon3d.shards.schema import AUDIO_RATE, ClipAttrs, audio_samples
from recon3d.shards.writer import ClipRecord, assemble_shard, write_clip_file

if TYPE_CHECKING:  # torch is imported by the processes that fit, not by the main process of a build
    from recon3d.fitting import FlameFitter, LandmarkSequence
    from recon3d.flame import FlameLayer


@dataclass(frozen=True)
class BuildContext:
    """What a worker needs to run stages (small and picklable)."""

    out_dir: str
    flame_model: str
    config: dict
    verbose: bool = False  # native libraries' start-up lines on stderr (else in work/logs/native.log)
    decode_threads: int = 0  # per clip (0: FFmpeg's choice; 1 where worker processes fill the cores)

    @property
    def build_config(self) -> BuildConfig:
        return BuildConfig.from_dict(self.config)

    @property
    def attempt_hash(self) -> str:
        """Hash of the settings a clip's failure can depend on: fitting (with the device), landmarks, QC."""
        c = self.config
        keys = {"fitting": c["fitting"], "landmarks": c["landmarks"], "qc": c["qc"]}
        return hashlib.sha256(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def native_log(self) -> str | None:
        return None if self.verbose else str(Workspace(self.out_dir).native_log)


@dataclass
class Resources:
    """A process's model, embedding, fitter and detector (built once, checked before any clip)."""

    key: tuple
    config: BuildConfig
    model: object
    embedding: object
    scheme: object
    fitter: FlameFitter
    layer: FlameLayer
    detector: object = None


_RESOURCES: list[Resources] = []
#: glibc's ``mallopt`` parameters (malloc.h) and the values a build process runs with.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_BELOW_BYTES = 1 << 30


def keep_freed_memory() -> None:
    """Let this process's heap keep and reuse freed memory (glibc only; elsewhere nothing).

    The fitter allocates and frees temporaries of several MB per clip. By default glibc gives such
    blocks back to the kernel when they are freed (``mmap``/trim), so every new one costs a page
    fault per 4 KB: about a tenth of the fitting time. With both thresholds at 1 GiB they are
    reused instead; the process's resident memory is its peak use, as before.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(None)
    libc.mallopt(_M_MMAP_THRESHOLD, _KEEP_BELOW_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, _KEEP_BELOW_BYTES)


def resources(ctx: BuildContext) -> Resources:
    """FLAME model, embedding and fitter, loaded once per worker process; a bad model file, embedding,
    device or landmark-offsets file raises :class:`SetupError` here, before any clip."""
    key = (ctx.flame_model, json.dumps(ctx.config, sort_keys=True), ctx.verbose)
    if not _RESOURCES or _RESOURCES[0].key != key:
        import torch
        from threadpoolctl import threadpool_limits

        from recon3d.fitting import FlameFitter
        from recon3d.flame import FlameLayer

        # One thread per worker (torch, and numpy/scipy's BLAS for the banded solves): workers are
        # processes, and results must not depend on thread counts.
        torch.set_num_threads(1)
        threadpool_limits(1)
        keep_freed_memory()
        config = ctx.build_config
        fit = config.fitting
        model = load_flame_model(ctx.flame_model, n_shape=max(fit.n_shape, 1), n_expr=fit.n_expr)
        if config.landmarks.backend == "fan":  # the 51 inner points; the jaw contour moves with yaw
            embedding, scheme = load_fan68_embedding(model).static, FAN68
        elif with_dlib(config):
            embedding, scheme = load_mediapipe_dlib_embedding(model), MEDIAPIPE_DLIB
        else:
            embedding, scheme = load_mediapipe_embedding(model), MEDIAPIPE
        fitter = FlameFitter(model, embedding, fit, scheme)
        _RESOURCES[:] = [Resources(key, config, model, embedding, scheme, fitter, FlameLayer(model))]
    return _RESOURCES[0]


def with_dlib(config: BuildConfig) -> bool:
    """Whether the build fuses dlib's points (``landmarks.dlib`` as :func:`prepare` resolved it; an
    unresolved ``auto`` is resolved here, on this machine)."""
    return resolve_landmark_sources(config)[0].landmarks.dlib == "on"


def detector(ctx: BuildContext):
    """The process's landmark detector (started on first use)."""
    res = resources(ctx)
    if res.detector is None:
        lm = res.config.landmarks
        options = {"max_faces": lm.max_faces} if lm.backend == "mediapipe" else {}
        res.detector = create_detector(lm.backend, native_log=ctx.native_log, dlib=res.scheme is MEDIAPIPE_DLIB,
                                       **options)
    return res.detector


def check_setup(ctx: BuildContext) -> None:
    """Build this process's resources and run the detector once on a blank frame, so that a bad
    model, device, file or detector stops the command in seconds, before any clip is touched."""
    det = detector(ctx)
    det.reset()
    det.detect(np.zeros((64, 64, 3), np.uint8))


def failure_fingerprint(path: str | Path) -> dict:
    """``source_size`` and ``source_sha256`` of a clip's file (None where it cannot be read)."""
    try:
        source = fingerprint(path)
    except OSError:
        return {"source_size": None, "source_sha256": None}
    return {"source_size": source["size"], "source_sha256": source["sha256"]}


def record_failure(ctx: BuildContext, work: ShardWork, clip: PlannedClip, stage: str, reason: str,
                   detail: str = "", internal: bool = False) -> dict:
    """Write ``failures/<clip>.json``: why the clip failed and what that depended on (its file, the
    settings, the version), so that a rerun retries it when any of them changed."""
    failure = {"id": clip.clip_id, "path": clip.path, "shard": clip.shard, "stage": stage, "reason": reason,
               **failure_fingerprint(clip.path), "config_hash": ctx.attempt_hash, "recon3d_version": __version__,
               "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if internal:
        failure["internal"] = True
    if detail:
        failure["detail"] = detail
    write_json(work.failure(clip.clip_id), failure)
    return failure


# ------------------------------------------------------------------------------------- stage 1
def landmarks_stage(ctx: BuildContext, work: ShardWork, clip: PlannedClip, whole: bool = False) -> dict:
    """Decode, detect landmarks, read audio; cache to ``landmarks/<clip>.npz``. Returns timings.
    A video long enough to be tracked in parts (:mod:`recon3d.pipeline.chunks`) only gets its
    parts' plan here, unless ``whole``."""
    if work.landmarks(clip.clip_id).exists() or work.failure(clip.clip_id).exists():
        return {}
    config = resources(ctx).config
    path = Path(clip.path)
    if not whole:
        with VideoReader(path) as reader:
            n_parts = chunk_count(reader.duration, config.landmarks.chunk_seconds)
        if n_parts > 1:
            write_plan(work.chunks(clip.clip_id), n_parts, chunk_seconds=config.landmarks.chunk_seconds)
            return {}
    t0 = time.perf_counter()
    track = _track(ctx, path, AUDIO_RATE)  # one pass
    arrays = {"points": track.points, "valid": track.valid, "score": track.score, "times": track.times,
              "image_change": track.image_change, "width": track.width, "height": track.height, "fps": track.fps,
              "rotation": track.rotation, **(track.mouth_flow.arrays() if track.mouth_flow is not None else {})}
    _write_landmarks(ctx, work, clip, arrays, track.audio)
    total = time.perf_counter() - t0
    return _tracking_times(total, track.detect_seconds, track.flow_seconds, track.mouth_flow is not None)


def _track(ctx: BuildContext, path: Path, audio_rate: int | None, span: tuple[float, float, float] | None = None):
    """:func:`track_video` with the build's detector and (when the fit uses it) mouth flow."""
    det = detector(ctx)
    flow = MouthFlowTracker.for_scheme(det.scheme) if resources(ctx).config.fitting.flow_weight > 0 else None
    return track_video(path, det, threads=ctx.decode_threads, audio_rate=audio_rate, flow=flow, span=span)


def _tracking_times(total: float, detect: float, flow: float, with_flow: bool) -> dict:
    timings = {"decode": total - detect - flow, "landmarks": detect}
    return {**timings, "mouth_flow": flow} if with_flow else timings


def _write_landmarks(ctx: BuildContext, work: ShardWork, clip: PlannedClip, arrays: dict,
                     decoded: DecodedAudio | None) -> None:
    """Check a clip's tracked ``arrays`` (frames, a face) and cache them with its audio and source.
    ``arrays`` are whole, or ``(shape, dtype, blocks)`` written as the blocks come (``valid``,
    ``times`` and ``fps`` whole); the audio is the video's (``decoded``, else read from the file a
    block at a time), else the clip's own audio file's (MEAD's audio folder)."""
    config = resources(ctx).config
    n_frames = len(arrays["valid"])
    if n_frames < config.qc.min_frames:
        raise ClipError(f"clip has {n_frames} frames, fewer than the minimum {config.qc.min_frames}", "landmarks")
    if not arrays["valid"].any():
        raise ClipError(f"no face detected in any of the {n_frames} frames", "landmarks")
    start, n_samples = float(arrays["times"][0]), audio_samples(n_frames, float(arrays["fps"]))
    if decoded is not None:
        audio, has_stream = [decoded.window(start, n_samples)], decoded.has_stream
    else:
        audio, has_stream = audio_blocks(Path(clip.path), start, n_samples, AUDIO_RATE)
    if not has_stream and clip.audio_path and Path(clip.audio_path).exists():
        audio, has_stream = [DecodedAudio(load_audio(Path(clip.audio_path), AUDIO_RATE), 0.0, AUDIO_RATE, True)
                             .window(start, n_samples)], True
    source = fingerprint(Path(clip.path))  # what this result is built from: the file just decoded
    with atomic_path(work.landmarks(clip.clip_id)) as tmp:
        write_npz_blocks(tmp, {**arrays, "audio": ((n_samples,), np.float32, audio), "has_audio_stream": has_stream,
                               "sha256": source["sha256"], "source_size": source["size"],
                               "source_mtime_ns": source["mtime_ns"], "backend": detector(ctx).name})


def landmarks_part_stage(ctx: BuildContext, work: ShardWork, clip: PlannedClip, k: int) -> dict:
    """Track part ``k`` of a long video (:mod:`recon3d.pipeline.chunks`) into its own file."""
    folder = work.chunks(clip.clip_id)
    target = part_path(folder, k)
    if target.exists() or work.landmarks(clip.clip_id).exists() or work.failure(clip.clip_id).exists():
        return {}
    plan = read_plan(folder)
    n, chunk_seconds = plan["parts"], plan["chunk_seconds"]
    t0 = time.perf_counter()
    track = _track(ctx, Path(clip.path), None, chunk_span(k, n, chunk_seconds))
    if not len(track.valid) and k < n - 1:
        raise ClipError(f"part {k + 1} of {n} ({chunk_seconds:g} s each) holds no frame: the video has a gap "
                        "in its frames", "landmarks")
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            if not len(track.valid):  # the video's frames end before its container's declared end
                np.savez(f, valid=track.valid)
            else:
                np.savez(f, points=track.points, valid=track.valid, score=track.score, times=track.times,
                         image_change=track.image_change, width=track.width, height=track.height, fps=track.fps,
                         rotation=track.rotation,
                         **(track.mouth_flow.arrays() if track.mouth_flow is not None else {}))
    return _tracking_times(time.perf_counter() - t0, track.detect_seconds, track.flow_seconds,
                           track.mouth_flow is not None)


def landmarks_join_stage(ctx: BuildContext, work: ShardWork, clip: PlannedClip) -> dict:
    """The parts of a long video joined into its landmarks cache, with its audio, a part and a
    block of audio at a time; the parts removed."""
    if work.landmarks(clip.clip_id).exists() or work.failure(clip.clip_id).exists():
        return {}
    t0 = time.perf_counter()
    folder = work.chunks(clip.clip_id)
    parts = [NpzRows(part_path(folder, k)) for k in range(read_plan(folder)["parts"])]
    parts = [p for p in parts if len(p["valid"])]  # a last part past the video's frames holds none
    if not parts:
        raise ClipError("no frame in any part of the video", "landmarks")
    n_frames = sum(len(p["valid"]) for p in parts)
    arrays: dict = {}
    for key, member in parts[0].members.items():
        if key in ("valid", "times"):
            arrays[key] = np.concatenate([p[key][:] for p in parts])
        elif key in PER_FRAME:
            arrays[key] = ((n_frames,) + member.shape[1:], member.dtype, _each_part(parts, key))
        else:
            arrays[key] = parts[0].value(key)
    _write_landmarks(ctx, work, clip, arrays, None)
    shutil.rmtree(folder, ignore_errors=True)
    return {"decode": time.perf_counter() - t0}


def _each_part(parts: list[NpzRows], key: str):
    """Each part's ``key`` rows, read in turn."""
    for part in parts:
        yield part[key][:]


# ------------------------------------------------------------------------------------- stage 2
def identity_stage(ctx: BuildContext, work: ShardWork, actor: str, clips: list[PlannedClip]) -> np.ndarray:
    """The actor's FLAME shape: given in ``identity.shapes_dir``, cached, or fitted on ``clips``
    (all the actor's clips; those of the preferred emotion are used when there are any)."""
    path = work.identity(actor)
    if path.exists():
        with np.load(path) as data:
            return data["shape"]
    res = resources(ctx)
    config = res.config
    source = "fitted"
    usable = [c for c in clips if work.landmarks(c.clip_id).exists()]
    preferred = [c for c in usable if c.labels and c.labels.get("emotion") == config.identity.prefer_emotion]
    chosen = preferred or usable
    if config.identity.shapes_dir and (Path(config.identity.shapes_dir) / f"{actor}.npy").exists():
        shape = np.load(Path(config.identity.shapes_dir) / f"{actor}.npy").astype(np.float64)
        source, chosen = "given", []
    elif not chosen:
        return np.zeros(0)
    else:
        seqs = [_identity_sequence(work, c.clip_id) for c in chosen]
        shape = res.fitter.fit_identity(seqs, neutral=bool(preferred))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, shape=shape, source=source, clips=np.array([c.clip_id for c in chosen]),
                     neutral=bool(preferred))
    return shape


def _identity_sequence(work: ShardWork, clip_id: str) -> LandmarkSequence:
    """A clip's landmarks as its identity fit sees them: a long clip's chosen frames only, read alone."""
    from recon3d.fitting.fitter import IDENTITY_MAX_FRAMES, identity_frames

    n_frames = len(landmark_cache(work, clip_id)["valid"])
    frames = identity_frames(n_frames) if n_frames > IDENTITY_MAX_FRAMES else None
    return sequence_of(load_landmarks(work, clip_id, flow=False, frames=frames))


def load_identity(work: ShardWork, actor: str) -> np.ndarray:
    """The actor's shape fitted for this shard (empty when none could be fitted)."""
    path = work.identity(actor)
    if not path.exists():
        return np.zeros(0)
    with np.load(path) as data:
        return data["shape"]


def actor_arrays(ctx: BuildContext, shape: np.ndarray) -> dict[str, np.ndarray]:
    """``shape`` (FLAME coefficients) and its ``template (V, 3)``."""
    import torch

    layer = resources(ctx).layer
    full = np.zeros(layer.n_shape)
    full[:min(len(shape), layer.n_shape)] = shape[:layer.n_shape]
    with torch.no_grad():
        template = layer.template(torch.as_tensor(full[None], dtype=torch.float32))[0].numpy()
    return {"shape": shape.astype(np.float32), "template": template.astype(np.float32)}


# ------------------------------------------------------------------------------------- stage 3
#: A clip's meshes are computed once and held (60 kB a frame) up to this many frames; a longer
#: clip's are computed a block at a time, for its QC and again for its file.
MESHES_HELD_FRAMES = 2048


def fit_stage(ctx: BuildContext, work: ShardWork, clip: PlannedClip, shape: np.ndarray, strict_qc: bool,
              whole: bool = False) -> dict:
    """Fit the clip with the actor's shape, QC it and write ``clips/<clip>.h5``. Returns timings.
    A clip longer than ``fitting.window_frames`` (fitted in several pieces, with a shape) only gets
    its pieces' plan here, unless ``whole`` (:mod:`recon3d.pipeline.chunks`)."""
    if work.clip_done(clip.clip_id):
        return {}
    res = resources(ctx)
    cache = landmark_cache(work, clip.clip_id)
    n_frames = len(cache["valid"])
    if not whole and len(shape) and n_frames > res.config.fitting.window_frames:
        starts = cached_shot_starts(cache) if res.config.fitting.shot_cuts else []
        shots, pieces = res.fitter.pieces_of(n_frames, starts)
        if len(pieces) > 1:
            write_plan(work.fit_parts(clip.clip_id), len(pieces), pieces=[list(p) for p in pieces],
                       shot_starts=[a for a, _ in shots[1:]])
            return {}
    cached = load_landmarks(work, clip.clip_id)  # with the mouth flow, for the fit
    seq = sequence_of(cached)
    t0 = time.perf_counter()
    held = seq.n_frames <= MESHES_HELD_FRAMES  # else QC and the writer compute them a block at a time
    result = res.fitter.fit(seq, shape=shape if len(shape) else None, vertices=held)
    return _write_fitted(ctx, work, clip, cached, seq.inter_ocular_px(), result, strict_qc, time.perf_counter() - t0)


def fit_part_stage(ctx: BuildContext, work: ShardWork, clip: PlannedClip, k: int) -> dict:
    """Fit piece ``k`` of a long clip's plan into its own file."""
    folder = work.fit_parts(clip.clip_id)
    target = part_path(folder, k)
    if target.exists() or work.clip_done(clip.clip_id):
        return {}
    fa, fb, ka, kb = read_plan(folder)["pieces"][k]
    seq = sequence_of(load_landmarks(work, clip.clip_id, frames=slice(fa, fb)))  # this piece's frames only
    t0 = time.perf_counter()
    result = resources(ctx).fitter.fit_piece(seq, load_identity(work, clip.actor), (0, fb - fa, ka - fa, kb - fa),
                                             vertices=False)
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **result.arrays())
    return {"fit": time.perf_counter() - t0}


def fit_join_stage(ctx: BuildContext, work: ShardWork, clip: PlannedClip, strict_qc: bool) -> dict:
    """A long clip's fitted pieces joined, checked and written as :func:`fit_stage` writes a clip."""
    from recon3d.fitting import FitResult

    if work.clip_done(clip.clip_id):
        return {}
    folder = work.fit_parts(clip.clip_id)
    result = FitResult.joined([FitResult.from_arrays(arrays) for arrays in load_parts(folder)],
                              shot_starts=read_plan(folder)["shot_starts"])
    result.mesh_of = resources(ctx).fitter.mesh_of(result)
    cache = landmark_cache(work, clip.clip_id)  # read a block at a time: the clip may be hours long
    timings = _write_fitted(ctx, work, clip, cache, cached_inter_ocular_px(cache), result, strict_qc, 0.0)
    shutil.rmtree(folder, ignore_errors=True)
    return timings


def _write_fitted(ctx: BuildContext, work: ShardWork, clip: PlannedClip, cached: dict, iod: np.ndarray,
                  result, strict_qc: bool, fit_time: float) -> dict:
    """QC a fitted clip (``iod``: its faces' per-frame size) and write ``clips/<clip>.h5`` (its
    meshes a block at a time; ``cached`` its landmarks cache, arrays or :class:`Rows`)."""
    res = resources(ctx)
    config = res.config
    valid = cached["valid"][:]
    qc = clip_qc(iod, valid, scheme_of(cached), result, res.embedding, res.model.faces, config.qc)
    if strict_qc and not qc["pass"]:
        raise ClipError(f"rejected by --qc strict: {qc['flags']} beyond the thresholds", "qc")
    t1 = time.perf_counter()
    has_speech = (clip.labels or {}).get("modality", 1) == 1 and _any_sound(cached["audio"])
    attrs = ClipAttrs.from_labels(
        clip.actor, float(cached["fps"]), result.n_frames, clip.labels, has_speech_audio=has_speech, split=clip.split,
        source_path=clip.path, source_sha256=str(cached["sha256"]), source_size=int(cached.get("source_size", 0)),
        source_mtime_ns=int(cached.get("source_mtime_ns", 0)), landmark_backend=str(cached["backend"]),
        rotation=int(cached["rotation"]), recon3d_version=__version__, fitting_config_hash=config.fitting.digest(),
        build_config_hash=config.digest(), qc=qc)
    f = result
    record = ClipRecord(
        clip_id=clip.clip_id, attrs=attrs, times=cached["times"], vertices=f, audio=cached["audio"],
        landmarks=cached["points"], landmarks_valid=valid,
        flame={"expression": f.expression, "jaw_pose": f.jaw_pose, "eye_pose": f.eye_pose,
               "global_pose": f.global_pose, "neck_pose": f.neck_pose, "translation": f.translation},
        camera=f.camera.to_dict(), head_translation=f.head_translation)
    write_clip_file(work.clip(clip.clip_id), record, config.storage)
    return {"fit": fit_time, "write": time.perf_counter() - t1, "frames": f.n_frames}


def _any_sound(audio: np.ndarray | Rows, samples: int = 1 << 20) -> bool:
    """Whether ``audio`` has a sample that is not zero (``samples`` read at a time)."""
    return any(np.abs(audio[a:a + samples]).max() > 0 for a in range(0, len(audio), samples))


# ----------------------------------------------------------------------------------- the shard
def _guarded(ctx: BuildContext, work: ShardWork, clip: PlannedClip, stage: str, func, *args) -> dict:
    """Run a clip's stage: a bad clip is recorded as failed and the build goes on; a setup error
    stops it; any other exception is a bug, recorded as an internal error with its traceback."""
    try:
        return func(*args)
    except ClipError as exc:
        record_failure(ctx, work, clip, exc.stage or stage, str(exc))
    except SetupError:
        raise
    except Exception as exc:  # noqa: BLE001 - one strange clip must not stop the build
        if no_space(exc):  # not the clip's fault: the whole build stops (cli: one line), the clip is retried
            raise
        record_failure(ctx, work, clip, stage, f"internal error (please report it, with the traceback in "
                       f"failures.jsonl): {type(exc).__name__}: {exc}", traceback.format_exc(), internal=True)
    return {}


def clip_work(ctx: BuildContext, work: ShardWork, clip: PlannedClip, stage: str, strict_qc: bool = False,
              part: int | None = None) -> dict:
    """One clip's ``landmarks`` or ``fit`` stage (the fit with the actor's identity of this shard),
    or for a long video one of its parts (``part``: k, or -1 for the join), failures
    recorded. What parallel workers run; returns the stage's timings."""
    if stage == "landmarks" and part is not None:
        func, *extra = (landmarks_join_stage,) if part < 0 else (landmarks_part_stage, part)
        return _guarded(ctx, work, clip, stage, func, ctx, work, clip, *extra)
    if stage == "landmarks":
        return _guarded(ctx, work, clip, stage, landmarks_stage, ctx, work, clip)
    if work.failure(clip.clip_id).exists() or not work.landmarks(clip.clip_id).exists():
        return {}
    if part is not None:
        func, *extra = (fit_join_stage, strict_qc) if part < 0 else (fit_part_stage, part)
        return _guarded(ctx, work, clip, stage, func, ctx, work, clip, *extra)
    return _guarded(ctx, work, clip, stage, fit_stage, ctx, work, clip, load_identity(work, clip.actor), strict_qc)


def identity_landmarks(ctx: BuildContext, ws: Workspace, work: ShardWork, clip: PlannedClip) -> None:
    """Landmarks of another shard's clip that this shard needs for an identity: linked from that
    shard's work when it has them, else computed here (failures ignored: that clip's own shard
    records them)."""
    target = work.landmarks(clip.clip_id)
    owner = ws.shard_work(clip.shard).landmarks(clip.clip_id)
    if target.exists() or work.failure(clip.clip_id).exists():
        return
    if owner.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            tmp.unlink()
            try:
                os.link(owner, tmp)
            except OSError:
                shutil.copyfile(owner, tmp)
        return
    try:
        landmarks_stage(ctx, work, clip, whole=True)
    except ClipError:
        pass


def identity_clips_needed(shard: str, actor: str, candidates: list[PlannedClip], prefer_emotion: str) -> list[PlannedClip]:
    """The clips whose landmarks shard ``shard`` fits ``actor``'s identity from: its own clips of
    the actor, and the actor's preferred-emotion clips in other shards."""
    return [c for c in candidates if c.shard == shard
            or (c.labels and c.labels.get("emotion") == prefer_emotion)]


def shard_identity(ctx: BuildContext, shard: str, actor: str, candidates: list[PlannedClip]) -> dict:
    """Fit (or load) ``actor``'s identity for ``shard``; ``candidates``: all the actor's clips."""
    ws = Workspace(ctx.out_dir)
    work = ws.shard_work(shard)
    t0 = time.perf_counter()
    prefer = resources(ctx).config.identity.prefer_emotion
    for other in identity_clips_needed(shard, actor, candidates, prefer):
        if other.shard != shard:
            identity_landmarks(ctx, ws, work, other)
    identity_stage(ctx, work, actor, candidates)
    return {"identity": time.perf_counter() - t0}


def assemble_stage(ctx: BuildContext, shard: str, clips: list[PlannedClip]) -> dict:
    """Write ``shards/<shard>.h5`` from the shard's finished clips and its actors' identities."""
    ws = Workspace(ctx.out_dir)
    work = ws.shard_work(shard)
    t0 = time.perf_counter()
    missing = [c.clip_id for c in clips if not work.clip_done(c.clip_id)]
    if missing:
        raise RuntimeError(f"shard {shard}: clips without a result after all stages: {', '.join(missing)}")
    actors = {}
    for actor in sorted({c.actor for c in clips}):
        shape = load_identity(work, actor)
        if len(shape):
            actors[actor] = actor_arrays(ctx, shape)
    done = [work.clip(c.clip_id) for c in clips if work.clip(c.clip_id).exists()]
    assemble_shard(ws.shard(shard), done, actors, shard, resources(ctx).model.faces)
    return {"assemble": time.perf_counter() - t0}


def record_shard_error(ctx: BuildContext, shard: str) -> None:
    """Why a shard's work raised (for ``recon3d status``); call from an ``except`` block."""
    exc = sys.exc_info()[1]
    write_json(Workspace(ctx.out_dir).shard_work(shard).error,
               {"shard": shard, "reason": f"{type(exc).__name__}: {exc}", "detail": traceback.format_exc()})


def measured(func, *args) -> dict:
    """``func(*args)`` (a stage, returning its timings) with this process's CPU seconds spent in it
    (``cpu_s``) and its peak resident memory so far (``peak_rss_mb``)."""
    cpu = time.process_time()
    timings = dict(func(*args) or {})
    timings["cpu_s"] = time.process_time() - cpu
    timings["peak_rss_mb"] = peak_rss_mb()
    return timings


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024.0
    import resource as _resource

    return _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 1024.0


MAX_KEYS = ("peak_rss_mb",)


def sum_timings(timings: list[dict]) -> dict:
    """Stage timings (and frame counts, CPU seconds) added up key by key; peak memory: the maximum."""
    total: dict = {}
    for t in timings:
        for k, v in (t or {}).items():
            total[k] = max(total.get(k, 0), v) if k in MAX_KEYS else total.get(k, 0) + v
    return total
