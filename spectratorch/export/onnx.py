"""Export a checkpoint as one ONNX file: preprocessing, network and temperature-calibrated softmax.

``<stem>.onnx`` takes raw spectra ``data_spectra [batch, C, L]`` (and ``data_tabular [batch, T]`` when ``T > 0``)
and answers ``probabilities [batch, K] = softmax(logits / T)``, then ``t2``, ``q`` and ``outlier`` ``[batch]``
(:mod:`spectratorch.export.ood`: how unlike the training rows a spectrum is); the batch axis is dynamic. Its
``metadata_props``
describe the inputs and the classes (see :data:`spectratorch.inference.METADATA_KEYS`), so
:class:`spectratorch.inference.Predictor` checks new data against it without torch.

Steps: load the checkpoint; rebuild its data (or take the one given) and check it matches; fit the temperature on
the validation logits, the conformal label sets on the calibrated validation probabilities
(:mod:`spectratorch.export.conformal`) and the outlier model on the training rows (limits on the validation rows;
with out-of-fold predictions, a model that trained on its validation rows too, on every training row's out-of-fold
scores);
convert the 1D convolution trunk to the equivalent 2D layout (onnxruntime's fastest
convolutions are 2D); trace with the TorchScript exporter (opset 17); ``onnx.checker``; then onnxruntime against
torch on at least ``n_check`` real samples. The file appears only when every step passed.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import itertools
import json
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from spectratorch._version import __version__
from spectratorch.contract import INPUT_KEYS, differences, label_remap, model_name, parse_model_name
from spectratorch.data.io import atomic_path
from spectratorch.data.schema import SpectralTable
from spectratorch.errors import CheckpointError, ConfigError, DataFormatError, SpectratorchError, no_file
from spectratorch.export.calibration import calibration_report, softmax
from spectratorch.export.conformal import fit_conformal
from spectratorch.export.ood import OutlierScores, fit_model_ood, flatten_inputs
from spectratorch.export.ood import summary as ood_summary
from spectratorch.inference import (
    FORMAT_KEY,
    FORMAT_VERSION,
    INPUT_SPECTRA,
    INPUT_TABULAR,
    OUTPUT_OOD,
    OUTPUT_PROBABILITIES,
    decode_metadata,
    encode_metadata,
    open_session,
)
from spectratorch.models.batched import BATCH_SIZE, run_batched
from spectratorch.training.restore import datamodule_from_hparams, load_module, read_checkpoint

__all__ = ["OPSET", "TOLERANCE", "OUT_OF_FOLD_KEY", "ExportError", "checkpoint_stem", "conv2d_layout", "export_onnx",
           "out_of_fold_trust", "read_metadata", "stored_metrics", "stored_out_of_fold", "update_metadata"]

_logger = logging.getLogger(__name__)

OPSET = 17
TOLERANCE = 1e-4
"""Largest absolute difference of a probability between onnxruntime and torch that the export accepts."""
OUT_OF_FOLD_KEY = "out_of_fold"
"""The checkpoint entry of a small-set model's out-of-fold predictions: ``{"logits" [N, K], "y" [N]}`` tensors."""

_BATCH = BATCH_SIZE
# reason: layers that act on each position alone, so they are the same on [N, C, L] and on [N, C, 1, L].
_POINTWISE = (nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Tanh, nn.Sigmoid, nn.Dropout)


class ExportError(SpectratorchError, RuntimeError):
    """An export that could not be made or did not pass its checks; no file was written."""


