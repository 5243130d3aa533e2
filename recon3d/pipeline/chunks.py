"""A long video tracked and fitted in parts, on as many workers as are free, then joined.

Tracking (decoding, the detectors, the mouth flow) is most of a build's cost and follows the
video frame by frame, so one long video would keep one core busy while the others wait. A video at
least 1.5 times ``landmarks.chunk_seconds`` long is therefore tracked in parts of that length: its
landmarks task only writes the parts' plan (``landmarks/<clip>.chunks/plan.json``), each part is
a task of its own (``<k>.npz``), and a last task joins them into the clip's landmarks as one
piece would have written them. Each part starts tracking afresh :data:`LEAD_S` before its first
frame (MediaPipe's track, the image change and the flow settle there) and tracks one frame past its
last (to complete that frame's flow); frames belong to the part whose span holds their time, so
the parts share none and miss none.

Its fit is spread the same way: the clip's fit task writes the pieces the fitter fits it in (its
shots, and windows of a long shot: ``FlameFitter.pieces``) to ``fits/<clip>.parts/plan.json``,
each piece is a task, and a last task joins them, checks the clip and writes it. Pieces are
fitted exactly as one process fits them in turn. A killed build keeps the finished parts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from recon3d.atomic import write_json

#: Seconds tracked before a part's first frame and not kept.
LEAD_S = 1.0
PLAN = "plan.json"
#: The arrays of a part, joined frame by frame (the rest are the video's, equal in every part).
PER_FRAME = ("points", "valid", "score", "times", "image_change", "mouth_flow", "mouth_flow_origin", "mouth_flow_step")


def chunk_count(duration_s: float, chunk_seconds: float) -> int:
    """How many parts a video of ``duration_s`` seconds is tracked in (1: whole, below 1.5 parts)."""
    if chunk_seconds <= 0 or duration_s < 1.5 * chunk_seconds:
        return 1
    return math.ceil(duration_s / chunk_seconds)


def chunk_span(k: int, n: int, chunk_seconds: float) -> tuple[float, float, float]:
    """``(start, stop, lead)`` seconds of part ``k`` of ``n`` (the last runs to the end)."""
    return k * chunk_seconds, (k + 1) * chunk_seconds if k < n - 1 else math.inf, LEAD_S


def write_plan(folder: Path, parts: int, **details) -> None:
    """The plan of a clip's parts: how many, and what each part needs to know (JSON values)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / PLAN, {"parts": parts, **details})


def read_plan(folder: Path) -> dict | None:
    """The plan :func:`write_plan` wrote (``parts`` and the details), or None."""
    path = folder / PLAN
    return json.loads(path.read_text()) if path.exists() else None


def part_path(folder: Path, k: int) -> Path:
    return folder / f"{k:04d}.npz"


def missing_parts(folder: Path) -> list[int]:
    """The parts of a planned video not tracked yet (all of them without a plan: none)."""
    plan = read_plan(folder)
    return [] if plan is None else [k for k in range(plan["parts"]) if not part_path(folder, k).exists()]


def load_parts(folder: Path) -> list[dict[str, np.ndarray]]:
    """Each part's arrays, in order."""
    parts = []
    for k in range(read_plan(folder)["parts"]):
        with np.load(part_path(folder, k)) as data:
            parts.append({key: data[key] for key in data.files})
    return parts
