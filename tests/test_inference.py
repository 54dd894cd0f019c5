"""Inference without torch: the predict command, the Predictor, and clear errors on bad models and bad data."""

import shutil
import subprocess
import sys

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper

from spectratorch.cli import main
from spectratorch.contract import ood_flag_rate
from spectratorch.data.io import read_dataset, write_dataset
from spectratorch.data.targets import resolve_target
from spectratorch.errors import ConfigError, DataFormatError, SchemaError
from spectratorch.export.onnx import read_metadata, update_metadata
from spectratorch.inference import UNCLASSIFIED, Predictor, physical_cores, prediction_frame
from tests.export.helpers import ROOT, run_cli, trained_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory, tabular=True)


@pytest.fixture(scope="module")
def predictor(run):
    return Predictor(run.onnx)


def _expected_columns(labels, top_k=2, truth=True):
    ranked = [f"top{k}_{part}" for k in range(1, top_k + 1) for part in ("label", "prob")]
    # reason: every new export has an outlier model, so predict writes t2, q and outlier after the label (and the
    # file's own label, truth, when it has the model's target).
    return ["id", "label", *(["truth"] if truth else []), "t2", "q", "outlier", *ranked,
            *[f"p_{label}" for label in labels]]


def test_inference_imports_no_torch():
    code = "import sys, spectratorch.inference, spectratorch.cli; print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('torch', 'lightning')))"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_training_commands_on_the_inference_install_are_one_line(tmp_path):
    for args in (["train", "--help"], ["train", "--data", tmp_path / "d.csv"], ["export", tmp_path / "m.ckpt"]):
        result = run_cli(args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, (args, result.stderr[-1000:])
        missing = "lightning" if "--data" in args else "torch"
        assert result.stderr.strip().splitlines() == [
            f"spectratorch {args[0]}: error: this needs the full install ({missing} "
            "is missing here; the install of requirements-inference.txt runs predict, convert, make-dataset and the "
            "page): pip install . with its requirements (torch included), as the README says"], args
    result = run_cli(["make-dataset", "--samples", "20", "-o", tmp_path / "d.csv"])  # what it says works, works
    assert result.returncode == 0 and (tmp_path / "d.csv").is_file(), result.stderr[-1000:]


def test_predict_cli_without_torch_matches_the_predictor(run, predictor, tmp_path):
    out = tmp_path / "predictions.csv"
    result = run_cli(["predict", run.onnx, run.data, "-o", out, "--top-k", "2"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "blocked" not in result.stderr
    frame = pd.read_csv(out, dtype={"id": str})
    assert list(frame.columns) == _expected_columns(predictor.labels)
    in_process = predictor.predict_file(run.data)
    assert frame["id"].tolist() == [str(i) for i in in_process["id"]]
    assert frame["label"].tolist() == in_process["label"].tolist()
    np.testing.assert_allclose(frame[["p_The rest", "p_OK"]].sum(axis=1), 1.0, atol=1e-5)
    assert len(frame) == len(read_dataset(run.data))
    wrote, scored = result.stdout.strip().splitlines()
    assert wrote == f"wrote {out}: {len(frame)} samples"
    # the data carries the model's target (OVA OK): the command scores itself against it
    truth = resolve_target(predictor.load(run.data).meta, ("OVA", "OK"))
    assert frame["truth"].tolist() == np.asarray(truth.labels)[truth.y].tolist()  # written beside the prediction
    right = int((frame["top1_label"].to_numpy() == np.asarray(truth.labels)[truth.y]).sum())
    kept = frame["label"] != UNCLASSIFIED
    assert scored.startswith(f"against the file's labels: accuracy {right / len(frame):.3f} ({right} of {len(frame)})")
    if not kept.all():
        assert f"of the {int(kept.sum())} kept, {kept.mean():.1%})" in scored


@pytest.mark.slow
def test_a_small_set_model_s_outlier_warning_gives_the_chance_share_of_its_few_held_out_rows(tmp_path):
    from spectratorch.data.generic import make_generic_frame

    frame = make_generic_frame(60, seed=3)
    frame.to_csv(tmp_path / "train.csv")
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--arch", "LDA", "--test-source", "none",
                 "--to-onnx", "--output-dir", str(tmp_path / "out")]) == 0
    model = next((tmp_path / "out").glob("*.onnx"))
    ood = Predictor(model).metadata["ood"]
    assert ood["n_held_out"] == 60
    spectral = [c for c in frame.columns if c.startswith("nir_")]
    frame[spectral] = frame[spectral] * 100.0  # another unit: every spectrum off the training data
    frame.to_csv(tmp_path / "units.csv")
    result = run_cli(["predict", model, tmp_path / "units.csv", "-o", tmp_path / "p.csv"])
    assert result.returncode == 0, result.stderr[-2000:]
    expected = ood_flag_rate(ood["confidence"], 60)
    assert f"where up to {100 * expected:.2g}% are expected (its limits rest on 60 held-out rows)" in result.stderr


@pytest.mark.slow
def test_an_export_that_writes_the_wavelengths_with_fewer_decimals_gets_the_same_predictions(tmp_path):
    from spectratorch.data.generic import make_generic_frame

    frame = make_generic_frame(60, seed=3)  # headers nir_900.00, nir_904.02, ...
    frame.to_csv(tmp_path / "train.csv")
    assert main(["train", "--data", str(tmp_path / "train.csv"), "--arch", "LDA", "--test-source", "none",
                 "--to-onnx", "--output-dir", str(tmp_path / "out")]) == 0
    model = next((tmp_path / "out").glob("*.onnx"))
    new = make_generic_frame(40, seed=8)
    new.to_csv(tmp_path / "same.csv")
    one_decimal = new.rename(columns=lambda c: f"nir_{float(c[4:]):.1f}" if c.startswith("nir_") else c)
    assert "nir_904.0" in one_decimal.columns
    one_decimal.to_csv(tmp_path / "fewer.csv")
    for name in ("same", "fewer"):
        result = run_cli(["predict", model, tmp_path / f"{name}.csv", "-o", tmp_path / f"{name} p.csv"])
        assert result.returncode == 0, result.stderr[-2000:]
    assert "axis values are the model's written with 1 decimals" in result.stderr
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "fewer p.csv"), pd.read_csv(tmp_path / "same p.csv"))


