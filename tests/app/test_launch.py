"""`spectratorch app`: the command it serves, its refusals, and no torch anywhere in the page's imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spectratorch.app.catalog import find_models, model_details, model_row, open_model
from spectratorch.app.launch import PAGE, streamlit_command
from tests.export.helpers import ROOT, TORCH_BLOCKER, run_cli

from .conftest import EXAMPLE, linear_model


def test_the_page_and_its_helpers_import_no_torch():
    code = TORCH_BLOCKER + ("import spectratorch.app.page, spectratorch.app.launch, spectratorch.cli\n"
                      "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning')))")
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT,
                            timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_streamlit_command_serves_the_page_locally_with_the_limit():
    command = streamlit_command(8765, max_upload_mb=50)
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(PAGE)]
    options = dict(zip(command[5::2], command[6::2]))
    assert options["--server.port"] == "8765" and options["--server.address"] == "localhost"
    assert options["--server.maxUploadSize"] == "50" and options["--client.showErrorDetails"] == "none"


def test_the_cli_refuses_a_missing_folder_on_one_line(tmp_path):
    result = run_cli(["app", "--models", tmp_path / "nothing"])
    assert result.returncode == 2
    assert result.stderr.strip() == (f"spectratorch app: error: --models must be a folder of .onnx models; "
                                     f"'{tmp_path / 'nothing'}' is not a folder.")
    result = run_cli(["app", "--models", tmp_path, "--port", "0"])
    assert result.returncode == 2 and "--port must be in 1..65535; got 0" in result.stderr
    # an address the server could not listen on: one line before the server starts, not its traceback
    # (192.0.2.1 is reserved for documentation: no machine has it, and no name server is asked)
    result = run_cli(["app", "--models", tmp_path, "--address", "192.0.2.1"], timeout=60)
    assert result.returncode == 2 and result.stderr.strip() == (
        "spectratorch app: error: --address '192.0.2.1' is not an address of this machine; use localhost, 0.0.0.0 "
        "(every interface) or one of its own addresses."), result.stderr


def test_an_address_no_name_server_knows_is_one_line(monkeypatch):
    import socket

    from spectratorch.app.launch import _check_address
    from spectratorch.errors import ConfigError

    def unknown(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    with pytest.raises(ConfigError, match=r"^--address 'lab-pc\.local' is not a host name or IP address this machine "
                                          r"knows; use localhost"):
        _check_address("lab-pc.local", 8501)


def test_mlflow_s_copies_of_the_models_are_not_listed(tmp_path):
    import shutil

    shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name)
    for store in ("mlartifacts/1/abc/artifacts", "runs/mlruns/2/def/artifacts"):
        (tmp_path / store).mkdir(parents=True)
        shutil.copy(EXAMPLE, tmp_path / store / EXAMPLE.name)
    assert find_models(tmp_path) == [tmp_path / EXAMPLE.name]


def test_catalog_finds_models_recursively_and_explains_bad_ones(mixed_models_dir):
    paths = find_models(mixed_models_dir)
    assert [p.relative_to(mixed_models_dir).as_posix() for p in paths] == [
        EXAMPLE.name, "a foreign.onnx", "b truncated.onnx", "nir/linear.onnx"]
    rows = [model_row(open_model(p, mixed_models_dir)) for p in paths]
    assert [r["problem"] == "" for r in rows] == [True, False, False, True]
    assert rows[3]["model"] == "nir/linear.onnx" and rows[3]["channels"] == "nir" and rows[3]["transforms"] == "none"
    assert str(mixed_models_dir) not in rows[1]["problem"]


def test_the_details_of_a_small_set_model_say_which_rows_held_out_and_what_its_val_metrics_are(tmp_path):
    from spectratorch.export.onnx import update_metadata

    path = linear_model(tmp_path / "model.onnx")
    out_of_fold = {"temperature": 1.0, "n_samples": 60, "ece_before": 0.02, "ece_after": 0.02,
                   "source": "out-of-fold predictions of the training rows (folded into the model)"}
    update_metadata(path, name="Linear y=['AVA', 'bump'] c=('nir',) t=None all-5 s=1 eps=0", split="all", n_splits=5,
                    seed=1, eps=0.1, temperature=1.0, calibration=out_of_fold)
    details = model_details(open_model(path, tmp_path))
    assert details["split, seed, label smoothing"].startswith("none held out (every row trained it; the 5-fold cv")
    assert details["inner-CV metrics (out of fold; the model was chosen on them, so optimistic)"] == "accuracy 0.500"
    assert "validation metrics" not in details
    assert details["calibration"].endswith("on 60 out-of-fold predictions of the training rows")
    assert model_row(open_model(path, tmp_path))["split"] == "all of 5"
    # a model with a validation fold keeps its words
    update_metadata(path, name="Linear y=['AVA', 'bump'] c=('nir',) t=None 2-5 s=1 eps=0", split=2,
                    calibration={**out_of_fold, "source": "validation"})
    details = model_details(open_model(path, tmp_path))
    assert details["split, seed, label smoothing"].startswith("fold 2 of 5, seed 1")
    assert details["validation metrics"] == "accuracy 0.500"
    assert details["calibration"].endswith("on 60 validation samples")
    assert "fine-tuned from" not in details


def test_the_details_of_a_fine_tuned_model_name_its_parent(tmp_path):
    from spectratorch.export.onnx import update_metadata

    (tmp_path / "b").mkdir()
    path = linear_model(tmp_path / "b" / "model.onnx")
    name = "Linear y=['AVA', 'bump'] c=('nir',) t=None 2-5 s=1 eps=0"
    update_metadata(path, name=name, parent=name)  # the same configuration, fine-tuned to instrument B
    details = model_details(open_model(path, tmp_path))
    assert details["fine-tuned from"] == f"{name} (the model it started from, trained on other data)"
    assert list(details).index("fine-tuned from") == list(details).index("split, seed, label smoothing") + 1
