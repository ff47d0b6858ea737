"""The one error type raised for bad input anywhere in the package."""

from __future__ import annotations


class ScenarioError(ValueError):
    """Bad input: names the key, the value given and what is allowed.

    ``str(err)`` is a complete sentence fit to show a user, for example
    ``"arrival_rate: got -1; must be a number > 0 (new conversations per second)"``.
    """

    def __init__(self, key: str, value: object, allowed: str, *, line: int | None = None):
        self.key = key
        self.value = value
        self.allowed = allowed
        self.line = line
        shown = repr(value) if isinstance(value, str) else str(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{key}: got {shown}; {allowed}")

    def to_dict(self) -> dict:
        """The error as plain JSON types (for the page and ``--json``)."""
        return {"key": self.key, "value": str(self.value), "allowed": self.allowed,
                "line": self.line, "message": str(self)}
