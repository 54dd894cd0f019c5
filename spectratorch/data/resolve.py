"""Defaults that follow the data: the target and the channels a run uses when none were given.

On the lab's data (its label columns ``greffon_defaut_severite`` and ``greffon_defaut_type``, its channels
``277 380 425``) the lab's defaults apply: ``--targets OVA OK``, ``--channels 277 380 425``. On any other data the
target is its label column (``AVA <column>``, the rule in :func:`default_targets`) and the channels are every channel
of the data (a plain table's bare-number columns are one channel, ``spectrum``); tabular columns stay off unless
named. numpy/pandas only.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shlex
from datetime import datetime

import pandas as pd

from spectratorch.data.schema import DATE_COLUMN, LAB_DEFAULT_CHANNELS, OOB_COLUMN, SpectralTable
from spectratorch.data.targets import INTENSITY_COLUMN, TYPE_COLUMN
from spectratorch.errors import ConfigError, TargetError

__all__ = ["LAB_DEFAULT_TARGETS", "label_candidates", "default_targets", "resolve_data_defaults"]

_logger = logging.getLogger(__name__)

LAB_DEFAULT_TARGETS = ("OVA", "OK")
# reason: the lab's bookkeeping columns are never a label.
_NOT_LABELS = frozenset({OOB_COLUMN, DATE_COLUMN})
# reason: the names scikit-learn's datasets, R's and most chemometrics exports give the class column.
_LABEL_NAMES = frozenset({"label", "labels", "class", "classes", "target", "y", "category"})
# reason: the dates instruments and spreadsheets write (ISO, European with dots or slashes, US); a time after the
# date is cut off first by _TIME_PART, so each format is tried once.
_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%d-%m-%Y",
                 # with the month's name, as Excel and some instruments write it (01-Jan-2024, 1 Jan 2024, Jan 1, 2024)
                 "%d-%b-%Y", "%d-%b-%y", "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y")
_TIME_PART = re.compile(r"[ T]\d{1,2}:\d{2}(:\d{2}(\.\d*)?)?\s*(Z|[+-]\d{2}:?\d{2})?$")
# reason: a date column is dates throughout; its first thousand values say so as well as 300k would, at no cost.
_DATE_SAMPLE = 1000


def _listed(columns: list[str], but: str) -> str:
    return ", ".join(repr(c) for c in columns if c != but)


def _is_date(value: str) -> bool:
    day = _TIME_PART.sub("", value.strip())
    for fmt in _DATE_FORMATS:
        try:
            datetime.strptime(day, fmt)
            return True
        except ValueError:
            continue
    return False


def _holds_dates(column: pd.Series) -> bool:
    """Whether ``column`` is dates: a datetime dtype, or text of which most non-empty values parse as dates."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return True
    if pd.api.types.is_numeric_dtype(column):
        return False
    values = column.dropna().iloc[:_DATE_SAMPLE].astype(str)
    values = values[values.str.strip() != ""]
    if values.empty:
        return False
    dates = {v for v in values.unique() if _is_date(v)}
    return values.isin(dates).mean() > 0.5


def _named_as_labels(meta: pd.DataFrame, candidates: list[str], text: list[str]) -> list[str]:
    """The candidates named as labels (``label``, ``class``, ...) whose values repeat; numeric ones must be whole."""
    named = []
    for c in candidates:
        values = meta[c].dropna()
        if c.strip().lower() not in _LABEL_NAMES or values.nunique() >= len(meta):
            continue
        # reason: class codes are whole numbers (1, 2, 3); a measured value named `y` is a quantity, not a label.
        if c in text or pd.api.types.is_integer_dtype(values) or bool((values % 1 == 0).all()):
            named.append(c)
    # reason: a text label beside its numeric codes (`label` and `class`, as scikit-learn's datasets ship them) is
    # the same label; the text one reads better in reports.
    return [c for c in named if c in text] if len(named) > 1 and any(c in text for c in named) else named


def _names_rows(column: pd.Series) -> bool:
    """A value of its own in every row: sample names, running numbers or times name rows, not classes."""
    return column.nunique(dropna=True) >= len(column)


def _whole(column: pd.Series) -> bool:
    """Whole numbers throughout (class codes), not measured values."""
    values = column.dropna()
    return pd.api.types.is_numeric_dtype(values) and bool((values % 1 == 0).all())


