"""Errors a user can fix. The CLI prints them as one line and exits non-zero, never with a traceback."""


class PruneJobError(Exception):
    """Bad input or an unusable model/data source; the message says what to change."""


class ModelSourceError(PruneJobError):
    """`--model` does not name something loadable as a causal LM."""
