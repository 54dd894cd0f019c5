"""Fine-tuning: train from a checkpoint on new data (another instrument, another product, other classes).

``spectratorch train --load-this CKPT --finetune`` builds this run's model, copies the checkpoint's weights into
it and trains on. What the model takes (architecture and its options, channels, axis, tabular columns,
inference-time transforms) must be the checkpoint's; what it answers may differ:

- the same labels: the whole network goes on, final layer included;
- the same labels in another order: the final layer's rows are reordered to match;
- other labels (another target code or label column): a new head, a fresh final layer of the right size.

The preprocessing layer's scaling is refitted on the new training split unless ``keep_scaling``.
:class:`FreezeBackbone` (a Lightning ``BaseFinetuning`` callback) trains the head alone for
``freeze_backbone_epochs``, then unfreezes the backbone with ``lr * unfreeze_lr_factor``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import BaseFinetuning
from torch import nn

from spectratorch.contract import differences, model_name
from spectratorch.errors import CheckpointError, ConfigError
from spectratorch.training.module import SpectralModule
from spectratorch.training.restore import load_module

__all__ = ["Finetune", "FreezeBackbone", "count_trainable", "final_layer", "finetune_differences", "finetune_module",
           "inherit_from_parent", "split_head"]

_logger = logging.getLogger(__name__)

# reason: what defines the model's inputs and layers; the labels may differ (a new head).
_FINETUNE_KEYS = ("arch", "channels", "tabular_columns", "transforms", "axis", "arch_kwargs", "preprocess_kwargs")


def final_layer(net: nn.Module, n_classes: int) -> tuple[str, nn.Linear]:
    """The layer that answers the logits: the last ``nn.Linear`` with ``n_classes`` outputs.

    Args:
        net: a registered network.
        n_classes: its number of classes ``K``.

    Returns:
        ``(name in net.named_modules(), layer)``.

    Raises:
        CheckpointError: the network has no such layer (it cannot get a new head).

    Example:
        >>> from spectratorch.models.registry import create_model
        >>> final_layer(create_model("TinyVGG", n_channels=1, length=32, n_tabular=0, n_classes=3), 3)[0]
        'head.fc'
    """
    found = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear) and m.out_features == n_classes]
    if not found:
        raise CheckpointError(f"{type(net).__name__} has no final linear layer with {n_classes} outputs; it cannot "
                              "be fine-tuned to other classes.")
    return found[-1]


def split_head(net: nn.Module, n_classes: int) -> tuple[list[nn.Module], list[nn.Module]]:
    """``(backbone, head)``: the network's ``head`` module (else its final layer) and every other top-level part."""
    head = getattr(net, "head", None)
    if not isinstance(head, nn.Module):
        head = final_layer(net, n_classes)[1]
    head_params = {id(p) for p in head.parameters()}
    backbone = [m for m in net.children() if m is not head and not {id(p) for p in m.parameters()} <= head_params]
    return backbone, [head]


