"""Training losses for imbalanced classes: cross-entropy or focal loss, with class weights, on soft targets.

Both losses take soft targets ``[B, K]`` (one-hot, or mixed by mixup) and the epsilon smoothing of the run, so they
compose with ``mixup`` and ``--eps``: the smoothed target is ``q = (1 - eps) * target + eps / K`` and the loss of a
sample is ``-sum_k w_k * q_k * (1 - p_k) ** gamma * log p_k`` (``gamma = 0``: cross-entropy; ``w_k = 1``: no
weights), averaged over the batch. With ``w`` and ``gamma = 0`` this is exactly
``torch.nn.functional.cross_entropy(logits, q, weight=w)``.

``balanced`` weights are ``n_train / (K * n_k)`` from the training split's class counts (scikit-learn's
``class_weight="balanced"``): their average over the training samples is 1, so the loss keeps its scale.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn.functional as F

from spectratorch.config import parse_class_weights
from spectratorch.errors import ConfigError

__all__ = ["resolve_class_weights", "soft_target_loss"]


def resolve_class_weights(spec: str | Sequence[float] | None, train_counts: Mapping[str, int]) -> list[float] | None:
    """The weight of each class, in label order, or ``None`` for no weighting.

    Args:
        spec: as for :func:`spectratorch.config.parse_class_weights`.
        train_counts: ``{label: samples in the training split}``, in label order.

    Returns:
        ``None`` for ``none``; ``n_train / (K * n_k)`` for ``balanced``; the given weights otherwise.

    Raises:
        ConfigError: explicit weights whose count differs from the number of classes.

    Example:
        >>> resolve_class_weights("balanced", {"a": 30, "b": 10})
        [0.6666666666666666, 2.0]
    """
    parsed = parse_class_weights(spec)
    labels, counts = list(train_counts), [int(n) for n in train_counts.values()]
    if parsed == "none":
        return None
    if parsed == "balanced":
        total, k = sum(counts), len(counts)
        # reason: a class absent from the training split has no count; weight 1 keeps the division defined.
        return [total / (k * n) if n else 1.0 for n in counts]
    if len(parsed) != len(labels):
        raise ConfigError(f"--class-weights gives {len(parsed)} weights but the target has {len(labels)} classes "
                          f"{labels}; give one weight per class in that order, or use balanced.")
    return list(parsed)


def soft_target_loss(log_probs: torch.Tensor, target: torch.Tensor, eps: float = 0.0, gamma: float = 0.0,
                     weight: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted focal (or, with ``gamma = 0``, cross-entropy) loss on epsilon-smoothed soft targets.

    Args:
        log_probs: ``[B, K]`` log-probabilities.
        target: ``[B, K]`` soft targets (one-hot, or mixed by mixup), or ``[B]`` int classes.
        eps: label smoothing, in [0, 1].
        gamma: focusing parameter of the focal loss (``0`` = cross-entropy).
        weight: ``[K]`` class weights, or ``None``.

    Returns:
        The scalar loss, averaged over the batch.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> y = torch.tensor([0, 1])
        >>> bool(torch.isclose(soft_target_loss(logits.log_softmax(1), y), F.cross_entropy(logits, y)))
        True
    """
    n_classes = log_probs.shape[1]
    if target.dim() == 1:
        target = F.one_hot(target, n_classes).to(log_probs.dtype)
    q = (1.0 - eps) * target + eps / n_classes
    terms = q * log_probs
    if gamma:
        # reason: the clamp keeps the gradient of (1 - p) ** gamma finite where p rounds to 1 (gamma < 1).
        terms = terms * (1.0 - log_probs.exp()).clamp(min=1e-12) ** gamma
    if weight is not None:
        terms = terms * weight.to(log_probs.dtype)
    return -terms.sum(dim=1).mean()
