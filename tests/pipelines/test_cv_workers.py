"""`cv`'s fold processes: the auto rule, each process on its share of the cores, the same folds as one by one."""

import json
from pathlib import Path

import pytest

from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from spectratorch.data.generic import make_generic_frame
from tests.export.helpers import run_cli

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(path, out):
    data = DataConfig(data=str(path), targets=("AVA", "label"), channels=("nir",), tabular=(), n_splits=3)
    return RunConfig(data, ModelConfig(n_features=840), TrainConfig(output_dir=str(out), loggers=("csv",)))


def _fold_metrics(result):
    return {fold["split"]: json.loads(Path(fold["json"]).read_text())["metrics"]["test"] for fold in result["folds"]}


@pytest.mark.slow
def test_auto_runs_the_other_folds_in_processes_after_a_slow_first_fold(tmp_path, monkeypatch, caplog, capfd):
    import spectratorch.pipelines.cv as cv
    import spectratorch.training.hardware as hardware

    make_generic_frame(60, seed=7).to_pickle(tmp_path / "set.pkl")
    one_by_one = cv.run_cv(_config(tmp_path / "set.pkl", tmp_path / "one"), workers=1)
    assert "at a time" not in caplog.text

    # a first fold "slower" than the threshold, on two cores: folds 1 and 2 go to two processes of one thread each
    monkeypatch.setattr(cv, "WORKER_START_S", -1e6)
    monkeypatch.setattr(hardware, "usable_cpus", lambda: 2)
    with caplog.at_level("INFO", logger="spectratorch.pipelines.cv"):
        parallel = cv.run_cv(_config(tmp_path / "set.pkl", tmp_path / "auto"), workers="auto")
    assert "the 2 others run 2 at a time" in caplog.text
    children = capfd.readouterr().err
    assert "fold(s) [1] on 1 thread(s)" in children and "fold(s) [2] on 1 thread(s)" in children
    assert "fold(s) [0]" not in children  # the first fold ran here

    assert [f["split"] for f in parallel["folds"]] == [0, 1, 2]
    ours, reference = _fold_metrics(parallel), _fold_metrics(one_by_one)
    for split, metrics in reference.items():
        assert ours[split] == pytest.approx(metrics, abs=1e-6), split


def test_auto_workers_rule():
    from spectratorch.pipelines.cv import ONE_CORE_SLOWDOWN, WORKER_START_S, auto_workers

    # 4 folds left on 2 cores: 2 rounds in processes against 4 folds here
    even = WORKER_START_S / (4 - 2 * ONE_CORE_SLOWDOWN)
    assert auto_workers(even * 1.01, 4, 2) == 2
    assert auto_workers(even * 0.99, 4, 2) == 1  # quick folds: starting processes would cost more
    assert auto_workers(1e6, 1, 8) == 1  # one fold left
    assert auto_workers(1e6, 4, 1) == 1  # one core
    assert auto_workers(1e6, 4, 16) == 4  # at most one process per fold
    assert auto_workers(1e6, 5, 2) == 2


def test_the_help_states_the_start_time_the_rule_assumes():
    from spectratorch.pipelines.cv import WORKER_START_S

    result = run_cli(["cv", "--help"], block_torch=False)
    assert f"a process takes about {WORKER_START_S:g} s to start" in " ".join(result.stdout.split())


@pytest.mark.parametrize("value", ["0", "two", "1.5"])
def test_bad_fold_workers_is_one_line_and_exit_2(tmp_path, value):
    make_generic_frame(30, seed=1).to_pickle(tmp_path / "set.pkl")
    result = run_cli(["cv", "--data", tmp_path / "set.pkl", "--targets", "AVA", "label", "--channels", "nir",
                      "--fold-workers", value, "--output-dir", tmp_path / "out"], block_torch=False)
    assert result.returncode == 2
    assert "--fold-workers must be 'auto' or a whole number of at least 1" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "out").glob("*.json"))
