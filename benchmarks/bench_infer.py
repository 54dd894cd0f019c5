"""Inference speed: onnxruntime against torch eager for the same model, and the cold start of ``spectratorch predict``.

The model is a VGG11 at width 0.25 on channels 277, 380 and 425 (446 points) plus the transmittance, **trained for
one epoch** on a demo dataset of ``--samples`` generated samples (``spectratorch train --to-onnx``, so the exported
file is the one a user gets: preprocessing, network and calibrated softmax). The weights do not change the timings;
the epoch makes the batch-norm statistics and the calibration real.

Engines, all on the same real samples of that dataset, with the same number of threads (``--threads``, default the
physical cores, which is what ``Predictor`` uses):

- ``torch``: the checkpoint's model (1D convolutions) plus the calibrated softmax, eager, ``torch.inference_mode``;
- ``torch_conv2d``: the same after ``conv2d_layout`` (what is exported), eager;
- ``ort``: the exported file with :func:`spectratorch.inference.session_options` (``ORT_ENABLE_ALL``, sequential);
- ``ort_extended``: the exported file at ``ORT_ENABLE_EXTENDED`` (no ``NCHWc`` blocked layout);
- ``ort_conv1d``: a naive export of the 1D model (no ``conv2d_layout``) at ``ORT_ENABLE_ALL``.

Each engine runs ``session.run`` / ``model(...)`` directly (no chunking loop), at batch 1 and 256. After a warm-up,
the engines take turns (one call each per round, so a burst of load from other processes hits them alike) and the
medians over the rounds are reported. ``cold_start_s`` is the median wall time of ``python -m spectratorch.cli predict
MODEL one_sample.pkl -o out.csv`` in a fresh process (after one unmeasured run, so the files are in the page cache).

The headline speed-up compares ``ort`` with ``torch_conv2d``: the strongest eager torch form of the same model
(batch norm folded into the convolutions, the 2D layout), so that the figure is onnxruntime's gain and not the
folding's; the speed-up against the unfolded ``torch`` model is reported beside it.

Goals: ``ort`` at least 2x ``torch_conv2d`` at batch 1, at least 1.2x at batch 256; cold start at most 1.5 s.

Usage::

    python benchmarks/bench_infer.py                 # 3000 samples, 400 rounds at batch 1, 40 at batch 256
    python benchmarks/bench_infer.py --threads 1
    python benchmarks/bench_infer.py --quick         # a smoke run of about a minute

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHANNELS = ("277", "380", "425")
GOAL_BATCH_1 = 2.0
GOAL_BATCH_256 = 1.2
GOAL_COLD_S = 1.5


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3000, help="demo samples generated for the training epoch")
    parser.add_argument("--threads", type=int, default=None, help="threads of every engine (default: physical cores)")
    parser.add_argument("--rounds-1", type=int, default=400, help="timed rounds at batch 1")
    parser.add_argument("--rounds-256", type=int, default=40, help="timed rounds at batch 256")
    parser.add_argument("--cold-runs", type=int, default=5, help="timed cold starts")
    parser.add_argument("--quick", action="store_true", help="small data and few rounds (smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.rounds_1, args.rounds_256, args.cold_runs = 800, 40, 5, 2
    return args


def _train(tmp: Path, samples: int) -> dict:
    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.data.demo import write_demo_dataset
    from spectratorch.pipelines.run import train

    data = tmp / "demo.pkl"
    write_demo_dataset(data, n_samples=samples, seed=0)
    config = RunConfig(
        DataConfig(data=str(data), channels=CHANNELS, batch_size=64, transforms=("da",)),
        ModelConfig(arch="VGG11", width=0.25),
        TrainConfig(max_epochs=1, early_stop_patience=1, output_dir=str(tmp / "out"), accelerator="cpu",
                    devices="1", to_onnx=True),
    )
    return train(config)


def _engines(summary: dict, tmp: Path, threads: int, inputs: dict[int, tuple]) -> dict:
    import onnx
    import onnxruntime as ort
    import torch

    from spectratorch.export.onnx import _Probabilities, _trace, conv2d_layout, read_metadata
    from spectratorch.inference import INPUT_SPECTRA, INPUT_TABULAR, open_session, session_options
    from spectratorch.training.module import SpectralModule

    onnx_path = summary["files"]["onnx"]
    model = SpectralModule.load_from_checkpoint(summary["files"]["checkpoint"], map_location="cpu",
                                                weights_only=False).model.eval()
    temperature = read_metadata(onnx_path)["temperature"]
    reference = _Probabilities(model, temperature).eval()
    converted = _Probabilities(conv2d_layout(model), temperature).eval()
    naive = tmp / "naive_conv1d.onnx"
    onnx.save(_trace(reference, model.example_inputs(2), [INPUT_SPECTRA, INPUT_TABULAR]), naive)
    extended = session_options(threads)
    extended.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    sessions = {
        "ort": open_session(onnx_path, threads),
        "ort_extended": ort.InferenceSession(onnx_path, extended, providers=["CPUExecutionProvider"]),
        "ort_conv1d": open_session(naive, threads),
    }
    torch.set_num_threads(threads)
    engines = {}
    for batch, (spectra, tabular) in inputs.items():
        feed = {INPUT_SPECTRA: spectra, INPUT_TABULAR: tabular}
        tensors = (torch.from_numpy(spectra), torch.from_numpy(tabular))
        expected = reference(*tensors).detach().numpy()
        for name, session in sessions.items():
            got = session.run(None, feed)[0]
            if abs(got - expected).max() > 1e-4:
                raise RuntimeError(f"{name} differs from torch at batch {batch}")
            engines[(name, batch)] = lambda s=session, f=feed: s.run(None, f)
        for name, module in (("torch", reference), ("torch_conv2d", converted)):
            def call(m=module, t=tensors):
                with torch.inference_mode():
                    return m(*t)
            engines[(name, batch)] = call
    return engines


def _time(engines: dict, batch: int, rounds: int, warmup: int = 10) -> dict[str, float]:
    names = [name for name, b in engines if b == batch]
    for name in names:
        for _ in range(warmup):
            engines[(name, batch)]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            start = time.perf_counter()
            engines[(name, batch)]()
            times[name].append(time.perf_counter() - start)
    return {f"{name}_ms": round(statistics.median(values) * 1e3, 4) for name, values in times.items()}


def _cold_start(onnx_path: str, data: Path, tmp: Path, runs: int) -> float:
    from spectratorch.data.io import read_dataset, write_dataset

    one = tmp / "one_sample.pkl"
    write_dataset(read_dataset(data).iloc[:1], one)
    command = [sys.executable, "-m", "spectratorch.cli", "predict", onnx_path, str(one), "-o", str(tmp / "one.csv")]
    walls = []
    for index in range(runs + 1):
        start = time.perf_counter()
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"predict failed: {result.stderr[-2000:]}")
        if index:
            walls.append(wall)
    return round(statistics.median(walls), 3)


def main() -> None:
    args = _parse()
    logging.basicConfig(level=logging.WARNING)
    import numpy as np

    from spectratorch.data.schema import load_table
    from spectratorch.inference import physical_cores

    threads = args.threads or physical_cores()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        started = time.perf_counter()
        summary = _train(tmp, args.samples)
        setup_s = time.perf_counter() - started
        table = load_table(summary["config"]["data"]["data"], channels=CHANNELS)
        rng = np.random.default_rng(0)
        inputs = {}
        for batch in (1, 256):
            rows = rng.choice(len(table), size=min(batch, len(table)), replace=False)
            inputs[batch] = (np.ascontiguousarray(table.spectra[rows]), np.ascontiguousarray(table.tabular[rows]))
        engines = _engines(summary, tmp, threads, inputs)
        results = {"batch_1": _time(engines, 1, args.rounds_1), "batch_256": _time(engines, 256, args.rounds_256)}
        cold = _cold_start(summary["files"]["onnx"], Path(summary["config"]["data"]["data"]), tmp, args.cold_runs)
    speedup = {key: round(r["torch_conv2d_ms"] / r["ort_ms"], 2) for key, r in results.items()}
    unfolded = {key: round(r["torch_ms"] / r["ort_ms"], 2) for key, r in results.items()}
    report = {
        "benchmark": "infer",
        "model": "VGG11 width 0.25, 3 channels x 446 points + 1 tabular, trained 1 epoch",
        "samples": args.samples,
        "threads": threads,
        "quick": args.quick,
        "python": sys.version.split()[0],
        **results,
        "compared_with": "torch_conv2d: the same model in eager torch with batch norm folded (the fair baseline)",
        "speedup_ort_vs_torch_folded": speedup,
        "speedup_ort_vs_torch_unfolded": unfolded,
        "cold_start_s": cold,
        "goals": {
            "ort_vs_torch_batch_1": {"goal": f">= {GOAL_BATCH_1:g}x folded torch", "value": speedup["batch_1"],
                                     "met": speedup["batch_1"] >= GOAL_BATCH_1},
            "ort_vs_torch_batch_256": {"goal": f">= {GOAL_BATCH_256:g}x folded torch", "value": speedup["batch_256"],
                                       "met": speedup["batch_256"] >= GOAL_BATCH_256},
            "cold_start": {"goal": f"<= {GOAL_COLD_S:g} s", "value": cold, "met": cold <= GOAL_COLD_S},
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "setup_s": round(setup_s, 1),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
