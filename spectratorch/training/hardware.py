"""Whether this machine has the hardware a run asks for, checked before any data is read or any process forked.

Lightning would otherwise start ``--devices 99`` processes on a CPU (each waiting for the others, for ever), or
fail deep in its setup with a traceback for ``--accelerator gpu`` on a machine without one.
"""

from __future__ import annotations

import logging
import os

import torch

from spectratorch.config import TrainConfig, parse_devices
from spectratorch.errors import ConfigError

__all__ = ["check_hardware", "usable_cpus", "trains_on_cpu"]

_logger = logging.getLogger(__name__)

# reason: what a multi-machine launch sets (torchrun, SLURM, LSF, or Lightning's manual set-up with MASTER_ADDR and
# NODE_RANK on every machine, MPI); without any, the process is node 0 and waits for the others at 127.0.0.1 for ever.
_LAUNCH_VARIABLES = ("MASTER_ADDR", "NODE_RANK", "GROUP_RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "LSB_JOBID",
                     "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def trains_on_cpu(accelerator: str) -> bool:
    """Whether ``--accelerator`` resolves to the CPU here (``cpu``, or ``auto`` with no CUDA or Apple GPU)."""
    if accelerator == "cpu":
        return True
    return accelerator == "auto" and not torch.cuda.is_available() and not torch.backends.mps.is_available()


def _on_gpu(accelerator: str) -> bool:
    if accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "the CPU only"
            raise ConfigError(f"--accelerator {accelerator} asks for a GPU, but none is visible (this torch "
                              f"{torch.__version__} is built for {built}); use --accelerator cpu or auto.")
        return True
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--accelerator mps asks for Apple's GPU, but it is not available here; use --accelerator cpu "
                          "or auto.")
    return accelerator == "auto" and torch.cuda.is_available()


_GPU_ONLY_PRECISIONS = ("16-true", "transformer-engine", "transformer-engine-float16")


def check_hardware(train: TrainConfig) -> None:
    """Refuse an accelerator this machine lacks and more devices than it has.

    Args:
        train: the run's training settings (names already checked by :class:`~spectratorch.config.TrainConfig`).

    Raises:
        ConfigError: a GPU asked for and none visible; more GPUs, or GPU indices, than there are; on the CPU, a list
            of GPU indices, more processes than CPUs, or a precision for GPUs only (``16-true``); a strategy Lightning
            does not know.
    """
    devices = parse_devices(train.devices)
    if train.num_nodes > 1 and not any(os.environ.get(name) for name in _LAUNCH_VARIABLES):
        _logger.warning("--num-nodes %d: nothing launched the other machines (no torchrun, SLURM or MASTER_ADDR and "
                        "NODE_RANK here), so this run waits for them without end: start the same command on each "
                        "machine with torchrun or SLURM, or use --num-nodes 1", train.num_nodes)
    if str(train.strategy) != "auto":
        from lightning.pytorch.strategies import StrategyRegistry

        known = StrategyRegistry.available_strategies()
        if str(train.strategy) not in known:
            raise ConfigError(f"--strategy must be auto or one of Lightning's ({', '.join(known[:4])}, ...); got "
                              f"{train.strategy!r}.")
    if str(train.precision) in _GPU_ONLY_PRECISIONS and train.accelerator != "mps" and not _on_gpu(train.accelerator):
        # reason: float16 weights and gradients on the CPU overflow within an epoch here (NaN logits at the end).
        raise ConfigError(f"--precision {train.precision} is for a GPU; the run is on the CPU (no GPU visible, or "
                          "--accelerator cpu): use --precision auto (32-true there) or bf16-mixed.")
    if devices == "auto" or train.accelerator == "mps":
        _on_gpu(train.accelerator)
        return
    if _on_gpu(train.accelerator):
        count = torch.cuda.device_count()
        wanted = devices if isinstance(devices, list) else list(range(count if devices == -1 else devices))
        if max(wanted) >= count:
            asked = f"GPU indices {devices}" if isinstance(devices, list) else f"{devices} GPUs"
            raise ConfigError(f"--devices {train.devices} asks for {asked}, but this machine has {count} (indices "
                              f"0..{count - 1}); use --devices auto or fewer.")
        return
    cpus = usable_cpus()
    if isinstance(devices, list) or devices == -1:
        raise ConfigError(f"--devices {train.devices} names GPUs, but the run is on the CPU (no GPU visible, or "
                          "--accelerator cpu); use --devices auto or a count of processes.")
    if devices > cpus:
        raise ConfigError(f"--devices {devices} would start {devices} training processes on the CPU, which has {cpus} "
                          f"CPUs for this process; use --devices auto (one process) or at most {cpus}.")
