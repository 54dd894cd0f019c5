"""Targets: a code such as ``AVA IN`` or ``OVA OK`` turned into integer classes and their labels.

A target is ``(mode, code)``:

- ``AVA IN``: intensity (OK, VR, NC, CROCHET); ``AVA INs``: ``OK - CROCHET`` against ``VR - NC``;
  ``AVA TY``: type code; ``AVA TYs``: type without its sub-type digit (11 -> 1); ``AVA INTY``: intensity+type
  (``VR11``; OK and CROCHET, of type 0, stay ``OK`` and ``CROCHET``); ``AVA INsTYs``: simplified types with OK and
  CROCHET as classes of their own; ``AVA <column>``: any column as a generic label.
- ``OVA <value>``: one class against the rest, the value looked up in type, then intensity, then the combinations;
  ``OVA <column> <value>`` for a generic column. Labels ``["The rest", <value>]``.

The full truth (used to stratify splits and to report errors) is intensity+type for the lab's data, the label
column otherwise. numpy/pandas only.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from spectratorch.data.io import MISSING_WORDS
from spectratorch.errors import SplitError, TargetError

__all__ = [
    "INTENSITY_COLUMN",
    "TYPE_COLUMN",
    "INTENSITY_ORDER",
    "TYPE_ORDER",
    "AVA_CODES",
    "REST_LABEL",
    "OTHER_LABEL",
    "Target",
    "LabLabels",
    "resolve_target",
    "handle_rare_classes",
]

_logger = logging.getLogger(__name__)

INTENSITY_COLUMN = "greffon_defaut_severite"
TYPE_COLUMN = "greffon_defaut_type"
INTENSITY_ALIASES = {"OK - Inspecteur": "OK", "OK - SpectrAcer": "OK"}
INTENSITY_ORDER = ("OK", "VR", "NC", "CROCHET")
TYPE_ORDER = ("0", "1", "11", "12", "13", "14", "2", "4", "5", "6")
REST_LABEL = "The rest"
OTHER_LABEL = "other"
_NO_TYPE_INTENSITIES = ("OK", "CROCHET")


@dataclass(frozen=True, eq=False)
class Target:
    """Integer classes for every row.

    Attributes:
        y: int64 ``[N]``, indices into ``labels``.
        labels: the ordered class labels.
        full_truth: str ``[N]``, the finest truth (intensity+type for the lab's data).
        code: the target code, e.g. ``("OVA", "OK")``.
    """

    y: np.ndarray
    labels: tuple[str, ...]
    full_truth: np.ndarray
    code: tuple[str, ...]

    def counts(self) -> dict[str, int]:
        """Members per class label."""
        return {label: int(n) for label, n in zip(self.labels, np.bincount(self.y, minlength=len(self.labels)))}

    def subset(self, index: np.ndarray) -> "Target":
        """The rows ``index`` (integer array or boolean mask)."""
        return Target(self.y[index], self.labels, self.full_truth[index], self.code)


@dataclass(frozen=True, eq=False)
class LabLabels:
    """The lab's label columns, normalised to strings: intensity, type, simplified type, combination."""

    intensity: np.ndarray
    type: np.ndarray

    @classmethod
    def from_meta(cls, meta: pd.DataFrame) -> "LabLabels":
        intensity = meta[INTENSITY_COLUMN].astype(str).str.strip().replace(INTENSITY_ALIASES).to_numpy(dtype=object)
        return cls(intensity=intensity, type=_type_strings(meta[TYPE_COLUMN]))

    @property
    def type_simple(self) -> np.ndarray:
        types = pd.Series(self.type, dtype=object)
        subtyped = types.str.fullmatch(r"\d\d")
        return types.where(~subtyped, types.str[:1]).to_numpy(dtype=object)

    @property
    def combo(self) -> np.ndarray:
        no_type = np.isin(self.intensity, _NO_TYPE_INTENSITIES)
        return np.where(no_type, self.intensity, self.intensity + self.type).astype(object)

    @property
    def intensity_simple(self) -> np.ndarray:
        return np.where(np.isin(self.intensity, _NO_TYPE_INTENSITIES), "OK - CROCHET", "VR - NC").astype(object)

    @property
    def insimple_type(self) -> np.ndarray:
        return np.where(np.isin(self.intensity, _NO_TYPE_INTENSITIES), self.intensity, self.type_simple).astype(object)


def _type_strings(values: pd.Series) -> np.ndarray:
    # reason: the lab's pickles hold type codes as ints, floats (when a NaN crept in) or strings; compare as "11".
    # reason: True/False labels (Excel's TRUE/FALSE) keep their words; pandas would make them the numbers 1 and 0.
    # Only a bool or object column can hold them, so a column of numbers is not looked at value by value.
    if pd.api.types.is_bool_dtype(values):
        return values.astype(str).to_numpy(dtype=object)
    if values.dtype == object:
        values = values.where(~values.map(lambda value: isinstance(value, (bool, np.bool_))).astype(bool),
                              values.astype(str))
    numbers = pd.to_numeric(values, errors="coerce")
    integral = numbers.notna() & (numbers % 1 == 0)
    text = values.astype(str).str.strip()
    text[integral] = numbers[integral].astype("int64").astype(str)
    return text.to_numpy(dtype=object)


def _order_key(order: Sequence[str]) -> Callable[[str], tuple]:
    rank = {v: i for i, v in enumerate(order)}
    return lambda v: (rank.get(v, len(rank)), _natural_key(v))


def _natural_key(value: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(value)))


