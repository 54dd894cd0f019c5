"""Split conformal label sets: for a coverage ``1 - alpha``, the classes a spectrum may be, fitted on held-out rows.

A nonconformity score ``s(x, k)`` says how unusual class ``k`` is for spectrum ``x`` under the model's calibrated
probabilities: LAC ``1 - p_k`` (smallest sets on average), or APS the total probability of the classes ranked above
``k`` plus ``p_k`` (sets that grow where the model hesitates). On ``n`` calibration rows (held out from training:
the validation fold, or out-of-fold predictions) the scores of the true classes are sorted; for a coverage ``c`` the
threshold is the ``ceil((n + 1) c)``-th smallest, and a spectrum's set is every class whose score is at most the
threshold, plus the top class (so no set is empty). Then a new exchangeable row's true class is in its set with
probability at least ``c`` (marginal over rows). A coverage is supported when ``1 <= ceil((n + 1) c) <= n``, that is
``1 / (n + 1) <= c <= n / (n + 1)``.

The fitted record is plain JSON (kept in the ONNX metadata under ``conformal`` and in the run's JSON): the method,
``n`` and the sorted true-class scores at up to ``MAX_STORED`` ranks; with more rows, a coverage's threshold is the
score at the next stored rank up, which only makes sets larger (coverage stays at least ``c``).

numpy only: no torch (``spectratorch predict`` computes the sets).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from spectratorch.errors import ConfigError

__all__ = ["MAX_STORED", "METHODS", "fit_conformal", "label_sets", "nonconformity", "supported_range", "threshold"]

METHODS = ("lac", "aps")
# reason: 2001 scores keep the metadata under ~40 kB; the coarsest rank step on the lab's 60k validation rows is 30
# rows (0.05 % of coverage), well inside the sampling noise of any coverage estimate.
MAX_STORED = 2001


def _check(probabilities: np.ndarray, y: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2 or not np.isfinite(probabilities).all():
        raise ConfigError(f"conformal sets need finite probabilities [N, K >= 2]; got shape {probabilities.shape}.")
    if y is None:
        return probabilities, None
    y = np.asarray(y, dtype=np.int64)
    if y.shape != (len(probabilities),) or len(y) == 0 or y.min() < 0 or y.max() >= probabilities.shape[1]:
        raise ConfigError(f"conformal calibration needs labels [N] in 0..{probabilities.shape[1] - 1} for "
                          f"probabilities {probabilities.shape}; got {y.shape}.")
    return probabilities, y


def nonconformity(probabilities: np.ndarray, method: str = "lac") -> np.ndarray:
    """The score of every class for every row: ``[N, K]``, larger = less plausible.

    Args:
        probabilities: ``[N, K]`` calibrated probabilities.
        method: ``lac`` (``1 - p_k``) or ``aps`` (probability of the classes ranked above ``k``, plus ``p_k``;
            ties ranked by class index).

    Returns:
        float64 ``[N, K]``.

    Example:
        >>> nonconformity(np.array([[0.7, 0.2, 0.1]]), "aps").round(2).tolist()
        [[0.7, 0.9, 1.0]]
    """
    probabilities, _ = _check(probabilities)
    if method == "lac":
        return 1.0 - probabilities
    if method != "aps":
        raise ConfigError(f"the conformal method must be one of {list(METHODS)}; got {method!r}.")
    order = np.argsort(-probabilities, axis=1, kind="stable")
    cumulative = np.cumsum(np.take_along_axis(probabilities, order, axis=1), axis=1)
    scores = np.empty_like(probabilities)
    np.put_along_axis(scores, order, cumulative, axis=1)
    return scores


def fit_conformal(probabilities: np.ndarray, y: np.ndarray, method: str = "lac", source: str = "validation") -> dict:
    """Fit split conformal prediction on held-out calibrated probabilities.

    Args:
        probabilities: ``[N, K]`` calibrated probabilities of rows the model did not train on.
        y: ``[N]`` their true classes.
        method: ``lac`` or ``aps`` (see :func:`nonconformity`).
        source: what the rows are (``validation``, ``out-of-fold``), recorded.

    Returns:
        ``{"method", "source", "n", "ranks", "scores", "min_coverage", "max_coverage"}``: JSON-serialisable.

    Raises:
        ConfigError: mismatched shapes or an unknown method.

    Example:
        >>> record = fit_conformal(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1]))
        >>> record["n"], [round(s, 6) for s in record["scores"]], record["max_coverage"]
        (3, [0.1, 0.2, 0.6], 0.75)
    """
    probabilities, y = _check(probabilities, y)
    true_scores = np.sort(nonconformity(probabilities, method)[np.arange(len(y)), y])
    n = len(true_scores)
    ranks = np.unique(np.round(np.linspace(1, n, min(n, MAX_STORED))).astype(np.int64))
    low, high = supported_range(n)
    return {"method": method, "source": source, "n": n, "ranks": ranks.tolist(),
            "scores": [float(s) for s in true_scores[ranks - 1]], "min_coverage": low, "max_coverage": high}


def supported_range(n: int) -> tuple[float, float]:
    """The smallest and largest coverage ``n`` calibration rows support: ``1 / (n + 1)`` and ``n / (n + 1)``.

    Example:
        >>> supported_range(39)
        (0.025, 0.975)
    """
    return 1.0 / (n + 1), n / (n + 1)


def threshold(record: dict, coverage: float) -> float:
    """The score threshold of ``coverage`` for a fitted record.

    Args:
        record: from :func:`fit_conformal`.
        coverage: in ``[min_coverage, max_coverage]``.

    Returns:
        The threshold.

    Raises:
        ConfigError: a coverage the calibration rows cannot support (one line: the supported range).

    Example:
        >>> round(threshold(fit_conformal(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1])), 0.5), 6)
        0.2
    """
    n = int(record["n"])
    low, high = supported_range(n)
    try:
        coverage = float(coverage)
    except (TypeError, ValueError):
        coverage = float("nan")
    # reason: 1e-9 absorbs the rounding of a level typed as a decimal (0.975 for n = 39 is exactly supported).
    rank = math.ceil((n + 1) * coverage - 1e-9) if math.isfinite(coverage) else 0
    if not 1 <= rank <= n:
        raise ConfigError(
            f"--coverage {coverage:g} is not supported by the model's {n} calibration rows: choose a coverage "
            f"from {math.ceil(low * 1000) / 1000:g} to {math.floor(high * 1000) / 1000:g}."
        )
    ranks = np.asarray(record["ranks"], dtype=np.int64)
    index = int(np.searchsorted(ranks, rank, side="left"))
    return float(record["scores"][index])


def label_sets(probabilities: np.ndarray, record: dict, coverage: float,
               labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Every row's label set at ``coverage``: the classes whose score is at most the threshold, plus the top class.

    Args:
        probabilities: ``[N, K]`` calibrated probabilities.
        record: from :func:`fit_conformal`.
        coverage: the coverage (see :func:`threshold`).
        labels: the ``K`` class labels.

    Returns:
        ``(sets, sizes)``: ``[N]`` strings ``"A|B"`` (classes in decreasing probability) and ``[N]`` int sizes.

    Raises:
        ConfigError: an unsupported coverage or mismatched labels.

    Example:
        >>> record = fit_conformal(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 1, 1]))
        >>> sets, sizes = label_sets(np.array([[0.55, 0.45], [0.95, 0.05]]), record, 0.75, ["a", "b"])
        >>> sets.tolist(), sizes.tolist()
        (['a|b', 'a'], [2, 1])
    """
    probabilities, _ = _check(probabilities)
    if len(labels) != probabilities.shape[1]:
        raise ConfigError(f"{len(labels)} labels for probabilities of {probabilities.shape[1]} classes.")
    members = membership(probabilities, record, coverage)
    order = np.argsort(-probabilities, axis=1, kind="stable")
    ranked = np.take_along_axis(members, order, axis=1)
    names = np.asarray([str(label) for label in labels], dtype=object)[order]
    # reason: join the kept names of each row; K is small, so a loop over classes (not rows) builds the strings.
    sets = np.full(len(probabilities), "", dtype=object)
    for k in range(probabilities.shape[1]):
        keep = ranked[:, k]
        sets[keep] = np.where(sets[keep] == "", names[keep, k], sets[keep] + "|" + names[keep, k])
    return sets, members.sum(axis=1).astype(np.int64)


def membership(probabilities: np.ndarray, record: dict, coverage: float) -> np.ndarray:
    """Boolean ``[N, K]``: is class ``k`` in row ``n``'s set at ``coverage`` (the top class always is)."""
    probabilities, _ = _check(probabilities)
    members = nonconformity(probabilities, record["method"]) <= threshold(record, coverage)
    members[np.arange(len(probabilities)), probabilities.argmax(axis=1)] = True
    return members