@pytest.mark.slow
def test_predict_says_when_far_more_spectra_are_outliers_than_expected(run, tmp_path):
    # the same spectra in another unit (x 100): every one off the training data, each still given a class
    frame = read_dataset(run.data)
    spectral = [c for c in frame.columns if str(c)[:1].isdigit() and "_" in str(c)]
    frame[spectral] = frame[spectral] * 100.0
    frame.to_pickle(tmp_path / "units.pkl")
    result = run_cli(["predict", run.onnx, tmp_path / "units.pkl", "-o", tmp_path / "p.csv"])
    assert result.returncode == 0, result.stderr[-2000:]
    flagged = pd.read_csv(tmp_path / "p.csv")["outlier"]
    assert flagged.mean() > 0.9
    assert (f"warning: {int(flagged.sum())} of the {len(flagged)} spectra ({flagged.mean():.1%}) are outliers of the "
            f"model's training data (column outlier), {_chance(run.onnx)}") in result.stderr
    assert "the model's own training rows can be flagged far more often than new spectra" in result.stderr
    # its own data: no such line
    result = run_cli(["predict", run.onnx, run.data, "-o", tmp_path / "own.csv"])
    assert "outliers of the model's training data" not in result.stderr
    # the expected share is the model's own (its metadata's ood.confidence), not a fixed 1 %
    loose = tmp_path / "loose.onnx"
    shutil.copy(run.onnx, loose)
    update_metadata(loose, ood={**read_metadata(loose)["ood"], "confidence": 0.95})
    result = run_cli(["predict", loose, tmp_path / "units.pkl", "-o", tmp_path / "p.csv"])
    assert _chance(loose) in result.stderr and _chance(loose) != _chance(run.onnx)


def _chance(model) -> str:
    """What predict's outlier warning says of the share flagged by chance: the model's ``1 - confidence``, or more
    where its limits rest on few held-out rows."""
    ood = read_metadata(model)["ood"]
    chance = ood_flag_rate(ood["confidence"], ood["n_held_out"])
    if chance > 1 - ood["confidence"] + 1e-9:
        return f"where up to {100 * chance:.2g}% are expected (its limits rest on {ood['n_held_out']} held-out rows)"
    return f"where about {100 * chance:.2g}% are expected"


def test_predict_table_equals_predict_arrays_in_any_batch_size(predictor, run):
    table = predictor.load(run.data)
    whole = predictor.predict_table(table, batch_size=4096)
    chunked = predictor.predict_arrays(table.spectra, table.tabular, batch_size=7)
    assert whole.shape == (len(table), 2) and whole.dtype == np.float32
    np.testing.assert_allclose(whole, chunked, atol=1e-6)


def test_cutoffs_and_top_k(predictor, run):
    frame = predictor.predict_file(run.data, top_k=1, cutoff=1.0)
    assert (frame["label"] == UNCLASSIFIED).all()
    assert list(frame.columns) == _expected_columns(predictor.labels, top_k=1)
    none = predictor.predict_file(run.data, cutoff=None)
    assert (none["label"] == none["top1_label"]).all()
    assert predictor.resolve_cutoff("auto") is None  # no cutoff recorded yet
    assert predictor.resolve_cutoff("0.6") == 0.6 and predictor.resolve_cutoff("none") is None
    with pytest.raises(ConfigError, match="--cutoff"):
        predictor.resolve_cutoff("1.5")
    with pytest.raises(ConfigError, match="--cutoff must be auto"):
        predictor.resolve_cutoff("strict")
    with pytest.raises(ConfigError, match="--top-k"):
        predictor.predict_file(run.data, top_k=3)


