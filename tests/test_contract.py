"""One model contract: data that export accepts, predict accepts; data that predict refuses, export refuses, with the
same lines (spectratorch/contract.py)."""

import dataclasses
import re

import numpy as np
import pytest

from spectratorch.contract import AXIS_TOLERANCE, differences, label_remap, same_axis
from spectratorch.data.schema import load_table
from spectratorch.errors import SchemaError
from spectratorch.inference import Predictor
from tests.export.helpers import CHANNELS, trained_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory, tabular=True)


def _table(run, shift: float):
    table = load_table(run.data, channels=CHANNELS, tabular="default")
    return dataclasses.replace(table, axis=table.axis + shift * np.abs(table.axis).max())


def _lines(message: str) -> str:
    return re.search(r"does not fit the model: (.*?)\.( Read|$)", message).group(1)


@pytest.mark.slow
def test_export_and_predict_accept_the_same_axis_within_the_tolerance(run, tmp_path):
    from spectratorch.export.onnx import export_onnx

    table = _table(run, AXIS_TOLERANCE / 2)
    out = export_onnx(run.checkpoint, tmp_path / "m.onnx", table, n_check=16, metrics={})
    probabilities = Predictor(out).predict_table(table)
    assert probabilities.shape == (len(table.ids), len(run.summary["labels"]))


@pytest.mark.slow
@pytest.mark.parametrize("change", ["axis", "tabular"])
def test_export_and_predict_refuse_with_the_same_lines(run, tmp_path, change):
    from spectratorch.export.onnx import ExportError, export_onnx

    table = _table(run, 4 * AXIS_TOLERANCE if change == "axis" else 0.0)
    if change == "tabular":
        table = dataclasses.replace(table, tabular=np.zeros((len(table.ids), 0), np.float32), tabular_columns=())
    with pytest.raises(SchemaError) as predicted:
        Predictor(run.onnx).predict_table(table)
    with pytest.raises(ExportError) as exported:
        export_onnx(run.checkpoint, tmp_path / "m.onnx", table, n_check=16, metrics={})
    assert _lines(str(predicted.value)) == _lines(str(exported.value))
    assert change in _lines(str(predicted.value))
    assert not (tmp_path / "m.onnx").exists()


def test_one_axis_tolerance_relative_to_the_largest_x():
    axis = np.linspace(1000.0, 2500.0, 50)
    assert same_axis(axis + 0.9 * AXIS_TOLERANCE * 2500, axis)
    assert not same_axis(axis + 1.1 * AXIS_TOLERANCE * 2500, axis)
    assert not same_axis(axis[:-1], axis)


def test_differences_compare_inference_transforms_only_and_name_fixes():
    model = {"arch": "TinyVGG", "transforms": ["da", "snv"], "channels": ["nir"]}
    assert differences(model, {"transforms": ["snv"], "channels": ["nir"]}, ("transforms", "channels")) == []
    assert differences(model, {"transforms": ["da"]}, ("transforms",), fixes=True) == [
        "transforms: checkpoint ['da', 'snv'], this data ['da'] (pass --transforms da snv)"]


def test_label_remap_follows_the_model_and_refuses_unknown_labels():
    assert label_remap(["a", "b", "c"], ["b", "c"]).tolist() == [1, 2]
    with pytest.raises(SchemaError, match=r"classes \['z'\] that the model does not know"):
        label_remap(["a", "b"], ["a", "z"])
