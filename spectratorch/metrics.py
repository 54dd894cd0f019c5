"""Classification metrics, one definition for every place that scores predictions (torch-free: numpy, scikit-learn).

The run's baselines, cross-validation, the small-set protocol, the result sheet and the benchmarks all score with
:func:`classification_metrics` and :func:`per_class_metrics`; the numbers come from scikit-learn. (The Lightning
module logs the same metrics during training with torchmetrics, on batches on the device.)
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["METRICS", "classification_metrics", "per_class_metrics", "confusion_counts", "per_class_of_counts"]

METRICS = ("loss", "accuracy", "f1", "balanced_accuracy", "auroc")
"""The keys of :func:`classification_metrics` (``loss`` only when it is given probabilities)."""


def classification_metrics(y: np.ndarray, probabilities: np.ndarray | None = None, predicted: np.ndarray | None = None,
                           only: tuple[str, ...] | None = None) -> dict:
    """``loss`` (NLL), ``accuracy``, macro ``f1``, ``balanced_accuracy`` and macro one-vs-rest ``auroc``.

    Args:
        y: int ``[N]`` true classes.
        probabilities: ``[N, K]`` class probabilities (rows sum to 1), or ``None`` for a model that only predicts.
        predicted: int ``[N]`` predicted classes; default: the most probable class.
        only: compute these keys of :data:`METRICS` (and ``loss``) and leave the others out; ``None``: all (a
            search over many candidates scores each on its target metric alone).

    Returns:
        ``{"loss", "accuracy", "f1", "balanced_accuracy", "auroc"}`` as floats; no ``loss`` without probabilities;
        ``auroc`` is ``None`` without probabilities or when it is undefined (rows of one class only). When a class
        has no row, the AUROC is the macro mean over the classes present, their probabilities renormalised, and the
        macro F1 leaves it out unless it was predicted (scikit-learn's default labels).

    Example:
        >>> m = classification_metrics(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
        >>> round(m["accuracy"], 3), round(m["auroc"], 3)
        (0.667, 1.0)
    """
    from sklearn.metrics import f1_score

    y = np.asarray(y)
    if predicted is None:
        if probabilities is None:
            raise ValueError("classification_metrics needs probabilities or predicted classes; got neither.")
        predicted = probabilities.argmax(axis=1)
    metrics = {}
    if probabilities is not None:
        # reason: + 0.0 turns the -0.0 of certain right answers (-log 1) into 0.0, so a log line never says "-0.0000".
        metrics["loss"] = float(-np.log(np.clip(probabilities[np.arange(len(y)), y], 1e-12, None)).mean()) + 0.0
    scores = {
        "accuracy": lambda: float((predicted == y).mean()),
        # reason: a class neither in the rows nor predicted (a test fold without a rare class) has no F1 to average;
        # scikit-learn's default leaves it out too. A class predicted but absent scores 0.
        "f1": lambda: float(f1_score(y, predicted, average="macro", labels=np.union1d(y, predicted), zero_division=0)),
        "balanced_accuracy": lambda: _balanced_accuracy(y, predicted),
        "auroc": lambda: None if probabilities is None else _auroc(y, probabilities),
    }
    metrics.update({name: score() for name, score in scores.items() if only is None or name in only})
    return metrics


def _balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        # reason: a predicted class absent from the rows is a wrong answer the recall of the present classes counts.
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        return float(balanced_accuracy_score(y, predicted))


def _auroc(y: np.ndarray, probabilities: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    k = probabilities.shape[1]
    present = np.unique(y)
    if len(present) < 2:
        return None
    try:
        if k == 2:
            return float(roc_auc_score(y, probabilities[:, 1]))
        if len(present) < k:
            # reason: scikit-learn's one-vs-rest needs every class present; score the present ones, rows summing to 1.
            probabilities = probabilities[:, present] / probabilities[:, present].sum(1, keepdims=True)
            if len(present) == 2:
                return float(roc_auc_score(y == present[1], probabilities[:, 1]))
        return float(roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=present))
    except ValueError:
        return None


def per_class_metrics(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Precision, recall and F1 of each class, one against the rest, and its number of true rows.

    Returns:
        ``{"precision", "recall", "f1", "support"}``, each ``[K]`` (0 where undefined: scikit-learn's
        ``zero_division=0``).

    Example:
        >>> scores = per_class_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
        >>> scores["recall"].tolist(), scores["f1"].round(3).tolist()
        ([0.5, 1.0], [0.667, 0.8])
    """
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=np.arange(n_classes),
                                                                     zero_division=0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def confusion_counts(y: np.ndarray, predicted: np.ndarray, n_classes: int) -> list[list[int]]:
    """Rows of each true class (row) given each class (column), as plain lists (a run's JSON keeps them).

    Example:
        >>> confusion_counts(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
        [[1, 1, 0], [0, 1, 0], [0, 1, 0]]
    """
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y, predicted, labels=np.arange(n_classes)).tolist()


def per_class_of_counts(counts: list[list[int]], labels: list[str]) -> dict[str, dict]:
    """:func:`per_class_metrics` of the rows a confusion matrix counts (e.g. the sum of the folds' test matrices):
    ``{label: {"precision", "recall", "f1", "support"}}``.

    Example:
        >>> per_class_of_counts([[1, 1], [0, 2]], ["a", "b"])["a"]
        {'precision': 1.0, 'recall': 0.5, 'f1': 0.6667, 'support': 2}
    """
    counts = np.asarray(counts, dtype=np.int64)
    k = len(labels)
    y = np.repeat(np.repeat(np.arange(k), k), counts.ravel())
    predicted = np.repeat(np.tile(np.arange(k), k), counts.ravel())
    scores = per_class_metrics(y, predicted, k)
    return {label: {**{name: round(float(scores[name][c]), 4) for name in ("precision", "recall", "f1")},
                    "support": int(scores["support"][c])} for c, label in enumerate(labels)}
