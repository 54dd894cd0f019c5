"""A short training on a CUDA GPU in mixed precision; its ONNX file, run on the CPU, matches the torch model there.

Marked ``gpu`` (and ``slow``: it trains): ``python -m pytest -m gpu`` runs it; where torch sees no CUDA device it is
skipped with the reason, so the rest of the suite needs no GPU.
"""

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from spectratorch.export.calibration import softmax

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason=f"no CUDA device visible to torch {torch.__version__} (built for "
                              f"{'CUDA ' + torch.version.cuda if torch.version.cuda else 'the CPU only'})"),
]
CHANNELS = ("277", "380")


class _Probe(pl.Callback):
    """What the fit ran on: the trainer's precision, the module's, the batch's and the training table's device at the
    first batch."""

    def __init__(self):
        self.seen = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.seen.setdefault("precision", str(trainer.precision))
        self.seen.setdefault("device", module.device.type)
        self.seen.setdefault("batch_device", batch["spectra"].device.type)
        # where the training table is gathered: on the GPU when it fits there (no host gather or transfer per batch)
        self.seen.setdefault("table_device", trainer.datamodule.train_dataloader().dataset.spectra.device.type)


def train_and_check(data, out, accelerator: str, precision: str) -> dict:
    """Train TinyVGG for 3 epochs on ``accelerator`` and export it; check its metrics against a CPU evaluation of the
    same checkpoint and its ONNX file against the checkpoint's torch model on the CPU. Returns what the fit ran on."""
    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.inference import Predictor
    from spectratorch.pipelines.run import train
    from spectratorch.training.restore import load_module

    data_config = DataConfig(data=str(data), channels=CHANNELS, batch_size=64, transforms=("da",))
    probe = _Probe()
    summary = train(RunConfig(data_config, ModelConfig(arch="TinyVGG"),
                              TrainConfig(max_epochs=3, output_dir=str(out / "fit"), accelerator=accelerator,
                                          devices="1", precision=precision, to_onnx=True, baseline=False)),
                    callbacks=[probe])
    metrics, labels = summary["metrics"], summary["labels"]
    # the metrics: complete, in range, below the chance loss, and those of the same checkpoint evaluated on the CPU
    # in float32 (to the rounding of the mixed precision)
    cpu = train(RunConfig(data_config, ModelConfig(arch="TinyVGG"),
                          TrainConfig(output_dir=str(out / "cpu"), accelerator="cpu", devices="1", precision="32-true",
                                      load_this=summary["files"]["checkpoint"], fit=False, baseline=False)),
                result_sheet=False)["metrics"]
    for stage in ("val", "test"):
        assert set(metrics[stage]) == {"loss", "accuracy", "f1", "balanced_accuracy", "auroc"}
        assert all(math.isfinite(v) for v in metrics[stage].values()), metrics[stage]
        assert all(0 <= v <= 1 for name, v in metrics[stage].items() if name != "loss"), metrics[stage]
        assert metrics[stage]["loss"] < math.log(len(labels)), metrics[stage]  # learned something
        assert metrics[stage]["loss"] == pytest.approx(cpu[stage]["loss"], rel=0.02)
        for name in ("accuracy", "f1", "balanced_accuracy", "auroc"):
            assert metrics[stage][name] == pytest.approx(cpu[stage][name], abs=0.02), (stage, name)
    # the ONNX file made from the GPU-trained checkpoint, on the CPU, against that checkpoint's torch model on the CPU
    module = load_module(summary["files"]["checkpoint"]).eval()
    assert next(module.parameters()).device.type == "cpu"
    predictor = Predictor(summary["files"]["onnx"])
    table = predictor.load(data)
    spectra, tabular = table.spectra[:256], table.tabular[:256]
    with torch.no_grad():
        logits = module(torch.from_numpy(spectra), torch.from_numpy(tabular)).numpy()
    expected = softmax(logits, predictor.metadata["temperature"])
    got = predictor.predict_arrays(spectra, tabular)
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    return dict(probe.seen)


def test_mixed_precision_training_on_cuda_exports_an_onnx_that_matches_on_cpu(demo_file, tmp_path):
    seen = train_and_check(demo_file, tmp_path, accelerator="gpu", precision="auto")
    assert seen == {"precision": "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed",
                    "device": "cuda", "batch_device": "cuda", "table_device": "cuda"}
