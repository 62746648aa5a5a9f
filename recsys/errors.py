"""The one exception type for mistakes a user can make (and fix)."""


class RecsysError(Exception):
    """A problem the user can fix; its message names the problem and the fix on one line.

    The command-line entry points print the message instead of a traceback.
    """


class ConfigError(RecsysError, ValueError):
    """A configuration value is invalid (unknown name, out-of-range hyperparameter, ...)."""


class DataError(RecsysError):
    """The dataset is missing, corrupt, or could not be obtained."""
