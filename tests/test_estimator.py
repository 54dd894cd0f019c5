"""SpectraClassifier: scikit-learn's conventions and checks, the Python train(), and Predictor's inputs."""

import numpy as np
import pytest
from sklearn.base import clone

import spectratorch
from spectratorch.estimator import SpectraClassifier
from tests.data.test_plain_tables import plain_frame

FAST = dict(arch="Linear", max_epochs=2)


@pytest.fixture
def no_training(monkeypatch):
    def refuse(config):
        raise AssertionError("training started")

    monkeypatch.setattr("spectratorch.estimator._train", refuse)


@pytest.fixture(scope="module")
def xy():
    df = plain_frame(120, seed=5)
    return df.drop(columns="label"), df["label"]


@pytest.fixture(scope="module")
def fitted(xy):
    return SpectraClassifier(**FAST).fit(*xy)


def test_params_and_clone():
    clf = SpectraClassifier(arch="Linear", max_epochs=3)
    assert clf.get_params()["arch"] == "Linear" and clf.set_params(lr=1e-3).lr == 1e-3
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == clf.get_params()
    assert spectratorch.SpectraClassifier is SpectraClassifier


@pytest.mark.parametrize("bad,match", [
    ("lengths", "Found input variables with inconsistent numbers of samples: \\[120, 119\\]"),
    ("nan", "Input X contains NaN"),
    ("1d", "Expected 2D array, got 1D array instead"),
    ("continuous", "Unknown label type"),
    ("mixed", r"^y mixes text and number labels \(e\.g\. 'b' and 1\): give them all as text \(y\.astype\(str\)\)"),
    ("one class", "at least 2 classes"),
])
def test_bad_input_raises_before_training(xy, no_training, bad, match):
    X, y = xy[0].to_numpy(), xy[1].to_numpy()
    if bad == "lengths":
        y = y[:-1]
    elif bad == "nan":
        X = X.copy()
        X[3, 7] = np.nan
    elif bad == "1d":
        X = X[:, 0]
    elif bad == "continuous":
        y = np.linspace(0, 1, len(y))
    elif bad == "mixed":
        y = np.array([1 if k % 2 else "b" for k in range(len(y))], dtype=object)
    else:
        y = np.array(["a"] * len(y))
    with pytest.raises(ValueError, match=match):
        SpectraClassifier(**FAST).fit(X, y)


def test_bad_threads_are_refused_before_training_and_one_transform_may_be_a_string(xy, monkeypatch):
    from spectratorch.errors import ConfigError

    seen = []

    def record(config):
        seen.append(config)
        raise AssertionError("training started")

    monkeypatch.setattr("spectratorch.estimator._train", record)
    with pytest.raises(ConfigError, match=r"^threads must be a positive integer or None; got 0\.$"):
        SpectraClassifier(threads=0, **FAST).fit(*xy)
    assert seen == []
    with pytest.raises(AssertionError, match="training started"):
        SpectraClassifier(transforms="snv", **FAST).fit(*xy)  # as GridSearchCV passes {"transforms": ["snv", ...]}
    assert seen[0].data.transforms == ("snv",)


def test_a_text_column_left_in_x_is_named_before_training(xy, no_training):
    X, y = xy
    with_ids = X.assign(id=[f"G{k:05d}" for k in range(len(X))])[["id", *X.columns]]
    with pytest.raises(ValueError, match=r"^X's column\(s\) 'id' hold text, not spectral values: make an id column "
                                         r"the index \(pd.read_csv\(\.\.\., index_col='id'\)\)"):
        SpectraClassifier(**FAST).fit(with_ids, y)
    with pytest.raises(AssertionError, match="training started"):  # numbers stored as text are numbers still
        SpectraClassifier(**FAST).fit(X.astype(str), y)
    # a numeric column beside the wavelengths would turn the axis into 0..L-1 and join the spectrum
    codes = y.astype("category").cat.codes
    for extra in (X.assign(temperature=21.5), X.assign(label=codes)):
        name = extra.columns[-1]
        with pytest.raises(ValueError, match=rf"^X's column\(s\) '{name}' are not wavelengths, while its other "
                                             rf"{X.shape[1]} columns are"):
            SpectraClassifier(**FAST).fit(extra, y)


def test_train_keywords_are_the_flags(no_training):
    from spectratorch.api import run_config

    config = run_config(data="x.csv", arch="Linear", max_epochs=4, targets=["AVA", "label"], baseline=False)
    assert (config.data.data, config.model.arch, config.train.max_epochs, config.train.baseline) == (
        "x.csv", "Linear", 4, False)
    with pytest.raises(TypeError, match="unknown keyword\\(s\\) \\['max_epoch'\\]"):
        spectratorch.train(data="x.csv", max_epoch=4)


