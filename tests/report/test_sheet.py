import json

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from spectratorch.data.datamodule import SpectralDataModule
from spectratorch.report.sheet import collect, gradient_x_input, make_result_sheet, saliency


class _OnePoint(torch.nn.Module):
    """Logit of class 1 = spectrum value at point 3 of channel 0: only that point drives it."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, spectra, tabular):
        v = spectra[:, 0, 3] * self.w
        return torch.stack([torch.zeros_like(v), v], dim=1)


def test_gradient_x_input_finds_the_driving_wavelength():
    spectra = torch.rand(64, 2, 10) + 0.5
    y = torch.randint(0, 2, (64,))
    saliency = gradient_x_input(_OnePoint(), spectra, torch.zeros(64, 0), y, 2)
    assert saliency.shape == (2, 2, 10)
    assert (saliency[:, 0, 3] > 0).all()
    assert np.count_nonzero(saliency) == 2


class _Spike(torch.nn.Module):
    """Class 1 when point 13 of channel 0 is above 1: a comparison, so no input gradient."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(10.0))

    def forward(self, spectra, tabular=None):
        spike = (spectra[:, 0, 13] > 1.0).float() * self.scale
        return torch.stack([torch.zeros_like(spike), spike], dim=1)


def test_saliency_falls_back_to_occlusion_without_gradients():
    spectra = torch.full((8, 2, 40), 0.5)
    y = torch.tensor([0, 1] * 4)
    spectra[y == 1, 0, 13] = 2.0
    drivers, kind = saliency(_Spike(), spectra, torch.zeros(8, 0), y, 2)
    assert kind == "|occlusion drop|" and drivers.shape == (2, 2, 40)
    # softmax([0, 10]) -> softmax([0, 0]): the class-1 rows lose ~0.5 where point 13 is occluded, nothing elsewhere
    assert drivers[1, 0].argmax() == 13 and drivers[1, 0, 13] == pytest.approx(0.5, abs=1e-3)
    assert np.count_nonzero(drivers[1, 0]) == 3  # the windows [12, 13] and [13, 14] cover points 12 to 14
    assert np.count_nonzero(drivers[0]) == 0 and np.count_nonzero(drivers[1, 1]) == 0
    _, kind = saliency(_OnePoint(), spectra, torch.zeros(8, 0), y, 2)
    assert kind == "|gradient × input|"


@pytest.mark.slow
def test_result_sheet_from_a_trained_run(demo_file, tmp_path):
    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.training.run import train

    data = DataConfig(data=str(demo_file), channels=("277", "380"), targets=("AVA", "IN"))
    summary = train(RunConfig(data, ModelConfig(arch="TinyVGG"), TrainConfig(max_epochs=2, output_dir=str(tmp_path))))
    sheet = summary["files"]["result_sheet"]
    assert sheet.endswith(" result sheet.png") and open(sheet, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    calibration = json.loads(open(summary["files"]["json"]).read())["calibration"]
    assert calibration["temperature"] > 0 and "default" in calibration["cutoffs"]
    assert plt.get_fignums() == []  # figures are closed
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(summary["files"]["logs"])
    events.Reload()
    assert "result_sheet" in events.Tags()["images"]
    # the sheet's data: probabilities sum to 1, saliency per class/channel/wavelength
    from spectratorch.training.restore import load_module

    module = load_module(summary["files"]["checkpoint"])
    dm = SpectralDataModule(data)
    dm.prepare()
    sheet_data = collect(module, dm, "test", temperature=2.0)
    np.testing.assert_allclose(sheet_data.probabilities().sum(1), 1, rtol=1e-5)
    assert sheet_data.saliency.shape == (4, 2, 446)
    result = make_result_sheet(module, dm, tmp_path / "again.png", "t")
    assert (tmp_path / "again.png").is_file() and result["temperature"] > 0


@pytest.mark.slow
def test_report_command_end_to_end(tmp_path_factory, tmp_path):
    """`spectratorch report CKPT`: the sheet beside the checkpoint, the cutoffs into the ONNX beside it, one JSON."""
    from spectratorch.export.onnx import read_metadata, update_metadata
    from tests.export.helpers import cutoff_run, run_cli

    run = cutoff_run(tmp_path_factory)
    checkpoint, onnx_file = tmp_path / run.checkpoint.name, tmp_path / run.onnx.name
    checkpoint.write_bytes(run.checkpoint.read_bytes())
    onnx_file.write_bytes(run.onnx.read_bytes())
    update_metadata(onnx_file, cutoffs={})  # as exported before any report
    result = run_cli(["report", checkpoint], block_torch=False, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    sheet = tmp_path / f"{run.stem} result sheet.png"
    assert printed["result_sheet"] == str(sheet) and sheet.stat().st_size > 50_000
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same checkpoint and data as the training run: the same temperature and cutoffs
    expected = run.summary["calibration"]
    assert printed["temperature"] == pytest.approx(expected["temperature"], rel=1e-6)
    assert printed["cutoffs"] == pytest.approx(expected["cutoffs"], rel=1e-6)
    assert read_metadata(onnx_file)["cutoffs"] == {k: v for k, v in printed["cutoffs"].items() if v is not None}
    assert printed["cutoffs"]["default"] is not None
