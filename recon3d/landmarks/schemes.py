"""Landmark conventions: which detector ids are eye corners, lip and eyelid pairs, lips; and how
many faces MediaPipe tracks by default."""

from __future__ import annotations

from dataclasses import dataclass

#: Faces MediaPipe tracks per frame by default: one speaker, so that its face detector idles while
#: it tracks (recon3d.landmarks.mediapipe_backend). Videos with several people need 2 or more.
MAX_FACES = 1


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


MEDIAPIPE = LandmarkScheme(
    name="mediapipe", n_points=478, outer_eye_corners=(33, 263),
    lip_pairs=((13, 14), (82, 87), (81, 178), (80, 88), (191, 95), (312, 317), (311, 402), (310, 318), (415, 324)),
    eyelid_pairs=((159, 145), (158, 153), (160, 144), (157, 154), (161, 163),
                  (386, 374), (385, 380), (387, 373), (384, 381), (388, 390)),
    lip_ids=(0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191,
             267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415),
    face_contour=(234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152,
                  377, 400, 378, 379, 365, 397, 288, 361, 323, 454),
)

#: The 68-point (iBUG / FAN) convention.
FAN68 = LandmarkScheme(
    name="fan68", n_points=68, outer_eye_corners=(36, 45),
    lip_pairs=((61, 67), (62, 66), (63, 65)),
    eyelid_pairs=((37, 41), (38, 40), (43, 47), (44, 46)),
    lip_ids=tuple(range(48, 68)),
)