def _combo_key(value: str) -> tuple:
    for i, intensity in enumerate(INTENSITY_ORDER):
        if value.startswith(intensity):
            return (i, _order_key(TYPE_ORDER)(value[len(intensity) :]))
    return (len(INTENSITY_ORDER), _natural_key(value))


# reason: one table of codes -> (values per row, sort key of the labels); no chain of ifs.
AVA_CODES: dict[str, tuple[Callable[[LabLabels], np.ndarray], Callable[[str], tuple]]] = {
    "IN": (lambda lab: lab.intensity, _order_key(INTENSITY_ORDER)),
    "INs": (lambda lab: lab.intensity_simple, _order_key(("OK - CROCHET", "VR - NC"))),
    "TY": (lambda lab: lab.type, _order_key(TYPE_ORDER)),
    "TYs": (lambda lab: lab.type_simple, _order_key(TYPE_ORDER)),
    "INTY": (lambda lab: lab.combo, _combo_key),
    "INsTYs": (lambda lab: lab.insimple_type, _order_key(_NO_TYPE_INTENSITIES + TYPE_ORDER)),
}


def _is_lab_data(meta: pd.DataFrame) -> bool:
    return INTENSITY_COLUMN in meta.columns and TYPE_COLUMN in meta.columns


def _classes(values: np.ndarray, key: Callable[[str], tuple]) -> tuple[np.ndarray, tuple[str, ...]]:
    uniques, inverse = np.unique(values.astype(str), return_inverse=True)
    labels = tuple(sorted(uniques.tolist(), key=key))
    rank = np.array([labels.index(u) for u in uniques.tolist()], dtype=np.int64)
    return rank[inverse.reshape(-1)], labels


def _generic_values(meta: pd.DataFrame, column: str) -> np.ndarray:
    if column not in meta.columns:
        raise TargetError(
            f"unknown target code or column {column!r}; expected one of {sorted(AVA_CODES)} (the lab's columns) or a "
            f"label column of the data: {list(meta.columns)}."
        )
    values = meta[column]
    if values.isna().any():
        raise TargetError(f"label column {column!r} has {int(values.isna().sum())} empty values; fill or drop them.")
    return _type_strings(values)


def labelled_rows(meta: pd.DataFrame, code: Sequence[str]) -> np.ndarray:
    """Which rows have a value in the label column of target ``code`` (``AVA <column>`` or ``OVA <column>
    <value>``); every row for the lab's codes and for a column the data lacks (:func:`resolve_target` says so).

    Example:
        >>> labelled_rows(pd.DataFrame({"label": ["a", None, "b"]}), ("AVA", "label")).tolist()
        [True, False, True]
    """
    code = tuple(str(c) for c in code)
    column = code[1] if len(code) == 2 and code[0] == "AVA" else code[1] if len(code) == 3 else None
    if column is None or column not in meta.columns or (code[0] == "AVA" and column in AVA_CODES):
        return np.ones(len(meta), dtype=bool)
    return meta[column].notna().to_numpy()


