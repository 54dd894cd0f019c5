"""Hyperparameter search: the search space, the study in a shared SQLite storage, resuming, bad input."""

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spectratorch.cli import build_parser, config_from_args, train_command
from spectratorch.config import RunConfig
from spectratorch.errors import ConfigError
from spectratorch.pipelines.space import load_space, parse_space

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--arch", "TinyVGG", "--batch-size", "64", "--channels", "277", "380", "--max-epochs", "2", "--no-evaluate"]
SPACE = "lr: {low: 1.0e-3, high: 1.0e-2, log: true}\neps: [0.0, 0.1]\nclass_weights: [none, balanced]\n"


def _tune_args(data, out, space, trials, *extra):
    return [sys.executable, "-m", "spectratorch.cli", "tune", "--data", str(data), *FAST, "--space", str(space),
            "--trials", str(trials), "--output-dir", str(out), *map(str, extra)]


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _states(db: Path) -> list[str]:
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute("SELECT state FROM trials ORDER BY number")]


@pytest.mark.parametrize("text,message", [
    ("lrr: [0.1]", "unknown flag --lrr; searchable flags are"),
    ("lr: {low: 0.01, high: 0.001}", "range of --lr is empty: low 0.01 must be below high 0.001"),
    ("arch: []", "gives --arch an empty list of choices"),
    ("output-dir: [a, b]", "--output-dir, which a study cannot vary"),
    ("eps: [0.1, 2.0]", "value 2.0 of --eps is refused: --eps must be in [0.0, 1.0]"),
    ("loss: [ce, hinge]", "--loss must be one of"),
    ("lr: {low: 0, high: 1, log: true}", "log scale, so low must be > 0"),
    ("lr: 0.1", "must be a list of choices or {low, high"),
    ("", "must be a mapping of at least one training flag"),
])
def test_bad_search_spaces(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_space(path, RunConfig())
    assert message in str(err.value)


def test_example_space_and_draws():
    import optuna

    params = load_space(ROOT / "examples" / "search_space.yaml", RunConfig())
    names = {p.name for p in params}
    assert {"arch", "lr", "eps", "transforms", "channels", "loss", "focal_gamma", "class_weights"} <= names
    study = optuna.create_study()
    from spectratorch.pipelines.space import apply_params

    for _ in range(5):
        trial = study.ask()
        values = {p.name: p.suggest(trial) for p in params}
        config = apply_params(RunConfig(), values)
        assert 3e-4 <= config.train.lr <= 3e-3 and config.data.channels in (("277", "380"), ("277", "380", "425"))
        assert config.data.transforms in (("da",), ("da", "mixup"), ())
        study.tell(trial, 0.5)
    int_param = parse_space({"max_epochs": {"low": 2, "high": 6, "step": 2}}, RunConfig())[0]
    assert int_param.is_int and int_param.suggest(optuna.create_study().ask()) in (2, 4, 6)


@pytest.mark.parametrize("argv", [
    ["--data", "x.pkl", "--arch", "TinyVGG", "--channels", "277", "380", "--lr", "0.003", "--class-weights", "balanced",
     "--transforms", "none", "--no-batch-norm", "--tabular", "--eps", "0.05", "--to-onnx"],
    ["--targets", "AVA", "IN", "--transforms", "da", "mixup", "--block-units", "2_2", "--arch", "ResNetV2",
     "--no-drop-oob", "--loss", "focal", "--focal-gamma", "1.5", "--current-split", "2"],
])
def test_train_command_round_trips(argv):
    parser = build_parser()
    config = config_from_args(parser.parse_args(["train", *argv]))
    command = train_command(config)
    tokens = shlex.split(command)
    assert tokens[:2] == ["spectratorch", "train"]
    assert config_from_args(parser.parse_args(tokens[1:])) == config


@pytest.mark.slow
def test_two_processes_share_one_sqlite_study(demo_file, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "tune"
    out.mkdir()
    procs = [subprocess.Popen(_tune_args(demo_file, out, space, 4), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr[-3000:]
    states = _states(out / "optuna.db")
    finished = [s for s in states if s in ("COMPLETE", "PRUNED")]
    assert 4 <= len(finished) <= 5 and "RUNNING" not in states  # a last trial may start in both at once
    import pandas as pd

    trials = pd.read_csv(out / "default trials.csv")
    assert len(trials) == len(states) and trials["user_attrs_worker"].nunique() == 2  # both processes ran trials
    best = json.loads((out / "default best.json").read_text())
    assert best["n_trials"] == len(states) and best["best"]["command"].startswith("spectratorch train ")
    assert f"--lr {best['best']['params']['lr']}" in best["best"]["command"]
    assert (out / "default history.png").stat().st_size > 5000 and (out / "default importance.png").is_file()
    assert "command: spectratorch train" in outputs[0][0] + outputs[1][0]


@pytest.mark.slow
def test_a_study_tracked_by_mlflow_has_one_store_for_its_trials(demo_file, tmp_path):
    pytest.importorskip("mlflow")
    import mlflow

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "tune"
    result = subprocess.run(_tune_args(demo_file, out, space, 2, "--logger", "mlflow", "--project", "study"), cwd=ROOT,
                            env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list((out / "trials").rglob("mlflow.db")) and not list((out / "trials").rglob("mlartifacts"))
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("study")
    assert experiment.artifact_location == (out / "mlartifacts").resolve().as_uri()
    assert len(client.search_runs([experiment.experiment_id])) == 2


@pytest.mark.slow
def test_study_resumes_after_a_kill(demo_file, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "tune"
    args = _tune_args(demo_file, out, space, 3, "--heartbeat", "1", "--study-name", "lab")
    proc = subprocess.Popen(args, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (out / "optuna.db").is_file() and (out / "trials" / "lab" / "trial-0001").is_dir():
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the study finished before it was killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _states(out / "optuna.db")[-1] == "RUNNING"  # the killed trial
    time.sleep(3)  # past the heartbeat's grace period
    resumed = subprocess.run(args, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 of 3 trials finished; running the rest" in resumed.stderr
    states = _states(out / "optuna.db")
    assert states[1] == "FAIL" and states.count("COMPLETE") + states.count("PRUNED") >= 3
    import optuna

    from spectratorch.pipelines.tune import _retry_callback

    study = optuna.load_study(study_name="lab", storage=f"sqlite:///{out / 'optuna.db'}")
    retried = [t for t in study.trials if type(_retry_callback()).retried_trial_number(t) == 1]
    assert retried and retried[0].params == study.trials[1].params  # the killed trial ran again, same flags


@pytest.mark.slow
def test_a_poor_trial_is_pruned_after_the_warm_up(demo_file, tmp_path):
    """Four finished trials at f1 0.99 in every epoch; a fifth whose lr cannot learn is stopped at the warm-up's end."""
    import optuna

    from spectratorch.config import DataConfig, ModelConfig, TrainConfig
    from spectratorch.pipelines.tune import default_storage, open_study, tune

    out = tmp_path / "tune"
    out.mkdir()
    base = RunConfig(DataConfig(data=str(demo_file), channels=("277", "380"), batch_size=64),
                     ModelConfig(arch="TinyVGG"),
                     TrainConfig(max_epochs=12, early_stop_patience=12, output_dir=str(out), accelerator="cpu",
                                 devices="1", baseline=False))
    study = open_study(default_storage(out), "default", base.train.target_metric)
    warmup = study.pruner._n_warmup_steps
    assert warmup < base.train.max_epochs - 1  # pruning can happen inside this run
    choices = [json.dumps(1.0e-3), json.dumps(1.0e-7)]
    lr = optuna.distributions.CategoricalDistribution(choices)
    for _ in range(4):
        study.add_trial(optuna.trial.create_trial(params={"lr": choices[0]}, distributions={"lr": lr}, value=0.99,
                                                  intermediate_values={e: 0.99 for e in range(12)}))
    study.enqueue_trial({"lr": choices[1]})
    result = tune(base, parse_space({"lr": [1.0e-3, 1.0e-7]}, base), n_trials=5)
    trial = study.trials[-1]
    assert trial.state == optuna.trial.TrialState.PRUNED, trial.state
    assert max(trial.intermediate_values) == warmup  # judged from the first epoch after the warm-up, not earlier
    assert result["states"] == {"COMPLETE": 4, "PRUNED": 1}
    assert not list((out / "trials" / "default" / "trial-0004").glob("*.json"))  # stopped before its summary


def test_bad_input_one_line_nothing_written(demo_file, tmp_path, capsys):
    from spectratorch.cli import main

    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    out = tmp_path / "out"

    def run(*extra, space_file=space):
        # reason: the command's own `main` in this process; the first case runs in a real `spectratorch tune` process.
        capsys.readouterr()
        assert main(_tune_args(demo_file, out, space_file, 1, *extra)[3:]) == 2
        stderr = capsys.readouterr().err
        assert "Traceback" not in stderr, stderr[-2000:]
        return stderr.strip().splitlines()[-1]

    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: {low: 0.1, high: 0.1}\n")
    result = subprocess.run(_tune_args(demo_file, out, bad, 1), cwd=ROOT, env=_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "range of --lr is empty" in result.stderr.strip().splitlines()[-1]
    assert not out.exists()
    assert "--storage sqlite:////nonexistent-dir/x.db cannot be opened" in run("--storage",
                                                                             "sqlite:////nonexistent-dir/x.db")
    assert not out.exists()
    # a value only the data can refuse is checked on the data before any trial
    channels = tmp_path / "channels.yaml"
    channels.write_text("channels: [[277, 380], [277, 999]]\n")
    assert run(space_file=channels).endswith("the search space value [277, 999] of --channels is refused by the "
                                             "data: unknown channel(s) ['999']; the data has channels ['277', "
                                             "'380', '425', 'lspr'].")
    assert not out.exists()
    # a study made for another metric is refused
    import optuna

    out.mkdir()
    storage = f"sqlite:///{out / 'optuna.db'}"
    optuna.create_study(storage=storage, study_name="default", direction="minimize").set_user_attr(
        "target_metric", "val_loss")
    assert "optimises val_loss, not --target-metric val_f1" in run()
    assert not (out / "trials").exists() and _states(out / "optuna.db") == []
    # a study that searched another space is refused (Optuna would fail on its first draw of a changed flag)
    other = optuna.create_study(storage=storage, study_name="other", direction="maximize")
    other.set_user_attr("target_metric", "val_f1")
    other.set_user_attr("search_space", {"lr": {"name": "lr", "choices": [0.1, 0.01], "low": None, "high": None,
                                                "log": False, "step": None}})
    assert "the study 'other' in" in (line := run("--study-name", "other")) and line.endswith(
        "searches another space (it differs in --class-weights, --eps, --lr); give the space it was made with, or "
        "start a new study with another --study-name or --output-dir.")
    assert not (out / "trials").exists() and _states(out / "optuna.db") == []


def test_a_space_names_declared_architecture_options():
    from spectratorch.pipelines.space import apply_params

    base = config_from_args(build_parser().parse_args(["train", "--arch", "Hydra"]))
    params = parse_space({"n_kernels": [4, 8], "block_units": [[2, 2]]}, base)
    assert [p.name for p in params] == ["n_kernels", "block_units"]
    config = apply_params(base, {"n_kernels": 4, "block_units": [2, 2]})
    assert config.model.arch_opts == {"n_kernels": 4} and config.model.block_units == (2, 2)
    assert "--arch-opt n_kernels=4" in train_command(config)
    with pytest.raises(ConfigError, match="the architecture option n_kernels must be an integer >= 1"):
        parse_space({"n_kernels": [0]}, base)
    with pytest.raises(ConfigError, match=r"unknown flag --n-kernel;.*declare \(.*n_kernels"):
        parse_space({"n_kernel": [4]}, base)
