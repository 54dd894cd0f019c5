"""The LightningModule: epsilon-smoothed loss on soft targets, torchmetrics, Adam and ReduceLROnPlateau."""

from __future__ import annotations

import logging
from typing import Sequence

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC, MulticlassF1Score, MulticlassRecall

from spectratorch.config import TARGET_METRICS
from spectratorch.models.classifier import build_classifier
from spectratorch.training.losses import soft_target_loss

__all__ = ["SpectralModule", "smoothed_nll", "METRIC_NAMES", "SELECT_METRIC"]

_logger = logging.getLogger(__name__)

METRIC_NAMES = ("loss", "accuracy", "f1", "balanced_accuracy", "auroc")


def smoothed_nll(log_probs: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """``(1 - eps) * NLL(target) + eps * mean over classes of (-log p)``, averaged over the batch.

    Args:
        log_probs: ``[B, K]`` log-probabilities.
        target: ``[B, K]`` soft targets (one-hot, or mixed by mixup), or ``[B]`` int classes.
        eps: the smoothing, in [0, 1].

    Returns:
        The scalar loss.

    Example:
        >>> log_p = torch.log(torch.tensor([[0.9, 0.05, 0.05]]))
        >>> round(float(smoothed_nll(log_p, torch.tensor([0]), 0.0)), 4) == round(-float(log_p[0, 0]), 4)
        True
    """
    if target.dim() == 1:
        target = F.one_hot(target, log_probs.shape[1]).to(log_probs.dtype)
    weights = (1.0 - eps) * target + eps / log_probs.shape[1]
    return -(weights * log_probs).sum(dim=1).mean()


SELECT_METRIC = "val_select"


def _metrics(n_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(n_classes, average="micro"),
            "f1": MulticlassF1Score(n_classes, average="macro"),
            "balanced_accuracy": MulticlassRecall(n_classes, average="macro"),
            "auroc": MulticlassAUROC(n_classes),
        },
        prefix=prefix,
    )


