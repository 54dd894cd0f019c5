"""Export: one file that matches the checkpoint, golden metadata, calibration, and no file when a check fails."""

import json
import logging

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from spectratorch.cli import main
from spectratorch.errors import CheckpointError, ConfigError, DataFormatError
from spectratorch.export import onnx as export_module
from spectratorch.export.calibration import softmax
from spectratorch.export.onnx import ExportError, conv2d_layout, export_onnx, read_metadata, update_metadata
from spectratorch.inference import METADATA_KEYS, Predictor
from spectratorch.models import build_classifier, list_models
from spectratorch.models.registry import model_options
from tests.export.helpers import CHANNELS, cutoff_run, run_cli, trained_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory, tabular=True)


@pytest.fixture(scope="module")
def spectra_only(tmp_path_factory):
    return trained_run(tmp_path_factory, tabular=False)


def test_train_to_onnx_writes_the_stem_beside_the_checkpoint(run):
    assert run.onnx.name == run.stem + ".onnx"
    assert run.onnx.parent == run.checkpoint.parent
    summary = json.loads((run.checkpoint.parent / f"{run.stem}.json").read_text())
    assert summary["files"]["onnx"] == str(run.onnx)
    assert not [p for p in run.onnx.parent.iterdir() if p.name.endswith(".tmp")]


def test_metadata_golden_keys_and_values(run):
    meta = read_metadata(run.onnx)
    assert tuple(meta) == METADATA_KEYS
    for key in meta:
        assert isinstance(meta[key], (str, int, float, list, dict))
    raw = {p.key: p.value for p in onnx.load(str(run.onnx)).metadata_props}
    assert raw["spectratorch_format"] == "1" and raw["labels"] == json.dumps(run.summary["labels"])
    assert meta["name"] == run.stem
    assert meta["arch"] == "TinyVGG"
    assert meta["labels"] == run.summary["labels"] == ["The rest", "OK"]
    assert meta["channels"] == ["277", "380"]
    assert meta["axis"] == run.summary["description"]["axis"]
    assert meta["tabular_columns"] == ["greffon_transmittance"]
    assert meta["targets"] == ["OVA", "OK"]
    assert meta["transforms"] == ["da"]
    assert (meta["seed"], meta["split"], meta["n_splits"], meta["eps"]) == (42, 0, 5, 0.1)
    assert meta["version"] == __import__("spectratorch").__version__
    assert meta["metrics"] == run.summary["metrics"] and set(meta["metrics"]["val"]) >= {"loss", "f1", "accuracy"}
    assert meta["temperature"] == meta["calibration"]["temperature"] > 0
    assert set(meta["calibration"]) == {"temperature", "n_samples", "nll_before", "nll_after", "ece_before",
                                        "ece_after", "n_bins"}
    assert meta["calibration"]["nll_after"] <= meta["calibration"]["nll_before"]
    assert meta["calibration"]["n_samples"] == sum(run.summary["class_counts"]["val"].values())
    sheet_cutoffs = {k: v for k, v in run.summary["calibration"]["cutoffs"].items() if v is not None}
    # the run's record names which rows each figure is of: NLL of the validation rows, ECE of the test rows
    assert set(run.summary["calibration"]) == {"temperature", "nll_before", "nll_after", "test_ece_before",
                                               "test_ece_after", "cutoffs", "cutoff_table"}
    assert run.summary["calibration"]["nll_after"] == meta["calibration"]["nll_after"]
    assert meta["cutoffs"] == sheet_cutoffs  # the sheet's, the digits the JSON holds
    assert meta["inputs"] == ["data_spectra", "data_tabular"] and meta["output"] == "probabilities"
    assert Predictor(run.onnx).metadata == meta


def test_graph_inputs_outputs_and_dynamic_batch(run, spectra_only):
    graph = onnx.load(str(run.onnx)).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims == {"data_spectra": ["batch", 2, len(run.summary["description"]["axis"])], "data_tabular": ["batch", 1]}
    assert [o.name for o in graph.output] == ["probabilities", "t2", "q", "outlier"]
    # T = 0: a single input
    assert [i.name for i in onnx.load(str(spectra_only.onnx)).graph.input] == ["data_spectra"]
    assert read_metadata(spectra_only.onnx)["tabular_columns"] == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["run", "spectra_only"])
