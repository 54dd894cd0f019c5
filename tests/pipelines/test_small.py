"""The small-set protocol: solved heads equal their closed forms, no test row reaches a choice, k-fold CV, ONNX."""

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch

from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from spectratorch.data.generic import make_generic_frame
from spectratorch.errors import SplitError
from spectratorch.export.calibration import softmax
from spectratorch.models.closed_form import (
    LDA_SHRINKAGES,
    LOGISTIC_CS,
    RIDGE_ALPHAS,
    Standardiser,
    decision,
    lda_path,
    logistic_path,
    pls_path,
    ridge_head,
)
from spectratorch.pipelines.small import inner_folds
from tests.conftest import spectra_like

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_thread")


def _spectra_like(n=90, n_features=300, n_classes=3, seed=0):
    return spectra_like(n, n_features, n_classes, seed)


# ---- heads equal the closed-form solutions ----------------------------------------------------------------------
@pytest.mark.parametrize("n_classes", [2, 3])
def test_logistic_head_is_scikit_learns_logistic_regression(n_classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y, x_new = _spectra_like(n_classes=n_classes)
    scaler = StandardScaler().fit(x)
    cs = [c for c in LOGISTIC_CS if c <= 1.0]
    for c, head in zip(cs, logistic_path(x, y, n_classes, cs=cs, tol=1e-10, max_iter=1000)):
        reference = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(scaler.transform(x), y)
        np.testing.assert_allclose(softmax(decision(x_new, head)), reference.predict_proba(scaler.transform(x_new)),
                                   atol=1e-5)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_pls_heads_are_scikit_learns_pls_regression(n_classes):
    from sklearn.cross_decomposition import PLSRegression

    x, y, x_new = _spectra_like(n_classes=n_classes)
    heads = pls_path(x, y, n_classes, max_components=12)
    for k in (1, 4, 12):
        reference = PLSRegression(n_components=k, scale=False).fit(x, np.eye(n_classes)[y])
        np.testing.assert_allclose(decision(x_new, heads[k - 1]), reference.predict(x_new), atol=1e-5)


@pytest.mark.parametrize("n_features", [300, 40])
@pytest.mark.parametrize("n_classes", [2, 3])
def test_lda_heads_are_scikit_learns_shrinkage_lda(n_classes, n_features):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.preprocessing import StandardScaler

    x, y, x_new = _spectra_like(n_features=n_features, n_classes=n_classes)
    # reason: unequal classes, so the priors (the class shares) count.
    keep = (y != 0) | (np.arange(len(y)) % (2 * n_classes) == n_classes)
    x, y = x[keep], y[keep]
    scaler, shrinkages, fit = StandardScaler().fit(x), (0.001, 0.1, 0.9), np.arange(len(y)) % 3 > 0
    # every row, and (as in an inner fold) two thirds of them standardised as every row is
    paths = [(lda_path(x, y, n_classes, shrinkages=shrinkages), slice(None)),
             (lda_path(x[fit], y[fit], n_classes, shrinkages=shrinkages, standardiser=Standardiser(x)), fit)]
    for (s, head), rows in [((s, h), rows) for heads, rows in paths for s, h in zip(shrinkages, heads)]:
        reference = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=s).fit(scaler.transform(x[rows]), y[rows])
        ours, expected = decision(x_new, head), reference.decision_function(scaler.transform(x_new))
        if n_classes == 2:
            ours = ours[:, 1] - ours[:, 0]
        else:
            expected = expected - expected.mean(1, keepdims=True)
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())
        np.testing.assert_allclose(softmax(decision(x_new, head)), reference.predict_proba(scaler.transform(x_new)),
                                   atol=1e-6)


