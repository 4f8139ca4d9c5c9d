"""The one exception type the CLI turns into a clear error message."""


class PvkitError(Exception):
    """A user-facing error: the message says what was wrong and what to do."""
