"""The Python route notebook (examples/python_route.ipynb): kept without outputs, and run top to bottom."""

import importlib.util
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "python_route.ipynb"


def _builder():
    spec = importlib.util.spec_from_file_location("_build_python_route", ROOT / "examples" / "_build_python_route.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_notebook_has_no_outputs_and_matches_its_builder():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert [(c.cell_type, c.source) for c in notebook.cells] == list(_builder().CELLS), \
        "run examples/_build_python_route.py"


@pytest.mark.slow
def test_notebook_runs_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    resources = {"metadata": {"path": str(tmp_path)}}
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources=resources).execute()
    text = "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for out in cell.outputs if out.output_type == "stream" and out.name == "stdout")
    assert "label,900.00,908.08,916.16" in text
    assert "150 spectra of 100 points, classes ['pure', 'rich', 'shifted']" in text
    accuracy = float(text.split("cross-validated accuracy: ")[1].split()[0])
    assert accuracy > 0.8
    assert "loaded estimator predicts the same: True" in text
    assert float(text.split("Predictor agrees with the true label on ")[1].split()[0]) > 0.8
    assert "Linear y=['AVA', 'label'] c=('spectrum',)" in text
    assert {p.name for p in tmp_path.iterdir()} >= {"my_spectra.csv", "my_classifier.onnx", "my_model.onnx", "runs"}
    from spectratorch.estimator import SpectraClassifier

    assert list(SpectraClassifier.load(tmp_path / "my_classifier.onnx").classes_) == ["pure", "rich", "shifted"]
