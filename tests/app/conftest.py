"""Shared pieces of the app's tests: real models (the shipped example, a hand-made one, broken ones) and real data."""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = next((ROOT / "checkpoints" / "example").glob("*.onnx"))
PAGE = ROOT / "spectratorch" / "app" / "page.py"


def linear_model(path: Path, n_points: int = 64, hot: slice = slice(20, 30), weight: float = 2.0) -> Path:
    """A one-channel, two-class ONNX model with our metadata whose class 'bump' reads only the points ``hot``.

    probabilities = softmax([0, weight * sum(x[hot])]); every other point has no weight, so an occlusion of it
    changes nothing.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from spectratorch.inference import FORMAT_KEY, FORMAT_VERSION, encode_metadata

    weights = np.zeros((n_points, 2), dtype=np.float32)
    weights[hot, 1] = weight
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["data_spectra"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "linear",
        [helper.make_tensor_value_info("data_spectra", TensorProto.FLOAT, ["batch", 1, n_points])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {FORMAT_KEY: FORMAT_VERSION, "name": "Linear y=['AVA', 'bump'] c=('nir',) t=None 0-5 s=1 eps=0",
            "arch": "Linear", "labels": ["flat", "bump"], "channels": ["nir"],
            "axis": [float(x) for x in range(1000, 1000 + n_points)], "tabular_columns": [], "targets": ["AVA", "bump"],
            "transforms": [], "metrics": {"val": {"accuracy": 0.5}}}
    for key, value in encode_metadata(meta).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def foreign_model(path: Path) -> Path:
    """A valid ONNX file without spectratorch metadata."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), path)
    return path


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """The shipped example model alone."""
    folder = tmp_path_factory.mktemp("models")
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    return folder


@pytest.fixture(scope="session")
def mixed_models_dir(tmp_path_factory) -> Path:
    """The example model, the hand-made linear one in a subfolder, one without metadata and a truncated one."""
    folder = tmp_path_factory.mktemp("mixed-models")
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    (folder / "nir").mkdir()
    linear_model(folder / "nir" / "linear.onnx")
    foreign_model(folder / "a foreign.onnx")
    (folder / "b truncated.onnx").write_bytes(EXAMPLE.read_bytes()[:4000])
    return folder


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> dict[str, Path]:
    """A small demo dataset in every accepted form: .parquet, .csv, .pkl and a .zip of its instrument exports."""
    from spectratorch.data.demo import write_demo_dataset
    from spectratorch.data.io import read_dataset, write_dataset

    folder = tmp_path_factory.mktemp("app-data")
    write_demo_dataset(folder / "batch.parquet", n_samples=240, seed=11, raw_dir=folder / "raw")
    df = read_dataset(folder / "batch.parquet")
    write_dataset(df, folder / "batch.csv")
    write_dataset(df, folder / "batch.pkl")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted((folder / "raw").iterdir()):
            archive.write(path, f"exports/{path.name}")
    (folder / "exports.zip").write_bytes(buffer.getvalue())
    return {"parquet": folder / "batch.parquet", "csv": folder / "batch.csv", "pkl": folder / "batch.pkl",
            "zip": folder / "exports.zip", "raw": folder / "raw"}
