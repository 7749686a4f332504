"""The one error for wrong caller input."""

from __future__ import annotations


class InvalidRequest(ValueError):
    """The caller's input is wrong; `field` names where (e.g. messages[2].role)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")
        self.message = message
