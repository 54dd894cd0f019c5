"""Defaults that follow the data: the target and the channels a run uses when none were given.

On the lab's data (its label columns ``greffon_defaut_severite`` and ``greffon_defaut_type``, its channels
``277 380 425``) the lab's defaults apply: ``--targets OVA OK``, ``--channels 277 380 425``. On any other data the
target is its one label column (``AVA <column>``) and the channels are every channel of the data (a plain table's
bare-number columns are one channel, ``spectrum``); tabular columns stay off unless named. numpy/pandas only.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex

import pandas as pd

from spectratorch.data.schema import DATE_COLUMN, LAB_DEFAULT_CHANNELS, OOB_COLUMN, SpectralTable
from spectratorch.data.targets import INTENSITY_COLUMN, TYPE_COLUMN
from spectratorch.errors import TargetError

__all__ = ["LAB_DEFAULT_TARGETS", "label_candidates", "default_targets", "resolve_data_defaults"]

_logger = logging.getLogger(__name__)

LAB_DEFAULT_TARGETS = ("OVA", "OK")
# reason: the lab's bookkeeping columns are never a label.
_NOT_LABELS = frozenset({OOB_COLUMN, DATE_COLUMN})
# reason: the names scikit-learn's datasets, R's and most chemometrics exports give the class column.
_LABEL_NAMES = frozenset({"label", "labels", "class", "classes", "target", "y", "category"})


def _listed(columns: list[str], but: str) -> str:
    return ", ".join(repr(c) for c in columns if c != but)


def label_candidates(meta: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The columns that could be the label: ``(text columns, every candidate)``.

    Candidates are the non-spectral, non-tabular columns that are neither dates nor the lab's bookkeeping columns;
    text columns are the candidates whose values are not numbers.

    Example:
        >>> meta = pd.DataFrame({"label": ["a", "b"], "batch": [1, 2], "when": pd.to_datetime(["2024", "2025"])})
        >>> label_candidates(meta)
        (['label'], ['label', 'batch'])
    """
    candidates = [c for c in meta.columns if str(c) not in _NOT_LABELS
                  and not pd.api.types.is_datetime64_any_dtype(meta[c])]
    text = [c for c in candidates
            if not pd.api.types.is_numeric_dtype(meta[c]) or pd.api.types.is_bool_dtype(meta[c])]
    return [str(c) for c in text], [str(c) for c in candidates]


def default_targets(meta: pd.DataFrame) -> tuple[tuple[str, ...], str]:
    """The target of data that names none, and why.

    Returns:
        ``(code, reason)``: ``("OVA", "OK")`` on the lab's data; ``("AVA", <column>)`` for the one text column, or
        for the one candidate column when no column is text.

    Raises:
        TargetError: no candidate, or several text columns (or several numeric ones and no text); the message lists
            them and says how to choose.

    Example:
        >>> default_targets(pd.DataFrame({"label": ["a", "b"], "batch": [1, 2]}))
        (('AVA', 'label'), 'the one text column')
    """
    if INTENSITY_COLUMN in meta.columns and TYPE_COLUMN in meta.columns:
        return LAB_DEFAULT_TARGETS, "the lab's label columns"
    text, candidates = label_candidates(meta)
    if len(text) == 1:
        return ("AVA", text[0]), "the one text column"
    if not text and len(candidates) == 1:
        return ("AVA", candidates[0]), "the one column that is not spectral"
    if not candidates:
        raise TargetError("the data has no label column (every column is spectral); add a column of class labels, "
                          "e.g. 'label'.")
    # reason: a text column whose every value differs (sample names, times of measurement) names rows, not classes;
    # of several text columns, the one named as labels usually are is the label. Either choice is said on the console.
    repeating = [c for c in text if meta[c].nunique(dropna=True) < len(meta)]
    named = [c for c in repeating if c.strip().lower() in _LABEL_NAMES]
    if len(named) == 1:
        return ("AVA", named[0]), f"the text column named {named[0]!r}; the others: {_listed(text, named[0])}"
    named = [c for c in candidates if not text and c.strip().lower() in _LABEL_NAMES]
    if len(named) == 1:
        # reason: class codes (0, 1, 2) beside numeric measurements; the name says which is the label.
        others = _listed(candidates, named[0])
        return ("AVA", named[0]), f"the column named {named[0]!r}; the other numeric ones: {others}"
    if len(text) > 1 and len(repeating) == 1:
        return ("AVA", repeating[0]), (f"the one text column whose values repeat; in {_listed(text, repeating[0])} "
                                       "every row has a value of its own")
    several = [*repeating, *(c for c in text if c not in repeating)] or candidates
    raise TargetError(f"the data has {len(several)} {'text' if text else 'label'} columns {several}; say which one "
                      f"holds the classes: `--targets AVA {several[0]}` (targets=['AVA', {several[0]!r}] in Python).")


def resolve_data_defaults(config, table: SpectralTable):
    """``config`` (a :class:`~spectratorch.config.DataConfig`) with its unset target and channels taken from the data.

    ``table`` must have been loaded with ``channels="default"`` when ``config.channels`` is ``None`` (what
    :class:`~spectratorch.data.datamodule.SpectralDataModule` does). What was chosen for data other than the lab's
    is logged on one line.

    Raises:
        TargetError: see :func:`default_targets`.
    """
    changes, said = {}, []
    if config.targets is None:
        code, reason = default_targets(table.meta)
        changes["targets"] = code
        if code != LAB_DEFAULT_TARGETS:
            said.append(f"target {' '.join(code)} ({reason})")
    if config.channels is None:
        changes["channels"] = tuple(table.channels)
        if changes["channels"] != LAB_DEFAULT_CHANNELS:
            said.append(f"channels {' '.join(table.channels)} (every channel of the data)")
    if said:
        tabular = ", ".join(table.tabular_columns) if table.tabular_columns else "none"
        text, candidates = label_candidates(table.meta)
        target = (changes.get("targets") or config.targets)[-1]
        unused = [c for c in candidates if c not in text and c != target]
        if unused and not table.tabular_columns and target in candidates:
            # reason: a numeric column may be a feature the user wants, or the reference value the classes come
            # from (a leak): it is never used unasked, but the user learns that it is there.
            shown = ", ".join(repr(c) for c in unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
            tabular += (f" (numeric columns not used: {shown}; --tabular {shlex.quote(unused[0])} would add one as a "
                        "feature)")
        _logger.info("defaults from the data: %s; tabular columns: %s", "; ".join(said), tabular)
    return dataclasses.replace(config, **changes) if changes else config
