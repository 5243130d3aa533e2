"""The base of errors caused by inputs or setup (their message says what to do)."""


class Recon3dError(Exception):
    """An input or setup problem with a message meant for the user; the CLI prints it and exits 2."""
