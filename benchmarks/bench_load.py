"""Loading a dataset file into the in-memory table: ``load_table`` against ``pandas.read_pickle`` and parquet.

A cleaned demo dataset of ``--samples`` generated samples (300000 by default) is written once with
:func:`~spectratorch.data.demo.write_demo_dataset` (to a temporary folder, or to ``--path``; an existing ``--path``
is reused). Then each step runs ``--repeats`` times, each time in a fresh Python process, so its peak RSS is its own:

- ``read_pickle``: ``pandas.read_pickle(path)`` (also reports the DataFrame's ``memory_usage(deep=True).sum()``);
- ``load_table``: ``load_table(path, channels=("277", "380", "425"))`` (restricted unpickler, filters, the
  ``[N, 3, 446]`` float32 spectra, the tabular values, the label columns);
- ``parquet_write``: ``df.to_parquet`` of the frame read from the pickle (the read is not timed; its memory is the
  step's baseline);
- ``parquet_read``: ``pandas.read_parquet`` of that file.

Every child imports pandas, numpy, pyarrow and ``spectratorch.data.schema`` / ``io`` (no torch) before its baseline;
``peak_rss`` is ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the step, ``step_rss`` the peak above the
baseline. Goals: ``load_table`` time <= 1.5x ``read_pickle``'s; its ``step_rss`` <= 1.6x the DataFrame's size.

Usage::

    python benchmarks/bench_load.py                          # 300000 samples, 3 repeats per step
    python benchmarks/bench_load.py --samples 100000 --path /tmp/demo100k.pkl
    python benchmarks/bench_load.py --quick                  # seconds, for the smoke test

Times are medians over the repeats. The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHANNELS = ("277", "380", "425")
STEPS = ("read_pickle", "load_table", "parquet_write", "parquet_read")
GOAL_TIME_RATIO = 1.5
GOAL_RSS_RATIO = 1.6


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--samples", type=int, default=300_000,
                        help="samples generated before cleaning (default: %(default)s)")
    parser.add_argument("--path", type=Path, default=None,
                        help="the .pkl dataset; made there when missing, reused when present; default: a temporary "
                             "file, removed afterwards (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per step (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS),
                        help="steps to run; read_pickle and load_table give the goals (default: all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test (default: %(default)s)")
    parser.add_argument("--child", choices=("generate", *STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--parquet", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.repeats = 2000, 1
    return args


# ---- the child process: one step, its own clock and memory ------------------------------------------------------
def _max_rss_bytes() -> int:
    # reason: Linux reports ru_maxrss in KiB (macOS in bytes).
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def child(args: argparse.Namespace) -> dict:
    import numpy as np  # noqa: F401
    import pandas as pd
    import pyarrow  # noqa: F401

    from spectratorch.data.io import read_dataset  # noqa: F401
    from spectratorch.data.schema import load_table

    if args.child == "generate":
        from spectratorch.data.demo import write_demo_dataset

        start = time.perf_counter()
        report = write_demo_dataset(args.path, n_samples=args.samples, seed=args.seed)
        return {"seconds": time.perf_counter() - start, "rows": report["rows"], "removed": report["removed"]}
    extra = {}
    if args.child == "parquet_write":
        df = pd.read_pickle(args.path)
    baseline = _max_rss_bytes() if args.child != "parquet_write" else _current_rss_bytes()
    start = time.perf_counter()
    if args.child == "read_pickle":
        df = pd.read_pickle(args.path)
    elif args.child == "load_table":
        table = load_table(args.path, channels=CHANNELS)
        extra = {"spectra_shape": list(table.spectra.shape), "table_bytes": int(
            table.spectra.nbytes + table.tabular.nbytes + table.meta.memory_usage(deep=True).sum())}
    elif args.child == "parquet_write":
        df.to_parquet(args.parquet)
    else:
        df = pd.read_parquet(args.parquet)
    seconds = time.perf_counter() - start
    peak = _max_rss_bytes()
    if args.child == "read_pickle":
        extra = {"df_bytes": int(df.memory_usage(deep=True).sum()), "shape": list(df.shape)}
    # reason: after the untimed read, ru_maxrss already holds that read's peak; only the time is the write's own.
    step_rss = None if args.child == "parquet_write" else peak - baseline
    return {"seconds": seconds, "baseline_rss": baseline, "peak_rss": peak, "step_rss": step_rss,
            "rss_after": _current_rss_bytes(), **extra}


# ---- the parent: make the file, run the children, summarise -----------------------------------------------------
def run_child(step: str, args: argparse.Namespace, path: Path, parquet: Path) -> dict:
    command = [sys.executable, __file__, "--child", step, "--path", str(path), "--parquet", str(parquet),
               "--samples", str(args.samples), "--seed", str(args.seed)]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"step {step} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(results: list[dict]) -> dict:
    summary = {"seconds": statistics.median(r["seconds"] for r in results),
               "seconds_all": [r["seconds"] for r in results]}
    for key in ("peak_rss", "step_rss", "baseline_rss", "rss_after"):
        values = [r[key] for r in results if r.get(key) is not None]
        if values:
            summary[key] = int(statistics.median(values))
    for key in ("df_bytes", "shape", "spectra_shape", "table_bytes"):
        if key in results[0]:
            summary[key] = results[0][key]
    return summary


def run(args: argparse.Namespace, workdir: Path, log) -> dict:
    path = args.path or workdir / "demo.pkl"
    parquet = workdir / "demo.parquet"
    generated = None
    if not path.exists():
        log(f"writing the demo dataset ({args.samples} samples) to {path}")
        generated = run_child("generate", args, path, parquet)
    steps = {step: [] for step in STEPS if step in args.steps or step in ("read_pickle", "load_table")}
    if "parquet_read" in steps and "parquet_write" not in steps:
        steps = {"parquet_write": [], **steps}
    for repeat in range(args.repeats):
        for step in steps:
            log(f"repeat {repeat + 1}/{args.repeats}: {step}")
            steps[step].append(run_child(step, args, path, parquet))
    figures = {step: summarise(results) for step, results in steps.items()}
    df_bytes = figures["read_pickle"]["df_bytes"]
    time_ratio = figures["load_table"]["seconds"] / figures["read_pickle"]["seconds"]
    rss_ratio = figures["load_table"]["step_rss"] / df_bytes
    return {
        "benchmark": "load",
        "samples_generated": args.samples,
        "rows": figures["read_pickle"]["shape"][0],
        "columns": figures["read_pickle"]["shape"][1],
        "file_bytes": path.stat().st_size,
        "parquet_bytes": parquet.stat().st_size if parquet.exists() else None,
        "df_bytes": df_bytes,
        "generate": generated,
        "repeats": args.repeats,
        **figures,
        "load_table_time_ratio": time_ratio,
        "load_table_rss_ratio": rss_ratio,
        "read_pickle_rss_ratio": figures["read_pickle"]["step_rss"] / df_bytes,
        "goals": {
            "load_table_time": {"goal": f"<= {GOAL_TIME_RATIO:g}x read_pickle", "value": time_ratio,
                                "met": time_ratio <= GOAL_TIME_RATIO},
            "load_table_peak_rss": {"goal": f"<= {GOAL_RSS_RATIO:g}x the DataFrame's size (above the baseline)",
                                    "value": rss_ratio, "met": rss_ratio <= GOAL_RSS_RATIO},
        },
        "python": sys.version.split()[0],
        "quick": args.quick,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory(prefix="bench_load_") as tmp:
        result = run(args, Path(tmp), lambda message: print(f"[bench_load] {message}", file=sys.stderr, flush=True))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