def resolve_target(meta: pd.DataFrame, code: Sequence[str]) -> Target:
    """Turn a target code into classes.

    Args:
        meta: the label columns of a :class:`~spectratorch.data.schema.SpectralTable` (``table.meta``).
        code: ``("AVA", "IN")``, ``("OVA", "OK")``, ``("AVA", "<column>")``, ``("OVA", "<column>", "<value>")``...

    Returns:
        The :class:`Target`.

    Raises:
        TargetError: unknown mode, code, column or class value; the message lists what the data has.

    Example:
        >>> meta = pd.DataFrame({"greffon_defaut_severite": ["OK", "VR", "OK - Inspecteur", "CROCHET"],
        ...                      "greffon_defaut_type": [0, 11, 0, 0]})
        >>> t = resolve_target(meta, ("OVA", "OK"))
        >>> t.labels, t.y.tolist(), t.full_truth.tolist()
        (('The rest', 'OK'), [1, 0, 1, 0], ['OK', 'VR11', 'OK', 'CROCHET'])
        >>> resolve_target(meta, ("AVA", "TYs")).labels
        ('0', '1')
    """
    code = tuple(str(c) for c in code)
    if not code or code[0] not in ("AVA", "OVA"):
        raise TargetError(f"a target starts with AVA or OVA, e.g. `--targets OVA OK`; got {list(code)}.")
    lab = LabLabels.from_meta(meta) if _is_lab_data(meta) else None
    mode, rest = code[0], code[1:]
    if mode == "AVA":
        if len(rest) != 1:
            raise TargetError(f"AVA takes one code (IN, INs, TY, TYs, INTY, INsTYs or a column); got {list(rest)}.")
        if rest[0] in AVA_CODES:
            if lab is None:
                raise TargetError(
                    f"AVA {rest[0]} needs the lab's columns {INTENSITY_COLUMN!r} and {TYPE_COLUMN!r}; the data has "
                    f"{list(meta.columns)}. Name a label column instead, e.g. `--targets AVA label`."
                )
            values_of, key = AVA_CODES[rest[0]]
            y, labels = _classes(values_of(lab), key)
            return Target(y, labels, lab.combo.astype(str), code)
        if lab is not None and rest[0] not in meta.columns and any(
                (values == rest[0]).any() for values in (lab.intensity, lab.type, lab.combo)):
            # reason: AVA takes a code, OVA a class value; `AVA OK` for `OVA OK` is the lab's likeliest slip.
            raise TargetError(f"{rest[0]!r} is a class value, not an AVA code: one class against the rest is "
                              f"`--targets OVA {rest[0]}`; all classes of a column are `--targets AVA "
                              f"{'|'.join(AVA_CODES)}`.")
        values = _generic_values(meta, rest[0])
        y, labels = _classes(values, _natural_key)
        return Target(y, labels, values.astype(str), code)
    return _resolve_ova(meta, lab, code)


def _resolve_ova(meta: pd.DataFrame, lab: LabLabels | None, code: tuple[str, ...]) -> Target:
    if len(code) == 3:
        values = _generic_values(meta, code[1])
        full_truth = values
        candidates = {code[1]: values}
    elif len(code) == 2 and lab is not None:
        full_truth = lab.combo
        candidates = {"type": lab.type, "intensity": lab.intensity, "intensity+type": lab.combo}
    elif len(code) == 2:
        raise TargetError(
            f"`OVA {code[1]}` looks the value up in the lab's columns {INTENSITY_COLUMN!r}/{TYPE_COLUMN!r}, which the "
            f"data lacks; name the column: `--targets OVA <column> {code[1]}` (columns: {list(meta.columns)})."
        )
    else:
        raise TargetError(f"OVA takes a value, or a column and a value; got {list(code[1:])}.")
    value = code[-1]
    for values in candidates.values():
        hit = values == value
        if hit.any():
            return Target(hit.astype(np.int64), (REST_LABEL, value), full_truth.astype(str), code)
    if value in AVA_CODES and len(code) == 2:
        raise TargetError(f"{value!r} is an AVA code, not a class value: all its classes are `--targets AVA {value}`; "
                          "one class against the rest is `--targets OVA <value>`, e.g. `--targets OVA OK`.")
    found = {name: sorted(set(v.tolist()), key=_natural_key) for name, v in candidates.items()}
    raise TargetError(f"no row has the class value {value!r}; the data has {found}.")


