"""Cross-validation through the command line: every fold, the summary, resuming, the ensemble ONNX."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectratorch import parse_model_name
from tests.export.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--arch", "TinyVGG", "--batch-size", "64", "--channels", "277", "380", "--max-epochs", "1", "--n-splits", "3"]
STEM = "TinyVGG y=['OVA', 'OK'] c=('277', '380') t=('da',) {}-3 s=42 eps=0.1"


def _cli(*args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "spectratorch.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """Another generated dataset (other seed): the ensemble's test file."""
    from spectratorch.data.demo import write_demo_dataset

    path = tmp_path_factory.mktemp("held-out") / "held_out.pkl"
    write_demo_dataset(path, n_samples=400, seed=11)
    return path


@pytest.mark.slow
def test_cv_trains_every_fold_skips_done_ones_and_exports_an_ensemble(demo_file, held_out, tmp_path):
    out = tmp_path / "cv"
    common = ["--data", demo_file, *FAST, "--test-source", held_out, "--output-dir", out]
    # fold 0 exists already, as after an interrupted CV
    first = _cli("train", *common, "--current-split", "0")
    assert first.returncode == 0, first.stderr[-3000:]
    fold0 = out / f"{STEM.format(0)}.json"
    before = fold0.stat().st_mtime_ns

    result = _cli("cv", *common, "--ensemble")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "folds [0] already trained" in result.stderr
    assert fold0.stat().st_mtime_ns == before
    summary = json.loads((out / f"{STEM.format('cv')}.json").read_text())
    assert [f["split"] for f in summary["folds"]] == [0, 1, 2]
    folds = [json.loads((out / f"{STEM.format(k)}.json").read_text()) for k in range(3)]
    for stage in ("val", "test"):
        for name in ("accuracy", "f1", "balanced_accuracy", "auroc", "loss"):
            values = [f["metrics"][stage][name] for f in folds]
            assert summary["mean"][stage][name] == pytest.approx(np.mean(values))
            assert summary["std"][stage][name] == pytest.approx(np.std(values, ddof=1))
    assert (out / f"{STEM.format('cv')} folds.png").stat().st_size > 10_000
    assert f"cv: {STEM.format('cv')}" in result.stdout and " mean " in result.stdout
    assert result.stdout.splitlines()[1].split()[:2] == ["split", "val_acc"] and "inner_" not in result.stdout
    # the linear baselines of the same test rows are on the console beside the recipe, not only in the JSON
    logistic = summary["mean"]["baseline_logistic_regression_test"]["accuracy"]
    assert f"baseline logistic_regression test (mean, same folds): acc {logistic:.4f}" in result.stdout
    best = max(summary["mean"][f"baseline_{m}_test"]["accuracy"] for m in ("logistic_regression", "pls_da"))
    assert (f"mean test accuracy: this recipe {summary['mean']['test']['accuracy']:.4f}, best linear baseline "
            f"{best:.4f}") in result.stdout

    # the ensemble: one ONNX named ens-3, same inputs/outputs/metadata as a single model, torch-free
    ens = Path(summary["ensemble"]["onnx"])
    assert ens.name == f"{STEM.format('ens')}.onnx" and parse_model_name(ens).split == "ens"
    import onnx

    proto = onnx.load(str(ens))
    single = onnx.load(str(_single_onnx(folds[0], tmp_path)))
    assert [i.name for i in proto.graph.input] == [i.name for i in single.graph.input]
    assert [o.name for o in proto.graph.output] == [o.name for o in single.graph.output]
    meta = {p.key: json.loads(p.value) for p in proto.metadata_props}
    single_meta = {p.key: json.loads(p.value) for p in single.metadata_props}
    assert set(single_meta) <= set(meta)
    for key in ("labels", "channels", "axis", "tabular_columns", "targets", "transforms", "n_splits", "arch"):
        assert meta[key] == single_meta[key], key
    assert meta["split"] == "ens" and len(meta["members"]) == 3
    assert [m["temperature"] for m in meta["calibration"]["members"]] == summary["ensemble"]["temperatures"]
    test = summary["ensemble"]["test"]
    assert test["n_test"] > 100
    # each fold counts its test rows by class; a test file is every fold's, so cv pools no per-class table
    for fold in folds:
        assert sum(map(sum, fold["confusion"]["test"])) == test["n_test"]
        assert np.trace(fold["confusion"]["test"]) == round(fold["metrics"]["test"]["accuracy"] * test["n_test"])
    assert "per_class" not in summary and "per class" not in result.stdout
    for name, gain in test["gain"].items():
        assert gain == pytest.approx(test["ensemble"][name] - test["mean_fold"][name])
    assert meta["metrics"]["test"]["accuracy"] == pytest.approx(test["ensemble"]["accuracy"])
    assert "ensemble on the test file" in result.stdout
    assert "the model to ship: spectratorch train with the same flags and --test-source none --to-onnx" in result.stdout

    predicted = tmp_path / "pred.csv"
    done = run_cli(["predict", ens, held_out, "-o", predicted])  # torch made unimportable
    assert done.returncode == 0, done.stderr[-2000:]
    frame = pd.read_csv(predicted)
    probabilities = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy()
    assert len(frame) == test["n_test"] and np.allclose(probabilities.sum(1), 1, atol=1e-5)

    # the ensemble is the mean of the folds' calibrated probabilities, each temperature fitted on its own fold
    _check_mean_of_calibrated_folds(ens, folds, held_out)

    # a rerun trains nothing; other settings in the same directory are refused, nothing half written
    again = _cli("cv", *common)
    assert again.returncode == 0 and "folds [0, 1, 2] already trained" in again.stderr
    other = _cli("cv", *common, "--lr", "0.01")
    assert other.returncode == 2 and "Traceback" not in other.stderr
    assert "was trained with other settings (train.lr: done 0.001, asked 0.01)" in other.stderr


