"""Folds shared between this process and helper processes: whichever process is free takes the next fold.

``cv`` on the CPU trains its folds this way. The helpers are spawned (a fresh interpreter each: the OpenMP thread
pool torch has started here does not survive a fork) and pay their imports while this process already trains, so a
helper still starting when every fold is taken costs no waiting: it is stopped. Each process runs on its share of
the cores. The bars of a fold stay off while folds are shared (:mod:`~spectratorch.pipelines.fold_bars`).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import traceback
from contextlib import contextmanager
from typing import Callable, Sequence

from spectratorch.logs import report_to_console, warnings_said
from spectratorch.pipelines.fold_bars import folds_shared

__all__ = ["share_folds", "limited_threads"]

_logger = logging.getLogger(__name__)

# reason: how often the wait for the helpers' folds checks that the helpers still run; a helper killed with a fold
# is reported after two such checks (what it wrote before it stopped is read first).
_POLL_S = 1.0


@contextmanager
def limited_threads(threads: int):
    """torch's and the numerical libraries' (BLAS, OpenMP) threads limited to ``threads`` in this block."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)


def share_folds(jobs: Sequence, labels: Sequence[str], run: Callable, processes: int, threads: int,
                warm_up: Callable | None = None) -> list:
    """``run(job)`` for every job, in this process and ``processes - 1`` helpers started now; the results in order.

    This process takes the jobs from the first on; a helper takes the next one left as soon as it has started
    (``warm_up()``, then each job on ``threads`` threads). Every process runs on ``threads`` threads.

    Args:
        jobs: picklable arguments of ``run``, one per fold.
        labels: how the log and the errors name each job (``"fold 3"``).
        run: a module-level function (a helper imports it by name).
        processes: processes in all, this one included (at least 2).
        threads: threads per process.
        warm_up: a module-level function a helper calls before its first job (its imports).

    Returns:
        ``[run(job) for job in jobs]``, wherever each ran.

    Raises:
        The first error a job raised here or in a helper (the helpers are stopped first).
        RuntimeError: a helper stopped (killed, out of memory) before it finished its job.

    Example:
        >>> share_folds([1, 2, 3], ["one", "two", "three"], abs, processes=2, threads=1)
        [1, 2, 3]
    """
    context = multiprocessing.get_context("spawn")
    try:
        taken, messages = context.Value("i", 0), context.Queue()
        # reason: which process holds each job, written with the take itself (a message could be lost with a killed
        # process).
        owners = context.Array("i", len(jobs), lock=False)
    except (OSError, ImportError) as err:
        # reason: some systems have no shared semaphores (no /dev/shm, e.g. some containers): one after another.
        _logger.warning("the folds run one after another: this system cannot share them between processes (%s)", err)
        return [run(job) for job in jobs]
    shared = (list(jobs), list(labels), run, taken, owners, messages, threads, warm_up, warnings_said())
    helpers = [context.Process(target=_helper, args=shared, name=f"spectratorch fold helper {i + 1}")
               for i in range(processes - 1)]
    for helper in helpers:
        helper.start()
    results = {}
    try:
        with limited_threads(threads), folds_shared():
            while (index := _take(taken, owners)) is not None:
                results[index] = run(jobs[index])
        _collect(results, labels, owners, messages, helpers)
        # reason: a helper that ran a job is ending on its own; stopped while it ends, the semaphores it made (a
        # progress bar's lock) stay registered, and the resource tracker says "leaked semaphore objects" at exit.
        worked = set(owners[:])
        for helper in helpers:
            if helper.pid in worked:
                helper.join(timeout=_POLL_S * 10)
    finally:
        _take_all(taken, len(jobs))
        for helper in helpers:
            if helper.is_alive():
                helper.terminate()
        for helper in helpers:
            # reason: a helper stopped during a job still sends its error; should the pipe be full (this process
            # reads no more after an error), it would wait for ever to exit.
            helper.join(timeout=_POLL_S * 10)
            if helper.is_alive():
                helper.kill()
                helper.join()
    return [results[i] for i in range(len(jobs))]


def _take(taken, owners) -> int | None:
    """The next job no process has taken, now this process's, or ``None`` when all are taken."""
    with taken.get_lock():
        index = taken.value
        if index >= len(owners):
            return None
        taken.value = index + 1
        owners[index] = os.getpid()
        return index


def _take_all(taken, n: int) -> None:
    with taken.get_lock():
        taken.value = n


def _collect(results: dict, labels: Sequence[str], owners, messages, helpers: list) -> None:
    """Wait for the jobs the helpers took, into ``results``; raise a job's error, or name the jobs a stopped helper
    held."""
    suspect: list[int] = []
    while len(results) < len(labels):
        try:
            kind, index, value = messages.get(timeout=_POLL_S)
        except queue.Empty:
            exits = {helper.pid: helper.exitcode for helper in helpers}
            lost = [i for i in range(len(labels)) if i not in results and exits.get(owners[i]) is not None]
            # reason: a helper's last message may arrive just after the check that found it stopped: a job is
            # reported lost only when two checks in a row find it so.
            if lost and lost == suspect:
                codes = sorted({exits[owners[i]] for i in lost})
                raise RuntimeError(f"the process training {', '.join(labels[i] for i in lost)} stopped before it "
                                   f"finished (exit code {', '.join(map(str, codes))}); run cv again to train it (the "
                                   "folds done are kept)")
            suspect = lost
            continue
        if kind == "done":
            results[index] = value
        else:
            raise value


def _helper(jobs: list, labels: list, run: Callable, taken, owners, messages, threads: int,
            warm_up: Callable | None, said: frozenset[str]) -> None:
    # reason: a spawned process starts with no logging set up; it reports like the CLI that started it, without
    # the warnings that one has said already.
    report_to_console(logging.INFO, said)
    with limited_threads(threads), folds_shared():
        if warm_up is not None:
            warm_up()
        while (index := _take(taken, owners)) is not None:
            _logger.info("fold process %d: %s on %d thread(s)", os.getpid(), labels[index], threads)
            # reason: stopped by terminate() (SIGTERM) during a job: leave as on an error, so a file being written
            # keeps its old content. Outside a job it simply ends.
            signal.signal(signal.SIGTERM, _leave)
            try:
                result = run(jobs[index])
            except BaseException as err:  # noqa: BLE001  # reason: any error reaches the process that waits for it
                # reason: where it happened travels with it (shown with a traceback, not in a one-line error).
                err.add_note(f"in fold process {os.getpid()}:\n{traceback.format_exc().rstrip()}")
                messages.put(("error", index, _sendable(err)))
                return
            finally:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
            messages.put(("done", index, result))


def _leave(*_) -> None:
    sys.exit(1)


def _sendable(err: BaseException) -> BaseException:
    """``err`` itself when it pickles (a ConfigError stays one), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001  # reason: whatever makes it unpicklable, its text still travels
        plain = RuntimeError(f"{type(err).__name__}: {err}")
        for note in getattr(err, "__notes__", ()):
            plain.add_note(note)
        return plain
