"""Export the folds of a cross-validation as one ONNX file that averages their calibrated probabilities.

``<stem with ens-N>.onnx`` has the inputs, output and metadata of a single model (see
:func:`spectratorch.export.onnx.export_onnx`): ``probabilities = mean_k softmax(model_k(x) / T_k)``, where each
member ``k`` carries its own preprocessing (its min-max scaling was fitted on its own training split) and its own
temperature ``T_k``, fitted on its own validation fold. The metadata's ``split`` is ``"ens"``, ``temperature`` is 1
(the members are calibrated one by one) and ``calibration`` lists the members' reports; ``members`` names them.
The conformal label sets are fitted on the members' out-of-fold probabilities (each member on its own validation
fold, which it did not train on; a row that several small-set members predicted out of fold counts once, with the
mean of their probabilities); the outlier outputs are those of the first member (its preprocessing, its training
rows, limits on its validation fold). A member of the small-set protocol trained on its validation fold too: its
checkpoint's out-of-fold predictions of its training rows stand in for that fold (temperature 1, already folded in),
and the first member's outlier limits are out of fold over its training rows, as its own export's are. The file
appears only once ``onnx.checker`` and onnxruntime-against-torch (on real rows) have passed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spectratorch.contract import differences
from spectratorch.data.io import atomic_path
from spectratorch.errors import ConfigError
from spectratorch.export.calibration import calibration_report, softmax
from spectratorch.export.conformal import fit_conformal
from spectratorch.export.onnx import (
    ExportError,
    _check_parity,
    _data_arrays,
    _inputs,
    _metadata,
    _Probabilities,
    _run_torch,
    _set_props,
    _trace,
    _with_ood,
    conv2d_layout,
    out_of_fold_trust,
    output_names,
    stored_out_of_fold,
)
from spectratorch.export.ood import fit_model_ood
from spectratorch.inference import INPUT_SPECTRA, INPUT_TABULAR, encode_metadata
from spectratorch.training.restore import load_module

__all__ = ["EnsembleMember", "export_ensemble"]

_logger = logging.getLogger(__name__)


class _MeanProbabilities(nn.Module):
    """The mean of the members' calibrated probabilities ``[B, K]``."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack([member(spectra, tabular) for member in self.members]).mean(dim=0)


class EnsembleMember:
    """One fold of the ensemble: its checkpoint, its network in eval mode and its calibration report."""

    def __init__(self, checkpoint: Path, model: nn.Module, hparams: dict, calibration: dict,
                 held_out: tuple | None = None):
        self.checkpoint, self.model, self.hparams, self.calibration = checkpoint, model, hparams, calibration
        # reason: (calibrated validation probabilities, validation y, validation rows, training rows, the data's
        # rows of the probabilities or None) for the ensemble's conformal sets and outlier model; a small-set member,
        # which trained on its validation rows, has its out-of-fold probabilities instead, with their rows.
        self.held_out = held_out

    @property
    def temperature(self) -> float:
        return float(self.calibration["temperature"])

    @torch.no_grad()
    def probabilities(self, spectra: np.ndarray, tabular: np.ndarray) -> np.ndarray:
        """Calibrated probabilities ``[N, K]`` of raw spectra ``[N, C, L]`` and tabular values ``[N, T]``."""
        return _run_torch(_Probabilities(self.model, self.temperature).eval(), _inputs(self.model, spectra, tabular))


# reason: what the members must share is what the file takes and answers; each member carries its own
# preprocessing and network, so folds that chose different models (the small-set protocol) still average.
_SHARED = ("channels", "axis", "tabular_columns", "labels")


def _check_members(members: list[EnsembleMember]) -> None:
    first = members[0]
    for member in members[1:]:
        differ = differences(member.hparams, first.hparams, _SHARED, names=("checkpoint", "the first"))
        if differ:
            raise ExportError(f"{member.checkpoint.name} differs from {first.checkpoint.name} ({'; '.join(differ)}); "
                              "an ensemble needs models that take the same inputs and answer the same classes.")


def _described(members: list[EnsembleMember]) -> dict:
    """The metadata's ``arch`` and ``transforms`` of the ensemble: the first member's when all agree, else every
    member's architecture joined by ``+`` and every transform any member applies (in order of appearance)."""
    archs = list(dict.fromkeys(str(m.hparams["arch"]) for m in members))
    transforms = list(dict.fromkeys(str(t) for m in members for t in (m.hparams.get("transforms") or [])))
    return {"arch": "+".join(archs), "transforms": transforms}


