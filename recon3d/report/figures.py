"""The report's pictures: matplotlib charts and meshes drawn by the project's rasteriser, as PNG bytes."""

from __future__ import annotations

import io

import numpy as np

from recon3d.render.preview import render_mesh
from recon3d.render.rasterizer import project_pinhole, rasterize
from recon3d.render.shading import interpolate, lambert, vertex_normals


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_of_figure(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def png_of_image(rgb: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 or [0, 1] float image as PNG."""
    import matplotlib.image

    buf = io.BytesIO()
    matplotlib.image.imsave(buf, np.clip(rgb, 0, 255 if rgb.dtype == np.uint8 else 1), format="png")
    return buf.getvalue()


def heat_map(counts: np.ndarray, rows: list[str], cols: list[str], title: str) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * len(cols), 1.0 + 0.28 * len(rows)))
    im = ax.imshow(counts, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    for (i, j), v in np.ndenumerate(counts):
        ax.text(j, i, str(int(v)), ha="center", va="center", fontsize=7,
                color="white" if v > counts.max() / 2 else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return png_of_figure(fig)


def histogram(values: np.ndarray, threshold: float | None, title: str, xlabel: str, upper: bool = True) -> bytes:
    """A histogram with the QC threshold drawn (``upper``: values above it are flagged, else below)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 2.6))
    values = values[np.isfinite(values)]
    # Errors (flagged above a threshold) from zero to past the threshold, however few the clips.
    span = (0.0, 1.1 * max(float(values.max()), threshold)) if upper and threshold and values.size else None
    ax.hist(values, bins=min(40, max(5, len(values) // 3)) if span is None else 40, range=span, color="#4878a8")
    if threshold is not None:
        ax.axvline(threshold, color="#c03030", linestyle="--", label=f"threshold {threshold:g} "
                   f"({'flag above' if upper else 'flag below'})")
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("clips", fontsize=8)
    return png_of_figure(fig)


def bar_chart(labels: list[str], values: list[float], title: str, ylabel: str) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(3.0, 0.35 * len(labels) + 1.5), 2.6))
    ax.bar(range(len(labels)), values, color="#4878a8")
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 12 else 0, fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=8)
    return png_of_figure(fig)


def confusion_matrix(confusion: np.ndarray, names: list[str], title: str) -> bytes:
    rows = [f"{n} ({int(confusion[i].sum())})" for i, n in enumerate(names)]
    return heat_map(confusion, rows, names, title)


def curves(time_s: np.ndarray, series: dict[str, np.ndarray], audio: np.ndarray, audio_rate: int, title: str) -> bytes:
    """Motion curves (one axis each) under the clip's audio waveform."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(series) + 1, 1, figsize=(5.0, 1.1 * (len(series) + 1) + 0.4), sharex=True)
    t_audio = np.arange(len(audio)) / audio_rate
    axes[0].plot(t_audio, audio, color="#777777", linewidth=0.4)
    axes[0].set_ylabel("audio", fontsize=7)
    axes[0].set_title(title, fontsize=9)
    for ax, (name, values) in zip(axes[1:], series.items()):
        ax.plot(time_s, values, color="#2a6f97", linewidth=1.0)
        ax.set_ylabel(name, fontsize=7)
    axes[-1].set_xlabel("time (s)", fontsize=8)
    for ax in axes:
        ax.tick_params(labelsize=6)
    return png_of_figure(fig)


def frontal_camera(vertices: np.ndarray, size: int, fov_deg: float = 20.0):
    """(camera-frame vertices, focal) that frame a canonical head from the front."""
    centre = vertices.mean(axis=0)
    radius = float(np.linalg.norm(vertices - centre, axis=1).max())
    focal = 0.5 * size / np.tan(np.radians(fov_deg) / 2)
    distance = 1.1 * radius * focal / (0.5 * size)
    return vertices.astype(np.float64) - centre + np.array([0.0, 0.0, -distance]), focal


def colour_map_render(vertices: np.ndarray, faces: np.ndarray, values: np.ndarray, vmax: float, size: int = 220,
                      title: str = "") -> np.ndarray:
    """A canonical mesh seen from the front, coloured by per-vertex ``values`` (0..vmax, viridis),
    shaded; ``(size, size, 3)`` float image."""
    import matplotlib

    cam, focal = frontal_camera(vertices, size)
    frags = rasterize(project_pinhole(cam, focal, size / 2, size / 2), faces, size, size)
    colours = matplotlib.colormaps["viridis"](np.clip(values / max(vmax, 1e-12), 0, 1))[:, :3].astype(np.float32)
    shade = lambert(frags, faces, vertex_normals(cam, faces), base_color=(1.0, 1.0, 1.0))
    img = interpolate(frags, faces, colours) * (0.35 + 0.65 * shade)
    img[~frags.mask] = 1.0
    return img


def overlay(background: np.ndarray | None, cam_vertices: np.ndarray, faces: np.ndarray, camera: dict,
            scale: float, alpha: float = 0.6) -> np.ndarray:
    """The fitted mesh blended over a video frame (``background`` RGB uint8 at the video's size),
    rendered at ``scale`` of it."""
    width, height = int(camera["width"]), int(camera["height"])
    w, h = max(2, int(round(width * scale))), max(2, int(round(height * scale)))
    f, cx, cy = camera["focal"] * w / width, camera["cx"] * w / width, camera["cy"] * h / height
    shaded, mask = render_mesh(cam_vertices, faces, f, cx, cy, h, w)
    if background is None:
        base = np.full((h, w, 3), 0.12, np.float32)
    else:
        import cv2

        base = cv2.resize(background, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    out = base.copy()
    out[mask] = alpha * shaded[mask] + (1 - alpha) * base[mask]
    return out
