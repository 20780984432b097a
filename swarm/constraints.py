"""Label constraints of a job, like Kubernetes label selectors.

A job lists constraints as strings; each must hold on a node's labels for it to bid:

    key=value        the label is present and equal (``==`` works too)
    key!=value       the label is absent or different
    key in (a,b)     the label is present and one of the values
    key notin (a,b)  the label is absent or none of the values
    key              the label is present (any value)
    !key             the label is absent

Parsing happens at submit time, so a typo is a ``ConfigError`` before anything is
announced. Pure: no I/O.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from swarm.errors import ConfigError

_KEY = r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,127}"
_VALUE = r"[A-Za-z0-9_.\-/:]{0,256}"
_SET = re.compile(rf"({_KEY})\s+(in|notin)\s*\(\s*([^()]*?)\s*\)")
_EQUALS = re.compile(rf"({_KEY})\s*(==|=|!=)\s*({_VALUE})")
_EXISTS = re.compile(rf"(!?)\s*({_KEY})")
_VALUE_ONLY = re.compile(rf"{_VALUE}")
_EXAMPLES = "zone=eu, zone!=us, zone in (eu,us), zone notin (ap), gpu, !spot"


class Operator(enum.StrEnum):
    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    NOT_EXISTS = "!"


@dataclass(frozen=True)
class Constraint:
    """One parsed constraint; ``values`` holds one value for = and !=, none for (!)key."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a node with these labels satisfies the constraint."""
        return self.mismatch(labels) is None

    def mismatch(self, labels: Mapping[str, str]) -> str | None:
        """None when satisfied, else why not, in words a user reads in a decline."""
        value = labels.get(self.key)
        have = f"label {self.key}={value}" if value is not None else f"label {self.key}"
        match self.operator:
            case Operator.EQUALS:
                if value is None:
                    return f"label {self.key} is missing (needs {self})"
                if value != self.values[0]:
                    return f"label {self.key}={value} does not match {self}"
            case Operator.NOT_EQUALS:
                if value == self.values[0]:
                    return f"{have} is excluded by {self}"
            case Operator.IN:
                if value is None:
                    return f"label {self.key} is missing (needs {self})"
                if value not in self.values:
                    return f"{have} is not one of ({', '.join(self.values)})"
            case Operator.NOT_IN:
                if value in self.values:
                    return f"{have} is excluded by {self}"
            case Operator.EXISTS:
                if value is None:
                    return f"label {self.key} is missing"
            case Operator.NOT_EXISTS:
                if value is not None:
                    return f"{have} is present (constraint {self})"
        return None

    def __str__(self) -> str:
        match self.operator:
            case Operator.EQUALS | Operator.NOT_EQUALS:
                return f"{self.key}{self.operator}{self.values[0]}"
            case Operator.IN | Operator.NOT_IN:
                return f"{self.key} {self.operator} ({','.join(self.values)})"
            case Operator.EXISTS:
                return self.key
            case _:
                return f"!{self.key}"


def parse_constraint(text: str) -> Constraint:
    """'zone in (eu, us)' → Constraint('zone', IN, ('eu', 'us')), or a ConfigError."""
    if not isinstance(text, str):
        raise ConfigError(f"constraint {text!r} must be a string, like zone=eu")
    stripped = text.strip()
    if match := _SET.fullmatch(stripped):
        key, word, inside = match.groups()
        values = tuple(part.strip() for part in inside.split(","))
        if not inside or any(not v or not _VALUE_ONLY.fullmatch(v) for v in values):
            raise ConfigError(
                f"constraint {text!r}: list the values like {key} {word} (a,b), "
                "letters, digits and _ . - / : only"
            )
        return Constraint(key, Operator(word), values)
    if match := _EQUALS.fullmatch(stripped):
        key, operator, value = match.groups()
        return Constraint(
            key, Operator.NOT_EQUALS if operator == "!=" else Operator.EQUALS, (value,)
        )
    if match := _EXISTS.fullmatch(stripped):
        bang, key = match.groups()
        return Constraint(key, Operator.NOT_EXISTS if bang else Operator.EXISTS)
    raise ConfigError(f"constraint {text!r} is not understood: write one like {_EXAMPLES}")


def first_mismatch(constraints: tuple[Constraint, ...], labels: Mapping[str, str]) -> str | None:
    """The reason the first unsatisfied constraint gives, or None when all hold."""
    for constraint in constraints:
        if (reason := constraint.mismatch(labels)) is not None:
            return reason
    return None
