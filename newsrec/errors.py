"""Exception types raised by newsrec.

Every problem with a user's input file is reported as :class:`DataFormatError` (a
:class:`ValueError` subclass) whose message names the file, the 1-based line and the problem.
"""

from __future__ import annotations

import os

__all__ = ["DataFormatError", "MissingNewsError"]


class DataFormatError(ValueError):
    """A data file is malformed.

    Attributes:
        path: the file that holds the problem.
        line: the 1-based line number, or ``None`` when the problem is not tied to one line.
        problem: what is wrong, in words.
    """

    def __init__(self, path: str | os.PathLike, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # keep the error picklable across DataLoader workers
        return (type(self), (self.path, self.line, self.problem))


class MissingNewsError(DataFormatError):
    """A behaviors file refers to news ids that no news file defines."""
