import numpy as np

from spectratorch.report.metrics import apply_cutoff, confusion, cutoff_table, error_contributions


def _random(n=500, k=3, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.where(rng.random(n) < 0.7, p.argmax(1), rng.integers(0, k, n))
    return p, y


def test_cutoff_table_against_brute_force():
    p, y = _random()
    table = cutoff_table(p, y, targets=(0.8, 0.9), min_kept=0.05)
    top, correct = p.max(1), p.argmax(1) == y
    for row in table.itertuples():
        candidates = [c for c in np.unique(top) if (top >= c).mean() >= 0.05 and correct[top >= c].mean() >= row.target]
        assert row.cutoff == min(candidates)
        kept = top >= row.cutoff
        assert row.kept == kept.mean() and row.accuracy == correct[kept].mean()


def test_separable_validation_caps_the_cutoff_at_the_target():
    # every validation row right at p >= 1 - 2e-10: the lowest top probability would mark a correct sample at
    # p = 0.99998 unclassified
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    margin = rng.uniform(22.3, 30, 200)
    p1 = 1 / (1 + np.exp(np.where(y == 1, -margin, margin)))
    p = np.stack([1 - p1, p1], axis=1)
    table = cutoff_table(p, y, targets=(0.90, 0.95, 0.99))
    assert p.max(1).min() > 0.9999999998
    assert table["cutoff"].tolist() == [0.90, 0.95, 0.99] and (table["kept"] == 1).all()
    kept = apply_cutoff(np.array([[0.99998, 0.00002]]), table["cutoff"][1])[1]
    assert kept.all()
    # a cutoff that does exclude validation rows is not capped
    p_err = np.vstack([p, [[0.999999, 0.000001]] * 30])
    y_err = np.r_[y, np.ones(30, int)]
    row = cutoff_table(p_err, y_err, targets=(0.95,)).iloc[0]
    assert row.kept < 1 and row.cutoff > 0.999999


def test_unreachable_target_is_absent():
    p = np.array([[0.6, 0.4]] * 10)
    y = np.array([0, 1] * 5)
    assert cutoff_table(p, y, targets=(0.99,)).empty


def test_confusion_with_cutoff():
    p = np.array([[0.9, 0.1], [0.55, 0.45], [0.2, 0.8]])
    predicted, kept = apply_cutoff(p, 0.6)
    table = confusion(np.array([0, 1, 1]), predicted, ("a", "b"), kept)
    assert list(table.columns) == ["a", "b", "unclassified"]
    assert table.loc["b", "unclassified"] == 1 and table.loc["a", "a"] == 1 and table.loc["b", "b"] == 1


def test_error_contributions():
    y = np.array([0, 0, 1, 1, 1])
    predicted = np.array([1, 0, 0, 0, 1])
    truth = np.array(["OK", "OK", "VR11", "VR2", "VR2"])
    frame = error_contributions(y, predicted, truth)
    assert frame.to_dict("list")["full_truth"] == ["OK", "VR11", "VR2"]
    assert frame["share_of_errors"].sum() == 1.0
    kept = np.array([True, True, False, True, True])
    assert set(error_contributions(y, predicted, truth, kept)["full_truth"]) == {"OK", "VR2"}
