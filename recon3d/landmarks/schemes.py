"""Landmark conventions: which detector ids are eye corners, lip and eyelid pairs, lips (MediaPipe's,
the 68-point convention, and both sources fused); how many faces MediaPipe tracks by default, and
the ``landmarks.dlib`` choices."""

from __future__ import annotations

from dataclasses import dataclass

#: Faces MediaPipe tracks per frame by default: one speaker, so that its face detector idles while
#: it tracks (recon3d.landmarks.mediapipe_backend). Videos with several people need 2 or more.
MAX_FACES = 1
#: ``landmarks.dlib`` values: auto (dlib's 68 points beside MediaPipe's where dlib is installed),
#: on (required), off.
DLIB_CHOICES = ("auto", "on", "off")


@dataclass(frozen=True)
class LandmarkScheme:
    name: str
    n_points: int
    outer_eye_corners: tuple[int, int]  # for the inter-ocular distance (IOD)
    lip_pairs: tuple[tuple[int, int], ...]  # inner lips, (upper, lower)
    eyelid_pairs: tuple[tuple[int, int], ...]  # (upper lid, lower lid)
    lip_ids: tuple[int, ...]  # all lip points
    # The lower face outline (jaw line and chin) in order from the subject's right to left; fitted
    # as a curve, not point to point (empty: the scheme has none).
    face_contour: tuple[int, ...] = ()
    # The face outline's keys in a landmark-offsets calibration file (``<key>_offsets``,
    # ``<key>_residual_iod``; recon3d.fitting.landmark_bias); empty: the scheme's points are not
    # MediaPipe's and have no calibration.
    outline_calibration: str = ""


MEDIAPIPE = LandmarkScheme(
    name="mediapipe", n_points=478, outer_eye_corners=(33, 263),
    lip_pairs=((13, 14), (82, 87), (81, 178), (80, 88), (191, 95), (312, 317), (311, 402), (310, 318), (415, 324)),
    eyelid_pairs=((159, 145), (158, 153), (160, 144), (157, 154), (161, 163),
                  (386, 374), (385, 380), (387, 373), (384, 381), (388, 390)),
    lip_ids=(0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
             267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415),
    face_contour=(234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
                  377, 400, 378, 379, 365, 397, 288, 361, 323, 454),
    outline_calibration="contour",
)

#: The 68-point (iBUG / FAN) convention.
FAN68 = LandmarkScheme(
    name="fan68", n_points=68, outer_eye_corners=(36, 45),
    lip_pairs=((61, 67), (62, 66), (63, 65)),
    eyelid_pairs=((37, 41), (38, 40), (43, 47), (44, 46)),
    lip_ids=tuple(range(48, 68)),
)

#: MediaPipe's 478 points followed by dlib's 68 (the 68-point convention, ids shifted by this).
DLIB_OFFSET = MEDIAPIPE.n_points


def _dlib(ids) -> tuple[int, ...]:
    return tuple(DLIB_OFFSET + i for i in ids)


#: MediaPipe's points, then dlib's 68 (recon3d.landmarks.dlib_backend). Eye corners and eyelid pairs
#: are MediaPipe's, the lips both sources'; the face outline is dlib's 17-point jaw line, which sits
#: on the visible jaw edge (MediaPipe's face oval runs inside it).
MEDIAPIPE_DLIB = LandmarkScheme(
    name="mediapipe+dlib", n_points=DLIB_OFFSET + 68, outer_eye_corners=MEDIAPIPE.outer_eye_corners,
    lip_pairs=MEDIAPIPE.lip_pairs + tuple((DLIB_OFFSET + a, DLIB_OFFSET + b) for a, b in FAN68.lip_pairs),
    eyelid_pairs=MEDIAPIPE.eyelid_pairs,
    lip_ids=MEDIAPIPE.lip_ids + _dlib(FAN68.lip_ids),
    face_contour=_dlib(range(17)),
    outline_calibration="dlib_contour",
)
