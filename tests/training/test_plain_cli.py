"""A newcomer's path on a plain CSV (bare-number headers, one label column): train, predict, cv, and the error lines."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.data.test_plain_tables import plain_frame

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--arch", "Linear", "--max-epochs", "2"]


def _cli(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "spectratorch.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=900, env=env)


@pytest.fixture
def plain_csv(tmp_path):
    path = tmp_path / "my spectra.csv"
    plain_frame(120, seed=4, descending=True).to_csv(path, index=False)
    return path


@pytest.mark.slow
def test_train_then_predict_with_no_data_flags(plain_csv, tmp_path):
    out = tmp_path / "out"
    result = _cli("train", "--data", plain_csv, *FAST, "--to-onnx", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "read as one channel 'spectrum'" in result.stderr
    assert "defaults from the data: target AVA label (the one text column); channels spectrum" in result.stderr
    # a solved head on a small set has no validation fold: its val line says what those metrics are
    assert "\nval (inner CV, out of fold: what the model was chosen on, optimistic): loss " in result.stdout
    assert "--max-epochs 2 shape the training of a network" in result.stderr  # FAST's epochs change nothing here
    summary = json.loads(next(out.glob("*.json")).read_text())
    assert summary["config"]["data"]["targets"] == ["AVA", "label"]
    assert summary["config"]["data"]["channels"] == ["spectrum"]
    assert summary["description"]["tabular_columns"] == [] and summary["labels"] == ["pure", "rich", "shifted"]
    assert summary["metrics"]["test"]["accuracy"] > 0.8

    preds = tmp_path / "preds.csv"
    predicted = _cli("predict", summary["files"]["onnx"], plain_csv, "-o", preds)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    frame = pd.read_csv(preds)
    truth = pd.read_csv(plain_csv)["label"]
    assert len(frame) == len(truth) and frame["id"].tolist() == list(range(len(truth)))
    assert (frame["label"] == truth).mean() > 0.8

    # the same spectra exported over a wider range (two more points at each end): the model takes its own points
    plain = pd.read_csv(plain_csv)
    points = [c for c in plain.columns if c != "label"]
    wider = plain.assign(**{"1800": 0.5, "1790": 0.5, "850": 0.5, "860": 0.5})
    wider[["label", "1800", "1790", *points, "860", "850"]].to_csv(tmp_path / "wider.csv", index=False)
    again = _cli("predict", summary["files"]["onnx"], tmp_path / "wider.csv", "-o", tmp_path / "wider preds.csv")
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"the data's axis has {len(points) + 4} points (850..1800); the model's {len(points)} points" in again.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "wider preds.csv"), frame)

    # two samples not labelled yet: predicted all the same, scored apart
    plain.loc[[0, 5], "label"] = None
    plain.to_csv(tmp_path / "partly labelled.csv", index=False)
    partly = _cli("predict", summary["files"]["onnx"], tmp_path / "partly labelled.csv", "-o", tmp_path / "p.csv")
    assert partly.returncode == 0, partly.stderr[-3000:]
    written = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert len(written) == len(truth) and list(written.columns[1:3]) == ["label", "truth"]
    assert written["truth"].tolist() == ["" if i in (0, 5) else t for i, t in enumerate(truth)]  # the file's own
    right = int((frame["label"] == truth).drop(index=[0, 5]).sum())
    scored = partly.stdout.strip().splitlines()[-1]
    assert scored.startswith(f"against the file's labels: accuracy {right / (len(truth) - 2):.3f} ({right} of "
                             f"{len(truth) - 2})") and scored.endswith("; 2 rows without a label left out"), scored


@pytest.mark.slow
def test_cv_with_no_data_flags(plain_csv, tmp_path):
    out = tmp_path / "cv"
    result = _cli("cv", "--data", plain_csv, *FAST, "--n-splits", "3", "--no-baseline", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cv: Linear y=['AVA', 'label'] c=('spectrum',)" in result.stdout
    assert len(list(out.glob("* cv-3 *.json"))) == 1


def test_a_header_of_neither_layout_is_one_error_line(tmp_path, capsys):
    # reason: in this process (the command's own `main`); the test below runs the same refusal in a real process.
    from spectratorch.cli import main

    path = tmp_path / "bad.csv"
    pd.DataFrame({"sample": ["a", "b"], "wl1100": [1.0, 2.0], "wl1102": [2.0, 3.0]}).to_csv(path, index=False)
    assert main(["train", "--data", str(path), *FAST, "--output-dir", str(tmp_path / "out")]) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "'wl1100', 'wl1102'" in lines[0] and "<channel>_<x>" in lines[0], stderr


def test_two_text_columns_and_no_targets_is_one_error_line(tmp_path):
    path = tmp_path / "two.csv"
    # neither column is named as labels, and the values of both repeat: which one holds the classes is asked
    df = plain_frame(30).rename(columns={"label": "variety"})
    df.insert(1, "origin", ["north", "south", "east"] * 10)
    df.to_csv(path, index=False)
    result = _cli("train", "--data", path, *FAST, "--output-dir", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "['variety', 'origin']" in lines[0] and "--targets AVA variety" in lines[0], \
        result.stderr


@pytest.mark.slow
def test_cv_keeps_a_class_smaller_than_the_folds_and_scores_the_folds_without_it(tmp_path):
    frame = plain_frame(80, seed=6)
    small = frame["label"].value_counts().index[-1]
    frame = frame.drop(frame.index[frame["label"] == small][3:])
    path = tmp_path / "rare.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "cv"
    result = _cli("cv", "--data", path, "--arch", "LDA", "--no-baseline", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"class(es) '{small}' (3) have fewer rows than the 5 folds: kept" in result.stderr
    folds = json.loads(next(out.glob("* cv-5 *.json")).read_text())["folds"]
    assert len(folds) == 5
    # two folds test no row of the small class: a fold all right scores 1, not a macro F1 with the absent class at 0
    right = [fold["metrics"]["test"] for fold in folds if fold["metrics"]["test"]["accuracy"] == 1.0]
    assert len(right) >= 3
    assert all(test["f1"] == 1.0 and test["auroc"] == 1.0 for test in right)
    result = _cli("cv", "--data", path, "--arch", "LDA", "--rare-classes", "error", "--output-dir", tmp_path / "e")
    assert result.returncode == 2 and f"'{small}' (3) have fewer members than n_splits=5" in result.stderr


@pytest.mark.slow
def test_cv_of_many_classes_of_five_rows_lowers_the_inner_folds_and_four_rows_is_one_line(tmp_path):
    # twelve varieties of 5 spectra: each fold trains on 4 of each, fewer than the 5 inner folds for every class
    rng = np.random.default_rng(0)
    axis, variety = np.arange(900, 1300, 4.0), np.repeat(np.arange(12), 5)
    spectra = 0.5 + 0.01 * rng.standard_normal((60, len(axis)))
    spectra += 0.3 * np.exp(-0.5 * ((axis - 920 - 25 * variety[:, None]) / 10) ** 2)
    frame = pd.DataFrame(spectra, columns=[f"{x:g}" for x in axis])
    frame.insert(0, "variety", [f"var{k:02d}" for k in variety])
    path = tmp_path / "twelve.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "cv"
    result = _cli("cv", "--data", path, "--arch", "LDA", "--no-baseline", "--fold-workers", "1", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "every class has at most 4 training rows: 4 inner folds instead of 5" in result.stderr
    folds = json.loads(next(out.glob("* cv-5 *.json")).read_text())["folds"]
    assert len(folds) == 5 and min(fold["metrics"]["test"]["accuracy"] for fold in folds) > 0.9
    # no validation fold: the table calls the scores each fold chose its model on what they are
    assert result.stdout.splitlines()[1].split() == ["split", "inner_acc", "inner_f1", "inner_bacc", "inner_auroc",
                                                     "test_acc", "test_f1", "test_bacc", "test_auroc"]
    assert "inner_*: the out-of-fold scores of each fold's inner CV, on which it chose its model" in result.stdout
    frame.groupby("variety").head(4).to_csv(path, index=False)
    result = _cli("cv", "--data", path, "--arch", "LDA", "--output-dir", tmp_path / "four")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == ("spectratorch cv: error: every class has fewer rows than the 5 "
                                                      "folds (the largest has 4); use `--n-splits 4` or fewer.")


def test_training_spectra_all_the_same_are_one_error_line(tmp_path):
    df = plain_frame(30)
    spectral = [c for c in df.columns if c != "label"]
    df[spectral] = np.tile(df[spectral].to_numpy()[0], (len(df), 1))
    df.to_csv(tmp_path / "same.csv", index=False)
    result = _cli("train", "--data", tmp_path / "same.csv", "--output-dir", tmp_path / "out")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "training spectra are all the same" in lines[0], result.stderr
