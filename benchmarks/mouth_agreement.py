"""On real faces, where there is no truth: how far fits from each landmark source sit from each detector.

Each clip (default: the shared RAVDESS and MEAD clips; video-only twins left out) is tracked once
with MediaPipe and dlib's 68-point predictor and fitted three ways, each with its identity from the
clip itself: ``mediapipe`` (MediaPipe's points alone), ``dlib`` (dlib's 51 inner points and its jaw
line), ``both`` (the build's fusion: MediaPipe's points, dlib's 51 inner points and jaw line), and with
the mouth's optical flow (the pixel term, issue 37) ``mediapipe_appearance`` (MediaPipe's points and
the flow, no dlib) and ``all`` (both detectors and the flow). Every fit is then judged by both
detectors, including the one it did not see:

* ``nme``: the mean distance from the detector's points to the fit's reprojection of the same
  points (the embedded point plus its calibrated offset), over the inter-ocular distance, per
  region: ``lips``, ``jaw`` (FLAME's chin and lower jaw line against the detector's face outline,
  along the outline's normal, as the fit measures it) and ``rest`` (the detector's other points).
  The offsets are the calibrated ones of ``landmark_offsets: default``.
* ``motion_gain``: how much of the detector's mouth-width (mouth corners) and mouth-opening
  (inner-lip gap) motion the fit's reprojection of the same points carries: the least-squares
  slope of the fit's on the detector's, each clip's mean removed.
* ``by_yaw``: each fit's lips against MediaPipe's (NME per frame, averaged) per bin of the head's
  |yaw| as the ``mediapipe`` fit sees it (relative to the ray to the camera), and its ratio to the
  ``mediapipe`` fit's: where a second source helps or hurts as the head turns. The turned-head
  clips (``--videos ... ../shared/assets/video/turned``) fill the upper bins.
* ``flow_residual_px``: per clip and fit with the flow, the pixel term's residual (the surface
  samples' mean motion error against the flow, pixels per frame).

    python benchmarks/mouth_agreement.py [--videos DIR ...] [--flame-model PATH] [--work DIR]
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from _common import add_model_option, add_overrides_option, flame_model_path, model_id, parse_overrides, print_json, print_table, REPO

SHARED = REPO.parent / "shared" / "assets"
DEFAULT_VIDEOS = [SHARED / "ravdess" / "video", SHARED / "ravdess" / "extra", SHARED / "video" / "mead"]
FITS = ("mediapipe", "dlib", "both", "mediapipe_appearance", "all")
#: The fits with the mouth flow, and the flow weight they use where the build's default has none.
FLOW_FITS = ("mediapipe_appearance", "all")
FLOW_WEIGHT = 10.0
DETECTORS = ("mediapipe", "dlib")
REGIONS = ("lips", "jaw", "rest")
#: Mouth corners and the middle of the inner lips, per detector (fused ids).
YAW_BINS = (0, 10, 20, 30, 45, 90)
MOUTH = {"mediapipe": {"width": (61, 291), "opening": (13, 14)},
         "dlib": {"width": (478 + 48, 478 + 54), "opening": (478 + 62, 478 + 66)}}


def clips_in(folders: list[Path]) -> list[Path]:
    """The .mp4 files under ``folders``, without RAVDESS video-only twins (``02-...``)."""
    return sorted(p for f in folders for p in sorted(Path(f).rglob("*.mp4")) if not p.name.startswith("02-"))


def tracked(video: Path, work: Path, detector) -> dict:
    """MediaPipe + dlib points of ``video`` (``(T, 546, 2)``) and the mouth flow, cached in ``work``."""
    from recon3d.landmarks import track_video
    from recon3d.landmarks.mouth_flow import MouthFlowTracker
    from recon3d.landmarks.schemes import MEDIAPIPE

    cache = work / f"{video.parent.name}_{video.stem}.npz"
    if not cache.exists() or "mouth_flow" not in np.load(cache).files:
        track = track_video(video, detector, flow=MouthFlowTracker.for_scheme(MEDIAPIPE))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, points=track.points, valid=track.valid, score=track.score, width=track.width,
                 height=track.height, fps=track.fps, **track.mouth_flow.arrays())
    with np.load(cache) as data:
        return {k: data[k] for k in data.files}


def camera_points(result, embedding, offsets, faces) -> np.ndarray:
    """The fit's reprojection ``(T, N, 2)`` of ``embedding``'s points plus their canonical ``offsets``."""
    import torch

    from recon3d.flame.lbs import axis_angle_to_matrix

    canonical = embedding.points(result.vertices.astype(np.float64), faces) + offsets[None]
    rot = axis_angle_to_matrix(torch.as_tensor(result.global_pose, dtype=torch.float64)).numpy()
    cam = np.einsum("tnj,tij->tni", canonical, rot) + result.head_translation[:, None]
    return result.camera.project(torch.as_tensor(cam)).numpy()


def slope(fitted: np.ndarray, detected: np.ndarray) -> float:
    f, d = fitted - fitted.mean(), detected - detected.mean()
    return float((f @ d) / max(d @ d, 1e-30))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=Path, nargs="+", default=DEFAULT_VIDEOS,
                        help="folders of .mp4 clips (searched at any depth)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/recon3d-mouth-agreement"),
                        help="tracked landmarks are kept here and reused")
    add_overrides_option(parser, "of the build's defaults", "dlib_weight=0.5")
    add_model_option(parser)
    args = parser.parse_args()

    import torch

    from recon3d.fitting import FitConfig, FlameFitter, LandmarkSequence
    from recon3d.fitting.landmark_bias import contour_offsets_for, offsets_for
    from recon3d.fitting.objective import outline_residuals, smooth_outline
    from recon3d.fitting.source_trust import view_angles
    from recon3d.flame import load_fan68_embedding, load_flame_model, load_mediapipe_dlib_embedding, load_mediapipe_embedding
    from recon3d.flame.embeddings import DLIB_FITTED
    from recon3d.landmarks import create_detector
    from recon3d.landmarks.mouth_flow import MouthFlow
    from recon3d.landmarks.schemes import DLIB_OFFSET, MEDIAPIPE, MEDIAPIPE_DLIB
    from recon3d.pipeline.config import BuildConfig

    torch.set_num_threads(1)
    model_path = flame_model_path(args.flame_model)
    model = load_flame_model(model_path)
    config = FitConfig.from_dict({**BuildConfig().fitting.to_dict(), **parse_overrides(args.set)})
    flow_config = replace(config, flow_weight=config.flow_weight or FLOW_WEIGHT)
    config = replace(config, flow_weight=0.0)
    fan = load_fan68_embedding(model)
    mp_emb = load_mediapipe_embedding(model)
    dlib_inner = fan.static.subset(DLIB_FITTED, DLIB_OFFSET)  # the points the build fuses
    fused = load_mediapipe_dlib_embedding(model)  # as the build fuses them
    fitters = {"mediapipe": FlameFitter(model, mp_emb, config, MEDIAPIPE),
               "dlib": FlameFitter(model, dlib_inner, replace(config, dlib_weight=1.0), MEDIAPIPE_DLIB),  # the only source
               "both": FlameFitter(model, fused, config, MEDIAPIPE_DLIB),
               "mediapipe_appearance": FlameFitter(model, mp_emb, flow_config, MEDIAPIPE),
               "all": FlameFitter(model, fused, flow_config, MEDIAPIPE_DLIB)}
    judged = {"mediapipe": mp_emb, "dlib": dlib_inner}
    offsets = {d: offsets_for(e, config.landmark_offsets, model) for d, e in judged.items()}
    lips = {d: np.isin(e.source_ids, MEDIAPIPE_DLIB.lip_ids) for d, e in judged.items()}
    rest = {"mediapipe": ~lips["mediapipe"] & (mp_emb.source_ids < 468), "dlib": ~lips["dlib"]}
    outlines = {"mediapipe": MEDIAPIPE.face_contour, "dlib": MEDIAPIPE_DLIB.face_contour}
    jaw = fan.jaw_line()
    jaw_offsets = {"mediapipe": contour_offsets_for(jaw, config.landmark_offsets, model, MEDIAPIPE.outline_calibration),
                   "dlib": contour_offsets_for(jaw, config.landmark_offsets, model, MEDIAPIPE_DLIB.outline_calibration)}
    detector = create_detector("mediapipe", dlib=True)
    videos = clips_in(args.videos)
    if not videos:
        raise SystemExit(f"no .mp4 clips under {', '.join(map(str, args.videos))}")
    work = args.work / model_id(model_path)
    nme = {f: {d: {r: [] for r in REGIONS} for d in DETECTORS} for f in FITS}
    motion = {f: {d: {k: ([], []) for k in ("width", "opening")} for d in DETECTORS} for f in FITS}
    rows = []
    by_frame = {"yaw": [], **{f: [] for f in FITS}}  # per frame: the mediapipe fit's |yaw|, each fit's lips vs MediaPipe
    for video in videos:
        cached = tracked(video, args.work / "landmarks", detector)
        points, valid = cached["points"].astype(np.float64), cached["valid"]
        iod = np.linalg.norm(points[:, 33] - points[:, 263], axis=-1)
        ok = valid & np.isfinite(iod)
        row = {"clip": f"{video.parent.name}/{video.stem}", "frames": int(ok.sum())}
        for fit_name, fitter in fitters.items():
            alone = fit_name in ("mediapipe", "mediapipe_appearance")
            seq_points = points[:, :MEDIAPIPE.n_points] if alone else points
            scheme = MEDIAPIPE if alone else MEDIAPIPE_DLIB
            seq = LandmarkSequence(seq_points, valid, int(cached["width"]), int(cached["height"]), float(cached["fps"]),
                                   cached["score"], scheme, MouthFlow.from_arrays(cached))
            result = fitter.fit(seq)
            if fit_name in FLOW_FITS:
                row[f"{fit_name}_flow_residual_px"] = float(np.nanmean(result.flow_residual_px))
            if fit_name == "mediapipe":
                by_frame["yaw"].append(view_angles(result.global_pose, result.head_translation)[0][ok])
            for det in DETECTORS:
                projected = camera_points(result, judged[det], offsets[det], model.faces)
                err = np.linalg.norm(projected - points[:, judged[det].source_ids], axis=-1) / iod[:, None]
                for region, mask in (("lips", lips[det]), ("rest", rest[det])):
                    nme[fit_name][det][region].append(err[ok][:, mask].mean())
                if det == "mediapipe":
                    by_frame[fit_name].append(err[ok][:, lips[det]].mean(1))
                jaw_px = camera_points(result, jaw, jaw_offsets[det], model.faces)
                curve = smooth_outline(torch.as_tensor(points[:, list(outlines[det])]))
                offset, _, inside = outline_residuals(torch.as_tensor(jaw_px), curve)
                dist = offset.norm(dim=-1).numpy() / iod[:, None]
                inside = inside.numpy() & ok[:, None]
                nme[fit_name][det]["jaw"].append(dist[inside].mean())
                pos = {int(i): k for k, i in enumerate(judged[det].source_ids)}
                for kind, (a, b) in MOUTH[det].items():
                    fitted = np.linalg.norm(projected[:, pos[a]] - projected[:, pos[b]], axis=-1) / iod
                    seen = np.linalg.norm(points[:, a] - points[:, b], axis=-1) / iod
                    motion[fit_name][det][kind][0].append(fitted[ok] - fitted[ok].mean())
                    motion[fit_name][det][kind][1].append(seen[ok] - seen[ok].mean())
            row[f"{fit_name}_lips_vs_dlib"] = float(nme[fit_name]["dlib"]["lips"][-1])
            row[f"{fit_name}_lips_vs_mediapipe"] = float(nme[fit_name]["mediapipe"]["lips"][-1])
        rows.append(row)
        print(f"  {row['clip']}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.endswith(("dlib", "mediapipe"))),
              flush=True)
    out_nme = {f: {d: {r: float(np.mean(v)) for r, v in regions.items()} for d, regions in dets.items()}
               for f, dets in nme.items()}
    out_gain = {f: {d: {k: slope(np.concatenate(fv), np.concatenate(sv)) for k, (fv, sv) in kinds.items()}
                    for d, kinds in dets.items()} for f, dets in motion.items()}
    table = [{"fit": f, "judged by": d, **{f"nme_{r}": out_nme[f][d][r] for r in REGIONS},
              **{f"gain_{k}": out_gain[f][d][k] for k in ("width", "opening")}} for f in FITS for d in DETECTORS]
    print(f"mouth agreement: {len(videos)} clips, model {model_id(model.path)}; NME = mean distance / inter-ocular "
          "distance; gain = fitted / detected motion (slope)")
    print_table(table, ["fit", "judged by"] + [f"nme_{r}" for r in REGIONS] + ["gain_width", "gain_opening"])
    both, alone, flow = out_nme["both"], out_nme["mediapipe"], out_nme["mediapipe_appearance"]
    print(f"fused against MediaPipe alone: lips vs dlib {both['dlib']['lips']:.4f} vs {alone['dlib']['lips']:.4f} "
          f"(goal: closer); lips vs MediaPipe {both['mediapipe']['lips']:.4f} vs {alone['mediapipe']['lips']:.4f} "
          f"(ratio {both['mediapipe']['lips'] / alone['mediapipe']['lips']:.3f}, goal <= 1.10)")
    print(f"MediaPipe with the flow against MediaPipe alone: lips vs dlib {flow['dlib']['lips']:.4f} vs "
          f"{alone['dlib']['lips']:.4f} ({100 * (1 - flow['dlib']['lips'] / alone['dlib']['lips']):.1f} % closer; "
          "goal >= 10 %); gains against dlib, width / opening: "
          f"{out_gain['mediapipe_appearance']['dlib']['width']:.3f} / {out_gain['mediapipe_appearance']['dlib']['opening']:.3f}"
          f" vs {out_gain['mediapipe']['dlib']['width']:.3f} / {out_gain['mediapipe']['dlib']['opening']:.3f} (goal: closer to 1)")
    frames = {k: np.concatenate(v) for k, v in by_frame.items()}
    by_yaw = []
    for lo, hi in zip(YAW_BINS[:-1], YAW_BINS[1:]):
        sel = (frames["yaw"] >= lo) & (frames["yaw"] < hi)
        if sel.any():
            cells = {f"{f}_lips_vs_mediapipe": float(frames[f][sel].mean()) for f in FITS}
            by_yaw.append({"yaw_deg": f"{lo}-{hi}", "frames": int(sel.sum()), **cells,
                           **{f"{f}_ratio": cells[f"{f}_lips_vs_mediapipe"] / cells["mediapipe_lips_vs_mediapipe"]
                              for f in FITS if f != "mediapipe"}})
    print("each fit's lips against MediaPipe's points (NME) by the head's |yaw| (the mediapipe fit's), and its "
          "ratio to the mediapipe fit's:")
    print_table(by_yaw, ["yaw_deg", "frames"] + [f"{f}_lips_vs_mediapipe" for f in FITS]
                + [f"{f}_ratio" for f in FITS if f != "mediapipe"])
    flow_residual = {f: {r["clip"]: r[f"{f}_flow_residual_px"] for r in rows} for f in FLOW_FITS}
    print_json({"clips": len(videos), "nme": out_nme, "motion_gain": out_gain, "by_yaw": by_yaw,
                "flow_residual_px": flow_residual})


if __name__ == "__main__":
    main()
