"""How much of the acted emotion a built dataset carries: a simple classifier on per-clip statistics
of the canonical vertex motion of the lips, brows and eyes, evaluated on held-out actors (or takes).

The features do not depend on the model's bases: for each region (FLAME_masks.pkl: ``lips``,
``forehead`` for the brows, ``eye_region``) a fixed subsample of its vertices, and for each of them
the mean and the standard deviation over the clip's frames of its motion (vertices minus the
actor's template), in mm. The classifier is nearest centroid in the training folds' principal
components (z-scored features): no tuning, deterministic. Held out by actor with three or more
actors, else by take (statement, repetition) within the actor(s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon3d.io.labels import EMOTION_NAMES

REGIONS = ("lips", "forehead", "eye_region")
VERTICES_PER_REGION = 48
FRAME_STRIDE = 2  # every other frame is plenty for per-clip means and spreads


def region_vertices(masks: dict[str, np.ndarray]) -> np.ndarray:
    """A fixed, evenly spaced subsample of each region's vertex ids (concatenated)."""
    picks = []
    for name in REGIONS:
        ids = np.asarray(masks[name])
        picks.append(ids[np.linspace(0, len(ids) - 1, min(VERTICES_PER_REGION, len(ids))).round().astype(int)])
    return np.concatenate(picks)


def motion_features(motion: np.ndarray) -> np.ndarray:
    """``motion (T, N, 3)`` metres (the region vertices) -> mean and spread over frames, mm, flattened."""
    mm = motion * 1000.0
    return np.concatenate([mm.mean(axis=0).ravel(), mm.std(axis=0).ravel()])


@dataclass
class SeparabilityResult:
    accuracy: float
    chance: float
    evaluation: str  # "actor" | "take"
    clips: int
    emotions: list[str]  # class order of the confusion matrix
    confusion: np.ndarray  # (K, K): rows true, columns predicted, counts
    folds: int

    def to_json(self) -> dict:
        return {"emotion_accuracy": self.accuracy, "emotion_chance": self.chance, "emotion_eval": self.evaluation,
                "emotion_clips": self.clips}


def nearest_centroid(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, dims: int = 20) -> np.ndarray:
    """Labels of ``test_x`` by the nearest class centroid, in the training set's top principal
    components after z-scoring with the training statistics."""
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    a, b = (train_x - mean) / std, (test_x - mean) / std
    k = max(1, min(dims, len(a) - 1, a.shape[1]))
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    pa, pb = a @ vt[:k].T, b @ vt[:k].T
    classes = np.unique(train_y)
    centroids = np.stack([pa[train_y == c].mean(axis=0) for c in classes])
    dist = ((pb[:, None, :] - centroids[None]) ** 2).sum(-1)
    return classes[np.argmin(dist, axis=1)]


def held_out_groups(actors: list[str], takes: list[tuple[int, int]]) -> tuple[np.ndarray, str]:
    """Fold of each clip: its actor with three or more actors, else its take."""
    if len(set(actors)) >= 3:
        return np.array(actors, dtype=object), "actor"
    return np.array([f"{s}-{r}" for s, r in takes], dtype=object), "take"


def evaluate(features: np.ndarray, emotions: list[int], actors: list[str],
             takes: list[tuple[int, int]]) -> SeparabilityResult | None:
    """Leave-one-group-out accuracy of :func:`nearest_centroid` (None with fewer than two groups or
    two emotions). ``emotions``: 1-8 (RAVDESS ids)."""
    y = np.asarray(emotions)
    groups, how = held_out_groups(actors, takes)
    present = sorted(set(y.tolist()))
    if len(set(groups.tolist())) < 2 or len(present) < 2:
        return None
    index = {e: i for i, e in enumerate(present)}
    confusion = np.zeros((len(present), len(present)), int)
    folds = 0
    for g in sorted(set(groups.tolist())):
        test = groups == g
        train = ~test
        if len(set(y[train].tolist())) < 1 or not train.any():
            continue
        pred = nearest_centroid(features[train], y[train], features[test])
        for t, p in zip(y[test], pred):
            confusion[index[int(t)], index[int(p)]] += 1
        folds += 1
    total = int(confusion.sum())
    return SeparabilityResult(accuracy=float(np.trace(confusion) / total) if total else float("nan"),
                              chance=1.0 / len(present), evaluation=how, clips=total,
                              emotions=[EMOTION_NAMES[e - 1] for e in present], confusion=confusion, folds=folds)


def dataset_features(ds, masks: dict[str, np.ndarray], max_clips: int = 400, seed: int = 0):
    """Features of (up to ``max_clips``, sampled) labelled clips of a dataset, with their emotion
    ids, actors and takes. Returns (features, emotions, actors, takes, clip_ids, sampled)."""
    from recon3d.shards import schema as S

    labelled = [c for c in ds.clips() if c.get("labels")]
    sampled = len(labelled) > max_clips
    if sampled:
        rng = np.random.default_rng(seed)
        labelled = [labelled[i] for i in sorted(rng.choice(len(labelled), max_clips, replace=False))]
    vids = region_vertices(masks)
    feats, emotions, actors, takes, ids = [], [], [], [], []
    for entry in labelled:
        vertices = ds.array(entry["id"], S.VERTICES)[::FRAME_STRIDE][:, vids]
        template = ds.template(str(entry["actor"]), entry["shard"])[vids]
        feats.append(motion_features(vertices - template[None]))
        labels = entry["labels"]
        emotions.append(int(labels["emotion_id"]))
        actors.append(str(entry["actor"]))
        takes.append((int(labels.get("statement", 0)), int(labels.get("repetition", 0))))
        ids.append(entry["id"])
    return (np.stack(feats) if feats else np.zeros((0, 0))), emotions, actors, takes, ids, sampled


def dataset_separability(ds, masks: dict[str, np.ndarray], max_clips: int = 400) -> SeparabilityResult | None:
    """:func:`evaluate` on a built dataset (None where it has no labels or a single group or emotion)."""
    features, emotions, actors, takes, _, _ = dataset_features(ds, masks, max_clips)
    if not len(emotions):
        return None
    return evaluate(features, emotions, actors, takes)