def load_members(checkpoints: Sequence[str | os.PathLike], n_check: int = 256) -> tuple[list[EnsembleMember], tuple]:
    """Load the folds' checkpoints and fit each one's temperature on its own validation fold.

    Returns:
        The members, and ``(spectra, tabular)`` rows of the first fold's data to check an export on.
    """
    if len(checkpoints) < 2:
        raise ConfigError(f"an ensemble needs at least 2 checkpoints; got {len(checkpoints)}.")
    members, check = [], None
    for path in map(Path, checkpoints):
        module = load_module(path)
        hparams = dict(module.hparams)
        model = module.model.float().eval()
        train: list = []
        (val_spectra, val_tabular, val_y), rows = _data_arrays(hparams, None, n_check, train)
        check = rows if check is None else check
        stored = stored_out_of_fold(path, rows=True)
        if stored is None:
            logits = _run_torch(model, _inputs(model, val_spectra, val_tabular))
            report = calibration_report(logits, val_y)
            held_out = (softmax(logits, report["temperature"]), val_y, (val_spectra, val_tabular), train[0], None)
        else:
            report, (probabilities, y), _ = out_of_fold_trust(*stored[:2])
            held_out = (probabilities, y, (val_spectra, val_tabular), train[0], stored[2])
        members.append(EnsembleMember(path, model, hparams, report, held_out))
    _check_members(members)
    return members, check


def _held_out_once(members: list[EnsembleMember]) -> tuple[np.ndarray, np.ndarray]:
    """The members' held-out probabilities ``[N, K]`` and classes ``[N]``, each row of the data once: a row that
    several small-set members trained on (each has its out-of-fold prediction of it) gets the mean of theirs, as the
    ensemble is the mean of its members, and counts as one calibration row, not one per member. Members whose rows
    are not recorded (validation folds, which do not overlap) give theirs as they are."""
    probabilities = np.concatenate([m.held_out[0] for m in members])
    y = np.concatenate([m.held_out[1] for m in members])
    rows = [m.held_out[4] for m in members]
    if any(r is None for r in rows):
        return probabilities, y
    unique, first, inverse = np.unique(np.concatenate(rows), return_index=True, return_inverse=True)
    mean = np.zeros((len(unique), probabilities.shape[1]))
    np.add.at(mean, inverse, probabilities)
    return mean / np.bincount(inverse)[:, None], y[first]


def export_ensemble(checkpoints: Sequence[str | os.PathLike], out_path: str | os.PathLike, stem: str,
                    n_check: int = 256, *, metrics: dict | None = None) -> tuple[Path, list[EnsembleMember]]:
    """Write one ONNX file averaging the calibrated probabilities of the folds' checkpoints.

    Args:
        checkpoints: the best checkpoint of every fold (one run configuration; the folds may have chosen different
            models).
        out_path: the ``.onnx`` file.
        stem: the ensemble's name (``... ens-5 ...``), recorded in the metadata.
        n_check: rows on which onnxruntime must match torch.
        metrics: metrics to record in the metadata.

    Returns:
        The path and the members (with their temperatures).

    Raises:
        ConfigError: fewer than 2 checkpoints.
        ExportError: members that take other inputs or answer other classes, or a failed check (then no file is
            written).

    Example:
        >>> export_ensemble(fold_checkpoints, "out/VGG11 ... ens-5 s=42 eps=0.1.onnx", stem)  # doctest: +SKIP
    """
    import onnx

    out_path = Path(out_path)
    members, (check_spectra, check_tabular) = load_members(checkpoints, n_check)
    first = members[0]
    names = [INPUT_SPECTRA, INPUT_TABULAR][: len(first.model.input_names)]
    conformal = fit_conformal(*_held_out_once(members), source="out-of-fold")
    spectra, tabular, groups = first.held_out[3]
    ood = fit_model_ood(first.model, (spectra, tabular), first.held_out[2],
                        out_of_fold=first.calibration.get("source", "").startswith("out-of-fold"), groups=groups)
    reference = _with_ood(_MeanProbabilities([_Probabilities(m.model, m.temperature) for m in members]).eval(),
                          first.model, ood)
    converted = [conv2d_layout(m.model) for m in members]
    exported = _with_ood(_MeanProbabilities([_Probabilities(c, m.temperature) for c, m in zip(converted, members)])
                         .eval(), converted[0], ood)
    proto = _trace(exported, first.model.example_inputs(2), names, output_names(ood))
    calibration = {"temperature": 1.0, "members": [m.calibration for m in members]}
    meta = _metadata(first.hparams, stem, metrics or {}, calibration, names, conformal, ood)
    meta.update(split="ens", members=[m.checkpoint.name for m in members], **_described(members))
    _set_props(proto, encode_metadata(meta))
    proto.doc_string = stem
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the ensemble graph is not valid ONNX ({str(err).splitlines()[0]}); no file was written.")
    with atomic_path(out_path) as tmp:
        onnx.save(proto, tmp)
        difference = _check_parity(tmp, reference, _inputs(first.model, check_spectra, check_tabular), names)
    _logger.info("wrote %s: %d members, onnxruntime matches torch within %.2g", out_path, len(members), difference)
    return out_path, members