def _check_mean_of_calibrated_folds(ens, folds, held_out):
    import torch

    from spectratorch.export.calibration import fit_temperature, softmax
    from spectratorch.inference import Predictor
    from spectratorch.report.sheet import collect_logits
    from spectratorch.training.restore import datamodule_from_hparams, load_module

    predictor = Predictor(ens)
    table = predictor.load(held_out)
    expected = []
    for fold in folds:
        module = load_module(fold["files"]["checkpoint"]).eval()
        dm = datamodule_from_hparams(dict(module.hparams))
        dm.prepare()
        val = collect_logits(module, dm, "val")
        with torch.no_grad():
            logits = module(torch.from_numpy(table.spectra), torch.from_numpy(table.tabular)).double().numpy()
        expected.append(softmax(logits, fit_temperature(val["logits"], val["y"])))
    got = predictor.predict_arrays(table.spectra, table.tabular)
    np.testing.assert_allclose(got, np.mean(expected, axis=0), rtol=0, atol=1e-6)


def _single_onnx(fold_summary, tmp_path):
    out = tmp_path / "single.onnx"
    result = _cli("export", fold_summary["files"]["checkpoint"], "-o", out, "--n-check", "32")
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_cv_summary_and_name():
    from spectratorch.config import DataConfig, RunConfig
    from spectratorch.pipelines.cv import cv_name, fold_configs, summarise_folds

    config = RunConfig(DataConfig(targets=("OVA", "OK"), channels=("277", "380"), transforms=["da"], n_splits=4,
                                  current_split=2))
    assert [c.data.current_split for c in fold_configs(config)] == [0, 1, 2, 3]
    assert parse_model_name(cv_name(config)).split == "cv"
    assert parse_model_name(cv_name(config, "ens")).split == "ens"
    s = summarise_folds([{"metrics": {"val": {"f1": 0.5, "auroc": None}}}, {"metrics": {"val": {"f1": 0.7,
                                                                                               "auroc": 0.9}}}])
    assert s["mean"]["val"]["f1"] == pytest.approx(0.6) and s["mean"]["val"]["auroc"] == pytest.approx(0.9)
    assert s["std"]["val"]["auroc"] is None


