"""Exception types raised for problems a user can fix."""

from __future__ import annotations


class ConfigError(ValueError):
    """One or more problems in a composed config, all reported at once.

    Args:
        problems: One human-readable line per problem, each naming the config key.
    """

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config ({len(self.problems)} problem(s)):\n{lines}")


class DataError(ValueError):
    """A data file or record is malformed; the message names the file and record."""
