"""The one error type a stage turns into a one-line reason and a non-zero exit."""


class TumorScreenError(Exception):
    """Bad input or configuration; the message is the one-line reason shown to the user."""