class SpectralModule(pl.LightningModule):
    """Trains a :class:`~spectratorch.models.classifier.SpectralClassifier`.

    Everything needed to rebuild the model and check new data against it is in the hyperparameters, so a
    checkpoint alone predicts from raw spectra: ``SpectralModule.load_from_checkpoint(path)``.

    Args:
        arch: registered architecture name.
        channels: channel names (the ``C`` axis).
        axis: the x values (the ``L`` axis).
        tabular_columns: tabular feature names (the ``T`` axis).
        labels: class labels (the ``K`` axis).
        transforms: transform names (the inference-time ones go into the preprocessing layer).
        arch_kwargs: architecture options (``None`` values keep defaults).
        preprocess_kwargs: ``sg_window``, ``sg_order``.
        eps: label smoothing of the training loss.
        lr: Adam's learning rate.
        weight_decay: Adam's L2 penalty.
        target_metric: the metric the scheduler follows.
        scheduler_patience: ReduceLROnPlateau patience.
        scheduler_cooldown: ReduceLROnPlateau cooldown.
        seed: the run's seed (each epoch reseeds from it, so a resumed run draws the same numbers).
        config: the whole run configuration, recorded with the checkpoint.
        loss: ``ce`` or ``focal`` (the training loss; validation and test losses stay plain NLL).
        focal_gamma: the focal loss's gamma.
        class_weights: ``[K]`` class weights of the training loss, or ``None``.
        parent: the stem of the model this one was fine-tuned from (``None``: trained from scratch).
        parent_labels: the parent's labels, in its order (``labels`` are this model's).
        channel_ranges: each channel's ``[min x, max x]`` in the training data (zero outside it); new data must
            cover it (``None``: a checkpoint that predates it, not checked).
    """

    def __init__(
        self,
        arch: str,
        channels: Sequence[str],
        axis: Sequence[float],
        tabular_columns: Sequence[str],
        labels: Sequence[str],
        transforms: Sequence[str] = (),
        arch_kwargs: dict | None = None,
        preprocess_kwargs: dict | None = None,
        eps: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        target_metric: str = "val_f1",
        scheduler_patience: int = 3,
        scheduler_cooldown: int = 0,
        seed: int = 42,
        config: dict | None = None,
        loss: str = "ce",
        focal_gamma: float = 2.0,
        class_weights: Sequence[float] | None = None,
        parent: str | None = None,
        parent_labels: Sequence[str] | None = None,
        channel_ranges: dict[str, Sequence[float]] | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.labels = tuple(labels)
        self.model = build_classifier(
            arch, list(channels), len(axis), len(tabular_columns), len(labels), transforms,
            preprocess_kwargs, **(arch_kwargs or {})
        )
        self._plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None = None
        self._plateau_state: dict | None = None
        # reason: not persistent, so checkpoints keep their keys; the values travel in the hyperparameters.
        self.register_buffer("class_weights", None if class_weights is None else
                             torch.tensor(class_weights, dtype=torch.float32), persistent=False)
        self.val_metrics = _metrics(len(labels), "val_")
        self.val_loss_mean = MeanMetric()
        self.test_metrics = _metrics(len(labels), "test_")

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, K]`` from raw spectra ``[B, C, L]`` and tabular values ``[B, T]``."""
        return self.model(spectra, tabular)

    def on_train_epoch_start(self) -> None:
        # reason: reseed per epoch so a run resumed from its last checkpoint draws the same augmentations and dropout.
        epoch = self.trainer.fit_loop.epoch_progress.current.processed
        torch.manual_seed(self.hparams.seed * 100_003 + epoch * 7919 + self.global_rank)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        log_probs = F.log_softmax(self(batch["spectra"], batch["tabular"]).float(), dim=1)
        gamma = self.hparams.get("focal_gamma", 2.0) if self.hparams.get("loss", "ce") == "focal" else 0.0
        loss = soft_target_loss(log_probs, batch.get("target", batch["y"]), self.hparams.eps, gamma, self.class_weights)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["y"]),
                 sync_dist=True)
        return loss

    def _eval_step(self, batch: dict, metrics: MetricCollection, stage: str) -> None:
        logits = self(batch["spectra"], batch["tabular"]).float()
        loss = F.cross_entropy(logits, batch["y"])
        metrics.update(logits.softmax(dim=1), batch["y"])
        if stage == "val":
            self.val_loss_mean.update(loss.detach(), weight=len(batch["y"]))
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, prog_bar=stage == "val",
                 batch_size=len(batch["y"]), sync_dist=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.log_dict(values, prog_bar=True)
        self.val_metrics.reset()
        target = self.hparams.target_metric
        loss = self.val_loss_mean.compute()
        self.val_loss_mean.reset()
        if TARGET_METRICS[target] == "max":
            # reason: on a small validation set accuracy and F1 tie for many epochs; the first of the tied epochs
            # is the least trained (measured: test accuracy 0.75 instead of 1.00 for Linear on 60 spectra), so
            # checkpointing and early stopping watch the metric with the validation loss as tie-breaker.
            self.log(SELECT_METRIC, values[target].double() - 1e-6 * loss.double())
        trainer = self.trainer
        if trainer.state.fn == "fit" and not trainer.sanity_checking and self._plateau is not None:
            # reason: stepped here, before the end-of-epoch checkpoint is written, so a resumed run has every step
            # (Lightning steps a registered plateau scheduler after that checkpoint, and skips it on restart).
            self._plateau.step(float(trainer.callback_metrics[self.hparams.target_metric]))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._plateau is not None:
            checkpoint["plateau_scheduler"] = self._plateau.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._plateau_state = checkpoint.get("plateau_scheduler")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def predict_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self(batch["spectra"], batch["tabular"]).float().softmax(dim=1)

    def configure_optimizers(self):
        # reason: a fine-tune's frozen backbone joins later in its own group (training/finetune.py FreezeBackbone).
        optimizer = torch.optim.Adam([p for p in self.parameters() if p.requires_grad], lr=self.hparams.lr,
                                     weight_decay=self.hparams.get("weight_decay") or 0.0)
        self._plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode=TARGET_METRICS[self.hparams.target_metric],
            factor=0.5,
            patience=self.hparams.scheduler_patience,
            cooldown=self.hparams.scheduler_cooldown,
        )
        if self._plateau_state is not None:
            self._plateau.load_state_dict(self._plateau_state)
        return optimizer
