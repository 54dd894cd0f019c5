"""Experiment tracking: --logger tensorboard|mlflow|csv, a real MLflow run on a local store read back."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from spectratorch.cli import build_parser, config_from_args
from spectratorch.config import TrainConfig
from spectratorch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--arch", "TinyVGG", "--batch-size", "64", "--channels", "277", "380", "--max-epochs", "2"]


def _cli(*args, env=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "spectratorch.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_logger_flags():
    parser = build_parser()
    assert config_from_args(parser.parse_args(["train"])).train.loggers == ("tensorboard",)
    args = parser.parse_args(["train", "--logger", "mlflow", "--logger", "csv", "--mlflow-uri", "http://h:5000"])
    train = config_from_args(args).train
    assert train.loggers == ("mlflow", "csv") and train.mlflow_uri == "http://h:5000"
    with pytest.raises(ConfigError, match="unknown --logger"):
        TrainConfig(loggers=("wandb",))


@pytest.mark.slow
def test_mlflow_and_csv_run_read_back(demo_file, tmp_path):
    pytest.importorskip("mlflow")
    out = tmp_path / "out"
    result = _cli("train", "--data", demo_file, *FAST, "--logger", "mlflow", "--logger", "csv", "--to-onnx",
                  "--project", "lab", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(next(out.glob("*.json")).read_text())
    stem = summary["name"]
    # the CSV logger: one row per epoch with the validation metrics, and the log folder named in the JSON
    metrics = pd.read_csv(Path(summary["files"]["logs"]) / "metrics.csv")
    assert metrics["val_f1"].notna().sum() == 3 and "train_loss" in metrics  # 2 epochs + the final validation
    assert not (out / "logs" / stem / "version_0" / "hparams.yaml").read_text() == ""

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lab")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == stem
    assert run.data.params["model/arch"] == "TinyVGG" and run.data.params["data/channels"] == "('277', '380')"
    assert run.data.params["train/max_epochs"] == "2"
    assert run.data.metrics["test_accuracy"] == pytest.approx(summary["metrics"]["test"]["accuracy"], abs=1e-6)
    assert run.data.metrics["hp_val_f1"] == pytest.approx(summary["metrics"]["val"]["f1"], abs=1e-6)
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert len(history) == 3  # one per epoch, and the final validation of the best checkpoint
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {f"{stem}.json", f"{stem} result sheet.png", f"{stem}.onnx"} <= artifacts
    local = client.download_artifacts(run.info.run_id, f"{stem}.json", str(tmp_path))
    assert json.loads(Path(local).read_text())["metrics"] == summary["metrics"]
    assert Path(experiment.artifact_location.removeprefix("file://")).is_relative_to(out.resolve())


def test_mlflow_missing_one_line(demo_file, tmp_path):
    # reason: a meta-path hook makes `import mlflow` fail in the subprocess, as where the extra is not installed.
    hook = tmp_path / "sitecustomize.py"
    hook.write_text("import sys\nclass _B:\n    def find_spec(self, name, path=None, target=None):\n"
                    "        if name.split('.')[0] == 'mlflow':\n            raise ImportError(name=name)\n"
                    "sys.meta_path.insert(0, _B())\n")
    out = tmp_path / "out"
    result = _cli("train", "--data", demo_file, *FAST, "--logger", "mlflow", "--output-dir", out,
                  env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--logger mlflow needs MLflow, which is not installed; install it with `pip install " \
           "spectratorch[tracking]`" in result.stderr
    assert not list(out.glob("*.ckpt")) and not (out / "logs").exists()


@pytest.mark.slow
def test_cv_with_mlflow_in_a_new_folder_shares_its_folds_in_one_store(demo_file, tmp_path):
    """Two fold processes created the same new sqlite store at once and collided on its tables: the store and the
    experiment are made before the folds are shared."""
    pytest.importorskip("mlflow")
    import mlflow

    from spectratorch.config import RunConfig
    from spectratorch.training.loggers import prepare_mlflow_store

    out = tmp_path / "new" / "folder"
    config = RunConfig(train=TrainConfig(loggers=("mlflow",), project="lab", output_dir=str(out)))
    prepare_mlflow_store(config, out)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("lab")
    assert experiment is not None and experiment.artifact_location == (out / "mlartifacts").resolve().as_uri()
    prepare_mlflow_store(config, out)  # again: the same store and experiment, no error

    out = tmp_path / "cv"
    result = _cli("cv", "--data", demo_file, *FAST[:-1], "1", "--n-splits", "3", "--fold-workers", "2",
                  "--logger", "mlflow", "--project", "lab", "--output-dir", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("lab").experiment_id])
    assert len(runs) == 3