def test_onnx_predicts_like_the_checkpoint_on_the_test_split(kind, request):
    run = request.getfixturevalue(kind)
    torch_test = pd.read_csv(run.checkpoint.parent / f"{run.stem}.csv")  # torch's calibrated test probabilities
    predictor = Predictor(run.onnx)
    table = predictor.load(run.data)
    rows = pd.Index(table.ids).get_indexer(torch_test["id"].astype(str))
    assert (rows >= 0).all()
    got = predictor.predict_arrays(table.spectra[rows], table.tabular[rows])
    expected = torch_test[[f"p_{label}" for label in predictor.labels]].to_numpy()
    assert predictor.metadata["temperature"] != pytest.approx(1.0, abs=1e-3)  # else calibrated and not look alike
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # the reported test loss is the log-loss of these probabilities, the ONNX file's, not of the model before its
    # temperature
    truth = torch_test["truth"].map({label: k for k, label in enumerate(predictor.labels)}).to_numpy()
    log_loss = -np.log(expected[np.arange(len(truth)), truth]).mean()
    assert run.summary["metrics"]["test"]["loss"] == pytest.approx(log_loss, rel=1e-3)
    val_loss = predictor.metadata["calibration"]["nll_after"]
    assert run.summary["metrics"]["val"]["loss"] == pytest.approx(val_loss, rel=1e-6)


@pytest.mark.slow
def test_default_cutoff_reaches_the_onnx_and_predict(tmp_path_factory, tmp_path):
    run = cutoff_run(tmp_path_factory)
    default = run.summary["calibration"]["cutoffs"]["default"]
    table = pd.DataFrame(run.summary["calibration"]["cutoff_table"])
    assert default == table.loc[table["target"] == 0.95, "cutoff"].item() and 0.5 < default < 1
    assert read_metadata(run.onnx)["cutoffs"]["default"] == default  # the value itself, not a copy of a copy
    again = tmp_path / "again.onnx"
    assert main(["export", str(run.checkpoint), "-o", str(again)]) == 0  # the checkpoint alone keeps them too
    assert read_metadata(again)["cutoffs"] == pytest.approx(read_metadata(run.onnx)["cutoffs"], abs=1e-6)
    frames = {}
    for cutoff in ("auto", "none"):
        out = tmp_path / f"{cutoff}.csv"
        result = run_cli(["predict", run.onnx, run.data, "-o", out, "--cutoff", cutoff])
        assert result.returncode == 0, result.stderr[-2000:]
        frames[cutoff] = pd.read_csv(out)
    auto, plain = frames["auto"], frames["none"]
    below = auto["top1_prob"].to_numpy() < default
    assert 0 < below.sum() < len(auto)  # the cutoff changes some predictions, not all
    assert (auto.loc[below, "label"] == "unclassified").all()
    assert (auto.loc[~below, "label"] == plain.loc[~below, "label"]).all()
    assert (plain["label"] != "unclassified").all()


