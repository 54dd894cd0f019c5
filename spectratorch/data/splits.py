"""Seeded stratified k-split: train, validation and test index arrays.

The rows are dealt into ``n_splits`` folds by scikit-learn's ``StratifiedKFold`` over the full truth (a stratum
smaller than ``n_splits`` is folded into its class, so every class still spreads over the folds). Fold
``current_split`` is the validation set. The test set is:

- ``like-val`` (default): the next fold, ``(current_split + 1) % n_splits``, so with 5 splits the proportions are
  60:20:20 and the test figures were never used to pick the checkpoint;
- ``is-val``: the validation fold itself;
- ``external``: another file; every fold but the validation one trains;
- ``none``: no test rows; every fold but the validation one trains (the final model of a set whose accuracy was
  estimated by ``spectratorch cv``; the small-set protocol trains on the validation fold too).

The same seed gives the same indices on any machine (numpy's ``RandomState`` stream, no hashing of strings).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spectratorch.errors import SplitError

__all__ = ["TEST_MODES", "Split", "fold_assignment", "make_split"]

TEST_MODES = ("like-val", "is-val", "external", "none")


@dataclass(frozen=True, eq=False)
class Split:
    """Index arrays into the table. ``test`` is empty when the test set is an external file."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def _strata(y: np.ndarray, full_truth: np.ndarray, n_splits: int) -> np.ndarray:
    # reason: a full-truth stratum smaller than n_splits cannot spread over the folds; it joins its class's largest.
    frame = pd.DataFrame({"y": np.asarray(y), "truth": np.asarray(full_truth).astype(str)})
    sizes = frame.groupby("truth")["truth"].transform("size")
    largest = frame[sizes >= n_splits].groupby("y")["truth"].agg(lambda t: t.value_counts().index[0])
    small = (sizes < n_splits).to_numpy()
    fallback = frame["y"].map(largest).fillna("class:" + frame["y"].astype(str))
    return np.where(small, fallback.to_numpy(dtype=str), frame["truth"].to_numpy(dtype=str))


def fold_assignment(y: np.ndarray, full_truth: np.ndarray, n_splits: int = 5, seed: int = 42) -> np.ndarray:
    """The fold (``0..n_splits-1``) of every row.

    Args:
        y: int ``[N]`` target classes.
        full_truth: ``[N]`` the finest truth to stratify on.
        n_splits: number of folds (>= 2).
        seed: the shuffle seed.

    Returns:
        int64 ``[N]``.

    Raises:
        SplitError: ``n_splits`` < 2, a class of one row, fewer rows than ``n_splits``, or every class smaller
            than ``n_splits``. A class smaller than ``n_splits`` is absent from some folds, as in scikit-learn's
            ``StratifiedKFold``.

    Example:
        >>> y = np.array([0, 1] * 10)
        >>> np.bincount(fold_assignment(y, y, n_splits=5, seed=1)).tolist()
        [4, 4, 4, 4, 4]
    """
    from sklearn.model_selection import StratifiedKFold

    if n_splits < 2:
        raise SplitError(f"n_splits must be at least 2; got {n_splits}.")
    counts = np.bincount(y)
    single = [int(c) for c, n in enumerate(counts) if n == 1]
    if single:
        raise SplitError(f"class(es) {single} (class index) have one member: no fold can both train and test them; "
                         "use `--rare-classes drop` or `--rare-classes other`.")
    if len(y) < n_splits:
        raise SplitError(f"{len(y)} rows cannot fill n_splits={n_splits} folds; use fewer (`--n-splits`).")
    if counts.max() < n_splits:
        # reason: a stratified split needs one class that reaches every fold (scikit-learn's StratifiedKFold refuses
        # the same set with a traceback).
        raise SplitError(f"every class has fewer rows than the {n_splits} folds (the largest has {counts.max()}); "
                         f"use `--n-splits {max(2, int(counts.max()))}` or fewer.")
    folds = np.empty(len(y), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    strata = _strata(y, full_truth, n_splits)
    with warnings.catch_warnings():
        # reason: a class smaller than n_splits was kept on purpose (handle_rare_classes said so in one line).
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        for fold, (_, index) in enumerate(splitter.split(np.zeros(len(y)), strata)):
            folds[index] = fold
    return folds


def make_split(
    y: np.ndarray,
    full_truth: np.ndarray,
    n_splits: int = 5,
    current_split: int = 0,
    seed: int = 42,
    test: str = "like-val",
) -> Split:
    """Split rows into train, validation and test indices.

    Args:
        y: int ``[N]`` target classes.
        full_truth: ``[N]`` the finest truth to stratify on.
        n_splits: number of folds.
        current_split: the validation fold, ``0 <= current_split < n_splits``.
        seed: the shuffle seed.
        test: ``like-val``, ``is-val``, ``external`` or ``none`` (see the module docstring).

    Returns:
        The :class:`Split`, each array sorted.

    Raises:
        SplitError: ``current_split`` out of range, an unknown ``test`` mode, too few folds for ``like-val``.

    Example:
        >>> y = np.array([0] * 10 + [1] * 10)
        >>> split = make_split(y, y, n_splits=5, current_split=0, seed=0)
        >>> split.sizes()
        {'train': 12, 'val': 4, 'test': 4}
    """
    if test not in TEST_MODES:
        raise SplitError(f"the test set must be one of {list(TEST_MODES)} or a file; got {test!r}.")
    if not 0 <= current_split < n_splits:
        raise SplitError(f"current_split must be in 0..{n_splits - 1} for n_splits={n_splits}; got {current_split}.")
    if test == "like-val" and n_splits < 3:
        raise SplitError(f"a like-val test set needs n_splits >= 3; got {n_splits}. Use --test-source is-val.")
    folds = fold_assignment(y, full_truth, n_splits, seed)
    val = np.flatnonzero(folds == current_split)
    if test == "like-val":
        test_fold = (current_split + 1) % n_splits
        test_idx = np.flatnonzero(folds == test_fold)
        train = np.flatnonzero((folds != current_split) & (folds != test_fold))
    else:
        test_idx = val.copy() if test == "is-val" else np.empty(0, dtype=np.int64)
        train = np.flatnonzero(folds != current_split)
    return Split(train=train, val=val, test=test_idx)