def test_lda_with_one_row_per_class_is_the_nearest_class_mean():
    from spectratorch.models.closed_form import Standardiser, decision, lda_path

    x = np.random.default_rng(0).normal(size=(3, 20))
    heads = lda_path(x, np.arange(3), 3, shrinkages=(0.9, 0.001))
    probe = x + np.random.default_rng(1).normal(scale=0.1, size=x.shape)
    z, means = Standardiser(x).project(probe), Standardiser(x).project(x)
    nearest = ((z[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    for head in heads:
        assert np.isfinite(head[0]).all() and (decision(probe, head).argmax(1) == nearest).all()


@pytest.mark.parametrize(("n_classes", "n_rows", "n_features"),
                         [(2, 90, 300), (3, 90, 300), (3, 400, 80), (4, 400, 80)])
def test_ridge_head_is_scikit_learns_ridge_classifier_cv(n_classes, n_rows, n_features):
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    x, y, x_new = _spectra_like(n_rows, n_features, n_classes=n_classes)
    scaler = StandardScaler().fit(x)
    head, alpha = ridge_head(x, y, n_classes)
    reference = RidgeClassifierCV(alphas=RIDGE_ALPHAS).fit(scaler.transform(x), y)
    assert alpha == reference.alpha_
    # reason: the grid's ends say nothing of the leave-one-out errors in between; a mid-grid alpha does.
    assert n_rows < n_features or RIDGE_ALPHAS[0] < alpha < RIDGE_ALPHAS[-1]
    scores = reference.decision_function(scaler.transform(x_new))
    ours = decision(x_new, head)
    if n_classes == 2:  # reason: the single score z is stored as the two logits (-z/2, z/2)
        ours = ours[:, 1] - ours[:, 0]
    np.testing.assert_allclose(ours, scores, atol=1e-5)
    np.testing.assert_array_equal(decision(x_new, head).argmax(1), reference.predict(scaler.transform(x_new)))


def test_inner_cv_logistic_path_reaches_the_weak_penalties_own_optimum():
    from spectratorch.pipelines.small import _INNER_TOL

    # reason: warm-started from C = 100, a loose tolerance left C = 1000 near C = 100's solution (30 % off here).
    x, y, _ = spectra_like(90, 300, 3, 0, bump=lambda y: 0.05 * y)
    exact = logistic_path(x, y, 3, cs=(1000.0,), tol=1e-10, max_iter=1000)[0]
    inner = logistic_path(x, y, 3, tol=_INNER_TOL)[LOGISTIC_CS.index(1000.0)]

    def centred(head):
        scores = decision(x, head)
        return scores - scores.mean(1, keepdims=True)

    assert np.abs(centred(inner) - centred(exact)).max() < 0.2 * np.abs(centred(exact)).max()


def test_metric_ties_within_two_rows_go_to_the_lower_log_loss():
    from spectratorch.pipelines.small import Candidate, choose

    # reason: precomputed out-of-fold logits (the network solver's input) make the two candidates' records exact:
    # A is right on 48 of 50 rows, two of them confidently wrong; B on 47, its errors mild (lower log-loss).
    n = 50
    y = np.arange(n) % 2

    def logits(margins):
        out = np.zeros((1, n, 2))
        out[0, np.arange(n), y] = margins
        return out

    a, b = np.full(n, 1.0), np.full(n, 3.0)
    a[[0, 1]], b[[0, 1]], b[2] = -20.0, -1.0, -3.0
    result = choose({"A": logits(a), "B": logits(b)}, y, 2, [(np.arange(n), np.arange(n))], "f1",
                    [Candidate("A", "network"), Candidate("B", "network")])
    assert result["candidates"]["A"]["metrics"]["f1"] > result["candidates"]["B"]["metrics"]["f1"]
    assert result["candidates"]["A"]["metrics"]["loss"] > result["candidates"]["B"]["metrics"]["loss"]
    assert result["chosen"] == ["B"] and result["ranking"] == ["B", "A"]


def test_row_space_basis_keeps_every_fit_on_a_subset_exact():
    from sklearn.linear_model import LogisticRegression

    x, y, x_new = _spectra_like(n=60)
    standardiser = Standardiser(x)
    assert standardiser.basis.shape == (300, 59)
    subset = np.arange(0, 60, 2)
    head = logistic_path(x[subset], y[subset], 3, cs=[0.1], tol=1e-10, max_iter=1000, standardiser=standardiser)[0]
    reference = LogisticRegression(C=0.1, tol=1e-10, max_iter=10_000).fit(
        (x[subset] - standardiser.mean) / standardiser.scale, y[subset])
    np.testing.assert_allclose(softmax(decision(x_new, head)),
                               reference.predict_proba((x_new - standardiser.mean) / standardiser.scale), atol=1e-5)


# ---- bad input ---------------------------------------------------------------------------------------------------
def test_a_small_class_keeps_the_inner_folds_and_says_which(caplog):
    y = np.array([0] * 20 + [1] * 20 + [2] * 3)
    with caplog.at_level(logging.WARNING):
        assert inner_folds(y, ["a", "b", "c"], len(y)) == 5
    assert ("class(es) 'c' (3) have fewer training rows than the 5 inner folds: 5 inner folds are kept, and some "
            "validate none of their rows") in caplog.text
    with caplog.at_level(logging.WARNING):
        assert inner_folds(np.array([0] * 20 + [1] * 2), ["a", "b"], 22) == 5


def test_with_groups_the_inner_folds_count_a_class_s_samples_not_its_scans(caplog):
    # 3 classes of 4 samples scanned 3 times: 12 rows a class, but only 4 samples to spread over the inner folds
    y = np.repeat(np.arange(3), 12)
    groups = np.array([f"s{k // 3}" for k in range(36)])
    assert inner_folds(y, ["a", "b", "c"], 36) == 5
    with caplog.at_level(logging.WARNING):
        assert inner_folds(y, ["a", "b", "c"], 36, groups) == 4
    assert "every class has at most 4 groups of training rows: 4 inner folds instead of 5" in caplog.text
    with pytest.raises(SplitError, match=r"class 'a' has 1 group\(s\) of training rows"):
        inner_folds(y, ["a", "b", "c"], 36, np.where(y == 0, "one", groups))


def test_every_class_smaller_than_the_inner_folds_lowers_them_to_the_largest(caplog):
    # twelve varieties of 4 training rows each: no class reaches 5 inner folds, so a stratified split of 5 cannot be
    y = np.repeat(np.arange(12), 4)
    y[:2] = 11  # one class of 6 rows, one of 2
    labels = [f"var{k:02d}" for k in range(12)]
    with caplog.at_level(logging.WARNING):
        assert inner_folds(y, labels, len(y)) == 5
    y = np.repeat(np.arange(12), 4)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        n_folds = inner_folds(y, labels, len(y))
    assert n_folds == 4
    assert "every class has at most 4 training rows: 4 inner folds instead of 5" in caplog.text
    from sklearn.model_selection import StratifiedKFold

    assert len(list(StratifiedKFold(n_folds).split(y, y))) == 4
    with pytest.raises(SplitError, match="class 'c' has 1 training row"):
        inner_folds(np.array([0] * 20 + [1] * 20 + [2]), ["a", "b", "c"], 41)


@pytest.mark.slow
def test_cli_refuses_a_class_with_one_training_row(tmp_path):
    frame = make_generic_frame(40, seed=3)
    frame.loc[frame.index[-1], "label"] = "alone"
    path = tmp_path / "rare.pkl"
    frame.to_pickle(path)
    test = tmp_path / "test.pkl"
    make_generic_frame(10, seed=4).to_pickle(test)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "spectratorch.cli", "train", "--data", str(path), "--targets",
                             "AVA", "label", "--channels", "nir", "--tabular", "--n-splits", "2", "--test-source",
                             str(test), "--rare-classes", "error", "--output-dir", str(tmp_path / "out")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "'alone'" in result.stderr


# ---- the protocol end to end ------------------------------------------------------------------------------------
def _config(path, out, test_source="like-val", n_splits=5, split=0, **model):
    data = DataConfig(data=str(path), targets=("AVA", "label"), channels=("nir",), tabular=(), n_splits=n_splits,
                      current_split=split, test_source=str(test_source))
    return RunConfig(data, ModelConfig(n_features=840, **model), TrainConfig(output_dir=str(out), loggers=("csv",)))


def _without_test(summary):
    kept = {k: v for k, v in summary.items()
            if k not in ("metrics", "confusion", "files", "calibration", "config", "seconds_fit", "data_files")}
    return {**kept, "class_counts": summary["class_counts"]["train"]}


@pytest.mark.slow
def test_planted_leak_test_rows_change_no_choice_and_no_weight(tmp_path):
    from spectratorch.pipelines.run import train
    from spectratorch.training.restore import load_module

    make_generic_frame(60, seed=5).to_pickle(tmp_path / "train.pkl")
    honest = make_generic_frame(30, seed=6)
    adversarial = honest.copy()
    # reason: the planted leak: the test rows' labels rotated (every label wrong) and their spectra reversed, so
    # any choice that looked at them (candidate, C, components, alpha, temperature, ensemble) would move.
    adversarial["label"] = honest["label"].map({"pure": "rich", "rich": "shifted", "shifted": "pure"}).to_numpy()
    adversarial.iloc[:, :-1] = honest.iloc[:, :-1].to_numpy()[::-1]
    honest.to_pickle(tmp_path / "honest.pkl")
    adversarial.to_pickle(tmp_path / "adversarial.pkl")
    a = train(_config(tmp_path / "train.pkl", tmp_path / "a", tmp_path / "honest.pkl"), result_sheet=False)
    b = train(_config(tmp_path / "train.pkl", tmp_path / "b", tmp_path / "adversarial.pkl"), result_sheet=False)
    assert a["arch_selection"]["protocol"] == "inner-cv"
    assert _without_test(a) == _without_test(b)
    assert a["metrics"]["val"] == b["metrics"]["val"]
    assert a["metrics"]["test"]["accuracy"] > 0.8 > b["metrics"]["test"]["accuracy"]
    state_a = load_module(a["files"]["checkpoint"]).state_dict()
    state_b = load_module(b["files"]["checkpoint"]).state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0)
    # every training row (all 60: the validation fold too) trained the model; nothing else did
    assert sum(a["class_counts"]["train"].values()) == 60 == a["arch_selection"]["training_rows"]


@pytest.mark.slow
def test_baselines_are_the_linear_candidates_refit_as_scikit_learn_fits_them(tmp_path):
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from spectratorch.data.datamodule import SpectralDataModule
    from spectratorch.pipelines.run import train
    from spectratorch.training.baseline import preprocessed_features
    from spectratorch.training.restore import load_module

    make_generic_frame(60, seed=5).to_pickle(tmp_path / "train.pkl")
    make_generic_frame(40, seed=6).to_pickle(tmp_path / "test.pkl")
    config = _config(tmp_path / "train.pkl", tmp_path / "out", tmp_path / "test.pkl")
    summary = train(config, result_sheet=False)
    baseline, candidates = summary["metrics"]["baseline"], summary["arch_selection"]["candidates"]
    # the baselines are the Linear and PLSDA candidates at the values their inner CV chose
    assert baseline["logistic_regression"]["C"] == candidates["Linear"]["chosen"]
    assert baseline["pls_da"]["n_components"] == candidates["PLSDA"]["chosen"]
    assert baseline["logistic_regression"]["n_train"] == 60 == baseline["pls_da"]["n_train"]
    # ... refit on every training row and scored on the test rows exactly as scikit-learn would
    dm = SpectralDataModule(config.data)
    dm.prepare()
    preprocess = load_module(summary["files"]["checkpoint"]).model.preprocess
    fit_rows = dm.stage_arrays("train", rows=np.sort(np.concatenate([dm.split.train, dm.split.val])))
    test_rows = dm.stage_arrays("test")
    x_fit, x_test = (preprocessed_features(preprocess, r.spectra, r.tabular).astype(np.float64)
                     for r in (fit_rows, test_rows))
    y_fit, y_test = fit_rows.y.numpy(), test_rows.y.numpy()
    scaler = StandardScaler().fit(x_fit)
    logistic = LogisticRegression(C=baseline["logistic_regression"]["C"], tol=1e-10, max_iter=10_000)
    logistic.fit(scaler.transform(x_fit), y_fit)
    proba = logistic.predict_proba(scaler.transform(x_test))
    assert baseline["logistic_regression"]["test"]["accuracy"] == pytest.approx((proba.argmax(1) == y_test).mean())
    from sklearn.metrics import roc_auc_score

    assert baseline["logistic_regression"]["test"]["auroc"] == pytest.approx(
        roc_auc_score(y_test, proba, multi_class="ovr"), abs=1e-4)
    pls = PLSRegression(n_components=baseline["pls_da"]["n_components"], scale=False).fit(x_fit, np.eye(3)[y_fit])
    assert baseline["pls_da"]["test"]["accuracy"] == pytest.approx((pls.predict(x_test).argmax(1) == y_test).mean())


@pytest.mark.slow
def test_cv_is_the_standard_k_fold_estimate(tmp_path):
    from spectratorch.data.splits import fold_assignment
    from spectratorch.pipelines.cv import run_cv

    frame = make_generic_frame(60, seed=7)
    frame.to_pickle(tmp_path / "set.pkl")
    result = run_cv(_config(tmp_path / "set.pkl", tmp_path / "out", n_splits=3), ensemble=False)
    assert result["n_folds"] == 3
    summaries = [json.loads(Path(fold["json"]).read_text()) for fold in result["folds"]]
    folds = fold_assignment(*(np.unique(frame["label"], return_inverse=True)[1],) * 2, n_splits=3, seed=42)
    tested = np.zeros(60, dtype=int)
    for k, summary in enumerate(summaries):
        test_fold = (k + 1) % 3
        assert sum(summary["class_counts"]["test"].values()) == (folds == test_fold).sum()
        assert sum(summary["class_counts"]["train"].values()) == 60 - (folds == test_fold).sum()  # (k - 1) / k
        assert summary["arch_selection"]["training_rows"] == 60 - (folds == test_fold).sum()
        tested[folds == test_fold] += 1
        assert set(summary["arch_selection"]["candidates"]) == {"Linear", "PLSDA", "MiniRocket", "KernelRidge",
                                                                "LDA", "Linear[snv]", "Linear[sg1]", "LDA[snv]",
                                                                "LDA[sg1]"}
        for candidate in summary["arch_selection"]["candidates"].values():
            assert len(candidate["inner_cv_per_value"]) == len(candidate["grid"])
        # every run reports its own linear baselines, fitted on the same training rows, scored on the same test rows
        baseline = summary["metrics"]["baseline"]
        assert set(baseline) == {"logistic_regression", "pls_da"}
        assert all(0 <= b["test"]["accuracy"] <= 1 for b in baseline.values())
    assert (tested == 1).all()  # every row tested exactly once
    accuracies = [s["metrics"]["test"]["accuracy"] for s in summaries]
    assert result["mean"]["test"]["accuracy"] == pytest.approx(np.mean(accuracies))
    assert result["mean"]["test"]["accuracy"] > 0.8
    # the same command again resumes: each fold's files carry the name of the head it chose, not 'auto'
    import spectratorch.pipelines.cv as cv

    def nothing_to_train(config, todo, workers):
        assert not todo, f"folds {[c.data.current_split for c in todo]} trained again"
        return []

    with mock.patch.object(cv, "_train_all", nothing_to_train):
        again = run_cv(_config(tmp_path / "set.pkl", tmp_path / "out", n_splits=3), ensemble=False)
    assert [f["name"] for f in again["folds"]] == [f["name"] for f in result["folds"]]
    assert again["mean"] == result["mean"]


@pytest.mark.slow
def test_test_source_none_trains_the_final_model_on_every_row(tmp_path):
    from spectratorch.errors import ConfigError
    from spectratorch.export.onnx import read_metadata
    from spectratorch.pipelines.cv import run_cv
    from spectratorch.pipelines.run import train

    make_generic_frame(60, seed=5).to_pickle(tmp_path / "set.pkl")
    config = _config(tmp_path / "set.pkl", tmp_path / "out", test_source="none")
    config = RunConfig(config.data, config.model, TrainConfig(output_dir=str(tmp_path / "out"), to_onnx=True,
                                                              loggers=("csv",)))
    summary = train(config)
    assert summary["arch_selection"]["training_rows"] == 60 == sum(summary["class_counts"]["train"].values())
    assert set(summary["metrics"]) == {"val", "baseline"} and "result_sheet" not in summary["files"]
    # the baselines beside it: the Linear and PLSDA candidates' inner CV, on the same folds as the model's
    baseline, candidates = summary["metrics"]["baseline"], summary["arch_selection"]["candidates"]
    assert set(baseline) == {"logistic_regression", "pls_da"} and "test" not in baseline["pls_da"]
    assert baseline["logistic_regression"]["val"]["f1"] == candidates["Linear"]["inner_cv"]["f1"]
    assert baseline["pls_da"]["val"]["accuracy"] == candidates["PLSDA"]["inner_cv"]["accuracy"]
    # the cutoffs come from the out-of-fold predictions, so the model carries them without a test set
    meta = read_metadata(summary["files"]["onnx"])
    assert meta["cutoffs"] == {k: v for k, v in summary["calibration"]["cutoffs"].items() if v is not None}
    assert meta["cutoffs"]["accuracy_0.90"] > 0
    with pytest.raises(ConfigError, match="--test-source none leaves none"):
        run_cv(config)
    # a network trained by Adam keeps its validation fold (early stopping, calibration) and tests nothing
    network = RunConfig(config.data, ModelConfig(arch="TinyVGG"),
                        TrainConfig(output_dir=str(tmp_path / "net"), max_epochs=1, to_onnx=True, loggers=("csv",)))
    summary = train(network)
    assert set(summary["metrics"]) == {"val", "baseline"} and sum(summary["class_counts"]["train"].values()) == 48
    assert set(summary["metrics"]["baseline"]["logistic_regression"]) >= {"val"}
    assert "test" not in summary["metrics"]["baseline"]["logistic_regression"]
    assert {"onnx", "checkpoint"} <= set(summary["files"]) and "result_sheet" not in summary["files"]


@pytest.mark.slow
def test_ensemble_is_one_onnx_file_like_a_single_model(tmp_path, monkeypatch):
    import onnxruntime

    from spectratorch.export.onnx import read_metadata
    from spectratorch.inference import METADATA_KEYS
    from spectratorch.pipelines import small
    from spectratorch.training.restore import load_module

    original = small.choose

    def vote_of_the_best_two(*args, **kwargs):
        # reason: the soft vote is chosen only where it wins on inner CV; here it is forced, to test its export.
        result = original(*args, **kwargs)
        result["chosen"] = result["ranking"][:2]
        return result

    monkeypatch.setattr(small, "choose", vote_of_the_best_two)
    make_generic_frame(60, seed=8).to_pickle(tmp_path / "set.pkl")
    config, dm = _exporting_run(tmp_path)
    summary = small.train_small(config, dm, candidates=small.CANDIDATES, result_sheet=False)
    selection = summary["arch_selection"]
    assert selection["chosen"] == "Ensemble" and len(selection["members"]) == 2
    assert summary["name"].startswith("Ensemble y=")
    module = load_module(summary["files"]["checkpoint"]).eval()
    assert [m["arch"] for m in module.hparams["arch_kwargs"]["members"]] == selection["members"]
    frame = pd.read_pickle(tmp_path / "set.pkl")
    spectra = torch.tensor(frame.iloc[:, :-1].to_numpy(np.float32))[:, None]
    with torch.no_grad():
        expected = module(spectra, None).softmax(1).numpy()
    session = onnxruntime.InferenceSession(summary["files"]["onnx"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["data_spectra"]
    assert [o.name for o in session.get_outputs()] == ["probabilities", "t2", "q", "outlier"]
    got = session.run(None, {"data_spectra": spectra.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (got.argmax(1) == pd.factorize(frame["label"], sort=True)[0]).mean() > 0.8
    meta = read_metadata(summary["files"]["onnx"])
    assert set(METADATA_KEYS) <= set(meta) and meta["arch"] == "Ensemble"
    assert meta["calibration"]["source"].startswith("out-of-fold")
    # every training row trained the model: the outlier model's limits are their out-of-fold scores'
    assert meta["ood"]["limits_from"] == "5-fold out-of-fold scores of the training rows"
    assert meta["ood"]["n_held_out"] == meta["ood"]["n_train"] == len(small._training_rows(dm))


def _exporting_run(tmp_path):
    """The config of a run on ``tmp_path / "set.pkl"`` that writes its ONNX file, and its prepared data module."""
    from spectratorch.data.datamodule import SpectralDataModule

    config = _config(tmp_path / "set.pkl", tmp_path / "out")
    config = RunConfig(config.data, config.model, TrainConfig(output_dir=str(tmp_path / "out"), to_onnx=True,
                                                              loggers=("csv",)))
    dm = SpectralDataModule(config.data)
    dm.prepare()
    return config, dm


def _exported_small_run(tmp_path, candidate, seed=9):
    """``train_small`` with one candidate on ``make_generic_frame(60, seed)``, ONNX written; ``(summary, dm)``."""
    from spectratorch.pipelines import small

    make_generic_frame(60, seed=seed).to_pickle(tmp_path / "set.pkl")
    config, dm = _exporting_run(tmp_path)
    return small.train_small(config, dm, candidates=[candidate], result_sheet=False), dm


@pytest.mark.slow
def test_the_small_set_result_sheet_draws_the_exported_out_of_fold_outlier_model(tmp_path, monkeypatch):
    """The sheet's T²/Q panel has the ONNX file's limits, which a small-set model takes out of fold; its title the
    run's baselines."""
    from spectratorch.export.onnx import read_metadata
    from spectratorch.pipelines import small
    from spectratorch.report import sheet

    drawn = []
    original = sheet.write_result_sheet

    def write(data, *args, **kwargs):
        drawn.append(data)
        return original(data, *args, **kwargs)

    monkeypatch.setattr(sheet, "write_result_sheet", write)
    make_generic_frame(60, seed=9).to_pickle(tmp_path / "set.pkl")
    config, dm = _exporting_run(tmp_path)
    candidate = next(c for c in small.CANDIDATES if c.arch == "Linear")
    summary = small.train_small(config, dm, candidates=[candidate])
    ood = read_metadata(summary["files"]["onnx"])["ood"]
    assert ood["limits_from"].endswith("out-of-fold scores of the training rows")
    (data,) = drawn
    assert data.outliers["t2_limit"] == pytest.approx(ood["t2_limit"], rel=1e-6)
    assert data.outliers["q_limit"] == pytest.approx(ood["q_limit"], rel=1e-6)
    # the title holds the run's own baselines, as the JSON has them
    assert set(data.baseline) == {"logistic_regression", "pls_da"}
    baselines = summary["metrics"]["baseline"]
    assert data.baseline == {name: result["test"]["accuracy"] for name, result in baselines.items()}


@pytest.mark.slow
def test_counts_on_a_large_common_level_export_after_snv(tmp_path):
    """Raw counts of 50,000 +- tens: SNV's ``x - mean`` keeps their digits, and the export's check passes."""
    from spectratorch.pipelines import small

    frame = make_generic_frame(60, seed=9)
    spectral = [c for c in frame.columns if c != "label"]
    frame[spectral] = (frame[spectral] * 50 + 5e4).round(1)
    frame.to_pickle(tmp_path / "set.pkl")
    config, dm = _exporting_run(tmp_path)
    candidate = next(c for c in small.PREPROCESSING_VARIANTS if c.name == "LDA[snv]")
    summary = small.train_small(config, dm, candidates=[candidate], result_sheet=False)
    assert Path(summary["files"]["onnx"]).is_file() and summary["metrics"]["test"]["accuracy"] > 0.8


@pytest.mark.slow
def test_export_and_report_of_a_small_set_checkpoint_make_the_runs_own_file_and_sheet(tmp_path):
    """The out-of-fold predictions travel in the checkpoint: `spectratorch export` takes the calibration, label sets,
    outlier limits and cutoffs from them, not from validation rows that trained the model; `report` too."""
    import onnxruntime

    from spectratorch.export.onnx import read_metadata
    from spectratorch.pipelines import small
    from tests.export.helpers import run_cli

    candidate = next(c for c in small.CANDIDATES if c.arch == "Linear")
    summary, dm = _exported_small_run(tmp_path, candidate)
    again = tmp_path / "again.onnx"
    result = run_cli(["export", summary["files"]["checkpoint"], "-o", again], block_torch=False, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    run, exported = read_metadata(summary["files"]["onnx"]), read_metadata(again)
    assert exported == run
    assert exported["calibration"]["source"].startswith("out-of-fold") and exported["cutoffs"]
    assert exported["conformal"]["n"] == exported["ood"]["n_held_out"] == len(small._training_rows(dm))
    rows = dm.stage_arrays("test").spectra.numpy()
    outputs = [onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"data_spectra": rows}) for path in (summary["files"]["onnx"], again)]
    for got, expected in zip(*outputs):
        np.testing.assert_array_equal(got, expected)
    # `spectratorch report` redraws the sheet from the same out-of-fold predictions and keeps the file's cutoffs
    result = run_cli(["report", summary["files"]["checkpoint"]], block_torch=False, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    sheet = json.loads(result.stdout.strip().splitlines()[-1])
    assert sheet["temperature"] == 1.0
    assert read_metadata(summary["files"]["onnx"])["cutoffs"] == run["cutoffs"]
    # an ensemble of small-set folds (`cv --ensemble`) takes its members' out-of-fold predictions the same way
    from spectratorch.export.ensemble import export_ensemble
    from spectratorch.inference import Predictor

    path, members = export_ensemble([summary["files"]["checkpoint"]] * 2, tmp_path / "ens.onnx", "ens", n_check=32)
    assert [m.temperature for m in members] == [1.0, 1.0]
    ensemble = Predictor(path)
    # the same rows twice: each counts once in the label sets' calibration, with its identical sets of scores
    assert ensemble.conformal == {**run["conformal"], "source": "out-of-fold"}
    assert ensemble.metadata["ood"] == run["ood"]
    got = ensemble.predict_outputs(rows, np.zeros((len(rows), 0), np.float32))
    np.testing.assert_allclose(got["t2"], outputs[0][1], rtol=1e-4)


@pytest.mark.slow
def test_an_ensemble_of_folds_that_chose_different_models_averages_them(tmp_path):
    """`cv --ensemble` on a small set: the folds may choose different models; each member carries its own
    preprocessing, so the file is the mean of their probabilities. Members that answer other classes are refused."""
    from spectratorch.export.ensemble import EnsembleMember, _check_members, export_ensemble
    from spectratorch.export.onnx import ExportError
    from spectratorch.inference import Predictor
    from spectratorch.pipelines import small

    runs = {}
    for arch in ("Linear", "LDA"):
        (tmp_path / arch).mkdir()
        candidate = next(c for c in small.CANDIDATES if c.arch == arch)
        runs[arch], dm = _exported_small_run(tmp_path / arch, candidate)
    path, _ = export_ensemble([runs[a]["files"]["checkpoint"] for a in runs], tmp_path / "ens.onnx", "ens",
                              n_check=32)
    ensemble = Predictor(path)
    assert ensemble.metadata["arch"] == "Linear+LDA"
    # both trained on the same rows: each is one calibration row of the label sets, with the mean of the two
    # members' out-of-fold probabilities
    from spectratorch.export.conformal import nonconformity
    from spectratorch.export.onnx import out_of_fold_trust, stored_out_of_fold

    stored = [stored_out_of_fold(runs[a]["files"]["checkpoint"], rows=True) for a in runs]
    np.testing.assert_array_equal(stored[0][2], stored[1][2])
    assert ensemble.conformal["n"] == len(stored[0][2]) == runs["Linear"]["arch_selection"]["training_rows"]
    mean = np.mean([out_of_fold_trust(*s[:2])[1][0] for s in stored], axis=0)
    scores = np.sort(nonconformity(mean, "lac")[np.arange(len(mean)), stored[0][1]])
    np.testing.assert_allclose(ensemble.conformal["scores"], scores[np.asarray(ensemble.conformal["ranks"]) - 1],
                               rtol=1e-6)
    rows = dm.stage_arrays("test").spectra.numpy()
    tabular = np.zeros((len(rows), 0), np.float32)
    singles = [Predictor(runs[a]["files"]["onnx"]).predict_outputs(rows, tabular)["probabilities"] for a in runs]
    np.testing.assert_allclose(ensemble.predict_outputs(rows, tabular)["probabilities"], np.mean(singles, axis=0),
                               atol=1e-5)
    hparams = {"channels": ["nir"], "axis": [1.0, 2.0], "tabular_columns": [], "labels": ["a", "b"], "arch": "X"}
    members = [EnsembleMember(Path(name), None, h, {}) for name, h in
               (("one.ckpt", hparams), ("two.ckpt", {**hparams, "arch": "Y"}), ("three.ckpt", {**hparams,
                                                                                  "labels": ["a", "c"]}))]
    _check_members(members[:2])
    with pytest.raises(ExportError, match="three.ckpt differs from one.ckpt .labels"):
        _check_members([members[0], members[2]])


@pytest.mark.slow
def test_kernel_ridge_candidate_is_solved_checkpointed_and_exported(tmp_path):
    import onnxruntime

    from spectratorch.models.closed_form import kernel_ridge_head, squared_distances
    from spectratorch.pipelines import small
    from spectratorch.training.restore import load_module

    candidate = next(c for c in small.CANDIDATES if c.arch == "KernelRidge")
    summary, dm = _exported_small_run(tmp_path, candidate)
    selection = summary["arch_selection"]
    entry = selection["candidates"]["KernelRidge"]
    assert selection["chosen"] == "KernelRidge" and entry["parameter"] == "gamma" and len(entry["grid"]) == 7
    assert entry["chosen"] in entry["grid"] and "alpha" in entry
    module = load_module(summary["files"]["checkpoint"]).eval()
    net = module.model.net
    n_train = selection["training_rows"]
    assert module.hparams["arch_kwargs"]["n_support"] == n_train == net.n_support
    assert float(net.gamma) == pytest.approx(entry["chosen"])
    # the refit is the closed form on every training row at the chosen gamma and alpha, over the temperatures (the
    # inner CV's, then the final calibration's)
    z = net.support.double().numpy()
    (weight, bias), _ = kernel_ridge_head(np.exp(-entry["chosen"] * squared_distances(z, z)), summary_y(dm), 3,
                                          alphas=[entry["alpha"]])
    temperature = entry["temperature"] * selection["final_temperature"]
    np.testing.assert_allclose(net.fc.weight.detach().double().numpy() * temperature, weight, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(net.fc.bias.detach().double().numpy() * temperature, bias, atol=1e-4, rtol=1e-5)
    frame = pd.read_pickle(tmp_path / "set.pkl")
    spectra = torch.tensor(frame.iloc[:, :-1].to_numpy(np.float32))[:, None]
    with torch.no_grad():
        expected = module(spectra, None).softmax(1).numpy()
    session = onnxruntime.InferenceSession(summary["files"]["onnx"], providers=["CPUExecutionProvider"])
    got = session.run(None, {"data_spectra": spectra.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (got.argmax(1) == pd.factorize(frame["label"], sort=True)[0]).mean() > 0.8


def summary_y(dm):
    """The classes of the training rows, in the order the small-set protocol keeps them."""
    from spectratorch.pipelines.small import _training_rows

    return dm.stage_arrays("train", rows=_training_rows(dm)).y.numpy()


# ---- the network candidate ------------------------------------------------------------------------------------
def test_network_stays_out_by_default_on_a_small_set():
    from spectratorch.pipelines.small_network import NETWORK_MIN_ROWS, network_rule

    assert not network_rule(48, None)[0] and not network_rule(NETWORK_MIN_ROWS - 1, None)[0]
    assert network_rule(NETWORK_MIN_ROWS, None)[0] and network_rule(48, 30.0)[0]
    assert network_rule(NETWORK_MIN_ROWS * 10, 0.0) == (False, "--time-budget 0")
    # on a CPU the network's inner folds take about an hour on 5,000 spectra: only a budget brings it in
    assert not network_rule(NETWORK_MIN_ROWS * 10, None, on_cpu=True)[0]
    assert network_rule(NETWORK_MIN_ROWS * 10, 60.0, on_cpu=True) == (True, "--time-budget 60 s")


@pytest.mark.slow
def test_default_run_on_a_small_set_trains_no_network(tmp_path):
    from spectratorch.pipelines.run import train

    make_generic_frame(60, seed=9).to_pickle(tmp_path / "set.pkl")
    summary = train(_config(tmp_path / "set.pkl", tmp_path / "out"), result_sheet=False)
    selection = summary["arch_selection"]
    assert set(selection["candidates"]) == {"Linear", "PLSDA", "MiniRocket", "KernelRidge", "LDA", "Linear[snv]",
                                            "Linear[sg1]", "LDA[snv]", "LDA[sg1]"}
    assert selection["network"]["joined"] is None
    assert selection["network"]["rule"] == "stays out: below 2000 training rows; --time-budget SECONDS lets it join"
    # the last calibration (Platt's targets) keeps the out-of-fold probabilities off 1.000 where every row is right
    assert summary["metrics"]["val"]["accuracy"] == 1.0 and selection["final_temperature"] > 1.0
    assert summary["metrics"]["val"]["loss"] > 0.01


@pytest.mark.slow
def test_where_an_out_of_fold_row_is_wrong_the_last_temperature_fits_the_labels(tmp_path):
    # 12 classes of 6 rows, peaks close enough to be confused: Platt's targets (7/8 at most for a class of 6 rows)
    # would soften every probability; the labels keep the candidate's own calibration
    from spectratorch.pipelines.run import train

    rng = np.random.default_rng(4)
    x = np.linspace(0, 1, 120)
    rows = [np.exp(-((x - 0.2 - 0.05 * k - rng.normal(0, 0.01)) ** 2) / 0.003) + rng.normal(0, 0.15, 120)
            for k in range(12) for _ in range(6)]
    frame = pd.DataFrame(np.array(rows), columns=[f"nir_{1000 + 5 * i}" for i in range(120)])
    frame.insert(0, "label", [f"k{k:02d}" for k in range(12) for _ in range(6)])
    frame.rename_axis("id").to_pickle(tmp_path / "set.pkl")
    config = _config(tmp_path / "set.pkl", tmp_path / "out", n_splits=3)
    config = dataclasses.replace(config, model=ModelConfig(arch="LDA"))
    summary = train(config, result_sheet=False)
    assert 0.3 < summary["metrics"]["val"]["accuracy"] < 1.0
    assert summary["arch_selection"]["final_temperature"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_above_its_row_limit_the_kernel_candidate_is_left_out_and_said(tmp_path, monkeypatch, caplog, capsys):
    from spectratorch.pipelines import small
    from spectratorch.pipelines.run import train

    # reason: the limit, lowered so that 48 training rows are "too many" for the kernel; the solved heads' bar shows
    # at once instead of after seconds
    monkeypatch.setattr(small, "KERNEL_MAX_ROWS", 40)
    monkeypatch.setattr(small, "_BAR_DELAY", 0.0)
    make_generic_frame(60, seed=9, length=64).to_pickle(tmp_path / "set.pkl")
    with caplog.at_level("INFO", logger="spectratorch"):
        summary = train(_config(tmp_path / "set.pkl", tmp_path / "out"), result_sheet=False)
    candidates = summary["arch_selection"]["candidates"]
    assert "KernelRidge" not in candidates and {"Linear", "LDA[snv]", "MiniRocket"} <= set(candidates)
    assert ("--arch auto: KernelRidge is not a candidate on 48 training rows (more than 40: its kernel matrix and "
            "support grow with the rows squared); --arch KernelRidge fits it alone") in caplog.text
    # a bar counts the solved heads' steps: each candidate's features, then its inner CV
    assert re.search(r"solved heads: features, inner CV: +\d+%\|.*\| \d+/16 ", capsys.readouterr().err)


@pytest.mark.slow
def test_on_a_cpu_the_network_stays_out_of_a_set_large_enough_for_it_and_says_so(tmp_path, monkeypatch, caplog):
    from spectratorch.pipelines import small_network
    from spectratorch.pipelines.run import train

    # reason: the rule's size, lowered so that a 60-spectrum set is "large enough" for the network
    monkeypatch.setattr(small_network, "NETWORK_MIN_ROWS", 40)
    make_generic_frame(60, seed=9, length=64).to_pickle(tmp_path / "set.pkl")
    config = _config(tmp_path / "set.pkl", tmp_path / "out")
    config = RunConfig(config.data, config.model, dataclasses.replace(config.train, accelerator="cpu"))
    with caplog.at_level("INFO", logger="spectratorch"):
        summary = train(config, result_sheet=False)
    network = summary["arch_selection"]["network"]
    assert network["joined"] is None and "VGG11" not in summary["arch_selection"]["candidates"]
    assert network["rule"].startswith("stays out: the run trains on the CPU, where its inner folds take hours "
                                      "(about one")
    assert "--arch auto: the network candidate (VGG11) stays out: the run trains on the CPU" in caplog.text
    assert "--time-budget SECONDS lets it join within that time" in caplog.text


@pytest.mark.slow
def test_with_a_time_budget_the_network_joins_with_its_epochs_by_inner_cv(tmp_path, caplog, capsys):
    from spectratorch.pipelines.run import train
    from spectratorch.training.restore import load_module

    make_generic_frame(40, seed=10, length=64).to_pickle(tmp_path / "set.pkl")
    config = _config(tmp_path / "set.pkl", tmp_path / "out", n_splits=5)
    config = RunConfig(config.data, config.model, TrainConfig(output_dir=str(tmp_path / "out"), loggers=("csv",),
                                                              time_budget=600.0, max_epochs=3))
    with caplog.at_level("INFO", logger="spectratorch"):
        summary = train(config, result_sheet=False)
    # how long the network will take is said after its first epoch, and a bar counts its epochs
    assert re.search(r"the network's first epoch on \d+ rows took [\d.]+ s: its \d inner folds and its refit \(at "
                     r"most 3 epochs each\) take up to about \d+ s", caplog.text), caplog.text
    assert "network inner CV" in capsys.readouterr().err
    selection = summary["arch_selection"]
    network = selection["candidates"]["VGG11"]
    assert network["parameter"] == "epochs" and network["grid"] == [1, 2, 3]
    assert len(network["inner_cv_per_value"]) == 3 and network["chosen"] in (1, 2, 3)
    assert selection["network"]["joined"] == "--time-budget 600 s"
    assert selection["network"]["epochs_trained"] == 3 and selection["network"]["max_epochs"] == 3
    on_disk = json.loads(Path(summary["files"]["json"]).read_text())["arch_selection"]
    assert on_disk["candidates"]["VGG11"]["inner_cv_per_value"] == network["inner_cv_per_value"]
    module = load_module(summary["files"]["checkpoint"])
    assert module.hparams["arch"] == selection["chosen"]


def test_time_budget_refuses_a_negative_value_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "spectratorch.cli", "train", "--data", str(tmp_path / "x.pkl"),
                             "--targets", "AVA", "label", "--channels", "nir", "--time-budget", "-5"],
                            capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert result.returncode == 2
    assert "--time-budget" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_hydra_named_on_a_small_set_gets_its_ridge_head_solved_and_exported(tmp_path):
    import onnxruntime
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.preprocessing import StandardScaler

    from spectratorch.models.closed_form import RIDGE_ALPHAS
    from spectratorch.pipelines.run import train
    from spectratorch.training.restore import load_module

    make_generic_frame(60, seed=9).to_pickle(tmp_path / "set.pkl")
    config = _config(tmp_path / "set.pkl", tmp_path / "out")
    config = RunConfig(config.data, ModelConfig(arch="Hydra", arch_opts={"n_groups": 16}),
                       TrainConfig(output_dir=str(tmp_path / "out"), to_onnx=True, loggers=("csv",)))
    summary = train(config, result_sheet=False)
    selection = summary["arch_selection"]
    assert selection["protocol"] == "inner-cv" and selection["chosen"] == "Hydra"
    assert selection["candidates"]["Hydra"]["solver"] == "ridge" and "alpha" in selection["candidates"]["Hydra"]
    module = load_module(summary["files"]["checkpoint"]).eval()
    net = module.model.net
    assert module.hparams["arch_kwargs"]["n_groups"] == 16
    # the head is RidgeClassifierCV's on the standardised Hydra features of every training row, over the temperature
    x = torch.tensor(pd.read_pickle(tmp_path / "set.pkl").iloc[:, :-1].to_numpy(np.float32))[:, None]
    y = summary_y_from(tmp_path / "set.pkl", config)
    with torch.no_grad():
        fit_spectra = x[y["rows"]]
        features = net.forward_features(module.model.preprocess(fit_spectra, None)[0]).double().numpy()
    reference = RidgeClassifierCV(alphas=RIDGE_ALPHAS).fit(StandardScaler().fit_transform(features), y["y"])
    assert selection["candidates"]["Hydra"]["alpha"] == reference.alpha_
    with torch.no_grad():
        expected = module(x, None).softmax(1).numpy()
    session = onnxruntime.InferenceSession(summary["files"]["onnx"], providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"data_spectra": x.numpy()})[0], expected, atol=1e-5)
    temperature = selection["candidates"]["Hydra"]["temperature"] * selection["final_temperature"]
    with torch.no_grad():
        ours = module.model.net.head(torch.from_numpy(features).float()).double().numpy() * temperature
    np.testing.assert_allclose(ours, reference.decision_function(StandardScaler().fit(features).transform(features)),
                               atol=1e-3)


@pytest.mark.slow
def test_lda_and_plsda_named_on_a_small_set_keep_a_given_value_and_are_solved_and_exported(tmp_path):
    import onnxruntime
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.preprocessing import StandardScaler

    from spectratorch.pipelines.run import train
    from spectratorch.training.restore import load_module

    make_generic_frame(60, seed=9).to_pickle(tmp_path / "set.pkl")
    base = _config(tmp_path / "set.pkl", tmp_path / "out")
    x = torch.tensor(pd.read_pickle(tmp_path / "set.pkl").iloc[:, :-1].to_numpy(np.float32))[:, None]
    y = summary_y_from(tmp_path / "set.pkl", base)
    for arch, option, value in (("LDA", "shrinkage", 0.3), ("PLSDA", "n_components", 3), ("LDA", "shrinkage", None)):
        out = tmp_path / f"out-{arch}-{value}"
        config = RunConfig(base.data, ModelConfig(arch=arch, arch_opts={option: value} if value else {}),
                           TrainConfig(output_dir=str(out), to_onnx=True, loggers=("csv",)))
        summary = train(config, result_sheet=False)
        entry = summary["arch_selection"]["candidates"][arch]
        # a value given is the model's, not searched; without one the inner CV chooses among the grid
        assert entry["grid"] == ([value] if value else list(LDA_SHRINKAGES))
        chosen = entry["chosen"]
        module = load_module(summary["files"]["checkpoint"]).eval()
        with torch.no_grad():
            features = module.model.preprocess(x[y["rows"]], None)[0].flatten(1).double().numpy()
            logits = (module(x[y["rows"]], None).double().numpy() * entry["temperature"]
                      * summary["arch_selection"]["final_temperature"])
        if arch == "LDA":
            scaler = StandardScaler().fit(features)
            reference = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=chosen).fit(scaler.transform(features),
                                                                                        y["y"])
            expected = reference.decision_function(scaler.transform(features))
            expected = expected - expected.mean(1, keepdims=True)
            np.testing.assert_allclose(logits, expected, atol=2e-4 * np.abs(expected).max())
        else:
            assert chosen == value
            np.testing.assert_allclose(logits, decision(features, pls_path(features, y["y"], 3, 3)[-1]), atol=1e-4)
        session = onnxruntime.InferenceSession(summary["files"]["onnx"], providers=["CPUExecutionProvider"])
        with torch.no_grad():
            np.testing.assert_allclose(session.run(None, {"data_spectra": x.numpy()})[0],
                                       module(x, None).softmax(1).numpy(), atol=1e-5)


def summary_y_from(path, config):
    """The training rows (in the protocol's order) and their classes of ``config``'s split."""
    from spectratorch.data.datamodule import SpectralDataModule
    from spectratorch.pipelines.small import _training_rows

    dm = SpectralDataModule(config.data)
    dm.prepare()
    rows = _training_rows(dm)
    return {"rows": torch.as_tensor(rows), "y": dm.stage_arrays("train", rows=rows).y.numpy()}


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "transform"), [("Linear", "snv"), ("Linear", "sg1"), ("LDA", "sg1")])
def test_a_chosen_preprocessing_variant_travels_in_checkpoint_name_and_onnx(tmp_path, arch, transform):
    import onnxruntime
    from scipy.signal import savgol_filter

    from spectratorch.pipelines import small
    from spectratorch.training.restore import load_module

    assert [v.name for v in small.PREPROCESSING_VARIANTS] == ["Linear[snv]", "Linear[sg1]", "LDA[snv]", "LDA[sg1]"]
    variant = next(v for v in small.PREPROCESSING_VARIANTS if v.transforms == (transform,) and v.arch == arch)
    summary, _ = _exported_small_run(tmp_path, variant)
    assert summary["arch_selection"]["members"] == [variant.name] and summary["arch_selection"]["chosen"] == arch
    assert summary["arch_selection"]["transforms"] == [transform]
    assert f"t=('{transform}',)" in summary["name"] and list(summary["config"]["data"]["transforms"]) == [transform]
    module = load_module(summary["files"]["checkpoint"]).eval()
    assert list(module.hparams["transforms"]) == [transform]
    frame = pd.read_pickle(tmp_path / "set.pkl")
    spectra = torch.tensor(frame.iloc[:, :-1].to_numpy(np.float32))[:, None]
    with torch.no_grad():
        transformed = module.model.preprocess.apply_transforms(spectra)
        expected = module(spectra, None).softmax(1).numpy()
    if transform == "snv":
        # the model's first layer applies SNV: every spectrum centred and scaled to unit spread before the scaling
        np.testing.assert_allclose(transformed.mean(-1).numpy(), 0, atol=1e-5)
        np.testing.assert_allclose(transformed.std(-1, correction=0).numpy(), 1, atol=1e-3)
    else:
        # ... or the Savitzky-Golay first derivative (window 11, order 2), scipy's away from the padded edges
        reference = savgol_filter(spectra.double().numpy(), 11, 2, deriv=1, axis=-1)
        np.testing.assert_allclose(transformed.numpy()[..., 5:-5], reference[..., 5:-5], atol=1e-4)
    session = onnxruntime.InferenceSession(summary["files"]["onnx"], providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"data_spectra": spectra.numpy()})[0], expected, atol=1e-5)


@pytest.mark.slow
def test_a_variant_whose_transform_does_not_fit_the_spectra_is_left_out_and_said(tmp_path, caplog):
    from spectratorch.pipelines.run import train

    # reason: 9 points: MiniRocket's shortest spectrum, shorter than sg1's default window of 11.
    make_generic_frame(40, seed=3, length=9).to_pickle(tmp_path / "short.pkl")
    with caplog.at_level(logging.WARNING):
        summary = train(_config(tmp_path / "short.pkl", tmp_path / "out"), result_sheet=False)
    assert set(summary["arch_selection"]["candidates"]) == {"Linear", "PLSDA", "MiniRocket", "KernelRidge",
                                                            "LDA", "Linear[snv]", "LDA[snv]"}
    assert "Linear[sg1] is not a candidate on these spectra" in caplog.text and "length=9" in caplog.text
    assert "LDA[sg1] is not a candidate on these spectra" in caplog.text
    # 8 points: MiniRocket's kernels are longer than the spectra; it is left out as the variants are
    make_generic_frame(40, seed=3, length=8).to_pickle(tmp_path / "shorter.pkl")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        summary = train(_config(tmp_path / "shorter.pkl", tmp_path / "out8"), result_sheet=False)
    assert set(summary["arch_selection"]["candidates"]) == {"Linear", "PLSDA", "KernelRidge", "LDA", "Linear[snv]",
                                                            "LDA[snv]"}
    assert ("MiniRocket is not a candidate on these spectra: its kernels span 9 points, the spectra have 8"
            in caplog.text)


def test_an_ensemble_only_joins_candidates_with_the_same_first_layer():
    from spectratorch.pipelines.small import Candidate, choose

    # reason: three candidates, each wrong on its own rows, so any two-member vote beats each alone; the second best
    # (B) has other transforms, so the vote can only be A+C.
    n = 60
    y = np.arange(n) % 2

    def logits(wrong):
        out = np.zeros((1, n, 2))
        out[0, np.arange(n), y] = 2.0
        out[0, wrong, y[wrong]] = -1.0
        return out

    features = {"A": logits(np.arange(0, 6)), "B[snv]": logits(np.arange(6, 13)), "C": logits(np.arange(13, 21))}
    candidates = [Candidate("A", "network"), Candidate("B", "network", transforms=("snv",)),
                  Candidate("C", "network")]
    result = choose(features, y, 2, [(np.arange(n), np.arange(n))], "accuracy", candidates)
    assert result["ranking"][:2] == ["A", "B[snv]"]
    assert set(result["ensembles"]) == {"A+C"} and result["chosen"] == ["A", "C"]


@pytest.mark.slow
def test_a_networks_flags_on_a_small_set_are_said_to_change_nothing(tmp_path, caplog):
    from spectratorch.pipelines.run import train

    make_generic_frame(60, seed=3, length=64).to_pickle(tmp_path / "set.pkl")
    config = dataclasses.replace(_config(tmp_path / "set.pkl", tmp_path / "out"), model=ModelConfig(arch="LDA"))
    given = dataclasses.replace(config, train=dataclasses.replace(config.train, lr=0.5, eps=0.3, max_epochs=1,
                                                                  loggers=("mlflow", "csv")))
    summaries = {}
    for name, run in (("given", given), ("plain", config)):
        caplog.clear()
        with caplog.at_level("WARNING", logger="spectratorch"):
            summaries[name] = train(dataclasses.replace(run, train=dataclasses.replace(
                run.train, output_dir=str(tmp_path / name))), result_sheet=False)
        assert ("--lr 0.5, --max-epochs 1, --eps 0.3 shape the training of a network; the solved heads of the "
                "small-set protocol take none of them, so they change nothing in this run" in caplog.text) == (
                    name == "given")
        # the loggers asked for get nothing: said, not silently left empty
        assert ("--logger mlflow --logger csv: the solved heads of the small-set protocol train no epochs, so nothing "
                "is tracked" in caplog.text) == (name == "given")
        assert not list((tmp_path / name).glob("mlflow.db")) and not list((tmp_path / name).glob("logs"))
    assert summaries["given"]["metrics"]["test"] == summaries["plain"]["metrics"]["test"]  # as the warning says
