"""The one error type for bad input data."""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad input data. The message reads ``"FILE, line N: PROBLEM"`` (``", line N"`` only when
    the problem sits on one line; 1-based, a header is line 1; for Parquet files and DataFrames
    N is the 1-based row number).

    Attributes
    ----------
    path : str or None
        The file (or ``"<DataFrame>"``) that holds the problem.
    line : int or None
        1-based line number in that file, when the problem sits on one line.
    problem : str
        What is wrong, in words.
    """

    def __init__(self, path: str | Path | None, problem: str, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = None if line is None else int(line)
        self.problem = problem
        where = self.path or "<input>"
        if self.line is not None:
            where = f"{where}, line {self.line}"
        super().__init__(f"{where}: {problem}")

    def __reduce__(self):  # keep (path, problem, line) through pickling (worker processes)
        return type(self), (self.path, self.problem, self.line)