def label_candidates(meta: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The columns that could be the label: ``(text columns, every candidate)``.

    Candidates are the non-spectral, non-tabular columns that hold a value (an empty column, such as a trailing
    delimiter's, holds nothing to learn) and are neither dates nor the lab's bookkeeping columns;
    text columns are the candidates whose values are not numbers. A column is dates when its dtype is a datetime
    or most of its non-empty values read as a date (``2024-01-31``, ``31.01.2024``, ``31/01/2024``,
    ``01/31/2024``, ``31-Jan-2024``, ``31 Jan 2024``, ``Jan 31, 2024``, with or without a time after it).

    Example:
        >>> meta = pd.DataFrame({"label": ["a", "b"], "batch": [1, 2], "when": pd.to_datetime(["2024", "2025"]),
        ...                      "Date": ["01.01.2024", "02.01.2024"], "day": ["01-Jan-2024", "02-Jan-2024"],
        ...                      "empty": [None, None]})
        >>> label_candidates(meta)
        (['label'], ['label', 'batch'])
    """
    candidates = [c for c in meta.columns
                  if str(c) not in _NOT_LABELS and meta[c].notna().any() and not _holds_dates(meta[c])]
    text = [c for c in candidates
            if not pd.api.types.is_numeric_dtype(meta[c]) or pd.api.types.is_bool_dtype(meta[c])]
    return [str(c) for c in text], [str(c) for c in candidates]


def default_targets(meta: pd.DataFrame) -> tuple[tuple[str, ...], str]:
    """The target of data that names none, and why.

    The rule, first match wins (dates and the lab's bookkeeping columns are never candidates, see
    :func:`label_candidates`):

    1. the lab's label columns: ``("OVA", "OK")``;
    2. the one column named as labels (``label``, ``class``, ``target``, ``y``, ``category``, any case, plurals too)
       whose values repeat, text or whole numbers (class codes ``1 2 3``), whatever other columns there are;
    3. the one text column whose values repeat (unless, none named as labels, a column of class codes stands beside
       it: 2 to 50 whole numbers, each on 2 rows or more on average; then the user is asked), or the one candidate
       when no column is text;
    4. of several text columns, the one whose values repeat (a value of its own in every row names rows);
    5. the one candidate whose values repeat and are text or whole numbers (class codes ``1 2 3``), when the others
       name rows (sample names, running numbers) or hold measurements (``21.7``).

    Returns:
        ``(code, reason)``: ``("OVA", "OK")`` on the lab's data, else ``("AVA", <column>)``; ``reason`` is said on
        the console.

    Raises:
        TargetError: no candidate, or several that the rule cannot tell apart; the message lists them and says how
            to choose.

    Example:
        >>> default_targets(pd.DataFrame({"label": ["a", "b", "a"], "batch": [1, 2, 3]}))
        (('AVA', 'label'), 'the one text column')
        >>> code, reason = default_targets(pd.DataFrame({"Sample name": ["s1", "s2", "s3"], "No.": [1, 2, 3],
        ...                                               "Grade": [1, 2, 1], "Temp": [21.7, 22.3, 21.7]}))
        >>> print(code, reason)
        ('AVA', 'Grade') the one column whose values repeat as classes do; 'Sample name', 'No.' name rows,
        'Temp' holds measurements
        >>> default_targets(pd.DataFrame({"Operator": ["Anna", "Bob", "Bob"], "Class": [1, 2, 1]}))
        (('AVA', 'Class'), "the column named 'Class'; the others: 'Operator'")
    """
    if INTENSITY_COLUMN in meta.columns and TYPE_COLUMN in meta.columns:
        return LAB_DEFAULT_TARGETS, "the lab's label columns"
    text, candidates = label_candidates(meta)
    if not candidates:
        raise TargetError("the data has no label column (every column is spectral); add a column of class labels, "
                          "e.g. 'label'.")
    named = _named_as_labels(meta, candidates, text)
    if len(text) == 1 and named in ([], text) and not _names_rows(meta[text[0]]):
        # reason: class codes (1 2 3 in a column `variety`) beside one text column that no name marks as the label
        # (`operator`): either may hold the classes, and taking the text one modelled the operator, at chance.
        codes = [c for c in candidates if c not in text and _class_codes(meta[c])] if not named else []
        if not codes:
            return ("AVA", text[0]), "the one text column"
        _ask(meta, [text[0], *codes], "label")
    if len(candidates) == 1:
        return ("AVA", candidates[0]), "the one column that is not spectral"
    if len(named) == 1:
        if named[0] in text:
            return ("AVA", named[0]), f"the text column named {named[0]!r}; the others: {_listed(text, named[0])}"
        # reason: class codes (1, 2, 3) beside measurements or text columns (operator, batch); the name says which
        # is the label, and a text column beside it is no more a label for being text.
        others = "the other numeric ones" if not text else "the others"
        return ("AVA", named[0]), f"the column named {named[0]!r}; {others}: {_listed(candidates, named[0])}"
    # reason: a text column whose every value differs (sample names, times of measurement) names rows, not classes.
    repeating = [c for c in text if meta[c].nunique(dropna=True) < len(meta)]
    if len(text) > 1 and len(repeating) == 1:
        return ("AVA", repeating[0]), (f"the one text column whose values repeat; in {_listed(text, repeating[0])} "
                                       "every row has a value of its own")
    classes = [c for c in candidates if not _names_rows(meta[c]) and (c in text or _whole(meta[c]))]
    if len(classes) == 1 and not repeating:
        rows = [c for c in candidates if _names_rows(meta[c])]
        measured = [c for c in candidates if c not in classes and c not in rows]
        why = [f"{_listed(rows, '')} name rows"] if rows else []
        why += [f"{_listed(measured, '')} hold{'s' * (len(measured) == 1)} measurements"] if measured else []
        return ("AVA", classes[0]), "the one column whose values repeat as classes do; " + ", ".join(why)
    several = (named or ([*repeating, *(c for c in text if c not in repeating)] if repeating else classes) or text
               or candidates)
    _ask(meta, several, "text" if set(several) <= set(text) else "label")


def _class_codes(column: pd.Series) -> bool:
    """Whole numbers that repeat as classes do: 2 to 50 values, each on 2 rows or more on average (``1 2 3``, not a
    running number or a measurement)."""
    values = column.dropna()
    return _whole(column) and 2 <= values.nunique() <= min(50, len(values) / 2)


def _ask(meta: pd.DataFrame, several: list[str], kind: str) -> None:
    """Refuse to guess among ``several`` columns: one line listing them, their values and the flag that chooses."""
    choices = " or ".join(f"`--targets AVA {c}`" for c in several[:3]) + (" or ..." if len(several) > 3 else "")
    raise TargetError(f"the data has {len(several)} {kind} columns {several} ({_values(meta, several)}); say which "
                      f"one holds the classes: {choices} (targets=['AVA', {several[0]!r}] in Python).")


def _values(meta: pd.DataFrame, columns: list[str], examples: int = 2) -> str:
    """What each column holds, so that the label can be told from the others.

    >>> _values(pd.DataFrame({"variety": ["rye", "oat", "rye"], "n": [1, 2, 3]}), ["variety", "n"])
    "'variety': 2 values, 'oat', 'rye'; 'n': 3 values, 1, 2, ..."
    """
    def described(column):
        values = sorted(meta[column].dropna().unique().tolist(), key=str)
        more = ", ..." if len(values) > examples else ""
        return f"{column!r}: {len(values)} values, " + ", ".join(repr(v) for v in values[:examples]) + more

    return "; ".join(described(c) for c in columns)


def _default_or_none(meta: pd.DataFrame) -> tuple[str, ...] | None:
    try:
        return default_targets(meta)[0]
    except TargetError:
        return None


def resolve_data_defaults(config, table: SpectralTable):
    """``config`` (a :class:`~spectratorch.config.DataConfig`) with its unset target and channels taken from the data.

    ``table`` must have been loaded with ``channels="default"`` when ``config.channels`` is ``None`` (what
    :class:`~spectratorch.data.datamodule.SpectralDataModule` does). What was chosen for data other than the lab's
    is logged on one line.

    Raises:
        TargetError: see :func:`default_targets`.
    """
    changes, said = {}, []
    # reason: the --groups column names samples, not classes: never the label, never a feature to suggest.
    meta = table.meta.drop(columns=[config.groups], errors="ignore") if config.groups else table.meta
    if config.groups and config.groups in (config.targets or ()):
        raise ConfigError(f"--groups {config.groups!r} is the label column; --groups names the column of each row's "
                          "sample (replicate scans share a value).")
    if config.targets is None:
        if config.groups in table.meta.columns and _default_or_none(table.meta) == ("AVA", config.groups):
            raise ConfigError(f"--groups {config.groups!r} is the column that holds the labels; --groups names the "
                              "column of each row's sample (replicate scans share a value).")
        code, reason = default_targets(meta)
        changes["targets"] = code
        if code != LAB_DEFAULT_TARGETS:
            said.append(f"target {' '.join(code)} ({reason})")
    if config.channels is None:
        changes["channels"] = tuple(table.channels)
        if changes["channels"] != LAB_DEFAULT_CHANNELS:
            said.append(f"channels {' '.join(table.channels)} (every channel of the data)")
    if said:
        tabular = ", ".join(table.tabular_columns) if table.tabular_columns else "none"
        text, candidates = label_candidates(meta)
        target = (changes.get("targets") or config.targets)[-1]
        # reason: a column named as labels (a second `class`, a measured `y`) is an answer, never a feature to suggest.
        unused = [c for c in candidates if c not in text and c != target and c.strip().lower() not in _LABEL_NAMES]
        if unused and not table.tabular_columns and target in candidates:
            # reason: a numeric column may be a feature the user wants, or the reference value the classes come
            # from (a leak): it is never used unasked, but the user learns that it is there.
            shown = ", ".join(repr(c) for c in unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
            tabular += (f" (numeric columns not used: {shown}; --tabular {shlex.quote(unused[0])} would add one as a "
                        "feature)")
        _logger.info("defaults from the data: %s; tabular columns: %s", "; ".join(said), tabular)
    return dataclasses.replace(config, **changes) if changes else config
