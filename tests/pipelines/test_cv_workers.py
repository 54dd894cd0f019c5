"""`cv`'s fold processes: the auto rules, the folds shared with a helper process, the same folds as one by one."""

import json
import os
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
def test_auto_shares_the_folds_after_a_slow_first_fold_or_from_the_start(tmp_path, monkeypatch, caplog, capfd):
    import spectratorch.pipelines.cv as cv
    import spectratorch.training.hardware as hardware
    from tests.pipelines import fold_jobs

    make_generic_frame(60, seed=7).to_pickle(tmp_path / "set.pkl")
    one_by_one = cv.run_cv(_config(tmp_path / "set.pkl", tmp_path / "one"), workers=1)
    assert "shared by" not in caplog.text

    # a first fold "slower" than the threshold, on two cores: folds 1 and 2 are shared by this process and a helper of
    # one thread; here fold 1 waits until the helper has trained fold 2, so both processes train a fold.
    monkeypatch.setattr(cv, "WORKER_START_S", -1e6)
    monkeypatch.setattr(hardware, "usable_cpus", lambda: 2)
    monkeypatch.setattr(cv, "_train_fold", fold_jobs.cv_fold_after_the_others)
    monkeypatch.setenv("FOLD_JOBS_PARENT", str(os.getpid()))
    with caplog.at_level("INFO", logger="spectratorch.pipelines.cv"):
        shared = cv.run_cv(_config(tmp_path / "set.pkl", tmp_path / "auto"), workers="auto")
    assert "fold 0 took" in caplog.text and "the 2 others are shared by 2 processes" in caplog.text
    children = capfd.readouterr().err
    assert "fold 2 on 1 thread(s)" in children
    assert "fold 0 on" not in children and "fold 1 on" not in children  # both trained here

    # a "large" file: the helper starts with the first fold; fold 0 waits here until the helper has trained 1 and 2
    caplog.clear()
    monkeypatch.setattr(cv, "SHARE_FROM_START_BYTES", 0)
    with caplog.at_level("INFO", logger="spectratorch.pipelines.cv"):
        from_start = cv.run_cv(_config(tmp_path / "set.pkl", tmp_path / "large"), workers="auto")
    assert "set.pkl is large: its 3 folds are shared by 2 processes from the start" in caplog.text
    assert "fold 0 took" not in caplog.text
    children = capfd.readouterr().err
    assert "fold 1 on 1 thread(s)" in children and "fold 2 on 1 thread(s)" in children and "fold 0 on" not in children

    reference = _fold_metrics(one_by_one)
    for result in (shared, from_start):
        assert [f["split"] for f in result["folds"]] == [0, 1, 2]
        ours = _fold_metrics(result)
        for split, metrics in reference.items():
            assert ours[split] == pytest.approx(metrics, abs=1e-6), split


def test_a_large_data_file_is_shared_from_the_start_and_a_small_one_is_not(tmp_path, monkeypatch):
    import spectratorch.pipelines.cv as cv

    path = tmp_path / "set.pkl"
    make_generic_frame(30, seed=1).to_pickle(path)
    config = _config(path, tmp_path / "out")
    assert not cv.shares_from_start(config, folds=3, cores=2)
    monkeypatch.setattr(cv, "SHARE_FROM_START_BYTES", path.stat().st_size)
    assert cv.shares_from_start(config, folds=3, cores=2)
    assert not cv.shares_from_start(config, folds=3, cores=1)  # one core: nothing to share
    assert not cv.shares_from_start(config, folds=1, cores=2)  # one fold left


def test_auto_workers_rule(monkeypatch):
    import spectratorch.pipelines.cv as cv

    monkeypatch.setattr(cv, "WORKER_START_S", 8.0)
    monkeypatch.setattr(cv, "ONE_CORE_SLOWDOWN", 1.15)
    # 4 folds of 10 s left on 2 cores: this process 0-11.5-23, the helper from 8 s: 8-19.5-31, all done at 31 < 40
    assert cv.auto_workers(10.0, 4, 2) == 2
    # of 2 s: this process ends all 4 at 9.2 s (2.3 s each on one core), after the 8 s they take one by one here
    assert cv.auto_workers(2.0, 4, 2) == 1
    assert cv.auto_workers(1e6, 1, 8) == 1  # one fold left
    assert cv.auto_workers(1e6, 4, 1) == 1  # one core
    assert cv.auto_workers(1e6, 4, 16) == 4  # at most one process per fold
    assert cv.auto_workers(1e6, 5, 2) == 2


def test_the_docs_state_the_first_fold_time_from_which_the_others_are_shared():
    from spectratorch.pipelines.cv import auto_workers

    # 4 folds left on 2 cores, with the module's own constants
    assert auto_workers(2.8, 4, 2) == 1 and auto_workers(3.0, 4, 2) == 2
    docs = Path(__file__).parents[2] / "doc"
    for page in ("cv.md", "small-data.md"):
        assert "about 2.9 s" in " ".join((docs / page).read_text().split()), page


def test_the_help_and_the_docs_state_the_start_time_and_the_file_size_the_rules_assume():
    from spectratorch.pipelines.cv import SHARE_FROM_START_BYTES, WORKER_START_S

    result = run_cli(["cv", "--help"], block_torch=False)
    shown = " ".join(result.stdout.split())
    assert f"a process takes about {WORKER_START_S:g} s to start" in shown
    assert f"for a data file of {SHARE_FROM_START_BYTES / 1e6:g} MB or more" in shown
    doc = " ".join((Path(__file__).parents[2] / "doc" / "cv.md").read_text().split())
    assert f"takes about {WORKER_START_S:g} s to start" in doc
    assert f"a data file of {SHARE_FROM_START_BYTES / 1e6:g} MB or more" in doc


@pytest.mark.parametrize("value", ["0", "two", "1.5"])
def test_bad_fold_workers_is_one_line_and_exit_2(tmp_path, value):
    make_generic_frame(30, seed=1).to_pickle(tmp_path / "set.pkl")
    result = run_cli(["cv", "--data", tmp_path / "set.pkl", "--targets", "AVA", "label", "--channels", "nir",
                      "--fold-workers", value, "--output-dir", tmp_path / "out"], block_torch=False)
    assert result.returncode == 2
    assert "--fold-workers must be 'auto' or a whole number of at least 1" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not list((tmp_path / "out").glob("*.json"))


def test_a_trainer_draws_no_bar_while_cv_shares_its_folds(tmp_path):
    from lightning.pytorch.callbacks import TQDMProgressBar

    from spectratorch.pipelines.fold_bars import folds_shared
    from spectratorch.pipelines.run import _trainer

    config = _config(tmp_path / "set.pkl", tmp_path / "out")
    assert isinstance(_trainer(config, tmp_path / "out", "alone", []).progress_bar_callback, TQDMProgressBar)
    with folds_shared():
        assert _trainer(config, tmp_path / "out", "shared", []).progress_bar_callback is None