def test_prediction_frame_ranks_and_ties():
    probs = np.array([[0.1, 0.6, 0.3], [0.4, 0.2, 0.4]])
    frame = prediction_frame(probs, ["a", "b"], ["x", "y", "z"], top_k=3, cutoff=0.5)
    assert frame["label"].tolist() == ["y", UNCLASSIFIED]
    assert frame[["top1_label", "top2_label", "top3_label"]].values.tolist() == [["y", "z", "x"], ["x", "z", "y"]]
    assert frame["top2_prob"].tolist() == pytest.approx([0.3, 0.4])


def test_folder_of_instrument_exports(predictor, run, tmp_path):
    from spectratorch.data.raw import write_raw_exports

    df = read_dataset(run.data).iloc[:40]
    write_raw_exports(df, tmp_path / "raw")
    frame = predictor.predict_file(tmp_path / "raw")
    expected = predictor.predict_file(run.data).set_index("id").loc[df.index.astype(str)]
    assert frame["id"].astype(str).tolist() == df.index.astype(str).tolist()
    np.testing.assert_allclose(frame["p_OK"], expected["p_OK"], atol=1e-5)


def test_nan_rows_are_skipped_reported_and_kept_in_their_places(run, tmp_path, capsys):
    df = read_dataset(run.data)
    df.iloc[[3, 10], df.columns.get_loc("277_300")] = np.nan
    df.iloc[7, df.columns.get_loc("integration_oob")] = 1
    write_dataset(df, tmp_path / "nan.pkl")
    out = tmp_path / "p.csv"
    assert main(["predict", str(run.onnx), str(tmp_path / "nan.pkl"), "-o", str(out)]) == 0
    frame = pd.read_csv(out, dtype={"id": str}, keep_default_na=False)
    # every row of the data, in its order: a sheet pasted beside the data lines up
    assert frame["id"].tolist() == df.index.astype(str).tolist()
    reasons = dict(zip(frame["id"], frame["skipped"]))
    assert {i: reasons[str(df.index[i])] for i in (3, 7, 10)} == {3: "non_finite", 7: "integration_oob",
                                                                  10: "non_finite"}
    assert (frame["skipped"] != "").sum() == 3
    assert (frame.loc[frame["skipped"] != "", ["label", "top1_prob"]] == "").all().all()
    assert (frame.loc[frame["skipped"] == "", "label"] != "").all()
    # the predicted rows are those of the same file without the skipped rows
    write_dataset(df.drop(index=df.index[[3, 7, 10]]), tmp_path / "clean.pkl")
    assert main(["predict", str(run.onnx), str(tmp_path / "clean.pkl"), "-o", str(tmp_path / "c.csv")]) == 0
    clean = pd.read_csv(tmp_path / "c.csv", dtype={"id": str})
    full = pd.read_csv(out, dtype={"id": str})
    pd.testing.assert_frame_equal(full[full["skipped"].isna()].drop(columns="skipped").reset_index(drop=True), clean,
                                  check_dtype=False)
    said = capsys.readouterr().out
    assert "skipped {'integration_oob': 1, 'non_finite': 2}" in said
    assert "the data's 3 skipped rows are in the file in their places" in said


def _model_without_metadata(path):
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), path)


