"""User-facing errors: one line that says what is wrong, where, and how to fix it.

The CLI catches :class:`InputError` and prints ``where: what (fix)`` with exit status 2, before any
work starts. Library code raises it for anything a user can correct (bad data, bad config).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as the format allows."""

    where: str
    what: str
    fix: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.what}" + (f" ({self.fix})" if self.fix else "")


class InputError(Exception):
    """Bad input from the user. Carries every problem found, one line each."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    @classmethod
    def at(cls, where: str, what: str, fix: str = "") -> InputError:
        return cls(Problem(where, what, fix))
