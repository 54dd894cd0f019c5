"""What a model takes and answers, torch-free: one comparison, one axis tolerance, one label remap.

Every reader of a checkpoint or an ONNX file asks this module whether data (or another model) fits: restoring a
checkpoint (``--load-this``), fine-tuning, the members of an ensemble, the export's calibration data, ``predict``
and the page, and the schema when it reads data for a model. So data accepted by one is accepted by all, and a
refusal reads the same everywhere.

A model's description is a plain mapping (a checkpoint's hyperparameters, or what an ONNX file's metadata holds):
``arch``, ``arch_kwargs``, ``channels``, ``axis``, ``tabular_columns``, ``transforms``, ``labels``,
``preprocess_kwargs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from spectratorch.config import TRAIN_ONLY_TRANSFORMS
from spectratorch.errors import SchemaError

__all__ = ["AXIS_TOLERANCE", "INPUT_KEYS", "same_axis", "describe_axis", "inference_transforms", "differences",
           "label_remap"]

AXIS_TOLERANCE = 1e-6
"""Two axes are the same when every x differs by at most this fraction of the largest |x| (or of 1)."""

INPUT_KEYS = ("channels", "axis", "tabular_columns")
"""What data must match for a model to read it."""

# reason: each key with the flag that sets it, so a refusal says how to match the model.
_FLAGS = {"arch": "--arch", "channels": "--channels", "tabular_columns": "--tabular", "transforms": "--transforms"}
# reason: the Savitzky-Golay options change the model only when a Savitzky-Golay transform is in it.
_SG_TRANSFORMS = {"sg1", "sg2"}


def same_axis(have: Sequence[float], want: Sequence[float]) -> bool:
    """Whether two axes have the same points, within :data:`AXIS_TOLERANCE`.

    Example:
        >>> same_axis([300.0, 301.0], [300.0000001, 301.0]), same_axis([300.0, 301.0], [300.0, 302.0])
        (True, False)
    """
    have, want = np.asarray(have if have is not None else [], float), np.asarray(want if want is not None else [], float)
    if have.shape != want.shape:
        return False
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    return bool(np.allclose(have, want, rtol=0, atol=AXIS_TOLERANCE * scale))


def describe_axis(axis: Sequence[float]) -> str:
    """``"3 points 1..3"``: the length and the ends of an axis."""
    axis = np.asarray(axis if axis is not None else [], float)
    return f"{len(axis)} points" + (f" {axis[0]:g}..{axis[-1]:g}" if len(axis) else "")


def inference_transforms(transforms: Iterable[str] | None) -> list[str]:
    """The transforms that live in the model (train-only ones, ``da`` and ``mixup``, do not change it)."""
    return [t for t in transforms or () if t not in TRAIN_ONLY_TRANSFORMS]


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _fix(key: str, value) -> str:
    values = " ".join(map(str, _as_list(value)))
    if values:
        return f" (pass {_FLAGS[key]} {values})"
    return " (pass --transforms none)" if key == "transforms" else f" (pass a bare {_FLAGS[key]})"


def differences(model: Mapping, other: Mapping, keys: Iterable[str] = INPUT_KEYS, *, names=("checkpoint", "this data"),
                fixes: bool = False) -> list[str]:
    """What keeps ``other`` (data, a run or another model) from fitting ``model``, one line per difference.

    Only the keys present in ``other`` are compared. ``axis`` uses :func:`same_axis`; ``transforms`` compares the
    inference-time transforms only; ``arch_kwargs`` compares option by option; ``preprocess_kwargs`` matters only
    with a Savitzky-Golay transform.

    Args:
        model: what the model takes (hyperparameters or metadata).
        other: what is offered, with the same keys.
        keys: the keys to compare, in the order the lines should come.
        names: how the two sides are called in the lines.
        fixes: add the flag that makes the two agree.

    Returns:
        One line per difference, e.g. ``"channels: checkpoint ['277'], this data ['380']"``; empty when it fits.

    Example:
        >>> differences({"channels": ["277"], "axis": [1, 2]}, {"channels": ["380"], "axis": [1, 2, 3]})
        ["channels: checkpoint ['277'], this data ['380']", 'axis: checkpoint 2 points 1..2, this data 3 points 1..3']
    """
    mine, theirs = names
    lines = []
    for key in keys:
        if key not in other:
            continue
        have, want = model.get(key), other.get(key)
        if key == "axis":
            if not same_axis(have, want):
                hint = f" (resample the data onto the {mine}'s axis)" if fixes else ""
                lines.append(f"axis: {mine} {describe_axis(have)}, {theirs} {describe_axis(want)}{hint}")
        elif key == "arch_kwargs":
            have, want = have or {}, want or {}
            for name in sorted(set(have) | set(want)):
                if have.get(name) != want.get(name):
                    hint = f" (pass --{name.replace('_', '-')} {have.get(name)})" if fixes else ""
                    lines.append(f"{name}: {mine} {have.get(name)!r}, {theirs} {want.get(name)!r}{hint}")
        elif key == "preprocess_kwargs":
            if _SG_TRANSFORMS & set(other.get("transforms") or model.get("transforms") or ()):
                have, want = have or {}, want or {}
                for name in ("sg_window", "sg_order"):
                    if have.get(name) != want.get(name):
                        hint = f" (pass --{name.replace('_', '-')} {have.get(name)})" if fixes else ""
                        lines.append(f"{name}: {mine} {have.get(name)!r}, {theirs} {want.get(name)!r}{hint}")
        elif key == "transforms":
            if inference_transforms(have) != inference_transforms(want):
                hint = _fix(key, have) if fixes else ""
                lines.append(f"transforms: {mine} {have!r}, {theirs} {want!r}{hint}")
        elif isinstance(want, (list, tuple)) or isinstance(have, (list, tuple)):
            if _as_list(have) != _as_list(want):
                hint = _fix(key, have) if fixes and key in _FLAGS else ""
                lines.append(f"{key}: {mine} {have!r}, {theirs} {want!r}{hint}")
        elif have != want:
            hint = _fix(key, have) if fixes and key in _FLAGS else ""
            lines.append(f"{key}: {mine} {have!r}, {theirs} {want!r}{hint}")
    return lines


def label_remap(model_labels: Sequence[str], data_labels: Sequence[str], *, names=("model", "data"),
                error: type[Exception] = SchemaError) -> np.ndarray:
    """For each of the data's labels, its index among the model's labels.

    Args:
        model_labels: the labels the model answers, in its order.
        data_labels: the labels of the data's target, in the data's order.
        names: how the model and the data are called in the refusal.
        error: the exception raised (a subclass of the package's errors).

    Raises:
        SchemaError (or ``error``): the data has a label the model does not know.

    Example:
        >>> label_remap(["a", "b", "c"], ["c", "a"]).tolist()
        [2, 0]
    """
    model_labels = [str(label) for label in model_labels]
    unknown = [label for label in data_labels if str(label) not in model_labels]
    if unknown:
        raise error(f"the {names[1]} has classes {unknown} that the {names[0]} does not know ({model_labels}).")
    return np.array([model_labels.index(str(label)) for label in data_labels], dtype=np.int64)
