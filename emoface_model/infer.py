"""Inference: audio -> mesh sequences, with sliding windows for audio of any length; evaluation."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from emoface_model.data import SPLITS, ClipData, labels_of, select_clips
from emoface_model.metrics import MetricSums, Regions, opening_agreement, opening_pair
from emoface_model.models import TalkingFace
from recon3d.errors import SetupError
from recon3d.io.labels import EMOTION_NAMES
from recon3d.shards.union import open_datasets
from recon3d.shards.schema import AUDIO_RATE

CHUNK_FRAMES = 600  # audio encoded in windows of 20 s at 30 fps
CONTEXT_FRAMES = 30  # with 1 s of audio context on each side


def audio_features(model: TalkingFace, audio: np.ndarray, n_frames: int, fps: float, device="cpu",
                   encode=None) -> torch.Tensor:
    """Audio features ``(1, n_frames, dim)``: encoded in overlapping windows, so any length works
    (``encode(audio (1, N), n_frames)``: the model's audio encoder unless given)."""
    encode = encode or model.encode_audio
    per_frame = AUDIO_RATE / fps
    out = []
    for start in range(0, n_frames, CHUNK_FRAMES):
        stop = min(n_frames, start + CHUNK_FRAMES)
        a, b = max(0, start - CONTEXT_FRAMES), min(n_frames, stop + CONTEXT_FRAMES)
        s0, s1 = int(round(a * per_frame)), int(round(b * per_frame))
        seg = np.zeros(s1 - s0, np.float32)
        piece = audio[s0:s1]
        seg[:len(piece)] = piece
        with torch.no_grad():
            feats = encode(torch.from_numpy(seg)[None].to(device), b - a)
        out.append(feats[:, start - a:stop - a])
    return torch.cat(out, 1)


def generate_offsets(model: TalkingFace, audios: list[np.ndarray], fps: list[float], lengths: list[int],
                     labels: list[tuple[int, int]], actors: list[int], templates: list[np.ndarray],
                     initial: np.ndarray | None = None, device="cpu") -> list[np.ndarray]:
    """Vertex offsets ``(T_i, V, 3)`` for a batch of clips, generated autoregressively in one call
    (decoding is causal, so a clip padded to the batch's longest is unchanged by the padding);
    ``initial`` ``(N, V, 3)`` starts the generation from given offsets."""
    feats = torch.zeros(len(audios), max(lengths), model.config.dim, device=device)
    for i, (audio, rate, n) in enumerate(zip(audios, fps, lengths)):
        feats[i, :n] = audio_features(model, audio, n, rate, device)[0]
    t = lambda x: torch.as_tensor(np.asarray(x), device=device)  # noqa: E731
    label = t(labels).reshape(-1, 2)
    init = None if initial is None else t(initial).float()
    offsets = model.generate(feats, label[:, 0], label[:, 1], t(actors), t(np.stack(templates)).float(), init)
    return [o[:n] for o, n in zip(offsets.cpu().numpy(), lengths)]


def predict(model: TalkingFace, audio: np.ndarray, fps: float, emotion: int, intensity: int, actor: int,
            template: np.ndarray, initial: np.ndarray | None = None, n_frames: int | None = None,
            device="cpu") -> np.ndarray:
    """Vertex offsets ``(T, V, 3)`` for 16 kHz ``audio``; generation starts from ``initial`` when given."""
    n_frames = n_frames or max(1, int(round(len(audio) / AUDIO_RATE * fps)))
    init = None if initial is None else np.asarray(initial)[None]
    return generate_offsets(model, [audio], [fps], [n_frames], [(emotion, intensity)], [actor], [template], init,
                            device)[0]


def split_data(dataset_dir: str | Path | list[str], split: str, actors: list[str], clips: dict | None = None) -> ClipData:
    """The clips of ``split`` to evaluate a model trained on ``actors`` on: from ``clips`` (a run's
    ``clips.json`` lists), else chosen as training chooses (:func:`select_clips`, no song takes);
    a clear error when there are none."""
    if split not in SPLITS:
        raise SetupError(f"--split '{split}': choose one of {', '.join(SPLITS)}")
    dataset = open_datasets(dataset_dir)
    clips = clips or select_clips(dataset.clips(), include_song=False)
    data = ClipData(dataset, clips[split], actors)
    if not len(data):
        have = [s for s in SPLITS if clips[s]]
        where = dataset_dir if isinstance(dataset_dir, (str, Path)) else ", ".join(map(str, dataset_dir))
        raise SetupError(f"{where}: no clips with speech audio in the '{split}' split (it has: "
                         f"{', '.join(have) or 'none'}; choose one with --split)")
    return data


def clip_predictions(model: TalkingFace, data: ClipData, device="cpu", progress: bool = False, desc: str = "evaluate",
                     batch_clips: int = 8):
    """For every clip of ``data``: ``(entry, predicted vertices, true vertices, template)``, whole
    clips generated autoregressively from the clip's audio and labels, ``batch_clips`` at a time."""
    from tqdm import tqdm

    bar = tqdm(total=len(data.entries), desc=desc, unit="clip", disable=not progress)
    for start in range(0, len(data.entries), batch_clips):
        entries = data.entries[start:start + batch_clips]
        clips = [data.clip(e) for e in entries]
        offsets = generate_offsets(model, [c["audio"] for c in clips], [float(e["fps"]) for e in entries],
                                   [len(c["offsets"]) for c in clips], [labels_of(e) for e in entries],
                                   [c["actor"] for c in clips], [c["template"] for c in clips], device=device)
        for entry, clip, offset in zip(entries, clips, offsets):
            template = clip["template"]
            yield entry, offset + template, clip["offsets"] + template, template
        bar.update(len(entries))
    bar.close()


def _finite_mean(values: list[float]) -> float | None:
    """The mean of the finite values (None, JSON's null, where there are none)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def evaluate_run(model: TalkingFace, actors: list[str], shards_dir: str | Path, split: str, regions: Regions,
                 device="cpu", progress: bool = True, clips: dict | None = None) -> dict:
    """LVE / EVE / FDD / MVE of the model on a split (whole clips, autoregressive), overall and per
    emotion, beside the template-only (zero motion) baseline; ``clips``: the lists to take the
    split from (:func:`split_data`). On several builds read as one, also per build (``per_dataset``,
    and its template-only baseline ``per_dataset_template``)."""
    sums, base = MetricSums(), MetricSums()
    per_emotion: dict[str, MetricSums] = defaultdict(MetricSums)
    per_emotion_base: dict[str, MetricSums] = defaultdict(MetricSums)
    per_dataset: dict[str, MetricSums] = defaultdict(MetricSums)
    per_dataset_base: dict[str, MetricSums] = defaultdict(MetricSums)
    data = split_data(shards_dir, split, actors, clips)
    lips: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    template_lips = None
    for entry, pred, gt, template in clip_predictions(model, data, device, progress, f"evaluate {split}"):
        emotion = EMOTION_NAMES[labels_of(entry)[0]]
        lips[entry["id"]] = pred[:, regions.lips], gt[:, regions.lips]
        template_lips = template[regions.lips] if template_lips is None else template_lips
        sums.add(pred, gt, template, regions)
        per_emotion[emotion].add(pred, gt, template, regions)
        still = np.repeat(template[None], len(gt), 0)
        base.add(still, gt, template, regions)
        per_emotion_base[emotion].add(still, gt, template, regions)
        if "dataset" in entry:
            per_dataset[entry["dataset"]].add(pred, gt, template, regions)
            per_dataset_base[entry["dataset"]].add(still, gt, template, regions)
    pair = opening_pair([gt for _, gt in lips.values()], template_lips)
    per_clip = {clip_id: opening_agreement(pred, gt, pair) for clip_id, (pred, gt) in lips.items()}
    opening = {key: _finite_mean([c[key] for c in per_clip.values()]) for key in ("amplitude_ratio", "correlation")}
    per_clip = {k: {key: (v if np.isfinite(v) else None) for key, v in c.items()} for k, c in per_clip.items()}
    by_dataset = {"per_dataset": {k: v.result() for k, v in sorted(per_dataset.items())},
                  "per_dataset_template": {k: v.result() for k, v in sorted(per_dataset_base.items())}}
    return {"split": split, "overall": sums.result(), "template_only": base.result(),
            "lip_opening": {**opening, "vertices": [int(regions.lips[k]) for k in pair], "per_clip": per_clip},
            "per_emotion": {k: v.result() for k, v in sorted(per_emotion.items())},
            "per_emotion_template": {k: v.result() for k, v in sorted(per_emotion_base.items())},
            **(by_dataset if per_dataset else {})}
