"""The ``recon3d`` command line."""
