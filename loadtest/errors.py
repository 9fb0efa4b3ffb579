"""Errors a user can fix. The CLI prints them as one line (`error: ...`) and exits with code 2."""


class LoadTestError(Exception):
    """Bad input, or a target that cannot be measured; the message says what to change."""


class TargetError(LoadTestError):
    """The server is unreachable, or does not serve what was asked for (unknown variant, no /v1/models)."""
