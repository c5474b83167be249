"""Errors and problem collection.

Every complaint about a user's data names the file and the problem, so a user can fix it without a
debugger. Readers and validators collect problems into an :class:`IssueLog` instead of stopping at the
first one, so ``weakseg doctor`` can list everything that is wrong in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

#: Exit code used by the CLI for every data / usage problem.
EXIT_DATA_ERROR = 2
#: Exit code of a job that finished but left some inputs out (invalid or failed images, all listed).
EXIT_PARTIAL = 3
#: Exit code of a run stopped by Ctrl-C (128 + SIGINT, what shells report).
EXIT_INTERRUPTED = 130


class WeaksegError(Exception):
    """Base class for errors that the CLI turns into a clean message and exit code 2."""


class Interrupted(WeaksegError):
    """A long job stopped by Ctrl-C; the message says how to continue it (the CLI exits 130)."""


class DataError(WeaksegError):
    """A problem with one input file (or with the dataset as a whole)."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class DataErrors(DataError):
    """Several data problems at once (raised by :meth:`IssueLog.raise_errors`)."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        lines = [i.text() for i in issues]
        head = f"{len(issues)} problems in the data:" if len(issues) > 1 else ""
        super().__init__(None, "\n".join([head, *lines]).strip())


Level = Literal["error", "warning"]


@dataclass(frozen=True)
class Issue:
    """One problem: the file it concerns, what is wrong, and how bad it is."""

    path: str | None
    problem: str
    level: Level = "error"

    def __str__(self) -> str:
        return f"{self.level}: {self.text()}"

    def text(self) -> str:
        """The file and the problem, without the level."""
        return f"{self.path}: {self.problem}" if self.path else self.problem

    def as_dict(self) -> dict[str, str | None]:
        return {"level": self.level, "path": self.path, "problem": self.problem}


@dataclass
class IssueLog:
    """Collects problems so that all of them can be reported at once."""

    issues: list[Issue] = field(default_factory=list)

    def error(self, path: str | Path | None, problem: str) -> None:
        self.issues.append(Issue(None if path is None else str(path), problem, "error"))

    def warning(self, path: str | Path | None, problem: str) -> None:
        self.issues.append(Issue(None if path is None else str(path), problem, "warning"))

    def add(self, exc: DataError) -> None:
        self.issues.append(Issue(exc.path, exc.problem, "error"))

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.level == "warning"]

    def __iter__(self) -> Iterator[Issue]:
        return iter(self.issues)

    def __len__(self) -> int:
        return len(self.issues)

    def raise_errors(self) -> None:
        """Raise one exception listing every error, if there is any."""
        errors = self.errors
        if len(errors) == 1:
            raise DataError(errors[0].path, errors[0].problem)
        if errors:
            raise DataErrors(errors)
