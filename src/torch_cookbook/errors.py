"""Errors a user can cause. The CLI prints them as one line and exits with the given code."""


class CookbookError(Exception):
    """A user mistake or an environment problem with a clear fix: printed as one line, exit code 2."""

    exit_code = 2


class ConfigError(CookbookError):
    """A config value is of the wrong type, out of range, or unknown."""


class CheckpointError(CookbookError):
    """A checkpoint is missing, corrupt, unsafe, from another recipe, or cannot be written."""


class DataError(CookbookError):
    """A dataset is missing, truncated, or fails its checksum."""


class NonFiniteError(CookbookError):
    """Training produced a NaN or inf loss; the last good checkpoint is kept."""

    exit_code = 1


class Interrupted(CookbookError):
    """The user pressed Ctrl-C; a checkpoint was saved and the run can be resumed."""

    exit_code = 130
