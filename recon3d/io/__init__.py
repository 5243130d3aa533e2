"""Reading inputs: RAVDESS names and labels, video frames and audio, meshes."""
