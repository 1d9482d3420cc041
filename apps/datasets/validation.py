"""Reading typed values out of one imported record, with an error per bad field.

The prompt import (apps.datasets.importing) and the rollout ingest (apps.rollouts.ingest) both read
records from files people made; both name each bad field the same way, "field 'x': ...", and both
count a record with any bad field as one invalid record.
"""

import json
import math

MAX_INT = 2**31 - 1  # the integer columns of the tables records land in


def type_name(value) -> str:
    return "null" if value is None else type(value).__name__


class RecordFields:
    """The fields of one source record; each reader returns a clean value (or a default) and, for a bad
    value, appends "field 'name': what is wrong" to `errors`. `value=` reads a value found elsewhere."""

    def __init__(self, record: dict):
        self.record, self.errors = record, []

    def error(self, name: str, message: str) -> None:
        self.errors.append(f"field '{name}': {message}")

    def text(self, name: str, required: bool = False, limit: int | None = None, value=...) -> str:
        value = self.record.get(name) if value is ... else value
        if value is None or (required and isinstance(value, str) and not value.strip()):
            if required:
                self.error(name, "missing or empty")
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            self.error(name, f"expected text, found {type_name(value)}")
            return ""
        value = str(value)
        if limit is not None and len(value) > limit:
            self.error(name, f"{len(value):,} characters; the limit is {limit:,}")
            return ""
        return value

    def integer(self, name: str, default: int | None = None, value=...) -> int | None:
        value = self.record.get(name) if value is ... else value
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # pandas writes integers as floats next to a missing value
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(name, f"expected a non-negative integer, found {type_name(value)}")
        elif not 0 <= value <= MAX_INT:
            self.error(name, f"{value} is out of range (0 to {MAX_INT})")
        else:
            return value
        return default

    def number(self, name: str, value=..., low: float | None = None, high: float | None = None) -> float | None:
        value = self.record.get(name) if value is ... else value
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.error(name, f"expected a number, found {type_name(value)}")
            return None
        if not math.isfinite(value):
            self.error(name, f"{value} is not a finite number")
            return None
        if (low is not None and value < low) or (high is not None and value > high):
            self.error(name, f"{value} is out of range ({low} to {high})")
            return None
        return float(value)

    def boolean(self, name: str) -> bool | None:
        value = self.record.get(name)
        if value is None or isinstance(value, bool):
            return value
        self.error(name, f"expected true or false, found {type_name(value)}")
        return None

    def choice(self, name: str, choices: list[str], default: str) -> str:
        value = self.record.get(name)
        if value is None:
            return default
        if value not in choices:
            self.error(name, f"{value!r} is not one of {', '.join(choices)}")
            return default
        return value

    def tests(self, name: str) -> list:
        """A code prompt's tests: a list of objects, or the same as JSON text (a CSV cell)."""
        value = self.record.get(name)
        if value is None or value == "":
            return []
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                self.error(name, f"not valid JSON ({exc.msg})")
                return []
        if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
            self.error(name, "expected a list of test objects")
            return []
        return value