def count_trainable(module: nn.Module) -> int:
    """Parameters with ``requires_grad``, summed over their elements."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))


def finetune_differences(parent: dict, expected: dict) -> list[str]:
    """What keeps the checkpoint ``parent`` (its hparams) from being fine-tuned into this run, one line each with
    its fix (:func:`spectratorch.contract.differences`).

    Labels may differ (a new head); everything that defines the model's inputs and layers may not.

    Example:
        >>> finetune_differences({"arch": "VGG11", "channels": ["277"]}, {"arch": "TinyVGG", "channels": ["277"]})
        ["arch: checkpoint 'VGG11', this run 'TinyVGG' (pass --arch VGG11)"]
    """
    return differences(parent, expected, _FINETUNE_KEYS, names=("checkpoint", "this run"), fixes=True)


def inherit_from_parent(config):
    """The run's configuration with what it leaves unset taken from the ``--load-this`` checkpoint.

    ``--arch auto``, architecture options left ``None`` (``--width``, ``--dropout``...) and unset ``--transforms``
    become the checkpoint's, so a fine-tune needs only the data, the target and the channels.

    Args:
        config: a ``RunConfig`` with ``train.finetune`` and ``train.load_this``.

    Returns:
        The completed ``RunConfig`` (what is set stays; a mismatch is reported by :func:`finetune_module`).

    Raises:
        CheckpointError: the checkpoint is missing or not ours.
    """
    hparams = dict(load_module(config.train.load_this).hparams)
    model = config.model
    saved = {key: value for key, value in (hparams.get("arch_kwargs") or {}).items() if value is not None}
    changes = {key: value for key, value in saved.items() if getattr(model, key, 0) is None}
    declared = {key: value for key, value in saved.items() if not hasattr(model, key)}
    if declared:
        changes["arch_opts"] = {**declared, **model.arch_opts}
    if model.arch == "auto":
        changes["arch"] = hparams["arch"]
    data = config.data
    if data.transforms is None:
        data = dataclasses.replace(data, transforms=tuple(hparams.get("transforms") or ()))
    return dataclasses.replace(config, model=dataclasses.replace(model, **changes), data=data)


def _parent_stem(parent: SpectralModule, path) -> str:
    config = parent.hparams.get("config")
    if config:
        from spectratorch.config import RunConfig

        return model_name(RunConfig.from_dict(config).name_fields())
    return str(path)


def _copy_weights(parent: SpectralModule, module: SpectralModule) -> str:
    """Load the parent's network into ``module``; returns how the head was handled: continued, reordered or new."""
    old, new = list(parent.labels), list(module.labels)
    state = dict(parent.model.state_dict())
    name, _ = final_layer(module.model.net, len(new))
    prefix = f"net.{name}."
    if old == new:
        module.model.load_state_dict(state)
        return "continued"
    if sorted(old) == sorted(new):
        # reason: the same classes in another order: row k of the new layer is the parent's row for label k.
        order = torch.as_tensor([old.index(label) for label in new])
        for key in (prefix + "weight", prefix + "bias"):
            if key in state:
                state[key] = state[key].index_select(0, order)
        module.model.load_state_dict(state)
        return "reordered"
    state = {key: value for key, value in state.items() if not key.startswith(prefix)}
    missing, unexpected = module.model.load_state_dict(state, strict=False)
    if unexpected or any(not key.startswith(prefix) for key in missing):
        raise CheckpointError(f"the checkpoint's layers do not fit this run's model (missing {missing}, unexpected "
                              f"{unexpected}).")
    return "new"


def finetune_module(path, expected: dict, train_arrays, keep_scaling: bool = False) -> tuple[SpectralModule, dict]:
    """This run's module, initialised from the checkpoint at ``path``.

    Args:
        path: the parent checkpoint (written by ``spectratorch train``).
        expected: this run's ``SpectralModule`` keyword arguments (labels of the new data included).
        train_arrays: ``(spectra [N, C, L], tabular [N, T])`` of the new training split, to refit the scaling on.
        keep_scaling: keep the parent's scaling instead of refitting it.

    Returns:
        ``(module, lineage)``: the module, and what the run's JSON records (parent, head, label mapping, scaling).

    Raises:
        CheckpointError: the checkpoint is missing, not ours, or differs in what the model takes (one line, every
            difference with its fix).
    """
    parent = load_module(path)
    differences = finetune_differences(dict(parent.hparams), expected)
    if differences:
        raise CheckpointError(f"--load-this {path} cannot be fine-tuned on this run: " + "; ".join(differences))
    stem = _parent_stem(parent, path)
    module = SpectralModule(**{**expected, "parent": stem, "parent_labels": list(parent.labels)})
    head = _copy_weights(parent, module)
    if not keep_scaling:
        module.model.preprocess.fit(*train_arrays)
    parent_labels = list(parent.labels)
    lineage = {
        "parent": stem,
        "parent_checkpoint": str(Path(path).resolve()),  # reason: readable from any working directory
        "parent_labels": parent_labels,
        "head": head,
        "label_mapping": {label: (label if label in parent_labels and head != "new" else None)
                          for label in module.labels},
        "scaling": "kept" if keep_scaling else "refitted",
    }
    _logger.info("fine-tuning from %s: head %s, scaling %s", stem, head, lineage["scaling"])
    return module, lineage


