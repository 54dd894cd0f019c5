"""Training throughput: a Lightning fit against a bare PyTorch loop doing the same optimizer steps.

**CPU comparison** (always): a small model (VGG11, width 0.125, batch 256, channels 277 380) trained for
``--epochs`` epochs

- by Lightning: ``SpectralModule`` + ``SpectralDataModule`` in a ``Trainer(logger=False,
  enable_checkpointing=False, enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0)``;
- by a bare loop: the same model (same initial weights), ``torch.optim.Adam`` with the same learning rate, the
  same loss (``log_softmax`` then :func:`~spectratorch.training.module.smoothed_nll`), ``zero_grad``, ``backward``,
  ``step``.

Both include the same data path: the datamodule's train loader (one index gather per batch) and
``train_transform`` (``--transforms``, ``da`` and ``mixup`` by default) on every batch, and the model's
``Preprocess`` layer. What Lightning adds is its loop, hooks and the per-step ``self.log`` of ``train_loss``.
A third figure, ``bare_premade``, runs the bare loop on batches gathered and transformed beforehand (compute only),
to show what the data path itself costs.

The first epoch of every run is a warm-up; the runs take turns (``--rounds`` rounds of Lightning then bare).
``samples_per_s`` is the samples of an epoch over the median epoch time of the timed epochs; ``step_samples_per_s``
is the batch size over the median time from one batch's start to the next (robust to load spikes on a shared
machine). Overhead % = (bare samples/s / Lightning samples/s - 1) * 100. The goal (<= 10 %) is judged on the median
of the per-round overheads (the two runs of a round are close in time, so a drift of the load cancels) with a
distribution-free 95 % interval of that median: met when the whole interval is under 10 %, not met when it is all
above, ``null`` (not resolved) when it straddles 10 %; more ``--rounds`` narrow it (20 by default).
Beside it: the overhead from the process CPU time per epoch (``time.process_time``, insensitive to other jobs
taking the cores), from the best epochs, and per round. ``--threads`` defaults to 1 (one core for both loops; on a
loaded 2-core machine two OpenMP threads stall on each other and the figures become noise).

**GPU run** (only where ``torch.cuda.is_available()``; else ``"gpu": null``): the full-size configuration,
ResNetV2 ``block_units=(3, 4, 6, 3)``, width 1, batch 512, channels 277 380 425, ``--gpu-samples`` generated
(300000 by default), precision as the training CLI's ``auto``. Epoch 1 is a warm-up; epoch 2 gives the epoch time and
samples/s (no extra synchronisation); epoch 3 synchronises CUDA at every batch start and end and reports the share
of time between the end of one step and the start of the next (fetch, transfer, ``train_transform``, hooks): the
time the GPU waits on data, goal < 5 %.

Usage::

    python benchmarks/bench_train.py                       # CPU comparison (and the GPU run where there is one)
    python benchmarks/bench_train.py --gpu-samples 50000   # a shorter GPU run
    python benchmarks/bench_train.py --gpu-only            # the GPU run alone
    python benchmarks/bench_train.py --quick               # seconds, for the smoke test

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable

import lightning.pytorch as pl
import torch
import torch.nn.functional as F

from spectratorch.data.datamodule import SpectralDataModule
from spectratorch.data.synthetic import make_demo_dataset
from spectratorch.pipelines.run import resolve_precision
from spectratorch.training.module import SpectralModule, smoothed_nll

GOAL_OVERHEAD_PCT = 10.0
GOAL_DATA_WAIT_PCT = 5.0
CPU_CONFIG = {"arch": "VGG11", "arch_kwargs": {"width": 0.125}, "channels": ("277", "380"), "batch_size": 256}
GPU_CONFIG = {"arch": "ResNetV2", "arch_kwargs": {"block_units": (3, 4, 6, 3), "width": 1.0},
              "channels": ("277", "380", "425"), "batch_size": 512}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--samples", type=int, default=12_000,
                        help="samples generated for the CPU comparison (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3,
                        help="epochs per run, the first a warm-up (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=20,
                        help="rounds of (Lightning, bare, bare on pre-made batches), every other one in reverse order "
                             "(default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=CPU_CONFIG["batch_size"], help="(default: %(default)s)")
    parser.add_argument("--transforms", nargs="*", default=["da", "mixup"],
                        help="train-only transforms applied in both loops (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads, 0 = torch's choice; 1 keeps OpenMP from stalling on a shared "
                             "machine (default: %(default)s)")
    parser.add_argument("--gpu-samples", type=int, default=300_000,
                        help="samples generated for the GPU run (default: %(default)s)")
    parser.add_argument("--gpu-epochs", type=int, default=3,
                        help="epochs of the GPU run: warm-up, timed, data-wait (default: %(default)s)")
    parser.add_argument("--no-gpu", action="store_true", help="skip the GPU run (default: %(default)s)")
    parser.add_argument("--gpu-only", action="store_true",
                        help="skip the CPU comparison, run the GPU run alone (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for the smoke test (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.quick:
        args.samples, args.epochs, args.rounds, args.batch_size = 700, 2, 1, 64
        args.gpu_samples, args.gpu_epochs = 3000, 3
    if args.epochs < 2 or args.gpu_epochs < 3:
        parser.error("--epochs must be at least 2 and --gpu-epochs at least 3 (the first epoch is a warm-up).")
    if args.gpu_only and args.no_gpu:
        parser.error("--gpu-only and --no-gpu leave nothing to run: give one of them.")
    if args.gpu_only and not torch.cuda.is_available():
        parser.error(f"--gpu-only needs a CUDA device; torch {torch.__version__} sees none.")
    return args


# ---- shared set-up --------------------------------------------------------------------------------------------
def make_datamodule(n_samples: int, channels, batch_size: int, transforms, seed: int) -> SpectralDataModule:
    df, _ = make_demo_dataset(n_samples, seed)
    dm = SpectralDataModule(data=df, targets=("OVA", "OK"), channels=channels, batch_size=batch_size,
                            transforms=tuple(transforms), test_source="is-val", seed=seed)
    dm.prepare()
    return dm


def make_module(dm: SpectralDataModule, arch: str, arch_kwargs: dict, seed: int) -> SpectralModule:
    """A fresh module, its preprocessing fitted on the training split; the same weights for the same seed."""
    torch.manual_seed(seed)
    module = SpectralModule(arch=arch, channels=list(dm.table.channels), axis=[float(x) for x in dm.table.axis],
                            tabular_columns=list(dm.table.tabular_columns), labels=list(dm.labels),
                            transforms=list(dm.config.transforms), arch_kwargs=dict(arch_kwargs), seed=seed)
    module.model.preprocess.fit(*dm.train_arrays())
    return module


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _EpochRecord:
    def __init__(self):
        self.start = self.end = 0.0
        self.cpu_start = self.cpu_end = 0.0
        self.samples = 0
        self.batch_starts: list[float] = []
        self.batch_ends: list[float] = []

    def open(self) -> None:
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def close(self) -> None:
        self.end, self.cpu_end = time.perf_counter(), time.process_time()

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def cpu_seconds(self) -> float:
        """CPU time of the process (all its threads): what the epoch cost, whatever else the machine ran."""
        return self.cpu_end - self.cpu_start

    def step_intervals(self) -> list[float]:
        """Time from one batch's start to the next one's (the whole iteration)."""
        return [b - a for a, b in zip(self.batch_starts, self.batch_starts[1:])]

    def data_waits(self) -> list[float]:
        """Time from one step's end to the next step's start."""
        return [b - a for a, b in zip(self.batch_ends, self.batch_starts[1:])]


class EpochTimer(pl.Callback):
    """Clock reads at epoch and batch boundaries; CUDA synchronised at epoch boundaries, and at batch boundaries
    in the epochs listed in ``sync_batches_in``."""

    def __init__(self, device: torch.device, sync_batches_in: tuple[int, ...] = ()):
        self.device, self.sync_batches_in = device, sync_batches_in
        self.epochs: list[_EpochRecord] = []

    def _sync_batch(self) -> None:
        if len(self.epochs) - 1 in self.sync_batches_in:
            _sync(self.device)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        _sync(self.device)
        self.epochs.append(_EpochRecord())
        self.epochs[-1].open()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync_batch()
        self.epochs[-1].batch_starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync_batch()
        self.epochs[-1].batch_ends.append(time.perf_counter())
        self.epochs[-1].samples += len(batch["y"])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        _sync(self.device)
        self.epochs[-1].close()


def make_trainer(max_epochs: int, accelerator: str, callbacks: list) -> pl.Trainer:
    return pl.Trainer(
        accelerator=accelerator,
        devices=1,
        precision=resolve_precision("auto", accelerator),
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=callbacks,
    )


# ---- the CPU comparison ---------------------------------------------------------------------------------------
def lightning_run(dm: SpectralDataModule, args) -> list[_EpochRecord]:
    module = make_module(dm, CPU_CONFIG["arch"], CPU_CONFIG["arch_kwargs"], args.seed)
    timer = EpochTimer(torch.device("cpu"))
    make_trainer(args.epochs, "cpu", [timer]).fit(module, datamodule=dm)
    return timer.epochs


def _bare_step(model, optimizer, batch: dict, eps: float) -> None:
    log_probs = F.log_softmax(model(batch["spectra"], batch["tabular"]).float(), dim=1)
    loss = smoothed_nll(log_probs, batch.get("target", batch["y"]), eps)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def bare_run(dm: SpectralDataModule, args, premade: bool) -> list[_EpochRecord]:
    """The same optimizer steps without Lightning; ``premade``: on batches gathered and transformed beforehand."""
    module = make_module(dm, CPU_CONFIG["arch"], CPU_CONFIG["arch_kwargs"], args.seed)
    model, eps = module.model.train(), module.hparams.eps
    optimizer = torch.optim.Adam(model.parameters(), lr=module.hparams.lr)
    loader = dm.train_dataloader()
    batches = [dm.train_transform(batch) for batch in loader] if premade else None
    epochs = []
    for _ in range(args.epochs):
        record = _EpochRecord()
        record.open()
        for batch in batches if premade else loader:
            if not premade:
                batch = dm.train_transform(batch)
            record.batch_starts.append(time.perf_counter())
            _bare_step(model, optimizer, batch, eps)
            record.batch_ends.append(time.perf_counter())
            record.samples += len(batch["y"])
        record.close()
        epochs.append(record)
    return epochs


def summarise(runs: list[list[_EpochRecord]]) -> dict:
    """Median figures over the timed (not first) epochs of every run."""
    timed = [epoch for run in runs for epoch in run[1:]]
    epoch_s = statistics.median(e.seconds for e in timed)
    samples = statistics.median(e.samples for e in timed)
    steps = [interval for e in timed for interval in e.step_intervals()]
    batch = timed[0].samples / len(timed[0].batch_starts)  # reason: the train loader drops the last short batch.
    step_s = statistics.median(steps) if steps else float("nan")
    cpu_s = statistics.median(e.cpu_seconds for e in timed)
    best_s = min(e.seconds for e in timed)
    return {
        "samples_per_s": samples / epoch_s,
        "epoch_s": epoch_s,
        "epoch_s_all": [e.seconds for e in timed],
        "best_samples_per_s": samples / best_s,
        "cpu_samples_per_s": samples / cpu_s,
        "epoch_cpu_s": cpu_s,
        "samples_per_epoch": samples,
        "step_samples_per_s": batch / step_s,
        "step_ms": step_s * 1e3,
    }


def cpu_comparison(args, log: Callable[[str], None]) -> dict:
    dm = make_datamodule(args.samples, CPU_CONFIG["channels"], args.batch_size, args.transforms, args.seed)
    runners = {
        "lightning": lambda: lightning_run(dm, args),
        "bare": lambda: bare_run(dm, args, premade=False),
        "bare_premade": lambda: bare_run(dm, args, premade=True),
    }
    runs = {name: [] for name in runners}
    for round_ in range(args.rounds):
        # reason: every other round runs in reverse order, so a slow drift of the machine's load favours no one.
        order = list(runners) if round_ % 2 == 0 else list(reversed(runners))
        for name in order:
            log(f"round {round_ + 1}/{args.rounds}: {name}")
            runs[name].append(runners[name]())
    figures = {name: summarise(run) for name, run in runs.items()}
    lightning, bare = figures["lightning"], figures["bare"]
    overhead = (bare["samples_per_s"] / lightning["samples_per_s"] - 1) * 100
    step_overhead = (bare["step_samples_per_s"] / lightning["step_samples_per_s"] - 1) * 100
    cpu_overhead = (bare["cpu_samples_per_s"] / lightning["cpu_samples_per_s"] - 1) * 100
    best_overhead = (bare["best_samples_per_s"] / lightning["best_samples_per_s"] - 1) * 100
    # reason: the two runs of a round are minutes apart at most, so their ratio shows how much the load drifts.
    per_round = [(summarise([b])["samples_per_s"] / summarise([lit])["samples_per_s"] - 1) * 100
                 for lit, b in zip(runs["lightning"], runs["bare"])]
    return {
        "model": {"arch": CPU_CONFIG["arch"], **CPU_CONFIG["arch_kwargs"]},
        "channels": list(CPU_CONFIG["channels"]),
        "batch_size": args.batch_size,
        "transforms": list(dm.config.transforms),
        "train_rows": len(dm.split.train),
        "epochs_per_run": args.epochs,
        "rounds": args.rounds,
        "included": "index gather + train_transform + Preprocess + forward/backward/Adam step, in both loops",
        **figures,
        "overhead_pct": overhead,
        "step_overhead_pct": step_overhead,
        "cpu_time_overhead_pct": cpu_overhead,
        "best_epoch_overhead_pct": best_overhead,
        "overhead_pct_per_round": per_round,
        "overhead_pct_median_of_rounds": statistics.median(per_round),
        "overhead_pct_median_ci95": median_interval(per_round),
    }


def median_interval(values: list[float], level: float = 0.95) -> list[float] | None:
    """A distribution-free interval for the median: order statistics ``k`` and ``n - k + 1`` of the sorted values,
    ``k`` the largest with ``P(Binomial(n, 1/2) < k) <= (1 - level) / 2``; ``None`` when ``n`` is too small."""
    ordered, n = sorted(values), len(values)
    tail, k = 0.0, 0
    while k < n and tail + math.comb(n, k) / 2**n <= (1 - level) / 2:
        tail += math.comb(n, k) / 2**n
        k += 1
    return None if k == 0 else [ordered[k - 1], ordered[n - k]]


def overhead_goal(cpu: dict) -> dict:
    """Met when the whole interval of the median per-round overhead is under the goal, not met when it is all above,
    and ``None`` (not resolved by this many rounds) when it straddles the goal."""
    interval = cpu["overhead_pct_median_ci95"]
    met = None
    if interval is not None and interval[1] <= GOAL_OVERHEAD_PCT:
        met = True
    elif interval is not None and interval[0] > GOAL_OVERHEAD_PCT:
        met = False
    return {"goal": f"<= {GOAL_OVERHEAD_PCT:g} %", "value": cpu["overhead_pct_median_of_rounds"],
            "interval_95": interval, "rounds": cpu["rounds"], "met": met,
            "compared_with": "a bare PyTorch loop over the same batches, transforms, model and optimizer"}


# ---- the GPU run ----------------------------------------------------------------------------------------------
def gpu_run(args, log: Callable[[str], None], device: torch.device | None = None) -> dict:
    """The full-size configuration on ``device`` (CUDA by default): epoch time, samples/s, data-wait share."""
    device = device or torch.device("cuda")
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    log(f"GPU run: generating {args.gpu_samples} samples")
    dm = make_datamodule(args.gpu_samples, GPU_CONFIG["channels"], GPU_CONFIG["batch_size"], args.transforms,
                         args.seed)
    module = make_module(dm, GPU_CONFIG["arch"], GPU_CONFIG["arch_kwargs"], args.seed)
    wait_epoch = args.gpu_epochs - 1
    timer = EpochTimer(device, sync_batches_in=(wait_epoch,))
    log(f"GPU run: {args.gpu_epochs} epochs of {len(dm.split.train)} rows")
    make_trainer(args.gpu_epochs, accelerator, [timer]).fit(module, datamodule=dm)
    timed = timer.epochs[1:wait_epoch]
    epoch_s = statistics.median(e.seconds for e in timed)
    samples = statistics.median(e.samples for e in timed)
    measured = timer.epochs[wait_epoch]
    waits, steps = measured.data_waits(), measured.step_intervals()
    wait_pct = 100 * sum(waits) / sum(steps) if steps else float("nan")
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "model": {"arch": GPU_CONFIG["arch"], **GPU_CONFIG["arch_kwargs"]},
        "channels": list(GPU_CONFIG["channels"]),
        "batch_size": GPU_CONFIG["batch_size"],
        "precision": resolve_precision("auto", accelerator),
        "samples_generated": args.gpu_samples,
        "train_rows": len(dm.split.train),
        "epoch_s": epoch_s,
        "samples_per_s": samples / epoch_s,
        "data_wait_pct": wait_pct,
        "data_wait_ms_median": statistics.median(waits) * 1e3 if waits else None,
        "step_ms_median": statistics.median(steps) * 1e3 if steps else None,
        "synced_epoch_s": measured.seconds,
    }


def run(args, log: Callable[[str], None]) -> dict:
    default_threads = torch.get_num_threads()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cpu = None if args.gpu_only else cpu_comparison(args, log)
    cpu_threads = torch.get_num_threads()
    gpu = None
    if torch.cuda.is_available() and not args.no_gpu:
        # reason: --threads is about the CPU comparison; the GPU run's host side keeps torch's own choice.
        torch.set_num_threads(default_threads)
        gpu = gpu_run(args, log)
    return {
        "benchmark": "train",
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "cpu_threads": cpu_threads,
        "cpu": cpu,
        "gpu": gpu,
        "goals": {
            "lightning_overhead": None if cpu is None else overhead_goal(cpu),
            "gpu_data_wait": {"goal": f"< {GOAL_DATA_WAIT_PCT:g} %", "value": None if gpu is None else
                              gpu["data_wait_pct"], "met": None if gpu is None else
                              gpu["data_wait_pct"] < GOAL_DATA_WAIT_PCT},
        },
        "quick": args.quick,
    }


def _quiet() -> None:
    # reason: stdout carries the JSON; Lightning's start-up notes and the single-process loader warning are noise.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")


def main(argv=None) -> None:
    args = parse_args(argv)
    _quiet()
    result = run(args, lambda message: print(f"[bench_train] {message}", file=sys.stderr, flush=True))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
