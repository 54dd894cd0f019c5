"""One small trained-and-exported run per kind, shared by ``tests/export`` and ``tests/test_inference.py``.

pytest gives each test module its own copy of an imported fixture, so the runs are cached here, once per process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ("277", "380")
_CACHE: dict = {}

# reason: this prelude makes `import torch` (and lightning) fail, as on a PC with only the inference install.
TORCH_BLOCKER = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "lightning", "torchmetrics", "pytorch_lightning"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None
sys.meta_path.insert(0, _Blocked())
"""
# reason: the CLI under the blocker.
BLOCK_TORCH = TORCH_BLOCKER + """from spectratorch.cli import main
sys.argv[0] = "spectratorch"
sys.exit(main())
"""


@dataclass(frozen=True)
class Run:
    """A trained and exported run: its files and summary."""

    data: Path
    checkpoint: Path
    onnx: Path
    summary: dict

    @property
    def stem(self) -> str:
        return self.summary["name"]


def demo_data(tmp_path_factory) -> Path:
    if "data" not in _CACHE:
        from spectratorch.data.demo import write_demo_dataset

        path = tmp_path_factory.getbasetemp() / "export-data" / "demo.pkl"
        path.parent.mkdir(exist_ok=True)
        write_demo_dataset(path, n_samples=700, seed=5)
        _CACHE["data"] = path
    return _CACHE["data"]


def trained_run(tmp_path_factory, tabular: bool = True) -> Run:
    """Train TinyVGG for one epoch on the demo data and export it (``--to-onnx``), once per process."""
    key = ("run", tabular)
    if key not in _CACHE:
        from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
        from spectratorch.pipelines.run import train

        data = demo_data(tmp_path_factory)
        out = tmp_path_factory.getbasetemp() / f"export-run-{'tabular' if tabular else 'spectra'}"
        config = RunConfig(
            DataConfig(data=str(data), channels=CHANNELS, tabular="default" if tabular else (), batch_size=64,
                       transforms=("da",)),
            ModelConfig(arch="TinyVGG"),
            TrainConfig(max_epochs=1, early_stop_patience=1, output_dir=str(out), accelerator="cpu", devices="1",
                        to_onnx=True, save_test_preds=True),
        )
        summary = train(config)
        files = summary["files"]
        _CACHE[key] = Run(data, Path(files["checkpoint"]), Path(files["onnx"]), summary)
    return _CACHE[key]


def cutoff_run(tmp_path_factory) -> Run:
    """``Linear`` on NC against the rest (``OVA NC``), one epoch, exported: a model whose validation reaches 95 %
    accuracy only above a cutoff, so the run records a default cutoff in its ONNX file (once per process)."""
    key = ("cutoff",)
    if key not in _CACHE:
        from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
        from spectratorch.data.demo import write_demo_dataset
        from spectratorch.pipelines.run import train

        out = tmp_path_factory.getbasetemp() / "export-run-cutoff"
        # reason: 3,000 samples give more than LARGE_TRAIN training and validation rows, so Linear is trained by
        # Adam on its training fold and its cutoffs come from its validation fold (below that it is solved).
        data = out / "demo-3000.pkl"
        write_demo_dataset(data, n_samples=3000, seed=5)
        config = RunConfig(
            DataConfig(data=str(data), targets=("OVA", "NC"), channels=CHANNELS, batch_size=64,
                       transforms=()),
            ModelConfig(arch="Linear"),
            TrainConfig(max_epochs=1, early_stop_patience=1, output_dir=str(out), accelerator="cpu", devices="1",
                        to_onnx=True, baseline=False),
        )
        summary = train(config)
        files = summary["files"]
        _CACHE[key] = Run(data, Path(files["checkpoint"]), Path(files["onnx"]), summary)
    return _CACHE[key]


def run_cli(args, block_torch: bool = True, timeout: int = 120) -> subprocess.CompletedProcess:
    """``spectratorch ARGS`` in a subprocess, with torch and lightning made unimportable when asked."""
    command = [sys.executable, "-c", BLOCK_TORCH, *map(str, args)] if block_torch else [
        sys.executable, "-m", "spectratorch.cli", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