# ---- the exported module --------------------------------------------------------------------------------------
class _Probabilities(nn.Module):
    """``softmax(model(spectra, tabular) / temperature)``: what the ONNX file computes."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model = model
        self.register_buffer("inverse_temperature", torch.tensor(1.0 / temperature, dtype=torch.float32))

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(self.model(spectra, tabular) * self.inverse_temperature, dim=1)


class _Trusted(nn.Module):
    """``(probabilities, t2, q, outlier)``: the probabilities of ``scorer`` and the outlier scores of the inputs as
    ``preprocess`` (the model's first layer) turns them."""

    def __init__(self, scorer: nn.Module, preprocess: nn.Module, ood: OutlierScores):
        super().__init__()
        self.scorer, self.preprocess, self.ood = scorer, preprocess, ood

    def forward(self, spectra: torch.Tensor, tabular: torch.Tensor | None = None):
        # reason: the preprocessing runs again here; onnxruntime's common-subexpression pass merges the two copies.
        return (self.scorer(spectra, tabular), *self.ood(flatten_inputs(*self.preprocess(spectra, tabular))))


def _with_ood(scorer: nn.Module, model: nn.Module, ood: dict | None) -> nn.Module:
    return scorer if ood is None else _Trusted(scorer, model.preprocess, OutlierScores(ood)).eval()


def output_names(ood: dict | None) -> list[str]:
    """The graph's outputs: the probabilities, then the outlier outputs when there is an outlier model."""
    return [OUTPUT_PROBABILITIES, *(OUTPUT_OOD if ood is not None else ())]


class _Conv2dTrunk(nn.Module):
    """A chain of 1D layers run as their 2D twins on ``[N, C, 1, L]``: one Unsqueeze in, one Squeeze out."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.unsqueeze(2)).squeeze(2)


def _as_2d(layer: nn.Module) -> nn.Module | None:
    """The 2D twin of a 1D layer (kernel ``(1, k)``), the layer itself if pointwise, or ``None``."""
    if type(layer) is nn.Conv1d and not isinstance(layer.padding, str) and layer.padding_mode == "zeros":
        conv = nn.Conv2d(layer.in_channels, layer.out_channels, (1, layer.kernel_size[0]), stride=(1, layer.stride[0]),
                         padding=(0, layer.padding[0]), dilation=(1, layer.dilation[0]), groups=layer.groups,
                         bias=layer.bias is not None)
        with torch.no_grad():
            conv.weight.copy_(layer.weight.unsqueeze(2))
            if layer.bias is not None:
                conv.bias.copy_(layer.bias)
        return conv
    if type(layer) is nn.MaxPool1d and not layer.return_indices:
        return nn.MaxPool2d((1, int(layer.kernel_size)), (1, int(layer.stride)), (0, int(layer.padding)),
                            (1, int(layer.dilation)), ceil_mode=layer.ceil_mode)
    if isinstance(layer, _POINTWISE) or type(layer) is nn.Identity:
        return layer
    return None


def _fold_batch_norm(module: nn.Module) -> None:
    """Fold every eval-mode ``BatchNorm1d`` that follows a ``Conv1d`` in a ``Sequential`` into the convolution."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for sequential in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(sequential._modules)
        for first, second in itertools.pairwise(names):
            conv, norm = sequential._modules[first], sequential._modules[second]
            if type(conv) is nn.Conv1d and type(norm) is nn.BatchNorm1d and norm.track_running_stats:
                sequential._modules[first] = fuse_conv_bn_eval(conv, norm)
                sequential._modules[second] = nn.Identity()


def _convert_trunks(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Sequential) and any(type(layer) is nn.Conv1d for layer in child):
            layers = [_as_2d(layer) for layer in child]
            if all(layer is not None for layer in layers):
                setattr(module, name, _Conv2dTrunk([layer for layer in layers if type(layer) is not nn.Identity]))
                continue
        _convert_trunks(child)


def conv2d_layout(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` whose 1D convolution chains run as 2D convolutions with ``(1, k)`` kernels.

    Batch norms that follow a convolution are folded into it; then every ``nn.Sequential`` made only of
    ``Conv1d``, ``MaxPool1d`` and pointwise layers becomes one 2D chain between an Unsqueeze and a Squeeze.
    The function is the same (up to float rounding); onnxruntime runs 2D convolutions in its blocked ``NCHWc``
    layout, which is faster on a CPU than its 1D path. Other layers are left as they are.

    Args:
        model: the network (not modified).

    Returns:
        The converted copy, in eval mode.

    Example:
        >>> net = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU()).eval()
        >>> x = torch.randn(5, 2, 16)
        >>> bool(torch.allclose(conv2d_layout(net)(x), net(x), atol=1e-5))
        True
    """
    model = copy.deepcopy(model).eval()
    _fold_batch_norm(model)
    if isinstance(model, nn.Sequential):
        model = nn.Sequential(model)
    _convert_trunks(model)
    return model


# ---- checkpoint, name, data -----------------------------------------------------------------------------------
def checkpoint_stem(path: str | os.PathLike, hparams: dict) -> str:
    """The run name of a checkpoint: from its file name, else (a renamed file) from its configuration, else its stem.
    """
    path = Path(path)
    try:
        return model_name(dataclasses.asdict(parse_model_name(path)))
    except ConfigError:
        pass
    try:
        from spectratorch.config import RunConfig

        return model_name(RunConfig.from_dict(hparams["config"]).name_fields())
    except (KeyError, TypeError, ConfigError):
        return path.stem


def _datamodule(hparams: dict, source):
    try:
        return datamodule_from_hparams(hparams, source)
    except CheckpointError as err:
        raise ExportError(f"export calibrates and checks the model on real data: {err}") from None


def _check_description(hparams: dict, table: SpectralTable, labels) -> None:
    offered = {"channels": list(table.channels), "axis": table.axis, "tabular_columns": list(table.tabular_columns),
               "labels": list(labels)}
    lines = differences(hparams, offered, (*INPUT_KEYS, "labels"), names=("model", "data"))
    if lines:
        raise ExportError("the data does not fit the model: " + "; ".join(lines) + ".")


def _table_arrays(hparams: dict, table: SpectralTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from spectratorch.data.targets import resolve_target

    targets = ((hparams.get("config") or {}).get("data") or {}).get("targets")
    if not targets:
        raise ExportError("the checkpoint records no target code, so a table's labels cannot be read; pass a data "
                          "module instead.")
    target = resolve_target(table.meta, targets)
    labels = list(hparams["labels"])
    remap = label_remap(labels, target.labels, names=("checkpoint", "table"), error=ExportError)
    _check_description(hparams, table, labels)
    return table.spectra, table.tabular, remap[target.y]


def _data_arrays(hparams: dict, source, n_check: int, train: list | None = None) -> tuple[tuple, tuple]:
    """``(val spectra, val tabular, val y)`` and ``(check spectra, check tabular)`` as numpy arrays.

    ``train``, when a list, receives ``(spectra, tabular, groups)`` of the training rows, ``groups`` the sample
    (``--groups``) of each training row and then of each validation row, or ``None`` (nothing for a table: its rows
    are all held out).
    """
    if isinstance(source, SpectralTable):
        spectra, tabular, y = _table_arrays(hparams, source)
        return (spectra, tabular, y), (spectra[:n_check], tabular[:n_check])
    dm = _datamodule(hparams, source)
    dm.prepare()
    _check_description(hparams, dm.table, dm.labels)
    val = dm.stage_arrays("val")
    others = np.concatenate([dm.split.train, dm.split.test])
    check = np.concatenate([val.rows, others[~np.isin(others, val.rows)]])[:n_check]
    if len(check) < n_check:
        # reason: info, not a warning: a small set is no fault, and checking on every row it has is all one can do.
        _logger.info("the data has only %d rows; the export check uses them all (asked for %d)", len(check),
                        n_check)
    if train is not None:
        rows = dm.stage_arrays("train")
        train.append((rows.spectra.numpy(), rows.tabular.numpy(), dm.fit_groups()))
    check_rows = dm.stage_arrays("val", rows=check)
    return (val.spectra.numpy(), val.tabular.numpy(), val.y.numpy()), (check_rows.spectra.numpy(),
                                                                       check_rows.tabular.numpy())


def stored_metrics(checkpoint: Path, stem: str) -> dict:
    """The ``metrics`` of the run's JSON beside ``checkpoint`` (``<stem>.json``), or ``{}`` (said in an info line)."""
    path = checkpoint.with_name(f"{stem}.json")
    if not path.is_file():
        _logger.info("no %s beside the checkpoint: its run's metrics (and baselines) are left out", path.name)
        return {}
    try:
        return json.loads(path.read_text()).get("metrics", {})
    except (OSError, ValueError, AttributeError) as err:
        _logger.warning("could not read the metrics in %s (%s); they are left out", path, err)
        return {}


# ---- torch and onnx -------------------------------------------------------------------------------------------
def _inputs(model: nn.Module, spectra: np.ndarray, tabular: np.ndarray) -> tuple[torch.Tensor, ...]:
    x = torch.as_tensor(np.ascontiguousarray(spectra), dtype=torch.float32)
    if model.n_tabular == 0:
        return (x,)
    return x, torch.as_tensor(np.ascontiguousarray(tabular), dtype=torch.float32)


@torch.no_grad()
def _run_torch(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> np.ndarray:
    return _run_torch_all(model, inputs)[0]


def _run_torch_all(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    """Every output of ``model`` (one tensor or a tuple), in batches of ``_BATCH`` rows."""
    return [column.numpy() for column in run_batched(model, inputs, _BATCH)]


def stored_out_of_fold(checkpoint_path: str | os.PathLike, rows: bool = False) -> tuple | None:
    """``(logits [N, K], y [N])``: the out-of-fold predictions of the training rows a small-set checkpoint carries
    (``OUT_OF_FOLD_KEY``), or ``None`` for a checkpoint with a validation fold of its own; with ``rows``, then the
    rows of the data they are (``None`` in a checkpoint that does not record them)."""
    record = read_checkpoint(checkpoint_path).get(OUT_OF_FOLD_KEY)
    if not isinstance(record, dict):
        return None
    stored = (torch.as_tensor(record["logits"]).double().numpy(), torch.as_tensor(record["y"]).long().numpy())
    if not rows:
        return stored
    return (*stored, torch.as_tensor(record["rows"]).long().numpy() if "rows" in record else None)


def out_of_fold_trust(logits: np.ndarray, y: np.ndarray) -> tuple[dict, tuple[np.ndarray, np.ndarray], dict]:
    """The calibration record, the calibrated probabilities with their classes, and the named cutoffs of a model
    that trained on every row it has, from its training rows' out-of-fold ``logits`` (the temperature fitted on them
    is already folded into the model, so the record's is 1)."""
    # reason: the logits are already divided by the temperature their inner CV fitted, which the model applies;
    # a second fit would describe probabilities the model does not give.
    report = calibration_report(logits, y, temperature=1.0, rows="out-of-fold")
    report.update(source="out-of-fold predictions of the training rows (folded into the model)")
    probabilities = softmax(logits)
    return report, (probabilities, y), _cutoffs(probabilities, y)


def _named(cutoffs: dict) -> dict:
    """The metadata field of the named cutoffs that were found (none where no cutoff reaches its goal)."""
    found = {name: value for name, value in cutoffs.items() if value is not None}
    return {"cutoffs": found} if found else {}


def _cutoffs(probabilities: np.ndarray, y: np.ndarray) -> dict:
    """The named cutoffs ``spectratorch predict --cutoff`` reads (``default``, ``accuracy_0.90`` ...), chosen on
    calibrated ``probabilities [N, K]`` of rows with classes ``y`` (None where no cutoff reaches its goal)."""
    from spectratorch.report.metrics import cutoff_table, named_cutoffs

    return named_cutoffs(cutoff_table(probabilities, y))


def _fit_trust(model: nn.Module, val: tuple, calibration: dict, train: list, source: str = "validation",
               calibration_probabilities: np.ndarray | None = None) -> tuple[dict, dict | None]:
    """The conformal record (calibrated validation probabilities) and the outlier model (``None`` without training
    rows); with ``source="out-of-fold"`` the validation rows trained the model, and the outlier model's limits come
    from the out-of-fold scores of the training and validation rows together."""
    val_spectra, val_tabular, val_y = val
    if calibration_probabilities is None:
        logits = _run_torch(model, _inputs(model, val_spectra, val_tabular))
        calibration_probabilities = softmax(logits, calibration["temperature"])
    conformal = fit_conformal(calibration_probabilities, val_y, source=source)
    if not train:
        _logger.warning("no training rows to fit the outlier model on (the data is a table of held-out rows): the "
                        "model has no t2, q and outlier outputs")
        return conformal, None
    # reason: out of fold, the validation rows trained this model too (the small-set protocol): the PCA sees every
    # training row and its limits come from their out-of-fold scores, not from rows the model has seen.
    spectra, tabular, groups = train[0]
    return conformal, fit_model_ood(model, (spectra, tabular), (val_spectra, val_tabular),
                                    out_of_fold=source == "out-of-fold", groups=groups)


def _trace(model: nn.Module, example: tuple[torch.Tensor, ...], input_names: list[str],
           outputs: list[str] | None = None):
    import onnx

    buffer = io.BytesIO()
    outputs = outputs or [OUTPUT_PROBABILITIES]
    axes = {name: {0: "batch"} for name in [*input_names, *outputs]}
    with warnings.catch_warnings():
        # reason: torch deprecates the TorchScript exporter; we pick it on purpose (exact and fast for these graphs).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # reason: a strided slice (the derivative's window, in an ensemble) is left to run, not folded: the graph is
        # the same, and the export tests compare its outputs with torch's.
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1 can be constant folded", UserWarning)
        torch.onnx.export(model, example, buffer, input_names=input_names, output_names=outputs,
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False, do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def _set_props(proto, props: dict[str, str]) -> None:
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _metadata(hparams: dict, stem: str, metrics: dict, calibration: dict, input_names: list[str],
              conformal: dict | None = None, ood: dict | None = None) -> dict:
    meta = _base_metadata(hparams, stem, metrics, calibration, input_names)
    meta.update(outputs=output_names(ood), conformal=conformal, ood=None if ood is None else ood_summary(ood))
    if hparams.get("parent"):
        # reason: only fine-tuned models have a parent; the keys of the others stay METADATA_KEYS exactly.
        meta["parent"] = str(hparams["parent"])
    return meta


def _base_metadata(hparams: dict, stem: str, metrics: dict, calibration: dict, input_names: list[str]) -> dict:
    config = hparams.get("config") or {}
    data, train = config.get("data") or {}, config.get("train") or {}
    try:
        parts = dataclasses.asdict(parse_model_name(stem))
    except ConfigError:
        parts = {}
    return {
        FORMAT_KEY: FORMAT_VERSION,
        "name": stem,
        "arch": hparams["arch"],
        "labels": [str(label) for label in hparams["labels"]],
        "channels": [str(c) for c in hparams["channels"]],
        "axis": [float(x) for x in hparams["axis"]],
        "tabular_columns": [str(c) for c in hparams["tabular_columns"]],
        # reason: a channel shorter than its range in training would be read as zeros; predict refuses it ({}: a
        # checkpoint that predates the ranges, not checked).
        "channel_ranges": dict(hparams.get("channel_ranges") or {}),
        "targets": list(data.get("targets", parts.get("targets", []))),
        "transforms": list(hparams.get("transforms") or []),
        "seed": hparams.get("seed", parts.get("seed")),
        # reason: the name's split: a fold, or "all" for a model trained with no test rows (its config still holds
        # the fold number it was not split on).
        "split": parts.get("split", data.get("current_split")),
        "n_splits": data.get("n_splits", parts.get("n_splits")),
        "eps": train.get("eps", hparams.get("eps")),
        "version": __version__,
        "metrics": metrics,
        "temperature": calibration["temperature"],
        "calibration": calibration,
        "cutoffs": {},
        "inputs": input_names,
        "output": OUTPUT_PROBABILITIES,
    }


def _check_parity(path: Path, reference: nn.Module, inputs: tuple[torch.Tensor, ...], names: list[str]) -> float:
    session = open_session(path)
    outputs = [o.name for o in session.get_outputs()]
    expected = _run_torch_all(reference, inputs)
    runs = [session.run(outputs, {n: t[s : s + _BATCH].numpy() for n, t in zip(names, inputs)})
            for s in range(0, len(inputs[0]), _BATCH)]
    got = [np.concatenate(column) for column in zip(*runs)]
    difference = float(np.abs(got[0] - expected[0]).max())
    if not difference <= TOLERANCE:
        # reason: torch and onnxruntime round float32 sums in different orders; with large logits (a weakly
        # penalised linear head after SNV: Tecator's 215 spectra, 1.2e-4) that alone can pass the tolerance. The
        # float64 run of the same model says which is rounding: onnxruntime is accepted when it is as close to it as
        # torch's own float32 run (twice its error, plus the tolerance).
        exact = _run_torch_all(copy.deepcopy(reference).double(), tuple(t.double() for t in inputs))[0]
        own, exported = float(np.abs(expected[0] - exact).max()), float(np.abs(got[0] - exact).max())
        if not exported <= TOLERANCE + 2 * own:
            raise ExportError(
                f"the exported model does not match the checkpoint: max |onnxruntime - torch| = {difference:.3g} on "
                f"{len(got[0])} samples (tolerance {TOLERANCE:g}; against float64, onnxruntime {exported:.3g}, "
                f"torch {own:.3g}); no file was written.")
        _logger.info("onnxruntime and torch differ by %.3g, float32 rounding: against float64 torch is off by %.3g, "
                     "onnxruntime by %.3g", difference, own, exported)
    if len(outputs) > 1:
        _check_ood_parity(dict(zip(outputs, got)), dict(zip(outputs, expected)), reference.ood)
    return difference


def _check_ood_parity(got: dict, expected: dict, ood: OutlierScores) -> None:
    # reason: t2 and q are sums over thousands of float32 terms; a relative tolerance fits their scale.
    for name in ("t2", "q"):
        scale = np.maximum(1.0, np.abs(expected[name]))
        relative = float((np.abs(got[name] - expected[name]) / scale).max())
        if not relative <= 1e-3:
            raise ExportError(f"the exported outlier output {name} does not match torch (relative difference "
                              f"{relative:.3g}); no file was written.")
    # reason: a row within rounding of a limit may fall either side; every other row must get the same flag.
    near = (np.abs(expected["t2"] - float(ood.t2_limit)) <= 1e-3 * max(1.0, float(ood.t2_limit))) | (
        np.abs(expected["q"] - float(ood.q_limit)) <= 1e-3 * max(1.0, float(ood.q_limit)))
    if (got["outlier"] != expected["outlier"])[~near].any():
        raise ExportError("the exported outlier flag does not match torch; no file was written.")


def export_onnx(checkpoint_path: str | os.PathLike, out_path: str | os.PathLike | None = None,
                datamodule_or_table=None, n_check: int = 256, *, metrics: dict | None = None,
                calibration: dict | None = None, cutoffs: dict | None = None) -> Path:
    """Export a checkpoint as ``<stem>.onnx``: preprocessing, network and calibrated softmax in one file.

    Args:
        checkpoint_path: a ``.ckpt`` written by ``spectratorch train``.
        out_path: the ONNX file; default ``<stem>.onnx`` beside the checkpoint (the checkpoint's name without the
            ``_<loss>_<f1>_<acc>`` tail).
        datamodule_or_table: the data to calibrate and check on: a ``SpectralDataModule`` (its validation split),
            a dataset path or DataFrame (split as the checkpoint's configuration says), or a ``SpectralTable``
            (all its rows; they should be held out from training). Default: the checkpoint's training data.
        n_check: samples on which onnxruntime must match torch (validation rows first, then others).
        metrics: the metrics to record; default: ``metrics`` of ``<stem>.json`` beside the checkpoint.
        calibration: a calibration report already made (its ``temperature`` is used); default: fitted on the
            validation rows. A checkpoint of the small-set protocol, which trained on its validation rows too,
            carries its training rows' out-of-fold predictions: the calibration record, the conformal sets, the
            outlier limits and the cutoffs then come from them (:func:`out_of_fold_trust`), whoever exports it.
        cutoffs: the named cutoffs already chosen on the same rows at the same temperature (a run's result sheet's,
            ``{name: probability or None}``), so that the file and the run's record hold the same digits; default:
            chosen here.

    Returns:
        The path of the ONNX file.

    Raises:
        CheckpointError: missing or unreadable checkpoint.
        ExportError: no data to calibrate on, data that does not fit the model, or a failed check (then no
            file is written).
        DataFormatError, SchemaError: unreadable data.

    Example:
        >>> export_onnx("out/VGG11 y=['OVA', 'OK'] ... eps=0.1_3.1E-01_0.91_0.93.ckpt")  # doctest: +SKIP
        PosixPath("out/VGG11 y=['OVA', 'OK'] ... eps=0.1.onnx")
    """
    import onnx

    if isinstance(n_check, bool) or not isinstance(n_check, int) or n_check < 1:
        raise ConfigError(f"n_check must be a positive integer; got {n_check!r}.")
    checkpoint_path = Path(checkpoint_path)
    module = load_module(checkpoint_path)
    hparams = dict(module.hparams)
    stem = checkpoint_stem(checkpoint_path, hparams)
    out_path = Path(out_path) if out_path is not None else checkpoint_path.with_name(f"{stem}.onnx")
    model = module.model.float().eval()
    train: list = []
    val, (check_spectra, check_tabular) = _data_arrays(hparams, datamodule_or_table, n_check, train)
    # reason: rows given as a table are held out, and calibrate as they are; otherwise a small-set model's own
    # validation rows trained it, and its out-of-fold predictions stand in for them.
    held_out_table = isinstance(datamodule_or_table, SpectralTable)
    stored = None if calibration is not None or held_out_table else stored_out_of_fold(checkpoint_path)
    if stored is None:
        logits = _run_torch(model, _inputs(model, val[0], val[1]))
        if calibration is None:
            calibration = calibration_report(logits, val[2])
        # reason: the cutoffs are chosen on the rows and at the temperature the calibration used, as the result sheet
        # chooses them, so that an export of the checkpoint alone keeps them.
        probabilities = softmax(logits, calibration["temperature"])
        cutoffs = _cutoffs(probabilities, val[2]) if cutoffs is None else cutoffs
        conformal, ood = _fit_trust(model, val, calibration, train, calibration_probabilities=probabilities)
    else:
        # reason: the validation rows trained this model; its trust records come from out-of-fold predictions.
        calibration, (probabilities, y), chosen = out_of_fold_trust(*stored)
        cutoffs = chosen if cutoffs is None else cutoffs
        conformal, ood = _fit_trust(model, (*val[:2], y), calibration, train, source="out-of-fold",
                                    calibration_probabilities=probabilities)
    reference = _with_ood(_Probabilities(model, calibration["temperature"]).eval(), model, ood)
    converted = conv2d_layout(model)
    exported = _with_ood(_Probabilities(converted, calibration["temperature"]).eval(), converted, ood)
    names = [INPUT_SPECTRA, INPUT_TABULAR][: len(model.input_names)]
    proto = _trace(exported, model.example_inputs(2), names, output_names(ood))
    metrics = stored_metrics(checkpoint_path, stem) if metrics is None else metrics
    _set_props(proto, encode_metadata({**_metadata(hparams, stem, metrics, calibration, names, conformal, ood),
                                       **_named(cutoffs)}))
    proto.doc_string = stem
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise ExportError(
            f"the exported graph is not valid ONNX ({str(err).splitlines()[0]}); no file was written."
        ) from None
    with atomic_path(out_path) as tmp:
        onnx.save(proto, tmp)
        difference = _check_parity(tmp, reference, _inputs(model, check_spectra, check_tabular), names)
    _logger.info("wrote %s (%.0f KiB): onnxruntime matches torch within %.2g on %d samples; temperature %.3g",
                 out_path, out_path.stat().st_size / 1024, difference, len(check_spectra), calibration["temperature"])
    return out_path


# ---- metadata after the export --------------------------------------------------------------------------------
def _load_proto(path: Path):
    import onnx

    if not path.is_file():
        raise DataFormatError(no_file(path, "model file", ".onnx"))
    try:
        return onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 -- reason: protobuf's DecodeError and onnx's errors share no useful base
        raise DataFormatError(f"{path}: not a readable ONNX model ({type(err).__name__}).") from None


def read_metadata(onnx_path: str | os.PathLike) -> dict:
    """The decoded metadata of an exported model.

    Args:
        onnx_path: the ``.onnx`` file.

    Returns:
        ``{key: value}`` (see :data:`spectratorch.inference.METADATA_KEYS`).

    Raises:
        DataFormatError: missing or unreadable file, or no spectratorch metadata.
    """
    path = Path(onnx_path)
    proto = _load_proto(path)
    return decode_metadata({p.key: p.value for p in proto.metadata_props}, str(path))


def update_metadata(onnx_path: str | os.PathLike, **fields) -> dict:
    """Set metadata fields of an exported model (e.g. ``cutoffs`` once the result sheet has them), atomically.

    Args:
        onnx_path: the ``.onnx`` file written by :func:`export_onnx`.
        **fields: ``key=value``; values must be JSON-serialisable. ``cutoffs`` is ``{name: probability}``, and
            ``cutoffs["default"]`` is the one ``spectratorch predict --cutoff auto`` applies.

    Returns:
        The decoded metadata after the update.

    Raises:
        DataFormatError: missing or unreadable file, or no spectratorch metadata.
        ConfigError: a value that JSON cannot encode, or an attempt to change ``spectratorch_format``.

    Example:
        >>> update_metadata("model.onnx", cutoffs={"default": 0.8})["cutoffs"]  # doctest: +SKIP
        {'default': 0.8}
    """
    path = Path(onnx_path)
    if FORMAT_KEY in fields:
        raise ConfigError(f"{FORMAT_KEY!r} is set by the exporter and cannot be changed.")
    proto = _load_proto(path)
    props = {p.key: p.value for p in proto.metadata_props}
    decode_metadata(props, str(path))
    try:
        props.update(encode_metadata(fields))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"metadata values must be JSON-serialisable: {err}.") from None
    _set_props(proto, props)
    with atomic_path(path) as tmp:
        import onnx

        onnx.save(proto, tmp)
    return decode_metadata(props, str(path))