class FreezeBackbone(BaseFinetuning):
    """Train the head alone for ``epochs`` epochs, then the backbone too, at ``lr_factor`` times the head's lr.

    The backbone's batch-norm layers keep learning (Lightning's ``train_bn=True``): their statistics and scales
    follow the new data from the first epoch. With ``epochs == 0`` the backbone trains from the start, in its own
    parameter group at ``lr_factor`` times the learning rate. ``phases`` records, per change, the epoch, the phase
    and the trainable parameter count; it travels in the checkpoint, so a resumed run keeps it.

    Args:
        epochs: head-only epochs (``--freeze-backbone-epochs``).
        lr_factor: the backbone's learning rate relative to the head's when it is unfrozen (``--unfreeze-lr-factor``).
    """

    def __init__(self, epochs: int = 0, lr_factor: float = 1.0):
        super().__init__()
        self.epochs, self.lr_factor = int(epochs), float(lr_factor)
        self.phases: list[dict[str, Any]] = []

    def _parts(self, pl_module) -> tuple[list[nn.Module], list[nn.Module]]:
        return split_head(pl_module.model.net, len(pl_module.labels))

    def freeze_before_training(self, pl_module) -> None:
        self.freeze(self._parts(pl_module)[0], train_bn=True)

    def finetune_function(self, pl_module, epoch: int, optimizer) -> None:
        backbone = self._parts(pl_module)[0]
        if epoch >= self.epochs and any(not p.requires_grad for m in backbone for p in m.parameters()):
            self.make_trainable(backbone)
            # reason: identity, not value (BaseFinetuning.filter_on_optimizer compares values, so equal tensors clash).
            held = {id(p) for group in optimizer.param_groups for p in group["params"]}
            params = [p for m in backbone for p in m.parameters() if id(p) not in held]
            if params:
                optimizer.add_param_group({"params": params, "lr": optimizer.param_groups[0]["lr"] * self.lr_factor})
        phase = "head" if epoch < self.epochs else "all"
        if not self.phases or self.phases[-1]["phase"] != phase:
            self.phases.append({"epoch": int(epoch), "phase": phase,
                                "trainable_parameters": count_trainable(pl_module.model),
                                "lr": [float(group["lr"]) for group in optimizer.param_groups]})
            _logger.info("epoch %d: training %s (%d parameters)", epoch, "the head" if phase == "head" else
                         "the whole network", self.phases[-1]["trainable_parameters"])

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "phases": self.phases}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.phases = list(state_dict.get("phases", []))
        super().load_state_dict({k: v for k, v in state_dict.items() if k != "phases"})


class Finetune:
    """A fine-tune in progress: the module to train, its lineage and the freezing callback.

    Args:
        train: the run's ``TrainConfig`` (``load_this``, ``keep_scaling``, ``freeze_backbone_epochs``,
            ``unfreeze_lr_factor``).
        expected: this run's ``SpectralModule`` keyword arguments.
        train_arrays: the new training split's ``(spectra, tabular)``.
        stem: this run's model name.

    Raises:
        ConfigError: the run would write its files over the parent's (the same name in the checkpoint's folder).
    """

    def __init__(self, train, expected: dict, train_arrays, stem: str):
        self.module, self.lineage = finetune_module(train.load_this, expected, train_arrays, train.keep_scaling)
        folder = Path(train.load_this).resolve().parent
        if self.lineage["parent"] == stem and folder == Path(train.out_dir).resolve():
            raise ConfigError(f"--finetune would write the new model over the one it starts from ({stem!r} in "
                              f"{folder}): pass --output-dir (or --project) to put it in another folder.")
        if train.freeze_backbone_epochs and train.max_epochs is not None and train.max_epochs <= \
                train.freeze_backbone_epochs:
            _logger.warning("--freeze-backbone-epochs %d with --max-epochs %d: the backbone never trains, only the "
                            "head (give fewer head-only epochs or more epochs)", train.freeze_backbone_epochs,
                            train.max_epochs)
        self.callback = FreezeBackbone(train.freeze_backbone_epochs, train.unfreeze_lr_factor)
        self.settings = {"freeze_backbone_epochs": train.freeze_backbone_epochs,
                         "unfreeze_lr_factor": train.unfreeze_lr_factor}

    def record(self) -> dict:
        """What the run's JSON keeps under ``finetune``: lineage, settings and the phases as they ran."""
        return {**self.lineage, **self.settings, "phases": list(self.callback.phases)}
