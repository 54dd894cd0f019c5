"""The exploratory notebook: kept without outputs, and run top to bottom on a small generated export."""

import importlib.util
import os
import re
import shlex
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from spectratorch.data.demo import write_demo_dataset
from spectratorch.data.io import read_dataset
from spectratorch.data.schema import load_table

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "exploratory_analysis.ipynb"
N_SAMPLES = 400
SEED = 3


def _builder():
    spec = importlib.util.spec_from_file_location("_build_notebook", ROOT / "notebooks" / "_build_notebook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _execute(notebook, cwd, monkeypatch):
    # reason: the kernel is a new process; it must import this tree, not another installed copy.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return notebook


def _outputs(notebook, kind):
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs if kind(out)]


def test_committed_notebook_has_no_outputs_and_matches_its_builder():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert len(code) >= 10 and len(notebook.cells) > len(code)
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    # reason: cells, not bytes, so another nbformat version's JSON layout does not fail the test.
    built = [(kind, source) for kind, source in _builder().CELLS]
    assert [(cell.cell_type, cell.source) for cell in notebook.cells] == built, "run notebooks/_build_notebook.py"


@pytest.mark.slow  # reason: a Jupyter kernel process runs the notebook's cells
def test_notebook_runs_on_a_small_export(tmp_path, monkeypatch):
    expected = tmp_path / "expected.pkl"
    report = write_demo_dataset(expected, n_samples=N_SAMPLES, seed=SEED, raw_dir=tmp_path / "raw")
    assert sum(report["removed"].values()) > 0
    out = tmp_path / "out" / "cleaned.pkl"
    monkeypatch.setenv("SPECTRATORCH_RAW_DIR", str(tmp_path / "raw"))
    monkeypatch.setenv("SPECTRATORCH_DATASET", str(out))
    notebook = _execute(nbformat.read(NOTEBOOK, as_version=4), tmp_path, monkeypatch)

    pd.testing.assert_frame_equal(read_dataset(out), read_dataset(expected), check_exact=False, rtol=1e-6)
    table = load_table(out)
    assert len(table.ids) == report["rows"] and table.spectra.shape[1:] == (4, 446)
    assert sorted(p.name for p in out.parent.iterdir()) == ["cleaned.pkl"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["expected.pkl", "out", "raw"]

    text = "".join(out.text for out in _outputs(notebook, lambda o: o.output_type == "stream" and o.name == "stdout"))
    assert f"{N_SAMPLES} samples from {tmp_path / 'raw'}" in text
    assert f"wrote {out}: {report['rows']} rows" in text
    assert f"spectratorch train --data {shlex.quote(str(out))} --targets OVA OK" in text
    assert f"kept {report['rows']} of {N_SAMPLES} rows" in text
    figures = _outputs(notebook, lambda o: "image/png" in o.get("data", {}))
    assert len(figures) >= 7
    rules = next(o.data["text/html"] for o in _outputs(notebook, lambda o: "first rule" in o.get("data", {}).get(
        "text/html", "")))
    for rule, count in report["removed"].items():  # columns: flagged, flagged by this rule only, removed (first rule)
        assert re.search(rf"<th>{rule}</th>\s*<td>\d+</td>\s*<td>\d+</td>\s*<td>{count}</td>", rules), rules
    # the per-class tables count the classes training reads: the inspectors' OK spellings are OK
    assert set(read_dataset(expected)["greffon_defaut_severite"]) > {"OK", "OK - Inspecteur"}
    by_class = next(o.data["text/html"] for o in _outputs(notebook, lambda o: "% removed" in o.get("data", {}).get(
        "text/html", "")))
    assert "<th>OK</th>" in by_class and "OK - Inspecteur" not in by_class and "OK - SpectrAcer" not in by_class


@pytest.mark.slow  # reason: a Jupyter kernel process runs the notebook's cells
def test_default_export_is_generated_under_the_repository_datasets(tmp_path, monkeypatch):
    monkeypatch.delenv("SPECTRATORCH_RAW_DIR", raising=False)
    monkeypatch.delenv("SPECTRATORCH_DATASET", raising=False)
    (tmp_path / "notebooks").mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    first = next(i for i, cell in enumerate(notebook.cells) if "write_raw_exports(make_dataset" in cell.source)
    notebook.cells = notebook.cells[: first + 1]
    assert "DEMO_SAMPLES = 3000" in notebook.cells[1].source
    notebook.cells[1].source = notebook.cells[1].source.replace("DEMO_SAMPLES = 3000", "DEMO_SAMPLES = 50")
    _execute(notebook, tmp_path / "notebooks", monkeypatch)
    raw_dir = tmp_path / "datasets" / "raw_notebook"
    assert sorted(p.name for p in raw_dir.iterdir()) == ["EX_277_demo_I.txt", "EX_380_demo_I.txt",
                                                          "EX_425_demo_I.txt", "LSPR_demo_I.txt", "Y_demo.txt"]
    assert len(pd.read_csv(raw_dir / "Y_demo.txt", sep="\t")) == 50


def test_builder_command_line_writes_only_a_notebook_path(tmp_path, capsys, monkeypatch):
    builder = _builder()
    monkeypatch.chdir(tmp_path)
    assert builder.main(["--help"]) == 0
    assert "usage:" in capsys.readouterr().out
    assert builder.main(["--force"]) == 2
    assert builder.main(["notes.txt"]) == 2
    assert "expected a .ipynb path" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert builder.main(["copy.ipynb"]) == 0
    assert nbformat.read(tmp_path / "copy.ipynb", as_version=4).cells
