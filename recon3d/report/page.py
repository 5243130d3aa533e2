"""``recon3d report``: one self-contained HTML page about a built dataset (pictures embedded as PNG
data, so it opens from disk with no server and no network).

Sections: overview (counts, splits, failures, actor x emotion), QC (histograms with the
thresholds, the worst clips drawn over their video), emotions (mean motion per emotion and
intensity on the mesh, the neutral clips' expression per actor), motion over time (one clip per
emotion), and emotion separability (:mod:`recon3d.report.emotion`). Sections that read meshes
sample large datasets and say so; the manifest-level ones read only ``manifest.json``.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections import defaultdict
from pathlib import Path

import numpy as np

from recon3d.io.labels import EMOTION_NAMES
from recon3d.io.ravdess import EMOTIONS, INTENSITIES
from recon3d.report import figures
from recon3d.report.emotion import SeparabilityResult, dataset_separability
from recon3d.shards import schema as S

WORST_CLIPS = 12
CLIPS_PER_EMOTION_MAP = 24
QC_FIGURES = (("reprojection_iod_mean", "max_reprojection_iod", True, "reprojection error / inter-ocular distance"),
              ("reprojection_iod_mean_mediapipe", "max_reprojection_iod", True,
               "MediaPipe's points: reprojection error / inter-ocular distance"),
              ("reprojection_iod_mean_dlib", "max_reprojection_iod_dlib", True,
               "dlib's points (frames the fit used them in): reprojection error / inter-ocular distance"),
              ("face_fraction", "min_face_fraction", False, "frames with a face"),
              ("lip_jitter_mm", "max_lip_jitter_mm", True, "lip jitter (mm per frame)"))


def _img(png: bytes, alt: str, width: int | None = None) -> str:
    style = f' style="width:{width}px"' if width else ""
    return f'<img alt="{html.escape(alt)}"{style} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


class Report:
    """Collects the sections of one dataset's report."""

    def __init__(self, ds, masks: dict[str, np.ndarray] | None, max_clips: int = 400):
        from recon3d.pipeline.config import QCConfig
        from recon3d.pipeline.summary import dataset_summary

        self.ds, self.masks, self.max_clips = ds, masks, max_clips
        self.manifest = ds.manifest
        self.summary = dataset_summary(self.manifest)
        qc = (self.manifest.get("build", {}).get("config") or {}).get("qc") or {}
        self.thresholds = {**vars(QCConfig()), **qc}
        self.clips = self.manifest["clips"]
        self.labelled = [c for c in self.clips if c.get("labels")]
        self.sections: list[tuple[str, str, str]] = []  # (id, title, html)
        self.separability: SeparabilityResult | None = None

    # -------------------------------------------------------------------------- sections
    def overview(self) -> None:
        s = self.summary
        parts = [f"<p>{s['clips']} clips, {s['frames']} frames, {s['hours']:.3f} hours; splits "
                 f"{html.escape(', '.join(f'{k} {v}' for k, v in sorted(s['splits'].items())))} "
                 f"(by {html.escape(s['split_method'])}); {s['failures']} failed.</p>"]
        if s["failure_list"]:
            parts.append("<h3>Failures</h3>" + _table([[f["id"], f["stage"], f["age"], f["reason"]]
                                                      for f in s["failure_list"]], ["clip", "stage", "when", "reason"]))
        if self.labelled:
            actors = sorted({str(c["actor"]) for c in self.labelled})
            # RAVDESS's eight emotions, and MEAD's contempt when a clip has it
            names = EMOTION_NAMES[:max([len(EMOTIONS)] + [c["labels"]["emotion_id"] for c in self.labelled])]
            counts = np.zeros((len(actors), len(names)), int)
            for c in self.labelled:
                counts[actors.index(str(c["actor"])), c["labels"]["emotion_id"] - 1] += 1
            parts.append(_img(figures.heat_map(counts, [f"actor {a}" for a in actors], list(names),
                                               "clips per actor and emotion"), "clips per actor and emotion"))
        else:
            parts.append("<p>No labels: the dataset was built with <code>--labels none</code>, so the emotion "
                         "sections below have nothing to show.</p>")
        self.sections.append(("overview", "Overview", "".join(parts)))

    def qc(self) -> None:
        parts = []
        for key, threshold_key, upper, label in QC_FIGURES:
            values = np.array([c["qc"].get(key, np.nan) for c in self.clips], float)
            if np.isfinite(values).any():
                parts.append(_img(figures.histogram(values, self.thresholds.get(threshold_key), label, key, upper),
                                  f"histogram of {key}"))
        scored = [c for c in self.clips if np.isfinite(c["qc"].get("reprojection_iod_mean", np.nan))]
        worst = sorted(scored, key=lambda c: -c["qc"]["reprojection_iod_mean"])[:WORST_CLIPS]
        if worst:
            parts.append(f"<h3>The {len(worst)} clips with the largest reprojection error</h3><div class=grid>")
            for c in worst:
                q = c["qc"]
                per_source = "".join(f", {source} {q[f'reprojection_iod_mean_{source}']:.4f}"
                                     for source in ("mediapipe", "dlib")
                                     if np.isfinite(q.get(f"reprojection_iod_mean_{source}", np.nan)))
                frames = c.get("source_frames") or {}
                used = f", dlib in {frames['dlib']}/{c['frames']} frames" if "dlib" in frames else ""
                caption = (f"{c['id']}: reprojection {q['reprojection_iod_mean']:.4f} IOD{per_source}{used}, face "
                           f"{q.get('face_fraction', float('nan')):.2f}, lip jitter {q.get('lip_jitter_mm', float('nan')):.2f} mm"
                           + (f", flags {q['flags']}" if q.get("flags") else ""))
                parts.append(f"<figure>{_img(figures.png_of_image(self._thumbnail(c)), c['id'], 300)}"
                             f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            parts.append("</div>")
        else:
            parts.append("<p>No clip has QC figures (the dataset was not built from video).</p>")
        self.sections.append(("qc", "Quality control", "".join(parts)))

    def _thumbnail(self, entry: dict) -> np.ndarray:
        """The middle frame of a clip's video with its fitted mesh drawn over it (mesh alone
        without the video)."""
        from recon3d.io.video import VideoError, iter_frames
        from recon3d.render.preview import camera_vertices

        shard, clip_id = self.ds.shard_of(entry["id"]), entry["id"]
        k = int(entry["frames"]) // 2
        vertices = shard.array(clip_id, S.VERTICES, k, k + 1)
        camera = shard.camera(clip_id)
        if not camera:
            return figures.colour_map_render(vertices[0], self.ds.faces(), np.zeros(len(vertices[0])), 1.0)
        cam = camera_vertices(vertices, shard.array(clip_id, f"{S.FLAME}/global_pose", k, k + 1),
                              shard.array(clip_id, f"{S.CAMERA}/{S.CAMERA_TRANSLATION}", k, k + 1))[0]
        background = None
        source = Path(shard.attrs(clip_id).source_path)
        if source.exists():
            try:
                for i, (rgb, _) in enumerate(iter_frames(source)):
                    if i == k:
                        background = rgb
                        break
            except VideoError:
                background = None
        return figures.overlay(background, cam, self.ds.faces(), camera, scale=300 / float(camera["width"]))

    def emotions(self) -> None:
        if not self.labelled:
            self.sections.append(("emotions", "Emotions", "<p>No labels in this dataset.</p>"))
            return
        parts = []
        if self.masks is None:
            parts.append("<p>FLAME_masks.pkl was not found, so the motion maps are drawn over the whole face.</p>")
        groups: dict[tuple[int, int], list[dict]] = defaultdict(list)
        for c in self.labelled:
            groups[c["labels"]["emotion_id"], c["labels"]["intensity"]].append(c)
        faces, maps, sampled = self.ds.faces(), {}, False
        for key, entries in sorted(groups.items()):
            if len(entries) > CLIPS_PER_EMOTION_MAP:
                sampled = True
                entries = entries[:: int(np.ceil(len(entries) / CLIPS_PER_EMOTION_MAP))]
            motion, template = [], None
            for e in entries:
                v = self.ds.array(e["id"], S.VERTICES)[::2]
                t = self.ds.template(str(e["actor"]), e["shard"])
                motion.append(np.linalg.norm(v - t[None], axis=-1).mean(axis=0) * 1000.0)
                template = t if template is None else template
            maps[key] = (np.mean(motion, axis=0), template, len(entries))
        vmax = max(float(np.percentile(m, 99)) for m, _, _ in maps.values()) or 1.0
        parts.append(f"<p>Mean vertex motion (each clip's vertices minus its actor's template, mean over frames), mm; "
                     f"colour scale 0 to {vmax:.1f} mm (yellow)."
                     + (f" Large groups are sampled ({CLIPS_PER_EMOTION_MAP} clips each)." if sampled else "") + "</p>")
        parts.append("<div class=grid>")
        for (emotion, intensity), (values, template, n) in maps.items():
            img = figures.colour_map_render(template, faces, values, vmax)
            name = f"{EMOTION_NAMES[emotion - 1]}, {INTENSITIES.get(intensity, intensity)}"
            parts.append(f"<figure>{_img(figures.png_of_image(img), name, 200)}"
                         f"<figcaption>{html.escape(name)} ({n} clips)</figcaption></figure>")
        parts.append("</div>")
        actors = {a: r for a, r in self.manifest.get("actors", {}).items() if "neutral_mean_expression_norm" in r}
        if actors:
            parts.append("<h3>Identity leak: the neutral clips' mean expression per actor</h3>"
                         "<p>FLAME expression coefficients are in standard deviations; a neutral clip should "
                         "average to near zero. A large mean means identity went into expression.</p>")
            parts.append(_img(figures.bar_chart(list(actors), [r["neutral_mean_expression_norm"] for r in actors.values()],
                                                "neutral clips' mean expression norm", "norm (sd units)"),
                              "neutral mean expression norm per actor"))
        self.sections.append(("emotions", "Emotions", "".join(parts)))

    def motion(self) -> None:
        if not self.labelled:
            self.sections.append(("motion", "Motion over time", "<p>No labels in this dataset.</p>"))
            return
        parts = ["<p>One clip per emotion: jaw opening (FLAME jaw pose, rad), mouth-corner distance change "
                 "and brow height change (mm), under the audio.</p><div class=grid>"]
        chosen = {}
        for c in self.labelled:
            chosen.setdefault(c["labels"]["emotion_id"], c)
        for emotion, entry in sorted(chosen.items()):
            parts.append(f"<figure>{_img(self._motion_curves(entry), entry['id'], 420)}"
                         f"<figcaption>{html.escape(EMOTION_NAMES[emotion - 1])}: {html.escape(entry['id'])}</figcaption></figure>")
        parts.append("</div>")
        self.sections.append(("motion", "Motion over time", "".join(parts)))

    def _motion_curves(self, entry: dict) -> bytes:
        shard, clip_id = self.ds.shard_of(entry["id"]), entry["id"]
        vertices = shard.array(clip_id, S.VERTICES)
        template = self.ds.template(str(entry["actor"]), entry["shard"])
        lips = self.masks["lips"] if self.masks is not None else np.arange(len(template))
        brows = self.masks["forehead"] if self.masks is not None else np.arange(len(template))
        corners = lips[[np.argmin(template[lips, 0]), np.argmax(template[lips, 0])]]
        width = np.linalg.norm(vertices[:, corners[0]] - vertices[:, corners[1]], axis=-1)
        rest = np.linalg.norm(template[corners[0]] - template[corners[1]])
        series = {"mouth corners (mm)": (width - rest) * 1000.0,
                  "brows (mm)": (vertices[:, brows, 1] - template[brows, 1]).mean(axis=1) * 1000.0}
        flame = shard.flame(clip_id)
        if "jaw_pose" in flame:
            series = {"jaw (rad)": flame["jaw_pose"][:, 0], **series}
        t = np.arange(len(vertices)) / float(entry["fps"])
        return figures.curves(t, series, shard.array(clip_id, S.AUDIO), S.AUDIO_RATE, clip_id)

    def emotion_separability(self) -> None:
        if not self.labelled:
            self.sections.append(("separability", "Emotion separability", "<p>No labels in this dataset.</p>"))
            return
        if self.masks is None:
            self.sections.append(("separability", "Emotion separability",
                                  "<p>FLAME_masks.pkl was not found (pass --flame-masks): the classifier reads "
                                  "the lips, brows and eye regions.</p>"))
            return
        result = self.separability = dataset_separability(self.ds, self.masks, self.max_clips)
        if result is None:
            self.sections.append(("separability", "Emotion separability",
                                  "<p>Not measurable here: held-out evaluation needs two actors or takes and two "
                                  "emotions.</p>"))
            return
        sampled = len(self.labelled) > self.max_clips
        parts = [f"<p>Nearest-centroid classifier on per-clip statistics of the lips', brows' and eyes' motion, "
                 f"held out by <b>{result.evaluation}</b> ({result.folds} folds, {result.clips} clips"
                 + (f", sampled from {len(self.labelled)}" if sampled else "") + "): "
                 f"<b>accuracy {100 * result.accuracy:.1f} %</b> against chance {100 * result.chance:.1f} % "
                 f"({len(result.emotions)} emotions).</p>",
                 _img(figures.confusion_matrix(result.confusion, result.emotions, "confusion (rows: true)"),
                      "confusion matrix")]
        self.sections.append(("separability", "Emotion separability", "".join(parts)))

    # ------------------------------------------------------------------------------ page
    def html(self, title: str) -> str:
        nav = " · ".join(f'<a href="#{sid}">{html.escape(t)}</a>' for sid, t, _ in self.sections)
        body = "".join(f'<section id="{sid}"><h2>{html.escape(t)}</h2>{content}</section>'
                       for sid, t, content in self.sections)
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }}
h1 {{ font-size: 1.5em; }} h2 {{ border-bottom: 1px solid #ccc; margin-top: 1.6em; }}
table {{ border-collapse: collapse; font-size: 0.85em; }} td, th {{ border: 1px solid #ddd; padding: 2px 6px; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 10px; }} figure {{ margin: 0; }}
figcaption {{ font-size: 0.75em; max-width: 420px; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>{html.escape(title)}</h1><p>{nav}</p>{body}
<p style="font-size:0.75em;color:#777">recon3d report, {stamp}</p>
</body></html>
"""


def write_report(dataset_dir: str | Path, out: str | Path, masks_path: str | Path | None = None,
                 max_clips: int = 400) -> Report:
    """Build every section for the dataset in ``dataset_dir`` and write the page to ``out``."""
    from recon3d.atomic import atomic_path
    from recon3d.shards import open_dataset

    ds = open_dataset(dataset_dir)
    report = Report(ds, load_masks(ds, masks_path), max_clips)
    for section in (report.overview, report.qc, report.emotions, report.motion, report.emotion_separability):
        section()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        tmp.write_text(report.html(f"3D dataset report: {Path(dataset_dir).resolve().name}"))
    ds.close()
    return report


def load_masks(ds, masks_path: str | Path | None) -> dict[str, np.ndarray] | None:
    """FLAME_masks.pkl: given, else beside the FLAME model the dataset was built with (None if neither)."""
    from recon3d.flame.masks import find_masks, load_flame_masks
    from recon3d.flame.model_file import FlameModelError

    model = (ds.manifest.get("build") or {}).get("flame_model")
    try:
        path = find_masks(masks_path, Path(model) if model else None)
    except FlameModelError:
        if masks_path:
            raise
        return None
    first = ds.clips()[0]
    return load_flame_masks(path, len(ds.template(str(first["actor"]), first["shard"])))
