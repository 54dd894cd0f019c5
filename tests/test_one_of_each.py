"""One of each: the stage arrays, the batched torch inference, the onnxruntime session, the temperature, the ECE.

Each piece has one definition that every caller uses; these tests fail when a second copy comes back or when the
one piece stops matching what its callers used to compute.
"""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from spectratorch.data.datamodule import SpectralDataModule
from spectratorch.models.batched import predict_logits, run_batched

PACKAGE = Path(__file__).resolve().parents[1] / "spectratorch"


def _sources() -> dict[str, str]:
    return {str(path.relative_to(PACKAGE)): path.read_text() for path in PACKAGE.rglob("*.py")}


def _where(pattern: str) -> set[str]:
    return {name for name, text in _sources().items() if re.search(pattern, text)}


# ---- stage arrays ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("test_source", ["like-val", "is-val", "file"])
def test_stage_arrays_are_what_the_loaders_yield(demo_file, test_source):
    dm = SpectralDataModule(data=str(demo_file), channels=("277", "380"), batch_size=64,
                            test_source=str(demo_file) if test_source == "file" else test_source)
    dm.prepare()
    loaders = {"val": dm.val_dataloader(), "test": dm.test_dataloader()}
    for stage, loader in loaders.items():
        batches = list(loader)
        arrays = dm.stage_arrays(stage)
        for key in ("spectra", "tabular", "y"):
            assert torch.equal(getattr(arrays, key), torch.cat([b[key] for b in batches])), (stage, key)
        assert len(arrays) == len(arrays.ids) == len(arrays.full_truth) == sum(len(b["y"]) for b in batches)
    train = dm.stage_arrays("train")
    # reason: the shuffled training loader drops its last short batch; its sampler holds every training row.
    assert train.rows.tolist() == dm.train_dataloader().sampler.indices.tolist()
    spectra, tabular = dm.train_arrays()
    assert torch.equal(spectra, train.spectra) and torch.equal(tabular, train.tabular)
    assert torch.equal(dm.train_labels(), train.y)
    # the ids and full truth are those of the same rows of the table
    val = dm.stage_arrays("val")
    assert val.ids.tolist() == [dm.table.ids[i] for i in dm.split.val]
    if test_source == "file":
        assert len(dm.stage_arrays("test")) == len(dm.table)
    with pytest.raises(ValueError, match="stage must be"):
        dm.stage_arrays("predict")


def test_stage_arrays_of_chosen_rows(demo_file):
    dm = SpectralDataModule(data=str(demo_file), channels=("277",), batch_size=64)
    dm.prepare()
    rows = np.sort(np.concatenate([dm.split.train, dm.split.val]))
    both = dm.stage_arrays("train", rows=rows)
    assert both.rows.tolist() == rows.tolist()
    assert torch.equal(both.spectra, torch.from_numpy(dm.table.spectra[rows]))
    assert both.y.tolist() == dm.target.y[rows].tolist()


def test_no_caller_reaches_into_the_private_source():
    assert _where(r"\.stage_rows\(|_Source\b") <= {"data/datamodule.py"}


# ---- batched torch inference ----------------------------------------------------------------------------------
class _TwoOutputs(torch.nn.Module):
    def forward(self, spectra, tabular):
        return spectra.sum(dim=(1, 2)) + tabular.sum(dim=1), spectra.amax(dim=(1, 2))


def test_run_batched_equals_one_pass_whatever_the_batch():
    spectra, tabular = torch.rand(37, 2, 11), torch.rand(37, 3)
    whole = _TwoOutputs()(spectra, tabular)
    for batch_size in (1, 5, 37, 100):
        got = run_batched(_TwoOutputs(), (spectra, tabular), batch_size)
        assert len(got) == 2 and all(torch.equal(g, w) for g, w in zip(got, whole))
    assert run_batched(_TwoOutputs(), (spectra[:0], tabular[:0])) == ()


def test_predict_logits_is_the_models_eval_forward():
    from spectratorch.models.classifier import build_classifier

    torch.manual_seed(0)
    spectra, tabular = torch.rand(50, 2, 40), torch.rand(50, 1)
    model = build_classifier("TinyVGG", ["a", "b"], 40, 1, 3).fit(spectra, tabular)
    model.train()  # reason: predict_logits must switch dropout and batch norm to eval itself
    logits = predict_logits(model, spectra, tabular, batch_size=16)
    with torch.no_grad():
        expected = model.eval()(spectra, tabular).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
    assert logits.dtype == np.float32 and logits.shape == (50, 3)


def test_one_batched_loop():
    # reason: a model run over slices of rows is written once (models/batched.py). The other loops over slices:
    # the sheet's gradient × input (a backward pass per slice), the export's onnxruntime side of the parity check,
    # and the schema's chunked copy of a file's rows.
    loops = _where(r"for \w+ in range\(0, len\(\w+(\[0\])?\), \w+\)")
    assert loops <= {"models/batched.py", "report/sheet.py", "export/onnx.py", "data/schema.py"}
    assert "models/batched.py" in loops
    assert not _where(r"\.split\(batch_size\)")


# ---- onnxruntime sessions -------------------------------------------------------------------------------------
def test_one_session_factory_and_it_refuses_bad_files(tmp_path):
    from spectratorch.errors import DataFormatError
    from spectratorch.inference import open_session

    assert _where(r"InferenceSession\(") == {"inference.py"}
    with pytest.raises(DataFormatError, match="no such model file"):
        open_session(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(DataFormatError, match="not a readable ONNX model"):
        open_session(broken)
    with pytest.raises(DataFormatError, match="<in-memory model>: not a readable ONNX model"):
        open_session(b"not a model")


# ---- temperature and ECE --------------------------------------------------------------------------------------
def test_one_temperature_fit_and_one_ece():
    # reason: the temperature is fitted by export/calibration.py only; the pipeline fits it once per run.
    assert _where(r"def fit_temperature|def expected_calibration_error|def _ece") == {"export/calibration.py"}
    assert _where(r"\bceil\(.*n_bins|\* n_bins\)\.astype") == {"export/calibration.py"}
    assert _where(r"roc_auc_score|balanced_accuracy_score|f1_score\(") == {"metrics.py"}


@pytest.mark.slow
def test_a_run_fits_its_temperature_once_and_the_sheet_shows_the_onnx_one(demo_file, tmp_path, monkeypatch,
                                                                          one_thread):
    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.export import calibration
    from spectratorch.export.onnx import read_metadata
    from spectratorch.pipelines.run import train

    fits = []
    fit = calibration.fit_temperature
    monkeypatch.setattr(calibration, "fit_temperature", lambda *a, **k: fits.append(fit(*a, **k)) or fits[-1])
    config = RunConfig(
        DataConfig(data=str(demo_file), channels=("277", "380"), batch_size=64, transforms=()),
        ModelConfig(arch="TinyVGG"),
        TrainConfig(max_epochs=1, early_stop_patience=1, output_dir=str(tmp_path), accelerator="cpu", devices="1",
                    to_onnx=True, baseline=False),
    )
    summary = train(config)
    meta = read_metadata(summary["files"]["onnx"])
    assert len(fits) == 1
    assert summary["calibration"]["temperature"] == meta["temperature"] == meta["calibration"]["temperature"]
    assert meta["temperature"] == fits[0]
