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
        #: the value as the message quotes it (a string in quotes, shortened to 80 characters)
        self.shown = shown if len(shown) <= 80 else shown[:77] + "..."
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}{key}: got {self.shown}; {allowed}")

    def to_dict(self) -> dict:
        """The error as plain JSON types (for the page and ``--json``): ``shown`` is the value
        as ``message`` quotes it, so a page can word the message its own way."""
        return {"key": self.key, "value": str(self.value), "shown": self.shown, "allowed": self.allowed,
                "line": self.line, "message": str(self)}
