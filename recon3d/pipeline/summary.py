"""Summaries of a built dataset from its manifest (what ``recon3d inspect`` prints)."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import numpy as np

from recon3d.io.ravdess import skip_counts
from recon3d.shards.manifest import SPLITS, speech_clip, vocal_of


def age(timestamp: str | None, now: dt.datetime | None = None) -> str:
    """``3 min ago``, ``2.5 h ago``, ``4 d ago`` for an ISO time (``?`` when unknown)."""
    if not timestamp:
        return "?"
    now = now or dt.datetime.now(dt.timezone.utc)
    seconds = max(0.0, (now - dt.datetime.fromisoformat(timestamp)).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit} ago"
    return f"{seconds:.0f} s ago"


def failure_rows(failures: list[dict]) -> list[dict]:
    """Failure records as shown to users: id, shard, stage, reason, when and how long ago."""
    return [{"id": f["id"], "shard": f.get("shard", ""), "stage": f["stage"], "reason": f["reason"],
             "time": f.get("time"), "age": age(f.get("time")), "internal": bool(f.get("internal"))} for f in failures]


def format_failures(rows: list[dict], limit: int = 20) -> str:
    lines = [f"failed clips: {len(rows)}"]
    for f in rows[:limit]:
        lines.append(f"  {f['id']} [{f['stage']}, {f['age']}]: {f['reason']}")
    if len(rows) > limit:
        lines.append(f"  ... and {len(rows) - limit} more (failures.jsonl)")
    return "\n".join(lines)


def skipped_counts(manifest: dict) -> dict[str, int]:
    """Files not built, by reason (video-only twins, by modality, audio-only files)."""
    return skip_counts(manifest.get("skipped", []), int(manifest.get("audio_only_files", 0)))


def format_skipped(counts: dict[str, int]) -> str:
    """``skipped: 3 (video-only twin 2, audio-only 1)``; ``skipped: 0``."""
    total = sum(counts.values())
    return f"skipped: {total}" + (f" ({', '.join(f'{k} {v}' for k, v in counts.items())})" if total else "")


#: What a split without clips the animator can use costs.
_EMPTY_SPLIT = {"train": "`recon3d train` has nothing to train on",
                "val": "training keeps no best epoch (checkpoints/best.pt) and logs no validation",
                "test": "`recon3d evaluate` has nothing to score by default"}


def speech_by_split(clips: list[dict]) -> dict[str, int]:
    """How many clips of each split the animator can learn from (:func:`~recon3d.shards.manifest.speech_clip`)."""
    counts = Counter(c.get("split", "train") for c in clips if speech_clip(c))
    return {split: counts.get(split, 0) for split in SPLITS}


def format_speech_splits(counts: dict[str, int]) -> list[str]:
    """A line of the clips with speech audio per split, and one per split that has none, saying what that costs."""
    lines = ["clips with speech audio (what the animator learns from): "
             + ", ".join(f"{k} {v}" for k, v in counts.items())]
    lines += [f"  no clip with speech audio in the '{split}' split: {_EMPTY_SPLIT[split]}"
              for split, n in counts.items() if n == 0]
    return lines


def small_faces(clips: list[dict]) -> list[str]:
    """The clips whose face is smaller than :data:`~recon3d.pipeline.qc.SMALL_FACE_IOD_PX` (from
    their QC's ``inter_ocular_px``, so clips built before the flag existed count too)."""
    from recon3d.pipeline.qc import SMALL_FACE_IOD_PX

    return [c["id"] for c in clips if float(c.get("qc", {}).get("inter_ocular_px", np.inf)) < SMALL_FACE_IOD_PX]


def format_small_faces(ids: list[str]) -> str:
    """One line on the clips :func:`small_faces` found ("" when none)."""
    from recon3d.pipeline.qc import SMALL_FACE_IOD_PX

    if not ids:
        return ""
    return (f"{len(ids)} clip(s) with faces smaller than {SMALL_FACE_IOD_PX:.0f} px between the outer eye corners "
            f"(QC flag small_face; e.g. {ids[0]}): below that size the fit's lips are less accurate "
            "(docs/benchmarks.md, small faces)")


def dataset_summary(manifest: dict) -> dict:
    """Counts, duration, label and QC distributions and failures of a build."""
    clips = manifest["clips"]
    frames = sum(c["frames"] for c in clips)
    seconds = sum(c["duration_s"] for c in clips)
    emotions = Counter((c.get("labels") or {}).get("emotion", "unlabeled") for c in clips)
    qc_keys = ("reprojection_iod_mean", "reprojection_iod_p95") + tuple(
        f"reprojection_iod_{stat}_{source}" for source in ("mediapipe", "dlib") for stat in ("mean", "p95")) + (
        "face_fraction", "lip_jitter_mm")
    qc = {}
    for key in qc_keys:
        values = np.array([c["qc"].get(key, np.nan) for c in clips], float)
        values = values[np.isfinite(values)]
        if values.size:
            qc[key] = {"median": float(np.median(values)), "p95": float(np.percentile(values, 95)),
                       "max": float(values.max())}
    flags = Counter(f for c in clips for f in str(c["qc"].get("flags", "")).split(",") if f)
    failures = manifest.get("failures", [])
    skipped = skipped_counts(manifest)
    return {
        "clips": len(clips), "frames": frames, "hours": seconds / 3600.0,
        "splits": dict(Counter(c.get("split", "train") for c in clips)),
        "speech_by_split": speech_by_split(clips),
        "split_method": manifest.get("split_method", "actor"),
        "emotions": dict(sorted(emotions.items())),
        "actors": dict(sorted(Counter(str(c["actor"]) for c in clips).items())),
        "qc": qc, "qc_flagged": sum(1 for c in clips if not c["qc"].get("pass", True)), "qc_flags": dict(flags),
        "small_faces": len(small_faces(clips)),
        "failures": len(failures), "failures_by_stage": dict(Counter(f["stage"] for f in failures)),
        "skipped": sum(skipped.values()), "skipped_by_reason": skipped,
        "vocal": dict(sorted(Counter(vocal_of(c) for c in clips).items())),
        "landmark_sources": dict(sorted(Counter(c.get("landmark_sources") or "(not recorded)" for c in clips).items())),
        "source_frames": dict(sum((Counter(c.get("source_frames") or {}) for c in clips), Counter())),
        "without_speech_audio": sum(1 for c in clips if not c.get("has_speech_audio")),
        "source_missing": sum(1 for c in clips if c.get("source_missing")),
        "failure_list": failure_rows(failures),
        "identity": {a: {k: v for k, v in r.items() if k in ("identity_source", "identity_from_neutral",
                                                               "neutral_mean_expression_norm",
                                                               "neutral_expression_rms_norm")}
                     for a, r in manifest.get("actors", {}).items()},
    }


def format_summary(s: dict) -> str:
    """A human-readable table of :func:`dataset_summary`."""
    lines = [f"clips {s['clips']}   frames {s['frames']}   hours {s['hours']:.3f}   "
             f"splits {', '.join(f'{k} {v}' for k, v in sorted(s['splits'].items()))} (by {s['split_method']}"
             + (": within each actor, by statement/repetition)" if s["split_method"] == "take" else ")")]
    lines += format_speech_splits(s["speech_by_split"])
    lines.append("emotions: " + ", ".join(f"{k} {v}" for k, v in s["emotions"].items()))
    lines.append("actors:   " + ", ".join(f"{k} {v}" for k, v in s["actors"].items()))
    lines.append("vocal:    " + ", ".join(f"{k} {v}" for k, v in s["vocal"].items())
                 + f"; without speech audio: {s['without_speech_audio']}")
    lines.append("landmark sources: " + ", ".join(f"{k} {v}" for k, v in s["landmark_sources"].items()))
    if s.get("source_frames"):
        lines.append("frames each source was used in: " + ", ".join(
            f"{k} {v} ({100 * v / max(s['frames'], 1):.0f} %)" for k, v in s["source_frames"].items())
            + " (a second source only where the head's pose and its agreement with MediaPipe let it be trusted)")
    if s["qc"]:
        lines.append(f"{'QC':34s} {'median':>9s} {'p95':>9s} {'max':>9s}")
        for key, v in s["qc"].items():
            lines.append(f"{key:34s} {v['median']:9.4f} {v['p95']:9.4f} {v['max']:9.4f}")
    lines.append(f"QC flagged: {s['qc_flagged']}" + (f" ({', '.join(f'{k} {v}' for k, v in s['qc_flags'].items())})"
                                                     if s["qc_flags"] else ""))
    if s.get("small_faces"):
        from recon3d.pipeline.qc import SMALL_FACE_IOD_PX

        lines.append(f"faces smaller than {SMALL_FACE_IOD_PX:.0f} px between the outer eye corners: "
                     f"{s['small_faces']} clip(s) (less accurate lips)")
    for actor, r in s["identity"].items():
        if "neutral_mean_expression_norm" in r:
            lines.append(f"actor {actor}: identity {r.get('identity_source', '?')}"
                         f"{' from neutral clips' if r.get('identity_from_neutral') else ''}; neutral clips' mean "
                         f"expression norm {r['neutral_mean_expression_norm']:.2f} "
                         f"(per-frame rms {r.get('neutral_expression_rms_norm', float('nan')):.2f})")
    lines.append(f"failures: {s['failures']}" + (f" ({', '.join(f'{k} {v}' for k, v in s['failures_by_stage'].items())})"
                                                 if s["failures"] else ""))
    for f in s["failure_list"][:20]:
        lines.append(f"  {f['id']} [{f['stage']}, {f['age']}]: {f['reason']}")
    lines.append(format_skipped(s["skipped_by_reason"]))
    if s["source_missing"]:
        lines.append(f"source missing: {s['source_missing']} (built clips whose video is gone; kept, "
                     "`build-dataset --prune` removes them)")
    return "\n".join(lines)