def _bad_inputs(run, tmp_path):
    df = read_dataset(run.data)
    cases = {}
    _model_without_metadata(tmp_path / "foreign.onnx")
    cases["foreign model"] = (tmp_path / "foreign.onnx", run.data, "no spectratorch metadata")
    (tmp_path / "truncated.onnx").write_bytes(run.onnx.read_bytes()[:5000])
    cases["truncated model"] = (tmp_path / "truncated.onnx", run.data, "not a readable ONNX model")
    cases["missing model"] = (tmp_path / "nothing.onnx", run.data, "no such model file")
    cases["arguments swapped"] = (run.data, run.onnx, r"a dataset file, not an ONNX model; the model comes first "
                                                      r"\(`spectratorch predict MODEL.onnx DATA`\)")
    # the checkpoint `train` leaves without --to-onnx: the command that makes the model from it
    cases["checkpoint"] = (run.checkpoint, run.data, r"a training checkpoint, not an ONNX model; export it first: "
                                                     r"spectratorch export \".+\.ckpt\" \(or train with --to-onnx\)")
    write_dataset(df.drop(columns=[c for c in df.columns if c.startswith("380_")]), tmp_path / "no380.pkl")
    cases["missing channel"] = (run.onnx, tmp_path / "no380.pkl", r"unknown channel\(s\) \['380'\]")
    last = max((c for c in df.columns if c.startswith(("277_", "380_"))), key=lambda c: float(c.split("_")[1]))
    x_last = last.split("_")[1]
    write_dataset(df.drop(columns=[f"277_{x_last}", f"380_{x_last}"], errors="ignore"), tmp_path / "axis.pkl")
    cases["other axis"] = (run.onnx, tmp_path / "axis.pkl", f"the data lacks the model's point\\(s\\) {x_last}\\b")
    # 380 ends 5 points early while 277 keeps the axis whole: the union axis is the model's, 380's tail would be zeros
    own = sorted((c for c in df.columns if c.startswith("380_")), key=lambda c: float(c.split("_")[1]))
    write_dataset(df.drop(columns=own[-5:]), tmp_path / "short380.pkl")
    cases["shorter channel"] = (run.onnx, tmp_path / "short380.pkl",
                                f"channel '380' of the data covers [0-9.]+\\.\\.{own[-6].split('_')[1]}, the model's "
                                f"[0-9.]+\\.\\.{x_last}: the model's points outside it would be read as zeros")
    write_dataset(df.drop(columns=["greffon_transmittance"]), tmp_path / "notab.pkl")
    cases["missing tabular"] = (run.onnx, tmp_path / "notab.pkl", r"unknown tabular column\(s\) \['greffon_transm")
    (tmp_path / "empty.csv").write_text("")
    cases["empty file"] = (run.onnx, tmp_path / "empty.csv", "empty")
    all_nan = df.iloc[:3].copy()
    all_nan["277_300"] = np.nan
    write_dataset(all_nan, tmp_path / "allnan.pkl")
    cases["only NaN rows"] = (run.onnx, tmp_path / "allnan.pkl", "no rows left")
    return cases


def test_bad_inputs_fail_with_one_line_and_no_output(run, tmp_path, capsys):
    for name, (model, data, message) in _bad_inputs(run, tmp_path).items():
        out = tmp_path / f"{name}.csv"
        code = main(["predict", str(model), str(data), "-o", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2, name
        assert err[-1].startswith("spectratorch predict: error: "), (name, err)
        assert pytest.importorskip("re").search(message, err[-1]), (name, err[-1])
        assert not out.exists(), name
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_bad_input_in_a_subprocess_exits_non_zero_without_traceback(run, tmp_path):
    (tmp_path / "truncated.onnx").write_bytes(run.onnx.read_bytes()[:5000])
    result = run_cli(["predict", tmp_path / "truncated.onnx", run.data, "-o", tmp_path / "p.csv"])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("spectratorch predict: error: ")
    assert not (tmp_path / "p.csv").exists()
    # a refused file is the one line, before any note on the model (this one has no default cutoff)
    df = read_dataset(run.data)
    write_dataset(df.drop(columns=[c for c in df.columns if c.startswith("380_")]), tmp_path / "no380.pkl")
    result = run_cli(["predict", run.onnx, tmp_path / "no380.pkl", "-o", tmp_path / "p.csv"])
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_predictor_errors_are_typed(run, tmp_path):
    _model_without_metadata(tmp_path / "foreign.onnx")
    with pytest.raises(DataFormatError, match="no spectratorch metadata"):
        Predictor(tmp_path / "foreign.onnx")
    predictor = Predictor(run.onnx, threads=1)
    with pytest.raises(SchemaError, match="spectra must have shape"):
        predictor.predict_arrays(np.zeros((2, 3, 5)))
    with pytest.raises(SchemaError, match="tabular must have shape"):
        predictor.predict_arrays(np.zeros((2, 2, len(predictor.axis))), None)
    with pytest.raises(ConfigError, match="threads"):
        Predictor(run.onnx, threads=0)
    assert physical_cores() >= 1


def test_unlabelled_data_gets_no_score_line(run, tmp_path, capsys):
    df = read_dataset(run.data).drop(columns=["greffon_defaut_severite", "greffon_defaut_type"]).iloc[:30]
    write_dataset(df, tmp_path / "unlabelled.pkl")
    assert main(["predict", str(run.onnx), str(tmp_path / "unlabelled.pkl"), "-o", str(tmp_path / "p.csv")]) == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "against the file's labels" not in out


def test_predict_s_batch_size_is_the_predictor_s():
    from spectratorch.cli import build_parser
    from spectratorch.inference import PREDICT_BATCH

    args = build_parser().parse_args(["predict", "model.onnx", "data.csv", "-o", "p.csv"])
    assert args.batch_size == PREDICT_BATCH == 256
