"""What the argparse entry points share: a mistyped command line is one ``error:`` line.

argparse prints its usage block and ``prog: error: ...``; our other errors are one line
``error: <message>`` (``recsys.errors``). ``ArgumentParser`` makes the two look alike.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import NoReturn

from recsys.errors import RecsysError, print_error


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose errors are one line on stderr, exit status 2:
    ``error: <message> (see <prog> --help)``. Its help keeps the module docstring's layout."""

    def __init__(self, prog: str, description: str | None = None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(prog=prog, description=description, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Print ``error: message (see prog --help)`` and exit with status 2."""
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number of at least 1 (``-k 10``, ``--ks 10 5 20``).

    Parameters
    ----------
    text
        The argument as typed.

    Returns
    -------
    int
        The number.

    Raises
    ------
    argparse.ArgumentTypeError
        If ``text`` is not a whole number >= 1 (argparse turns it into the parser's error).
    """
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def probability(text: str) -> float:
    """An argparse ``type``: a number strictly between 0 and 1 (a significance level)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def split_seed(text: str) -> int:
    """An argparse ``type``: a split or model seed, a whole number from 0 to 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to 2**32 - 1, got {text!r}")
    return value


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """A script's mistakes a user can fix (``RecsysError``) as ``error:`` lines and exit status
    1, not a traceback: ``with one_line_errors(): main()``."""
    try:
        yield
    except RecsysError as error:
        print_error(error)
        sys.exit(1)
