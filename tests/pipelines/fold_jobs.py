"""Jobs for `share_folds`' tests: module-level (a spawned helper imports them by name) and light (no torch here).

Each job is a dict with ``dir`` (a folder the processes share) and ``parent`` (the pid of the test's process). The
first job started claims ``dir/first`` and waits until the others have run, so the other process(es) must take them.
"""

import os
import time
from pathlib import Path

_WAIT_S = 120.0


def _first(job: dict) -> bool:
    try:
        os.close(os.open(Path(job["dir"]) / "first", os.O_CREAT | os.O_EXCL))
        return True
    except FileExistsError:
        return False


def _wait_for(path: Path, count: int = 1) -> None:
    deadline = time.monotonic() + _WAIT_S
    while len(list(path.parent.glob(path.name))) < count and time.monotonic() < deadline:
        time.sleep(0.05)


def pid_after_the_others(job: dict) -> dict:
    """The first job waits until the others are done; every job answers its index and the pid that ran it."""
    folder = Path(job["dir"])
    if _first(job):
        _wait_for(folder / "done-*", job["n"] - 1)
    else:
        (folder / f"done-{job['index']}").touch()
    return {"index": job["index"], "pid": os.getpid()}


def ends_in_a_helper(job: dict) -> int:
    """The first job waits until a helper's job has ended badly: it raises ValueError (``job["end"] == "raise"``) or
    ends its process with exit code 3 (``"exit"``)."""
    folder = Path(job["dir"])
    if _first(job):
        _wait_for(folder / "ended")
    elif os.getpid() != job["parent"]:
        (folder / "ended").touch()
        if job["end"] == "exit":
            os._exit(3)
        raise ValueError(f"job {job['index']} is bad")
    return job["index"]


def slow_start() -> None:
    """A helper's start that never ends in a test's time."""
    time.sleep(_WAIT_S)


def cv_fold_after_the_others(values: dict) -> dict:
    """A real cv fold (``spectratorch.pipelines.run.train``); in the test's process, while a helper runs, it first
    waits until every other fold has written its JSON, so the helper trains them."""
    import multiprocessing

    from spectratorch.config import RunConfig
    from spectratorch.pipelines.run import train

    config = RunConfig.from_dict(values)
    if os.getpid() == int(os.environ["FOLD_JOBS_PARENT"]) and multiprocessing.active_children():
        _wait_for(Path(config.train.out_dir) / "*.json", config.data.n_splits - 1)
    return train(config)


def bar_after_the_others(job: dict) -> dict:
    """:func:`pid_after_the_others`, and whether a fold's bar, made in this job, draws nothing."""
    from spectratorch.pipelines.fold_bars import fold_bar

    bar = fold_bar(total=1, leave=False)
    disabled = bar.disable  # reason: read before close(), which sets it
    bar.close()
    return {**pid_after_the_others(job), "bar_disabled": disabled}


def warn_after_the_others(job: dict) -> dict:
    """:func:`pid_after_the_others`, after two warnings: one about the data (the same words in every job) and one of
    its own."""
    import logging

    logger = logging.getLogger("spectratorch")
    logger.warning("the data has replicate scans")
    logger.warning("job %d has its own warning", job["index"])
    return pid_after_the_others(job)


_KEPT: list = []


def semaphore_after_the_others(job: dict) -> dict:
    """:func:`pid_after_the_others`, having made a semaphore, as a progress bar's lock is, which its process removes
    as it ends, after a pause (a slow exit)."""
    import multiprocessing
    from multiprocessing.util import Finalize

    if not _KEPT:
        _KEPT.append(multiprocessing.get_context("spawn").Lock())
        # reason: run at the process's end before the lock's own clean-up (a higher exit priority runs first)
        Finalize(None, time.sleep, args=(2.0,), exitpriority=10)
    return pid_after_the_others(job)
