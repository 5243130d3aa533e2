"""Options and error handling shared by the commands."""

from __future__ import annotations

import functools
import sys
from typing import Callable

import click

from recon3d.errors import Recon3dError
from recon3d.flame.model_file import FLAME_ENV_VAR


def flame_model_option(required: bool = True) -> Callable:
    """``--flame-model PATH`` (or ``$RECON3D_FLAME_MODEL``)."""
    return click.option(
        "--flame-model", "flame_model", envvar=FLAME_ENV_VAR, required=required,
        type=click.Path(dir_okay=False, path_type=str),
        help=f"FLAME model pickle (generic_model.pkl, flame2023*.pkl). Default: ${FLAME_ENV_VAR}. "
             "Landmark embeddings and FLAME_masks.pkl are looked up next to it.",
    )


def friendly_errors(func: Callable) -> Callable:
    """Print a :class:`Recon3dError` (a bad input or setup) as a one-line message and exit with status 2;
    any other exception is a bug and keeps its traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except Recon3dError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)

    return wrapper
