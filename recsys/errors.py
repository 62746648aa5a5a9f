"""The one exception type for mistakes a user can make (and fix), and how a CLI prints it."""

import sys


class RecsysError(Exception):
    """A problem the user can fix; its message names the problem and the fix on one line.

    The command-line entry points print the message instead of a traceback.
    """


class ConfigError(RecsysError, ValueError):
    """A configuration value is invalid (unknown name, out-of-range hyperparameter, ...)."""


class NotFoundError(RecsysError):
    """A user or a movie the data does not have; ``suggestions``: what the user may have meant
    or may do instead (close titles, the range of ids), each a short phrase."""

    def __init__(self, message: str, suggestions: list[str] | tuple[str, ...] = ()):
        super().__init__(message)
        self.suggestions = list(suggestions)


class DataError(RecsysError):
    """The dataset is missing, corrupt, or could not be obtained."""


class TrackingError(RecsysError):
    """The MLflow store cannot be reached, written, or failed while a run was logged."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """The first line of another library's exception, for one of ours: at most ``limit``
    characters, cut after the last whole sentence that fits (MLflow's and SQLAlchemy's texts
    run on); the exception's type where it says nothing."""
    line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if len(line) > limit:
        line = line[: line.rfind(". ", 0, limit) + 1 or limit]
    return line


def print_error(error: BaseException) -> None:
    """One ``error: ...`` line on stderr per line of the message (a config check reports each
    problem on its own line)."""
    for line in str(error).splitlines() or [type(error).__name__]:
        print(f"error: {line}", file=sys.stderr)