# reason: a longer list of rare classes makes the one error line unreadable (a measured value gave 60 "classes").
_LISTED = 10


def _measured_hint(target: Target, counts: dict) -> str:
    """The first words of the rare-class refusal when the target looks like a measured quantity, not classes: more
    than 10 distinct numbers, most of them on one row each."""
    singles = sum(n == 1 for n in counts.values())
    numbers = pd.to_numeric(pd.Series([str(label) for label in counts]), errors="coerce")
    if len(counts) <= _LISTED or singles * 2 <= len(counts) or numbers.isna().any():
        return ""
    column = target.code[-1] if target.code else "the target"
    return (f"{column!r} holds {len(counts)} distinct numbers in {len(target.y)} rows, {singles} of them on one row "
            "each: a measured value, not classes? spectratorch classifies; bin the value into classes first, e.g. "
            f"tertiles with pandas `pd.qcut(frame[{column!r}], 3, labels=['low', 'mid', 'high'])`. ")


# reason: with 3 rows a class keeps 2 in every fold's training rows (a stratified fold tests at most one of them),
# the fewest an inner cross-validation can choose a model on; 2 rows would leave 1 in some folds.
KEEP_MIN_ROWS = 3


def _listed(rare: list, counts: dict) -> str:
    listed = ", ".join(f"{label!r} ({counts[label]})" for label in rare[:_LISTED])
    return listed + (f", ... ({len(rare)} classes in all)" if len(rare) > _LISTED else "")


def _with_rows(label, counts: dict) -> str:
    """A class as a warning names it: ``'NA' (5 rows)``."""
    return f"{label!r} ({counts[label]} row{'s' * (counts[label] != 1)})"


def _warn_case_twins(counts: dict) -> None:
    """One warning naming the classes whose labels differ only in case or spacing (``Colza``, ``COLZA``): most often
    one class typed two ways, which the model would learn as two."""
    twins: dict[str, list] = {}
    for label in counts:
        twins.setdefault(" ".join(str(label).split()).casefold(), []).append(label)
    sets = [labels for labels in twins.values() if len(labels) > 1]
    if sets:
        shown = "; ".join(" and ".join(_with_rows(label, counts) for label in labels) for labels in sets[:_LISTED])
        _logger.warning("labels that differ only in case or spacing are separate classes: %s; if each is one class, "
                        "write it one way in the file", shown)


# reason: the words R (``NA``), Excel (``#N/A``) and pandas write for a missing value, which a text column keeps as
# text (a class may be named so: data/io.py); said once here, as a missing label written so becomes a class. "None"
# is left out: it names a class ("no defect") more often than it marks a gap.
_MISSING_LABEL_WORDS = MISSING_WORDS - {"None"}


def _warn_missing_words(counts: dict) -> None:
    """One warning naming the classes spelled as a missing value (``NA`` from R, ``#N/A`` from Excel)."""
    words = [label for label in counts if str(label).strip() in _MISSING_LABEL_WORDS]
    if words:
        _logger.warning("class(es) %s are spelled as a missing value (R writes NA, Excel #N/A): they are kept as "
                        "classes; if those rows have no label, leave their label cells empty (an empty label is no "
                        "class)", ", ".join(_with_rows(label, counts) for label in words))


