"""The errors a user can cause, in two kinds; anything else raised is a bug and keeps its traceback.

* :class:`ClipError`: this input is bad (a broken video, a clip without a face). In a build the
  clip fails alone: the reason is recorded in ``failures.jsonl`` and the build goes on.
* :class:`SetupError`: the command cannot work as asked (a missing model file, an unknown
  device, a folder that is not a dataset). It stops the command before any clip is touched,
  records nothing, and the CLI exits with status 2.

The CLI catches :class:`Recon3dError` only and prints its message, which says what was wrong and
what to do.
"""


class Recon3dError(Exception):
    """An input or setup problem with a message meant for the user."""


class ClipError(Recon3dError):
    """One input clip cannot be used; ``stage`` names the build stage that found out."""

    def __init__(self, reason: str, stage: str = ""):
        super().__init__(reason)
        self.stage = stage


class LabelError(ClipError):
    """A file whose name or place is not of the dataset layout being built (e.g. not a RAVDESS name)."""

    def __init__(self, reason: str):
        super().__init__(reason, stage="plan")


class SetupError(Recon3dError):
    """The command cannot work as asked; nothing was done."""