def test_export_cli_from_the_checkpoint_alone(run, tmp_path, capsys):
    out = tmp_path / "again.onnx"
    assert main(["export", str(run.checkpoint), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    assert read_metadata(out)["temperature"] == pytest.approx(read_metadata(run.onnx)["temperature"])
    assert read_metadata(out)["metrics"] == run.summary["metrics"]  # from <stem>.json beside the checkpoint


def test_parity_check_catches_a_perturbed_weight(run, tmp_path, monkeypatch):
    convert = export_module.conv2d_layout

    def perturbed(model):
        converted = convert(model)
        weight = [p for p in converted.parameters() if p.dim() >= 2][-1]  # the head's last weight matrix
        with torch.no_grad():
            weight[0] += 0.02
        return converted

    monkeypatch.setattr(export_module, "conv2d_layout", perturbed)
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match=r"does not match the checkpoint.*no file was written") as err:
        export_onnx(run.checkpoint, out, run.data)
    assert f"tolerance {export_module.TOLERANCE:g}" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_parity_check_accepts_what_is_float32_rounding_against_float64(run, tmp_path, monkeypatch, caplog):
    run_torch = export_module._run_torch_all

    def rounded(model, inputs):
        # reason: stands for torch's own float32 rounding of large logits: its float32 run off by 3e-4 per row,
        # its float64 run exact.
        outputs = run_torch(model, inputs)
        if inputs[0].dtype == torch.float32:
            outputs[0] = outputs[0] + 3e-4 * np.where(np.arange(len(outputs[0])) % 2, 1, -1)[:, None]
        return outputs

    monkeypatch.setattr(export_module, "_run_torch_all", rounded)
    out = tmp_path / "model.onnx"
    with caplog.at_level(logging.INFO, logger="spectratorch.export.onnx"):
        export_onnx(run.checkpoint, out, run.data)
    assert out.is_file() and "float32 rounding" in caplog.text


@pytest.mark.slow
def test_export_takes_the_models_points_from_a_wider_file(run, tmp_path, caplog):
    # the same rows exported over a wider range (one more point past each end of every channel), as predict takes it
    frame = pd.read_pickle(run.data)
    xs = sorted({float(c.split("_")[1]) for c in frame.columns if c.split("_")[0] in CHANNELS})
    extra = {f"{c}_{x:g}": 0.5 for c in CHANNELS for x in (xs[0] - 10, xs[-1] + 10)}
    wider = frame.assign(**extra)
    with caplog.at_level(logging.INFO, logger="spectratorch"):
        out = export_onnx(run.checkpoint, tmp_path / "wider.onnx", wider)
    assert f"the model's {len(xs)} points" in caplog.text
    assert read_metadata(out)["axis"] == read_metadata(run.onnx)["axis"]


def test_missing_training_data_asks_for_data(run, tmp_path, capsys):
    checkpoint = torch.load(run.checkpoint, map_location="cpu", weights_only=False)
    checkpoint["hyper_parameters"]["config"]["data"]["data"] = str(tmp_path / "gone.pkl")
    moved = tmp_path / run.checkpoint.name
    torch.save(checkpoint, moved)
    with pytest.raises(ExportError, match="--data"):
        export_onnx(moved)
    assert main(["export", str(moved)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spectratorch export: error:") and "--data" in err and "\n" not in err
    assert main(["export", str(moved), "--data", str(run.data)]) == 0
    assert (tmp_path / f"{run.stem}.onnx").is_file()


def test_bad_checkpoint_and_n_check(tmp_path, run):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        export_onnx(tmp_path / "nope.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a spectratorch checkpoint"):
        export_onnx(tmp_path / "junk.ckpt")
    with pytest.raises(ConfigError, match="n_check"):
        export_onnx(run.checkpoint, n_check=0)


def test_update_metadata_round_trip(run, tmp_path):
    copy = tmp_path / "model.onnx"
    copy.write_bytes(run.onnx.read_bytes())
    meta = update_metadata(copy, cutoffs={"default": 0.7, "precision_95": 0.9})
    assert meta["cutoffs"] == {"default": 0.7, "precision_95": 0.9}
    assert read_metadata(copy)["labels"] == read_metadata(run.onnx)["labels"]
    assert Predictor(copy).resolve_cutoff("auto") == 0.7
    with pytest.raises(ConfigError, match="spectratorch_format"):
        update_metadata(copy, spectratorch_format=2)
    with pytest.raises(DataFormatError, match="no such model"):
        update_metadata(tmp_path / "missing.onnx", cutoffs={})


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_exports_exactly(name):
    import onnxruntime

    from spectratorch.export.onnx import _Probabilities, _trace

    torch.manual_seed(0)
    options = {"width": 0.25} if "width" in model_options(name) else {}
    model = build_classifier(name, ["a", "b"], length=64, n_tabular=1, n_classes=3, **options)
    model.fit(torch.rand(20, 2, 64) * 100, torch.rand(20, 1))
    for parameter in model.net.parameters():  # reason: Linear and MiniRocket start at zero weights
        if (parameter == 0).all():
            parameter.data.normal_(0, 0.1)
    for module in model.modules():  # non-trivial batch-norm statistics, so folding them is tested
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.eval()
    x, t = torch.rand(9, 2, 64) * 100, torch.rand(9, 1)
    converted = conv2d_layout(model)
    with torch.no_grad():
        torch.testing.assert_close(converted(x, t), model(x, t), atol=1e-5, rtol=1e-4)
        expected = torch.softmax(model(x, t) / 1.7, dim=1).numpy()
    proto = _trace(_Probabilities(converted, 1.7), model.example_inputs(2), ["data_spectra", "data_tabular"])
    onnx.checker.check_model(proto)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"data_spectra": x.numpy(), "data_tabular": t.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_out_of_fold_record_describes_the_models_own_probabilities(caplog):
    """The stored out-of-fold logits already carry the model's temperature: the record measures them as they are,
    not after a second temperature (which, on rows all classified right, sat at its bound with a warning)."""
    y = np.array([0, 1, 2] * 4)
    logits = np.eye(3)[y] * 3.0
    with caplog.at_level(logging.WARNING, logger="spectratorch.export.calibration"):
        report, (probabilities, _), _ = export_module.out_of_fold_trust(logits, y)
    assert "bound" not in caplog.text
    nll = float(-np.log(softmax(logits)[np.arange(len(y)), y]).mean())
    assert report["temperature"] == 1.0
    assert report["nll_after"] == pytest.approx(nll) and report["nll_before"] == pytest.approx(nll)
    np.testing.assert_allclose(probabilities, softmax(logits))
