"""The numbers behind the result sheet: cutoffs, confusion with cutoffs, error contributions (numpy, pandas and
scikit-learn: no torch)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from spectratorch.export.calibration import confidence_bins
from spectratorch.metrics import per_class_metrics

__all__ = ["UNCLASSIFIED", "cutoff_table", "auto_cutoff", "named_cutoffs", "apply_cutoff", "confusion",
           "per_class_scores", "error_contributions", "calibration_bins"]

UNCLASSIFIED = "unclassified"
_TARGET_ACCURACIES = (0.90, 0.95, 0.98, 0.99)


def apply_cutoff(probabilities: np.ndarray, cutoff: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes ``[N]`` and the mask ``[N]`` of rows whose top probability reaches ``cutoff``."""
    predicted = probabilities.argmax(axis=1)
    kept = np.ones(len(predicted), bool) if cutoff is None else probabilities.max(axis=1) >= cutoff
    return predicted, kept


def cutoff_table(probabilities: np.ndarray, y: np.ndarray, targets=_TARGET_ACCURACIES,
                 min_kept: float = 0.05) -> pd.DataFrame:
    """For each target accuracy, the lowest cutoff on the top probability whose kept rows reach it.

    When every row is kept (the target is reached without a cutoff, e.g. on a separable validation split), the
    cutoff is the lowest top probability capped at the target itself.

    Args:
        probabilities: ``[N, K]``.
        y: int ``[N]`` true classes.
        targets: accuracies to reach among the kept rows.
        min_kept: a cutoff must keep at least this fraction of the rows (a handful of sure rows proves nothing).

    Returns:
        One row per reachable target: ``target``, ``cutoff``, ``accuracy`` (of the kept rows), ``kept`` (fraction).

    Example:
        >>> p = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.2, 0.8]])
        >>> cutoff_table(p, np.array([0, 1, 0, 1]), targets=(0.9,), min_kept=0.5).to_dict("records")
        [{'target': 0.9, 'cutoff': 0.8, 'accuracy': 1.0, 'kept': 0.5}]
        >>> separable = np.array([[1 - 1e-10, 1e-10], [1e-10, 1 - 1e-10]])
        >>> cutoff_table(separable, np.array([0, 1]), targets=(0.95,)).to_dict("records")
        [{'target': 0.95, 'cutoff': 0.95, 'accuracy': 1.0, 'kept': 1.0}]
    """
    top = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    order = np.argsort(-top, kind="stable")
    top, correct = top[order], correct[order]
    # reason: cutting at a top probability keeps a prefix of the rows sorted by it; accuracy of every prefix at once.
    accuracy = np.cumsum(correct) / np.arange(1, len(top) + 1)
    last_of_tie = np.r_[top[1:] != top[:-1], True]
    rows = []
    for target in targets:
        ok = np.flatnonzero((accuracy >= target) & last_of_tie & (np.arange(1, len(top) + 1) >= min_kept * len(top)))
        if len(ok):
            end = ok[-1]
            cutoff = float(top[end])
            if end == len(top) - 1:
                # reason: every validation row is kept, so validation bounds the cutoff from nowhere; its lowest top
                # probability is then an accident of the split (0.9999999998 on a separable validation split, which
                # left correct new samples at p = 0.99998 unclassified). A calibrated probability of at least the
                # target is right at the target rate, so the target itself caps the cutoff.
                cutoff = min(cutoff, float(target))
            rows.append({"target": target, "cutoff": cutoff, "accuracy": float(accuracy[end]),
                         "kept": float((end + 1) / len(top))})
    return pd.DataFrame(rows, columns=["target", "cutoff", "accuracy", "kept"])


def auto_cutoff(table: pd.DataFrame, target: float = 0.95) -> float | None:
    """The cutoff that reaches ``target`` accuracy in ``cutoff_table``'s output (``None`` when unreachable)."""
    match = table[table["target"] == target]
    return None if match.empty else float(match["cutoff"].iloc[0])


def named_cutoffs(table: pd.DataFrame) -> dict:
    """``cutoff_table``'s output by name, as ``spectratorch predict --cutoff NAME`` reads them: ``default`` (95 %
    accuracy, ``None`` when unreachable) and ``accuracy_0.90`` ..., each a probability."""
    return {"default": auto_cutoff(table), **{f"accuracy_{row.target:.2f}": row.cutoff for row in table.itertuples()}}


def confusion(y: np.ndarray, predicted: np.ndarray, labels, kept: np.ndarray | None = None) -> pd.DataFrame:
    """Counts, rows = truth, columns = prediction (plus ``unclassified`` when ``kept`` is given)."""
    n = len(labels)
    shown = predicted if kept is None else np.where(kept, predicted, n)
    counts = np.zeros((n, n + (kept is not None)), dtype=np.int64)
    np.add.at(counts, (y, shown), 1)
    columns = list(labels) + ([UNCLASSIFIED] if kept is not None else [])
    return pd.DataFrame(counts, index=list(labels), columns=columns)


def per_class_scores(y: np.ndarray, predicted: np.ndarray, labels) -> pd.DataFrame:
    """Precision, recall and F1 of each class, one against the rest, with its number of rows.

    Args:
        y: int ``[N]`` true classes.
        predicted: int ``[N]`` predicted classes.
        labels: the ``K`` class labels.

    Returns:
        One row per class: ``class``, ``n`` (true rows), ``precision``, ``recall``, ``F1`` (0 where undefined, as
        scikit-learn's ``zero_division=0``).

    Example:
        >>> scores = per_class_scores(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), ["a", "b"])
        >>> scores.round(3).to_numpy().tolist()
        [['a', 2, 1.0, 0.5, 0.667], ['b', 2, 0.667, 1.0, 0.8]]
    """
    scores = per_class_metrics(y, predicted, len(labels))
    return pd.DataFrame({"class": [str(label) for label in labels], "n": scores["support"],
                         "precision": scores["precision"], "recall": scores["recall"], "F1": scores["f1"]})


def error_contributions(y: np.ndarray, predicted: np.ndarray, full_truth: np.ndarray,
                        kept: np.ndarray | None = None, top: int = 8) -> pd.DataFrame:
    """Which full-truth values the errors come from: count and share of all errors, largest first.

    With ``kept``, only the kept rows count (errors that a cutoff lets through).
    """
    wrong = predicted != y
    if kept is not None:
        wrong &= kept
    values, counts = np.unique(np.asarray(full_truth)[wrong].astype(str), return_counts=True)
    totals = pd.Series(np.asarray(full_truth).astype(str)).value_counts()
    frame = pd.DataFrame({"full_truth": values, "errors": counts})
    frame["share_of_errors"] = frame["errors"] / max(1, int(wrong.sum()))
    frame["error_rate"] = frame["errors"] / totals.reindex(values).to_numpy()
    return frame.sort_values("errors", ascending=False, kind="stable").head(top).reset_index(drop=True)


def calibration_bins(probabilities: np.ndarray, y: np.ndarray, n_bins: int = 15) -> pd.DataFrame:
    """Reliability of the top probability: per equal-width bin (those of the ECE:
    :func:`~spectratorch.export.calibration.confidence_bins`), its mean confidence, accuracy and count."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    bins = confidence_bins(confidence, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        acc = np.bincount(bins, weights=correct, minlength=n_bins) / count
    frame = pd.DataFrame({"confidence": conf, "accuracy": acc, "count": count})
    return frame[frame["count"] > 0].reset_index(drop=True)
