"""`share_folds`: the folds shared between this process and helpers, real spawned processes, errors brought back."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spectratorch.pipelines.shared_folds import share_folds
from tests.pipelines import fold_jobs

ROOT = Path(__file__).resolve().parents[2]


def _jobs(tmp_path, n, **more):
    return [{"index": i, "n": n, "dir": str(tmp_path), "parent": os.getpid(), **more} for i in range(n)]


def _labels(n):
    return [f"fold {i}" for i in range(n)]


def test_a_helper_takes_the_folds_while_this_process_is_busy_and_the_results_keep_their_order(tmp_path):
    results = share_folds(_jobs(tmp_path, 4), _labels(4), fold_jobs.pid_after_the_others, processes=2, threads=1)
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    pids = {r["pid"] for r in results}
    assert os.getpid() in pids and len(pids) == 2  # this process ran one (the first), the helper the three others


def test_a_helper_still_starting_when_every_fold_is_taken_is_stopped_without_waiting(tmp_path):
    start = time.perf_counter()
    results = share_folds(list(range(5)), _labels(5), abs, processes=3, threads=1, warm_up=fold_jobs.slow_start)
    assert results == [0, 1, 2, 3, 4]
    assert time.perf_counter() - start < 5  # stopped at once, not killed after share_folds' 10 s wait


def test_an_error_in_a_helper_reaches_the_caller_as_itself_with_where_it_happened(tmp_path):
    with pytest.raises(ValueError, match=r"^job \d is bad") as raised:
        share_folds(_jobs(tmp_path, 3, end="raise"), _labels(3), fold_jobs.ends_in_a_helper, processes=2, threads=1)
    (note,) = raised.value.__notes__
    assert note.startswith("in fold process ") and "fold_jobs.py" in note and "ValueError: job" in note


def test_a_helper_killed_with_a_fold_is_named_not_waited_for(tmp_path):
    with pytest.raises(RuntimeError, match=r"the process training fold \d stopped before it finished \(exit code 3\)"):
        share_folds(_jobs(tmp_path, 3, end="exit"), _labels(3), fold_jobs.ends_in_a_helper, processes=2, threads=1)


def test_a_system_that_cannot_share_between_processes_runs_the_folds_here_and_says_so(monkeypatch, caplog):
    import spectratorch.pipelines.shared_folds as shared

    class NoSemaphores:
        def Value(self, *args):  # noqa: N802  # reason: the name multiprocessing's context has
            raise OSError(38, "Function not implemented")

        def Process(self, *args, **kwargs):  # noqa: N802
            raise AssertionError("no process may start")

    monkeypatch.setattr(shared.multiprocessing, "get_context", lambda method: NoSemaphores())
    with caplog.at_level("WARNING", logger="spectratorch.pipelines.shared_folds"):
        assert share_folds([3, -4], _labels(2), abs, processes=2, threads=1) == [3, 4]
    assert "the folds run one after another: this system cannot share them between processes" in caplog.text


def test_a_folds_bars_draw_nothing_while_the_folds_are_shared_here_and_in_the_helper(tmp_path):
    from spectratorch.pipelines.fold_bars import fold_bar

    # two processes drawing carriage-return bars on one terminal overwrite each other's line
    results = share_folds(_jobs(tmp_path, 4), _labels(4), fold_jobs.bar_after_the_others, processes=2, threads=1)
    assert len({r["pid"] for r in results}) == 2
    assert [r["bar_disabled"] for r in results] == [True] * 4
    bar = fold_bar(total=2, leave=False)
    assert bar.disable is False  # and draw again once the folds are done
    bar.close()


def _four_jobs_in_a_process_of_their_own(tmp_path, job: str, before: str = "") -> str:
    """Four jobs of ``fold_jobs.<job>`` shared by a fresh Python process (after ``before``) and one helper; its
    stderr, once it has checked that the run ended well and the helper ran jobs."""
    script = f"""
import logging, os
from spectratorch.pipelines.shared_folds import share_folds
from tests.pipelines import fold_jobs
{before}
jobs = [{{"index": i, "n": 4, "dir": {str(tmp_path)!r}, "parent": os.getpid()}} for i in range(4)]
results = share_folds(jobs, [f"fold {{i}}" for i in range(4)], fold_jobs.{job}, 2, threads=1)
print(len({{r["pid"] for r in results}}))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "2"  # the helper ran jobs
    return result.stderr


def test_a_warning_this_process_said_is_not_said_again_by_a_helper(tmp_path):
    # a console of the command line's own, as `spectratorch cv` has (pytest's capture would replace it in-process)
    stderr = _four_jobs_in_a_process_of_their_own(
        tmp_path, "warn_after_the_others", "from spectratorch.logs import report_to_console\nreport_to_console()\n"
        'logging.getLogger("spectratorch").warning("the data has replicate scans")')
    assert stderr.count("WARNING the data has replicate scans") == 1
    assert all(stderr.count(f"WARNING job {i} has its own warning") == 1 for i in range(4))


def test_a_helper_that_ran_a_fold_ends_on_its_own_and_leaves_no_semaphore_behind(tmp_path):
    stderr = _four_jobs_in_a_process_of_their_own(tmp_path, "semaphore_after_the_others")
    assert "leaked semaphore" not in stderr, stderr[-3000:]