@pytest.mark.slow
def test_fit_predict_on_a_dataframe_of_wavelengths(fitted, xy):
    X, y = xy
    assert list(fitted.classes_) == ["pure", "rich", "shifted"]
    assert list(fitted.feature_names_in_) == list(X.columns) and fitted.n_features_in_ == X.shape[1]
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert fitted.score(X, y) > 0.9
    assert list(fitted.summary_["config"]["data"]["channels"]) == ["spectrum"]


@pytest.mark.slow
def test_numeric_column_names_in_another_order_are_refused(xy, tmp_path):
    # scikit-learn checks only text names; a DataFrame with columns=wavelengths (floats) must be checked too
    X, y = xy
    numeric = X.set_axis([float(c) for c in X.columns], axis=1)
    clf = SpectraClassifier(**FAST).fit(numeric, y)
    assert not hasattr(clf, "feature_names_in_")
    assert clf.score(numeric, y) > 0.9
    first, last = numeric.columns[0], numeric.columns[-1]
    with pytest.raises(ValueError, match=f"^X's column 0 is {last} where fit had {first}: give the columns fit had"):
        clf.predict(numeric[numeric.columns[::-1]])
    shifted = numeric.set_axis([c + 1.0 for c in numeric.columns], axis=1)  # another grid of the same size
    with pytest.raises(ValueError, match=f"^X's column 0 is {first + 1.0} where fit had {first}"):
        clf.predict_proba(shifted)
    # the names travel with a saved estimator
    clf.save(tmp_path / "clf.onnx")
    with pytest.raises(ValueError, match="^X's column 0 is"):
        SpectraClassifier.load(tmp_path / "clf.onnx").predict(numeric[numeric.columns[::-1]])


@pytest.mark.slow
def test_auto_fit_trains_on_every_row_as_scikit_learn_does(xy, caplog):
    X, y = xy
    with caplog.at_level("INFO", logger="spectratorch"):
        clf = SpectraClassifier().fit(X.iloc[:60], y.iloc[:60])
    # a clean set warns nothing (neither its size nor a temperature its rows, all classified right, sharpen)
    warned = [r.getMessage() for r in caplog.records if r.name.startswith("spectratorch") and r.levelno >= 30]
    assert warned == []
    # the small-set protocol: no row held out as a test set; the choice by inner CV of all 60
    assert clf.summary_["arch_selection"]["training_rows"] == 60
    assert sum(clf.summary_["class_counts"]["train"].values()) == 60 and "test" not in clf.summary_["metrics"]
    assert clf.score(X.iloc[60:], y.iloc[60:]) > 0.9


@pytest.mark.slow
def test_save_load_onnx_and_predictor_inputs(fitted, xy, tmp_path):
    from spectratorch.inference import Predictor

    X, y = xy
    fitted.save(tmp_path / "clf.onnx")
    back = SpectraClassifier.load(tmp_path / "clf.onnx")
    np.testing.assert_array_equal(back.predict_proba(X), fitted.predict_proba(X))
    assert back.get_params() == fitted.get_params() and list(back.classes_) == list(fitted.classes_)

    fitted.to_onnx(tmp_path / "model.onnx")
    predictor = Predictor(tmp_path / "model.onnx")
    assert predictor.metadata["split"] == "all" and " all-5 " in predictor.metadata["name"]  # no row held out
    np.testing.assert_allclose(predictor.axis, np.sort(X.columns.astype(float)))
    from_frame = predictor.predict(X, cutoff=None)
    from_array = predictor.predict(X[sorted(X.columns, key=float)].to_numpy(), cutoff=None)
    X.assign(label=y).to_csv(tmp_path / "x.csv", index=False)
    from_file = predictor.predict(tmp_path / "x.csv", cutoff=None)
    for frame in (from_frame, from_array, from_file):
        assert frame["label"].tolist() == fitted.predict(X).tolist()
    # with the model's own cutoff, exactly the rows whose top probability is under it are left unclassified
    cutoff = predictor.resolve_cutoff("auto")
    unsure = fitted.predict_proba(X).max(axis=1) < (cutoff if cutoff is not None else 0.0)
    with_cutoff = predictor.predict(X)
    assert ((with_cutoff["label"] == "unclassified").to_numpy() == unsure).all()
    assert with_cutoff["label"][~unsure].tolist() == fitted.predict(X)[~unsure].tolist()
    np.testing.assert_allclose(from_frame[[f"p_{c}" for c in fitted.classes_]].to_numpy(), fitted.predict_proba(X),
                               atol=1e-6)
    with pytest.raises(ValueError, match="expected a dataset path, a folder of exports, a DataFrame or a numpy"):
        predictor.predict([[1.0, 2.0]])


