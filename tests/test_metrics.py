"""One classification-metrics function: scikit-learn's numbers, used by the baselines, CV, small sets and the sheet."""

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
    roc_auc_score,
)

from spectratorch.metrics import classification_metrics, per_class_metrics


def _probabilities(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.0
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return p, y


@pytest.mark.parametrize("k", [2, 3, 5])
def test_classification_metrics_are_scikit_learns(k):
    p, y = _probabilities(200, k, seed=k)
    m = classification_metrics(y, p)
    predicted = p.argmax(1)
    assert set(m) == {"loss", "accuracy", "f1", "balanced_accuracy", "auroc"}
    assert m["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert m["f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, predicted))
    assert m["loss"] == pytest.approx(log_loss(y, p))
    expected_auroc = roc_auc_score(y, p[:, 1]) if k == 2 else roc_auc_score(y, p, multi_class="ovr")
    assert m["auroc"] == pytest.approx(expected_auroc)


def test_predicted_classes_without_probabilities():
    p, y = _probabilities(120, 3, seed=1)
    predicted = np.roll(p.argmax(1), 1)  # reason: other predictions than the probabilities' argmax
    m = classification_metrics(y, None, predicted)
    assert "loss" not in m and m["auroc"] is None
    assert m["accuracy"] == pytest.approx(accuracy_score(y, predicted))
    assert m["f1"] == pytest.approx(f1_score(y, predicted, average="macro", labels=[0, 1, 2], zero_division=0))
    with pytest.raises(ValueError, match="probabilities or predicted"):
        classification_metrics(y)


@pytest.mark.filterwarnings("ignore::UserWarning")  # reason: scikit-learn notes the absent class
def test_a_class_without_rows():
    p, y = _probabilities(200, 4, seed=2)
    keep = y != 2
    m = classification_metrics(y[keep], p[keep])
    present = [0, 1, 3]
    renormalised = p[keep][:, present] / p[keep][:, present].sum(1, keepdims=True)
    assert m["auroc"] == pytest.approx(roc_auc_score(y[keep], renormalised, multi_class="ovr", labels=present))
    # the absent class, predicted for some rows, scores 0 in the macro F1 (scikit-learn's default labels)
    assert (p[keep].argmax(1) == 2).any()
    assert m["f1"] == pytest.approx(f1_score(y[keep], p[keep].argmax(1), average="macro", labels=[0, 1, 2, 3],
                                             zero_division=0))
    # never predicted, it has no F1 to average: a test fold without a rare class, all right, scores 1
    right = np.eye(4)[y[keep]] * 0.7 + 0.075
    assert classification_metrics(y[keep], right)["f1"] == 1.0
    assert classification_metrics(y[keep], right)["balanced_accuracy"] == 1.0
    assert classification_metrics(np.zeros(5, int), np.full((5, 2), 0.5))["auroc"] is None
    # two classes of three present: the binary AUROC of the two, their probabilities renormalised
    two = y < 2
    pair = p[two][:, :2] / p[two][:, :2].sum(1, keepdims=True)
    assert classification_metrics(y[two], p[two])["auroc"] == pytest.approx(roc_auc_score(y[two], pair[:, 1]))


def test_per_class_metrics_and_the_sheets_table_agree_with_scikit_learn():
    from spectratorch.report.metrics import per_class_scores

    p, y = _probabilities(90, 4, seed=3)
    predicted = p.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=range(4), zero_division=0)
    scores = per_class_metrics(y, predicted, 4)
    np.testing.assert_allclose(scores["recall"], recall)
    np.testing.assert_allclose(scores["f1"], f1)
    table = per_class_scores(y, predicted, ["a", "b", "c", "d"])
    np.testing.assert_allclose(table["precision"], precision)
    np.testing.assert_allclose(table["F1"], f1)
    assert table["n"].tolist() == support.tolist()


def test_the_baselines_score_with_the_same_function():
    from spectratorch.training.baseline import fit_baselines

    rng = np.random.default_rng(4)
    x = rng.normal(size=(240, 6))
    y = (x[:, 0] + 0.5 * rng.normal(size=240) > 0).astype(int)
    out = fit_baselines((x[:160], y[:160]), {"test": (x[160:], y[160:])}, 2)
    test = out["pls_da"]["test"]
    assert set(test) == {"accuracy", "f1", "balanced_accuracy", "auroc"} and test["auroc"] is None
    logistic = out["logistic_regression"]["test"]
    assert set(logistic) == set(test) and logistic["auroc"] is not None and 0.5 < logistic["accuracy"] <= 1


def test_only_computes_the_metrics_asked_for_with_the_same_values():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 50)
    probabilities = rng.dirichlet(np.ones(3), 50)
    full = classification_metrics(y, probabilities)
    for name in ("accuracy", "f1", "balanced_accuracy", "auroc"):
        part = classification_metrics(y, probabilities, only=(name,))
        assert set(part) == {"loss", name} and part[name] == full[name] and part["loss"] == full["loss"]
    assert set(classification_metrics(y, probabilities, only=())) == {"loss"}


def test_certain_right_answers_have_a_loss_of_plus_zero():
    """-log 1 is -0.0, which a log line printed as "loss -0.0000"."""
    m = classification_metrics(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]]))
    assert f"{m['loss']:.4f}" == "0.0000"