def handle_rare_classes(
    target: Target, n_splits: int, policy: str = "keep", min_samples: int | None = None
) -> tuple[Target, np.ndarray]:
    """Deal with classes too small to appear in every fold.

    Args:
        target: the target.
        n_splits: the number of folds; a class with fewer members is absent from some test folds.
        policy: ``"keep"`` (default: keep such classes with a warning when each has at least
            :data:`KEEP_MIN_ROWS` rows, as scikit-learn's stratified k-fold does; refuse them otherwise),
            ``"error"`` (refuse them), ``"drop"`` (drop their rows) or ``"other"`` (bundle every class under
            ``min_samples`` members into one ``other`` class).
        min_samples: the bundling threshold for ``"other"`` (default ``n_splits``).

    Returns:
        The new target and the boolean mask ``[N]`` of the rows kept.

    Raises:
        SplitError: a class is too small for ``policy``, or nothing usable is left.
    """
    counts = target.counts()
    if len(counts) < 2:
        raise SplitError(f"the target {' '.join(target.code)} has one class in the data, "
                         f"{', '.join(f'{label!r} ({n} rows)' for label, n in counts.items()) or 'none'}; a classifier "
                         "needs at least 2. Check the label column (or name another with --targets AVA <column>).")
    _warn_case_twins(counts)
    _warn_missing_words(counts)
    threshold = n_splits if policy != "other" or min_samples is None else max(min_samples, n_splits)
    rare = [label for label, n in counts.items() if n < threshold]
    keep = np.ones(len(target.y), dtype=bool)
    if not rare:
        return target, keep
    if policy == "keep":
        too_few = [label for label in rare if counts[label] < KEEP_MIN_ROWS]
        if len(rare) == len(counts) and not too_few:
            # reason: no class reaches every fold: the stratified split refuses the set in one line (fold_assignment).
            return target, keep
        if not too_few:
            _logger.warning("class(es) %s have fewer rows than the %d folds: kept, so some test folds hold none of "
                            "them (`--rare-classes drop|other|error` to change)", _listed(rare, counts), n_splits)
            return target, keep
        raise SplitError(f"{_measured_hint(target, counts)}class(es) {_listed(too_few, counts)} have fewer than "
                         f"{KEEP_MIN_ROWS} rows: a model is chosen on at least 2 in every fold's training rows. Drop "
                         "them with `--rare-classes drop`, or bundle small classes with `--rare-classes other "
                         "--min-samples N`.")
    if policy == "error":
        fewest = min(counts[label] for label in rare)
        fewer_folds = f"split in fewer folds (`--n-splits {fewest}`), " if fewest >= 2 else ""
        raise SplitError(
            f"{_measured_hint(target, counts)}class(es) {_listed(rare, counts)} have fewer members than "
            f"n_splits={n_splits}; {fewer_folds}drop them with `--rare-classes drop`, or bundle small classes with "
            "`--rare-classes other --min-samples N`."
        )
    if policy == "drop":
        rare_idx = [target.labels.index(label) for label in rare]
        keep = ~np.isin(target.y, rare_idx)
        labels = tuple(label for label in target.labels if label not in rare)
        remap = np.array([labels.index(lb) if lb in labels else -1 for lb in target.labels], dtype=np.int64)
        y = remap[target.y[keep]]
        _logger.warning("dropped %d rows of the rare classes %s", int((~keep).sum()), rare)
        result = Target(y, labels, target.full_truth[keep], target.code)
    elif policy == "other":
        labels = tuple(label for label in target.labels if label not in rare) + (OTHER_LABEL,)
        remap = np.array([labels.index(OTHER_LABEL if lb in rare else lb) for lb in target.labels], dtype=np.int64)
        y = remap[target.y]
        _logger.warning("bundled the classes %s into %r", rare, OTHER_LABEL)
        result = Target(y, labels, target.full_truth, target.code)
    else:
        raise SplitError(f"--rare-classes must be keep, error, drop or other; got {policy!r}.")
    if len(result.labels) < 2 or min(result.counts().values()) < n_splits:
        raise SplitError(f"after `--rare-classes {policy}` the classes are {result.counts()}; too few to split.")
    return result, keep
