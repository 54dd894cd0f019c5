"""A declared option: its name, type, default, allowed values and help, torch-free.

Architectures declare theirs next to their builder (``@register_model(options=...)``) and transforms theirs in the
table of transforms (:mod:`spectratorch.transforms`); the CLI, the configuration, the search space and the checks
read the declarations, so an option is written once.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spectratorch.errors import ConfigError

__all__ = ["Option", "parse_units", "parse_pairs", "format_value"]


def parse_units(text) -> tuple[int, ...]:
    """Positive integers written ``3_4_6_3`` (or ``3,4,6,3``, or a sequence).

    Example:
        >>> parse_units("3_4_6_3"), parse_units([2, 2])
        ((3, 4, 6, 3), (2, 2))
    """
    if isinstance(text, str):
        units = tuple(int(u) for u in text.replace(",", "_").split("_") if u)
    else:
        units = tuple(int(u) for u in text)
    if not units or min(units) < 1:
        raise ValueError(text)
    return units


def _literal(text):
    return ast.literal_eval(text) if isinstance(text, str) else text


def _boolean(text) -> bool:
    if isinstance(text, bool):
        return text
    key = str(text).strip().lower()
    if key in ("true", "1", "yes", "on"):
        return True
    if key in ("false", "0", "no", "off"):
        return False
    raise ValueError(text)


@dataclass(frozen=True)
class Option:
    """One option of an architecture or a transform.

    Attributes:
        name: the keyword the builder (or the preprocessing layer) takes; the flag is ``--name-with-hyphens``.
        type: ``int``, ``float``, ``bool``, ``str``, ``tuple`` (positive integers ``3_4_6_3``) or ``list`` (a Python
            literal).
        default: the value used when the option is not given.
        help: one line for ``--help``.
        low, high: the allowed range (``None``: open); ``low`` excluded when ``low_open``.
        choices: the allowed values (``None``: any).
    """

    name: str
    type: type
    default: object
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text):
        """The value a command-line word stands for, checked.

        Raises:
            ConfigError: the word is not a value of this option.

        Example:
            >>> Option("width", float, 1.0, "", low=0, low_open=True).parse("0.5")
            0.5
        """
        readers: dict[type, Callable] = {bool: _boolean, tuple: parse_units, list: _literal, int: int, float: float}
        try:
            value = readers.get(self.type, self.type)(text)
        except (TypeError, ValueError, SyntaxError):
            raise ConfigError(f"{self.name} must be {self.expected()}; got {text!r}.") from None
        return self.check(value)

    def check(self, value, where: str | None = None):
        """``value`` if this option allows it (``None`` always: unset).

        Raises:
            ConfigError: naming ``where`` (default: the flag), what is allowed and what was found.
        """
        if value is None:
            return None
        ok = True
        if self.type in (int, float):
            number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            ok = number is not None and not (isinstance(number, float) and math.isnan(number)) and (
                self.type is float or isinstance(number, int) or float(number).is_integer())
            if ok and self.low is not None:
                ok = number > self.low if self.low_open else number >= self.low
            if ok and self.high is not None:
                ok = number <= self.high
        elif self.type is tuple:
            try:
                value = parse_units(value)
            except (TypeError, ValueError):
                ok = False
        if ok and self.choices is not None:
            ok = value in self.choices
        if not ok:
            raise ConfigError(f"{where or self.flag} must be {self.expected()}; got {value!r}.")
        return value

    def expected(self) -> str:
        """What the option allows, in words: ``"a number in (0, 64]"``."""
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        kind = {int: "an integer", float: "a number", bool: "true or false", tuple: "positive integers like 3_4_6_3",
                list: "a Python literal"}.get(self.type, "a string")
        if self.low is None and self.high is None:
            return kind
        if self.high is None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        if self.low is None:
            return f"{kind} <= {self.high:g}"
        return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def format(self, value) -> str:
        """The command-line word for ``value`` (the inverse of :meth:`parse`).

        Example:
            >>> Option("block_units", tuple, (3, 4, 6, 3), "").format((2, 2))
            '2_2'
        """
        return format_value(value)


def format_value(value) -> str:
    """The command-line word for an option's value: ``2_2`` for a tuple of integers, a literal for a list or a
    mapping, else ``str``.

    Example:
        >>> format_value((3, 4)), format_value(0.1), format_value([{"arch": "Linear"}])
        ('3_4', '0.1', "[{'arch': 'Linear'}]")
    """
    if isinstance(value, tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return "_".join(str(v) for v in value)
    if isinstance(value, (list, tuple, dict)):
        return repr(value)
    return str(value)


def parse_pairs(pairs: Sequence[str] | None, flag: str) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` -> ``{key: "VALUE"}`` (``-`` and ``_`` alike in keys; the last of a repeat wins).

    Raises:
        ConfigError: an item without ``=``.

    Example:
        >>> parse_pairs(["depth=3", "n-kernels=4"], "--arch-opt")
        {'depth': '3', 'n_kernels': '4'}
    """
    result = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE like width=0.5; got {pair!r}.")
        result[key.strip().replace("-", "_")] = value.strip()
    return result
