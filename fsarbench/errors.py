"""The one exception type users see: a problem plus the fix, printed by the CLI as two lines."""

from __future__ import annotations


class FsarbenchError(Exception):
    """A user-facing error: ``problem`` says what is wrong, ``fix`` what to do about it.

    The CLI prints both and exits non-zero; library callers can catch it and read the fields.
    """

    def __init__(self, problem: str, fix: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix

    def __reduce__(self):  # a worker process's error reaches the parent whole, fix included
        return (type(self), (self.problem, self.fix))

    def __str__(self) -> str:
        return self.problem if self.fix is None else f"{self.problem}\n  fix: {self.fix}"
