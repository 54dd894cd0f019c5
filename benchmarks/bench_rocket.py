"""Fit + transform time of the random-kernel transforms (MiniRocket, Hydra) against aeon's, on one data size.

``--rows`` random-walk spectra of ``--length`` points and ``--channels`` channels (1000 x 1 x 2000 by default).
Each transform is warmed up on a few rows (numba compiles aeon's on first use), then ``fit`` + ``transform`` of
all rows is timed ``--repeats`` times, median reported. Threads: torch and numba both get ``--threads``.

- ``MiniRocket``: ``MiniRocketNet(n_features=10000).fit_data`` (biases and the features' scaling: one transform) +
  ``transform``; aeon: ``MiniRocket(n_kernels=10000).fit`` + ``transform``.
- ``Hydra``: ``HydraNet().fit_data`` (the sparse scaling: one transform) + ``transform``; aeon:
  ``HydraTransformer().fit`` (draws the kernels) + ``transform``.

aeon is optional (``pip install --no-deps aeon==1.6.0 Deprecated numba llvmlite``); without it its columns are
``null``. Goal: each of ours in at most 5 s for 1000 x 2000 on 2 CPU threads.

Usage::

    python benchmarks/bench_rocket.py                 # 1000 x 1 x 2000, 2 threads
    python benchmarks/bench_rocket.py --quick         # seconds, a check that it runs

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

GOAL_SECONDS = 5.0


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--rows", type=int, default=1000, help="spectra (default: %(default)s)")
    parser.add_argument("--channels", type=int, default=1, help="channels (default: %(default)s)")
    parser.add_argument("--length", type=int, default=2000, help="points per spectrum (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch and numba threads (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, median reported (default: %(default)s)")
    parser.add_argument("--no-reference", action="store_true", help="skip aeon (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a check (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.length, args.repeats = 40, 200, 1
    return args


def _median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ours(x: np.ndarray, repeats: int) -> dict:
    from spectratorch.models.hydra import HydraNet
    from spectratorch.models.minirocket import MiniRocketNet

    spectra = torch.from_numpy(x)
    _, channels, length = x.shape

    def minirocket(rows=spectra):
        net = MiniRocketNet(channels, length, 0, 2, n_features=10_000).fit_data(rows)
        return net.transform(rows)

    def hydra(rows=spectra):
        net = HydraNet(channels, length, 0, 2).fit_data(rows)
        return net.transform(rows)

    minirocket(spectra[:4]), hydra(spectra[:4])  # warm-up
    return {"MiniRocket": _median_seconds(minirocket, repeats), "Hydra": _median_seconds(hydra, repeats)}


def reference(x: np.ndarray, repeats: int, threads: int) -> dict | None:
    try:
        from aeon.transformations.collection.convolution_based import HydraTransformer, MiniRocket
    except ImportError:
        return None

    def minirocket():
        return MiniRocket(n_kernels=10_000, n_jobs=threads, random_state=0).fit(x).transform(x)

    def hydra(rows=x):
        return HydraTransformer(n_jobs=threads, random_state=0, output_type="numpy").fit(rows).transform(rows)

    MiniRocket(n_kernels=10_000, n_jobs=threads).fit(x[:4]).transform(x[:4])  # numba compiles here
    hydra(x[:4])
    return {"MiniRocket": _median_seconds(minirocket, repeats), "Hydra": _median_seconds(hydra, repeats)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((args.rows, args.channels, args.length)).cumsum(-1) / 5).astype(np.float32)
    mine = ours(x, args.repeats)
    theirs = None if args.no_reference else reference(x, args.repeats, args.threads)
    torch.set_num_threads(args.threads)
    for name, seconds in mine.items():
        other = f"{theirs[name]:.2f} s" if theirs else "-"
        print(f"{name:>10}: fit + transform {seconds:.2f} s (aeon {other})")
    result = {
        "benchmark": "rocket", "quick": args.quick, "shape": list(x.shape), "threads": args.threads,
        "ours": mine, "aeon": theirs,
        "goals": {f"{name}_seconds": {"goal": GOAL_SECONDS, "value": seconds, "met": seconds <= GOAL_SECONDS}
                  for name, seconds in mine.items()},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
