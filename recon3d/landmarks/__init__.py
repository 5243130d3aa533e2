"""2D face landmark detection on video frames, behind a small backend interface."""

from recon3d.landmarks.base import LandmarkBackendError, LandmarkDetector, LandmarkTrack, create_detector, track_video

__all__ = ["LandmarkBackendError", "LandmarkDetector", "LandmarkTrack", "create_detector", "track_video"]
