"""Conformal label sets and the outlier flag of an exported model, end to end (training, ONNX, CLI without torch)."""


import numpy as np
import pandas as pd
import pytest

from spectratorch.data.targets import resolve_target
from spectratorch.inference import OUTPUT_OOD, Predictor
from tests.export.helpers import ROOT, run_cli, trained_run

pytestmark = pytest.mark.slow

EXAMPLE = next((ROOT / "checkpoints" / "example").glob("*.onnx"))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory, tabular=True)


def _truth(run, predictor, table):
    target = resolve_target(table.meta, run.summary["config"]["data"]["targets"])
    labels = np.asarray(target.labels, dtype=object)[target.y]
    return pd.Series(labels, index=table.ids)


def test_metadata_and_json_carry_the_conformal_and_outlier_records(run):
    meta = Predictor(run.onnx).metadata
    assert meta["outputs"] == ["probabilities", *OUTPUT_OOD]
    conformal, ood = meta["conformal"], meta["ood"]
    assert conformal["method"] == "lac" and conformal["source"] == "validation" and conformal["n"] > 50
    assert ood["confidence"] == 0.99 and ood["inputs"] == "preprocessed" and ood["n_components"] >= 1
    assert run.summary["trust"] == {"conformal": conformal, "ood": ood}


def test_outlier_outputs_match_torch(run):
    import torch

    from spectratorch.export.onnx import _data_arrays
    from spectratorch.export.ood import OutlierScores, fit_ood, flatten_inputs, preprocessed_inputs
    from spectratorch.training.restore import load_module

    module = load_module(run.checkpoint)
    model = module.model.float().eval()
    train: list = []
    (val_spectra, val_tabular, _), (spectra, tabular) = _data_arrays(dict(module.hparams), None, 300, train)
    record = fit_ood(preprocessed_inputs(model, *train[0][:2]), preprocessed_inputs(model, val_spectra, val_tabular))
    with torch.no_grad():
        t2, q, outlier = OutlierScores(record)(flatten_inputs(*model.preprocess(torch.tensor(spectra),
                                                                                  torch.tensor(tabular))))
    got = Predictor(run.onnx).predict_outputs(spectra, tabular)
    np.testing.assert_allclose(got["t2"], t2.numpy(), rtol=1e-3)
    np.testing.assert_allclose(got["q"], q.numpy(), rtol=1e-3, atol=1e-4)
    np.testing.assert_array_equal(got["outlier"], outlier.numpy())


def test_injected_foreign_spectra_are_flagged(run):
    predictor = Predictor(run.onnx)
    table = predictor.load(run.data)
    spectra = table.spectra[:400].copy()
    flags = predictor.predict_outputs(spectra, table.tabular[:400])["outlier"]
    # reason: in-distribution rows (most of them trained on) are flagged at about the stated 1 %.
    assert flags.mean() <= 0.03
    foreign = spectra[:20].copy()
    length = foreign.shape[-1]
    foreign[:10, :, length // 3 : length // 2] = foreign.max()  # reason: a saturated band
    foreign[10:] = foreign[10:, :, ::-1]  # reason: another substance's shape, same intensities
    assert predictor.predict_outputs(foreign, table.tabular[:20])["outlier"].all()


def test_predict_cli_with_coverage_and_outlier_columns_without_torch(run, tmp_path):
    out = tmp_path / "predictions.csv"
    result = run_cli(["predict", run.onnx, run.data, "-o", out, "--coverage", "0.9"])
    assert result.returncode == 0, result.stderr
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns[:8]) == ["id", "label", "truth", "set", "set_size", "t2", "q", "outlier"]
    sets = frame["set"].str.split("|")
    assert (sets.map(len) == frame["set_size"]).all()
    assert all(top in members for top, members in zip(frame["top1_label"], sets))
    predictor = Predictor(run.onnx)
    truth = _truth(run, predictor, predictor.load(run.data))
    covered = np.mean([label in members for label, members in zip(frame["id"].astype(str).map(truth), sets)])
    # reason: most rows were trained on, so their coverage is at least the level asked for.
    assert covered >= 0.9
    assert frame["outlier"].isin([True, False]).all() and (frame["t2"] >= 0).all()


def test_unsupported_coverage_is_one_line_and_exit_2(run, tmp_path):
    n = Predictor(run.onnx).conformal["n"]
    result = run_cli(["predict", run.onnx, run.data, "-o", tmp_path / "p.csv", "--coverage", "0.99999"])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"model's {n} calibration rows: choose a coverage from" in lines[0], result.stderr
    assert not (tmp_path / "p.csv").exists()


def _older_export(path):
    """The example model as exported before the label sets and the outlier model: its graph down to the
    probabilities output, its metadata without ``conformal``, ``ood`` and the ``outputs`` that name them."""
    import onnx

    model = onnx.load(EXAMPLE)
    onnx.utils.extract_model(str(EXAMPLE), str(path), [i.name for i in model.graph.input], ["probabilities"])
    older = onnx.load(path)
    dropped = {"conformal", "ood", "outputs"}
    older.metadata_props.extend(prop for prop in model.metadata_props if prop.key not in dropped)
    onnx.save(older, path)
    return path


def test_a_model_exported_before_still_predicts_and_says_what_it_lacks(tmp_path):
    from spectratorch.data.demo import write_demo_dataset

    older = _older_export(tmp_path / "older.onnx")
    assert "conformal" not in Predictor(older).metadata and Predictor(older).outputs == ("probabilities",)
    write_demo_dataset(tmp_path / "fresh.pkl", n_samples=300, seed=3)
    out = tmp_path / "p.csv"
    result = run_cli(["predict", older, tmp_path / "fresh.pkl", "-o", out, "--coverage", "0.9"])
    assert result.returncode == 0, result.stderr
    assert "no conformal calibration" in result.stderr and "no outlier model" in result.stderr
    columns = list(pd.read_csv(out).columns)
    assert columns[:4] == ["id", "label", "truth", "top1_label"] and "set" not in columns and "outlier" not in columns
    # a coverage that is no probability is refused even where the model has no sets to give
    result = run_cli(["predict", older, tmp_path / "fresh.pkl", "-o", tmp_path / "q.csv", "--coverage", "7"])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "spectratorch predict: error: --coverage must be a probability between 0 and 1, e.g. 0.9; got 7.0."]


def test_ensemble_onnx_has_out_of_fold_sets_and_outlier_outputs(run, tmp_path):
    from spectratorch.export.ensemble import export_ensemble

    path, _ = export_ensemble([run.checkpoint, run.checkpoint], tmp_path / "ens.onnx", "ens", n_check=64)
    predictor = Predictor(path)
    assert predictor.outputs == ("probabilities", *OUTPUT_OOD)
    assert predictor.conformal["source"] == "out-of-fold"
    single = Predictor(run.onnx)
    table = single.load(run.data)
    got, alone = predictor.predict_outputs(table.spectra[:64], table.tabular[:64]), \
        single.predict_outputs(table.spectra[:64], table.tabular[:64])
    # reason: two copies of one member: the same outlier model as the single export.
    np.testing.assert_allclose(got["t2"], alone["t2"], rtol=1e-4)
    np.testing.assert_array_equal(got["outlier"], alone["outlier"])
