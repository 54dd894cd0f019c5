import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from spectratorch.data.splits import fold_assignment, make_split
from spectratorch.errors import SplitError


def _data(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    truth = np.char.add(y.astype(str), rng.choice(["a", "b"], size=n))
    return y, truth


def test_matches_stratified_kfold_reference():
    y, truth = _data()
    folds = fold_assignment(y, truth, n_splits=5, seed=7)
    reference = StratifiedKFold(5, shuffle=True, random_state=7).split(np.zeros(len(y)), truth)
    for fold, (_, index) in enumerate(reference):
        assert (folds[index] == fold).all()


def test_like_val_is_60_20_20_and_disjoint():
    y, truth = _data(500)
    split = make_split(y, truth, n_splits=5, current_split=4, seed=1)
    sizes = split.sizes()
    assert sizes == {"train": 300, "val": 100, "test": 100}
    assert not set(split.train) & set(split.val) and not set(split.val) & set(split.test)
    assert not set(split.train) & set(split.test)
    # test is the next fold (wrapping around)
    folds = fold_assignment(y, truth, 5, 1)
    assert (folds[split.test] == 0).all() and (folds[split.val] == 4).all()


def test_is_val_and_external():
    y, truth = _data()
    is_val = make_split(y, truth, 5, 2, 3, "is-val")
    assert np.array_equal(is_val.test, is_val.val) and len(is_val.train) == len(y) - len(is_val.val)
    ext = make_split(y, truth, 5, 2, 3, "external")
    assert len(ext.test) == 0 and len(ext.train) + len(ext.val) == len(y)
    none = make_split(y, truth, 5, 2, 3, "none")  # reason: the final model: no test rows at all
    assert len(none.test) == 0 and np.array_equal(none.train, ext.train) and np.array_equal(none.val, ext.val)


def test_same_seed_same_indices_other_seed_others():
    y, truth = _data()
    a, b = make_split(y, truth, seed=5), make_split(y, truth, seed=5)
    assert np.array_equal(a.val, b.val)
    assert not np.array_equal(a.val, make_split(y, truth, seed=6).val)


def test_golden_indices():
    # the same seed gives the same indices on any machine: pinned values
    y = np.array([0, 1] * 10)
    assert make_split(y, y, n_splits=5, current_split=0, seed=42).val.tolist() == [1, 2, 3, 6]


def test_stratified_per_class():
    y, truth = _data(1000)
    split = make_split(y, truth, 5, 0, 0)
    for cls in range(3):
        share = (y[split.val] == cls).mean()
        assert abs(share - (y == cls).mean()) < 0.02


def test_rare_full_truth_strata_fall_back_to_class():
    y = np.array([0] * 20 + [1] * 20)
    truth = np.array(["0a"] * 20 + ["1a"] * 18 + ["1b"] * 2)
    folds = fold_assignment(y, truth, 5, 0)
    assert np.bincount(folds).tolist() == [8] * 5


def test_errors():
    y, truth = _data()
    with pytest.raises(SplitError, match="current_split must be in 0..4"):
        make_split(y, truth, 5, 5)
    with pytest.raises(SplitError, match="n_splits >= 3"):
        make_split(y, truth, 2, 0)
    with pytest.raises(SplitError, match=r"class\(es\) \[1\] \(class index\) have one member"):
        make_split(np.array([0] * 10 + [1]), np.zeros(11), 5)
    with pytest.raises(SplitError, match=r"^4 rows cannot fill n_splits=5 folds"):
        fold_assignment(np.array([0, 0, 1, 1]), np.zeros(4), 5)
    # twelve classes of 4 rows: no class reaches 5 folds (scikit-learn's splitter raises a ValueError)
    twelve = np.repeat(np.arange(12), 4)
    with pytest.raises(SplitError, match=r"^every class has fewer rows than the 5 folds \(the largest has 4\); use "
                                         r"`--n-splits 4` or fewer\.$"):
        fold_assignment(twelve, twelve.astype(str), 5)
    assert np.bincount(fold_assignment(twelve, twelve.astype(str), 4)).tolist() == [12] * 4


def test_a_class_smaller_than_the_folds_lands_in_distinct_folds_without_a_warning(recwarn):
    y = np.array([0] * 20 + [1] * 20 + [2] * 3)
    folds = fold_assignment(y, y.astype(str), 5, seed=7)
    assert len(set(folds[y == 2].tolist())) == 3
    assert np.bincount(folds[y == 0]).tolist() == [4] * 5
    assert not [w for w in recwarn if "least populated" in str(w.message)]