@pytest.mark.slow
def test_pipeline_cross_val_score_and_grid_search(xy):
    from sklearn.model_selection import GridSearchCV, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = xy
    pipeline = make_pipeline(FunctionTransformer(lambda frame: frame * 2.0), SpectraClassifier(**FAST))
    scores = cross_val_score(pipeline, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.8
    search = GridSearchCV(SpectraClassifier(arch="Linear"), {"max_epochs": [1, 2]}, cv=2, refit=False).fit(X, y)
    assert search.best_params_["max_epochs"] in (1, 2) and (search.cv_results_["mean_test_score"] > 0.7).all()


@pytest.mark.slow
def test_integer_classes_and_3d_arrays():
    rng = np.random.default_rng(0)
    y = np.repeat([3, 7], 30)
    X = rng.normal(0, 1, (60, 2, 40)).astype(np.float32)
    X[y == 7, 1, 10:20] += 2.0
    clf = SpectraClassifier(**FAST).fit(X, y)
    assert clf.classes_.tolist() == [3, 7] and clf.predict(X).dtype == y.dtype
    assert clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="shape"):
        clf.predict(X[:, :, :30])
    # the same codes stored as objects (an Excel column read by pandas): integers still, not scikit-learn's "unknown"
    as_objects = SpectraClassifier(**FAST).fit(X, y.astype(object))
    assert as_objects.classes_.tolist() == [3, 7] and as_objects.score(X, y) > 0.9


# reason: every check of scikit-learn 1.9 applies and passes on this configuration; a check that stops applying is
# named here with its reason (the array API check is skipped by scikit-learn itself unless SCIPY_ARRAY_API=1).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def _checks():
    from sklearn.utils.estimator_checks import parametrize_with_checks

    return parametrize_with_checks([SpectraClassifier(arch="Linear", max_epochs=1)],
                                   expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)


@pytest.mark.slow
@_checks()
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_groups_of_another_length_or_with_a_gap_raise_before_training(xy, no_training):
    X, y = xy
    with pytest.raises(ValueError, match=r"^groups must hold one sample name per row of X, none missing; got 119 "):
        SpectraClassifier(**FAST).fit(X, y, groups=np.arange(119))
    with pytest.raises(ValueError, match=r"got 120 values \(1 missing\) for 120 rows"):
        SpectraClassifier(**FAST).fit(X, y, groups=[None] + list(range(119)))


@pytest.mark.slow
def test_groups_keep_replicate_scans_together_in_the_inner_cv():
    from tests.data.test_groups import replicate_frame

    frame = replicate_frame()
    X, y, probe = frame.drop(columns=["Probe", "label"]), frame["label"], frame["Probe"]
    # the class is a random draw per sample: the inner CV's estimate is flattered only when a sample's other scans
    # train the fold that validates it
    leaky = SpectraClassifier(arch="LDA").fit(X, y)
    grouped = SpectraClassifier(arch="LDA").fit(X, y, groups=probe)
    assert leaky.summary_["metrics"]["val"]["accuracy"] > 0.9
    assert grouped.summary_["metrics"]["val"]["accuracy"] < 0.7
    assert grouped.summary_["config"]["data"]["groups"] == "sample_group"


@pytest.mark.slow
def test_verbose_shows_the_info_lines_and_quiet_shows_none():
    """In a plain script (no logging set up), as a scientist runs it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = ("import sys; from spectratorch import SpectraClassifier; from tests.data.test_plain_tables import "
              "plain_frame; f = plain_frame(60, seed=2); "
              "SpectraClassifier(arch='LDA', verbose=sys.argv[1] == '1').fit(f.drop(columns='label'), f['label'])")
    stderr = {}
    for verbose in ("0", "1"):
        result = subprocess.run([sys.executable, "-c", script, verbose], cwd=root, capture_output=True, text=True,
                                timeout=600, env={**os.environ, "PYTHONPATH": str(root)})
        assert result.returncode == 0, result.stderr[-3000:]
        stderr[verbose] = result.stderr
    assert "INFO --arch LDA: 60 training rows, inner 5-fold CV" in stderr["1"]
    assert "INFO small-set protocol" in stderr["1"]
    assert "INFO" not in stderr["0"]
