"""Torch devices named by the user (``--device``), checked against this torch build and machine."""

from __future__ import annotations

import torch

from recon3d.errors import SetupError


def torch_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a :class:`SetupError` when this machine cannot run it."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise SetupError(f"--device {name}: not a torch device ({exc}); use cpu or cuda") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            reason = ("this torch build has no CUDA support" if torch.version.cuda is None
                      else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)")
            raise SetupError(f"--device {name}: {reason}; rerun with --device cpu (the default)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SetupError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif device.type != "cpu":
        raise SetupError(f"--device {name}: only cpu and cuda are supported")
    return device
