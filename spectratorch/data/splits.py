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

With groups (``--groups``: the sample of every row, replicate scans sharing it) the rows of a group land in one
fold, by scikit-learn's ``StratifiedGroupKFold`` over the classes; :func:`suspected_groups` finds a column that looks
like one when none is given.

The same seed gives the same indices on any machine (numpy's ``RandomState`` stream, no hashing of strings).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from spectratorch.errors import SplitError

__all__ = ["TEST_MODES", "Split", "check_groups", "fold_assignment", "make_split", "suspected_groups"]

TEST_MODES = ("like-val", "is-val", "external", "none")
# reason: replicate scans are a few per sample (2 to 10 in the exports we know of); a value on more rows is a batch,
# an operator or a day.
_REPLICATES_MAX = 10


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


def fold_assignment(y: np.ndarray, full_truth: np.ndarray, n_splits: int = 5, seed: int = 42,
                    groups: np.ndarray | None = None) -> np.ndarray:
    """The fold (``0..n_splits-1``) of every row.

    Args:
        y: int ``[N]`` target classes.
        full_truth: ``[N]`` the finest truth to stratify on.
        n_splits: number of folds (>= 2).
        seed: the shuffle seed.
        groups: ``[N]`` the sample each row belongs to (replicate scans of one sample share it): the rows of a group
            land in one fold (scikit-learn's ``StratifiedGroupKFold``, stratified on the classes); ``None``: no
            groups.

    Returns:
        int64 ``[N]``.

    Raises:
        SplitError: ``n_splits`` < 2, a class of one row, fewer rows than ``n_splits``, every class smaller than
            ``n_splits``, fewer groups than ``n_splits``, or a class whose rows are all one group. A class smaller
            than ``n_splits`` is absent from some folds, as in scikit-learn's ``StratifiedKFold``.

    Example:
        >>> y = np.array([0, 1] * 10)
        >>> np.bincount(fold_assignment(y, y, n_splits=5, seed=1)).tolist()
        [4, 4, 4, 4, 4]
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

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
    if groups is not None:
        check_groups(y, groups, n_splits, "folds")
        # reason: the strata of the full truth would split a group's rows when they differ in it; the classes do not.
        splitter, strata = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed), y
    else:
        splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        strata = _strata(y, full_truth, n_splits)
    with warnings.catch_warnings():
        # reason: a class smaller than n_splits was kept on purpose (handle_rare_classes said so in one line).
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        for fold, (_, index) in enumerate(splitter.split(np.zeros(len(y)), strata, groups)):
            folds[index] = fold
    return folds


def check_groups(y: np.ndarray, groups: np.ndarray, n_splits: int, what: str, labels=None) -> None:
    """Refuse groups that cannot fill ``n_splits`` folds, or a class whose rows are all one group (no fold could
    both train and test it). ``labels``: the class names, for the message (default: the class index).

    Raises:
        SplitError: as above, in one line.

    Example:
        >>> check_groups(np.array([0, 0, 1, 1]), np.array(["a", "a", "b", "c"]), 2, "folds", labels=["x", "y"])
        Traceback (most recent call last):
        spectratorch.errors.SplitError: class 'x' has all its 2 rows in one group ('a'): no fold can both train and \
test it; --groups keeps a group's rows together, so give it rows of at least 2 groups.
    """
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise SplitError(f"{n_groups} groups (--groups) cannot fill {n_splits} {what}; use fewer (`--n-splits`).")
    for k in np.unique(y):
        members = np.unique(groups[y == k])
        if len(members) < 2:
            name = f"class {labels[k]!r}" if labels is not None else f"class index {int(k)}"
            raise SplitError(f"{name} has all its {int((y == k).sum())} rows in one group ({str(members[0])!r}): no "
                             "fold can both train and test it; --groups keeps a group's rows together, so give it "
                             "rows of at least 2 groups.")


def suspected_groups(meta: pd.DataFrame, y: np.ndarray, n_splits: int, exclude=()) -> list[str]:
    """The columns of ``meta`` that look like sample names of replicate scans: every value on 2 to
    ``_REPLICATES_MAX`` rows, all of one class, at least ``2 * n_splits`` values. Scans of one sample split between
    training and test folds flatter the accuracy; ``--groups`` keeps them together.

    Example:
        >>> meta = pd.DataFrame({"probe": ["a", "a", "b", "b", "c", "c", "d", "d"], "operator": ["x", "y"] * 4})
        >>> suspected_groups(meta, np.array([0, 0, 1, 1, 0, 0, 1, 1]), 2)
        ['probe']
    """
    found = []
    y = np.asarray(y)
    for column in meta.columns:
        if column in exclude or pd.api.types.is_float_dtype(meta[column]):
            continue
        values = meta[column].astype(str).to_numpy()
        names, inverse, sizes = np.unique(values, return_inverse=True, return_counts=True)
        if len(names) < 2 * n_splits or sizes.min() < 2 or sizes.max() > _REPLICATES_MAX:
            continue
        # reason: replicates of one sample carry its class; a column mixing classes within a value is no sample name.
        if np.unique(np.stack([inverse, y]), axis=1).shape[1] == len(names):
            found.append(str(column))
    return found


def make_split(
    y: np.ndarray,
    full_truth: np.ndarray,
    n_splits: int = 5,
    current_split: int = 0,
    seed: int = 42,
    test: str = "like-val",
    groups: np.ndarray | None = None,
) -> Split:
    """Split rows into train, validation and test indices.

    Args:
        y: int ``[N]`` target classes.
        full_truth: ``[N]`` the finest truth to stratify on.
        n_splits: number of folds.
        current_split: the validation fold, ``0 <= current_split < n_splits``.
        seed: the shuffle seed.
        test: ``like-val``, ``is-val``, ``external`` or ``none`` (see the module docstring).
        groups: ``[N]`` the sample of every row, whose rows stay in one fold (:func:`fold_assignment`); ``None``: none.

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
    folds = fold_assignment(y, full_truth, n_splits, seed, groups)
    val = np.flatnonzero(folds == current_split)
    if test == "like-val":
        test_fold = (current_split + 1) % n_splits
        test_idx = np.flatnonzero(folds == test_fold)
        train = np.flatnonzero((folds != current_split) & (folds != test_fold))
    else:
        test_idx = val.copy() if test == "is-val" else np.empty(0, dtype=np.int64)
        train = np.flatnonzero(folds != current_split)
    return Split(train=train, val=val, test=test_idx)
