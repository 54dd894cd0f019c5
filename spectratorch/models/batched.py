"""Batched torch inference: the one loop that runs a model (or any function of row-aligned tensors) over batches.

The result sheet, the evaluation, the baselines, the small-set protocol and the export's parity check all call
:func:`run_batched` (or :func:`predict_logits`, its form for a classifier), so every place that reads a model's
outputs reads them the same way: the same slices, the same device moves, the results gathered on the CPU.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["BATCH_SIZE", "run_batched", "predict_logits"]

# reason: 1024 rows of the lab's 3 x 446 float32 spectra are 5 MiB, and a VGG11 pass on them fits any GPU; on a
# CPU larger batches gain nothing measurable.
BATCH_SIZE = 1024


@torch.no_grad()
def run_batched(fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]], inputs: Sequence[torch.Tensor],
                batch_size: int = BATCH_SIZE, device: torch.device | str | None = None) -> tuple[torch.Tensor, ...]:
    """``fn`` on consecutive slices of ``batch_size`` rows of every input; its outputs concatenated on the CPU.

    Args:
        fn: a function of the sliced inputs (a module, or a lambda around one) answering one tensor or a tuple.
        inputs: row-aligned tensors ``[N, ...]`` (spectra ``[N, C, L]``, tabular ``[N, T]`` ...).
        batch_size: rows per call of ``fn``.
        device: where each slice goes before ``fn`` (default: where it is).

    Returns:
        One CPU tensor ``[N, ...]`` per output of ``fn``; ``()`` when there are no rows.

    Example:
        >>> x = torch.arange(10.0).view(5, 2)
        >>> (total,) = run_batched(lambda a: a.sum(dim=1), [x], batch_size=2)
        >>> total.tolist()
        [1.0, 5.0, 9.0, 13.0, 17.0]
    """
    parts = []
    for start in range(0, len(inputs[0]), batch_size):
        batch = [t[start : start + batch_size] for t in inputs]
        if device is not None:
            batch = [t.to(device) for t in batch]
        out = fn(*batch)
        parts.append(tuple(o.cpu() for o in (out if isinstance(out, tuple) else (out,))))
    return tuple(torch.cat(column) for column in zip(*parts))


def predict_logits(model: nn.Module, spectra: torch.Tensor, tabular: torch.Tensor,
                   batch_size: int = BATCH_SIZE) -> np.ndarray:
    """A classifier's float32 logits ``[N, K]`` of raw ``spectra [N, C, L]`` and ``tabular [N, T]``, in eval mode
    on the model's device.

    Example:
        >>> from spectratorch.models.classifier import build_classifier
        >>> spectra = torch.rand(5, 1, 32)
        >>> model = build_classifier("TinyVGG", ["a"], 32, 0, 3).fit(spectra, torch.zeros(5, 0))
        >>> predict_logits(model, spectra, torch.zeros(5, 0)).shape
        (5, 3)
    """
    model.eval()
    device = next(model.parameters()).device
    outputs = run_batched(lambda s, t: model(s, t).float(), (spectra, tabular), batch_size, device)
    if not outputs:
        raise ValueError("predict_logits needs at least one row; got none.")
    return outputs[0].numpy()