def test_cv_refuses_a_test_file_with_the_small_set_protocol_one_model_k_times(tmp_path):
    # the small-set protocol trains on the validation fold too: with a test file each fold trains on every row
    from spectratorch.data.generic import make_generic_frame

    make_generic_frame(60, seed=2).to_pickle(tmp_path / "set.pkl")
    make_generic_frame(30, seed=3).to_pickle(tmp_path / "test.pkl")
    for arch in ("auto", "LDA"):
        result = _cli("cv", "--data", tmp_path / "set.pkl", "--test-source", tmp_path / "test.pkl", "--arch", arch,
                      "--output-dir", tmp_path / arch)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1] == (
            "spectratorch cv: error: with a test file (--test-source FILE) the small-set protocol trains every fold on "
            "every row of the data, so the 5 folds would be one model 5 times: `spectratorch train` with the same "
            "flags trains it once and scores it on the file; `spectratorch cv` without --test-source gives the "
            "k-fold estimate.")
        assert not list((tmp_path / arch).glob("*.json"))


def test_a_fold_of_another_version_of_the_data_is_refused_and_the_same_file_by_another_path_is_not(tmp_path,
                                                                                                   monkeypatch):
    import dataclasses
    import json
    import os

    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.data.io import data_fingerprint
    from spectratorch.errors import ConfigError
    from spectratorch.pipelines.cv import _finished, _fold_json

    data = tmp_path / "d.csv"
    data.write_text("first version")
    config = RunConfig(DataConfig(data=str(data), channels=("nir",), targets=("AVA", "label")),
                       ModelConfig(arch="Linear"), TrainConfig(output_dir=str(tmp_path / "out")))
    fold = _fold_json(config)
    fold.parent.mkdir()
    (tmp_path / "out" / "fold.ckpt").write_text("")
    fold.write_text(json.dumps({"config": config.to_dict(), "metrics": {"val": {"accuracy": 1.0}},
                                "files": {"checkpoint": str(tmp_path / "out" / "fold.ckpt")},
                                "data_files": data_fingerprint(config.data)}))
    assert _finished(config) is not None
    monkeypatch.chdir(tmp_path / "out")
    relative = dataclasses.replace(config, data=dataclasses.replace(config.data, data=os.path.join("..", "d.csv")))
    assert _finished(relative) is not None  # the same file, written another way
    data.write_text("second version, written again under the same name")
    with pytest.raises(ConfigError, match=r"was trained on another version of the data file \(its size or "
                                          r"modification time differs\)"):
        _finished(config)


@pytest.mark.slow
def test_cv_pools_the_test_folds_per_class(tmp_path):
    # every row is tested once: the pooled confusion matrix counts each row's prediction of the folds' files
    from spectratorch.data.generic import make_generic_frame

    frame = make_generic_frame(60, seed=5)
    frame.iloc[::7, frame.columns.get_loc("label")] = "rare"  # a fourth class, of 9 rows
    frame.to_csv(tmp_path / "set.csv")
    result = _cli("cv", "--data", tmp_path / "set.csv", "--arch", "LDA", "--save-test-preds",
                  "--output-dir", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(next((tmp_path / "out").glob("*cv-5*.json")).read_text())
    labels = summary["confusion"]["labels"]
    predictions = pd.concat([pd.read_csv(path) for path in (tmp_path / "out").glob("* [0-4]-5 *.csv")])
    assert len(predictions) == 60 and predictions["id"].nunique() == 60
    predicted = predictions[[f"p_{label}" for label in labels]].to_numpy().argmax(1)
    expected = pd.crosstab(predictions["truth"], np.array(labels)[predicted]).reindex(index=labels, columns=labels,
                                                                                     fill_value=0)
    assert summary["confusion"]["test"] == expected.to_numpy().tolist()
    rare = summary["per_class"]["rare"]
    assert rare["support"] == 9 and rare["recall"] == pytest.approx(expected.loc["rare", "rare"] / 9, abs=1e-4)
    assert "per class, the test folds pooled (every row tested once):" in result.stdout
    assert f"rare     rows     9  recall {rare['recall']:.4f}" in result.stdout
    # the level of no skill beside them: always the commonest class of the pooled test rows
    support = {label: s["support"] for label, s in summary["per_class"].items()}
    commonest = max(support, key=support.get)
    assert (f"always the commonest class ({commonest!r}, {support[commonest]} of 60 test rows): accuracy "
            f"{support[commonest] / 60:.4f}, balanced accuracy 0.2500") in result.stdout
    balanced = summary["mean"]["test"]["balanced_accuracy"]
    assert f"mean test balanced accuracy: this recipe {balanced:.4f}, best linear baseline " in result.stdout
