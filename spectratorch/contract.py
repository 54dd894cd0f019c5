"""What a model is and takes, torch-free: its name, one comparison, one axis tolerance, one label remap.

Names: the stem every file of a run starts with, and its exact inverse,
``{arch} y={targets!r} c={channels!r} t={transforms!r} {split}-{n_splits} s={seed} eps={eps:g}``, e.g.
``ResNetV2 y=['OVA', 'OK'] c=('277', '380', '425') t=('da',) 0-20 s=42 eps=0.1``. ``t=None`` without transforms;
the split is a fold number, ``all`` for a model trained without test rows (``--test-source none``: the model to
ship), ``ens`` for an ensemble of the folds, or ``cv`` for the summary of a cross-validation.

Every reader of a checkpoint or an ONNX file asks this module whether data (or another model) fits: restoring a
checkpoint (``--load-this``), fine-tuning, the members of an ensemble, the export's calibration data, ``predict``
and the page, and the schema when it reads data for a model. So data accepted by one is accepted by all, and a
refusal reads the same everywhere.

A model's description is a plain mapping (a checkpoint's hyperparameters, or what an ONNX file's metadata holds):
``arch``, ``arch_kwargs``, ``channels``, ``axis``, ``tabular_columns``, ``transforms``, ``labels``,
``preprocess_kwargs``.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spectratorch.config import ModelConfig
from spectratorch.errors import ConfigError, SchemaError
from spectratorch.options import format_value
from spectratorch.transforms import option_readers, train_only

__all__ = ["NameParts", "model_name", "parse_model_name", "OOD_CONFIDENCE", "ood_limit_level", "ood_flag_rate",
           "AXIS_TOLERANCE", "INPUT_KEYS", "axis_tolerance", "same_axis", "describe_axis", "inference_transforms",
           "differences", "label_remap"]

OOD_CONFIDENCE = 0.99
"""Stated confidence of a model's outlier flag (its ONNX metadata's ``ood.confidence``): about 1 % of spectra like
the training ones are flagged. The exporter sets it; readers fall back to it for a file that does not say."""


def ood_limit_level(confidence: float = OOD_CONFIDENCE) -> float:
    """The quantile of the held-out ``t2`` and ``q`` scores at which the outlier flag's two limits sit (numpy's
    "higher"): half the share ``1 - confidence`` above each, as the flag takes either.

    Example:
        >>> round(ood_limit_level(0.99), 6)
        0.995
    """
    return 1.0 - (1.0 - confidence) / 2.0


def ood_flag_rate(confidence: float = OOD_CONFIDENCE, n_held_out: int | None = None) -> float:
    """The share of new spectra like the training ones that the outlier flag may flag: ``1 - confidence``, or more
    where few held-out rows set the limits. Each limit is the :func:`ood_limit_level` quantile of ``n_held_out``
    scores, which a new exchangeable score exceeds with probability ``(n - rank + 1) / (n + 1)``; the flag takes
    either limit, so at most twice that.

    Example:
        >>> round(ood_flag_rate(0.99, 48), 4), round(ood_flag_rate(0.99, 2000), 4), round(ood_flag_rate(0.99), 4)
        (0.0408, 0.01, 0.01)
    """
    if not n_held_out:
        return 1.0 - confidence
    rank = int(np.ceil(round(ood_limit_level(confidence) * (n_held_out - 1), 9))) + 1
    return max(1.0 - confidence, min(1.0, 2.0 * (n_held_out - rank + 1) / (n_held_out + 1)))

_FILE_SUFFIXES = (".onnx", ".ckpt", ".json", ".csv", ".png")
_HEAD = re.compile(r"^(?P<arch>[^\s=]+) y=")
_TAIL = re.compile(r"^ (?P<split>\d+|all|ens|cv)-(?P<n_splits>\d+) s=(?P<seed>-?\d+) eps=(?P<eps>[-+0-9.eE]+)")


@dataclass(frozen=True)
class NameParts:
    """The fields a model name encodes."""

    arch: str
    targets: tuple[str, ...]
    channels: tuple[str, ...]
    transforms: tuple[str, ...]
    split: int | str
    n_splits: int
    seed: int
    eps: float


def _format_eps(eps: float) -> str:
    # reason: `:g` is the lab's format; fall back to repr only where `:g` would lose digits, so names invert exactly.
    short = f"{eps:g}"
    return short if float(short) == eps else repr(float(eps))


def model_name(config) -> str:
    """Build the stem of a run's files from its configuration.

    Args:
        config: anything with the attributes (or keys) ``arch, targets, channels, transforms, current_split``
            (or ``split``), ``n_splits, seed, eps``.

    Returns:
        The stem.

    Example:
        >>> model_name(dict(arch="ResNetV2", targets=["OVA", "OK"], channels=["277", "380", "425"],
        ...                 transforms=["da"], current_split=0, n_splits=20, seed=42, eps=0.1))
        "ResNetV2 y=['OVA', 'OK'] c=('277', '380', '425') t=('da',) 0-20 s=42 eps=0.1"
    """
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    split = get("split", None)
    split = get("current_split") if split is None else split
    transforms = tuple(str(t) for t in get("transforms") or ())
    stem = (
        f"{get('arch')} y={[str(t) for t in get('targets')]!r} c={tuple(str(c) for c in get('channels'))!r} "
        f"t={transforms if transforms else None!r} {split}-{get('n_splits')} s={get('seed')} "
        f"eps={_format_eps(get('eps'))}"
    )
    # reason: the stem names files inside the output folder; a separator or a control character (from a channel or
    # a target naming a column) would put them elsewhere.
    unsafe = re.search(r"[/\\\x00-\x1f\x7f]", stem)
    if unsafe:
        raise ConfigError(
            f"the run's name {stem!r} would hold {unsafe.group()!r} (a path separator or a control character): "
            "rename the channel or column it comes from."
        )
    size = len(stem.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise ConfigError(
            f"the run's name would be {size} bytes ({stem[:60]}...), and its files' names hold at most "
            f"{MAX_NAME_BYTES} before their endings (255 in all): select fewer channels (--channels) or give the "
            "channels and targets shorter names."
        )
    return stem


# reason: 255 bytes per file name (ext4, NTFS, APFS) less the longest ending a run adds: a checkpoint's
# `_<loss>_<f1>_<acc>.ckpt` (31) inside an atomic write's `.<name>.<random>.spectratorch.tmp` (27), with room to spare.
MAX_NAME_BYTES = 180


def _literal_prefix(text: str, start: int, closer: str, follow: str) -> tuple[object, int]:
    # reason: channel names may hold quotes or brackets; take the shortest literal that is followed by `follow`.
    for end in range(start, len(text)):
        if text[end] == closer and text.startswith(follow, end + 1):
            try:
                return ast.literal_eval(text[start : end + 1]), end + 1
            except (ValueError, SyntaxError):
                continue
    raise ValueError


def parse_model_name(name: str | Path) -> NameParts:
    """Invert :func:`model_name`.

    Accepts a bare stem or a file name written by a run (a directory, a known suffix and a tail such as the
    checkpoint's metrics are ignored).

    Args:
        name: a stem or a path.

    Returns:
        The :class:`NameParts`.

    Raises:
        ConfigError: the name does not follow the format.

    Example:
        >>> parse_model_name("VGG11 y=['AVA', 'IN'] c=('277',) t=None 3-5 s=1 eps=0").transforms
        ()
    """
    text = Path(name).name if isinstance(name, Path) or "/" in str(name) else str(name)
    for suffix in _FILE_SUFFIXES:
        if text.endswith(suffix):
            text = text[: -len(suffix)]
    try:
        head = _HEAD.match(text)
        if not head:
            raise ValueError
        targets, pos = _literal_prefix(text, head.end(), "]", " c=")
        channels, pos = _literal_prefix(text, pos + 3, ")", " t=")
        pos += 3
        if text.startswith("None ", pos):
            transforms, pos = (), pos + 4
        else:
            transforms, pos = _literal_prefix(text, pos, ")", " ")
        tail = _TAIL.match(text[pos:])
        if not tail or not isinstance(targets, list) or not isinstance(channels, tuple):
            raise ValueError
        split = tail["split"]
        return NameParts(
            arch=head["arch"],
            targets=tuple(targets),
            channels=channels,
            transforms=tuple(transforms),
            split=int(split) if split.isdigit() else split,
            n_splits=int(tail["n_splits"]),
            seed=int(tail["seed"]),
            eps=float(tail["eps"]),
        )
    except ValueError:
        raise ConfigError(
            f"{str(name)!r} is not a spectratorch model name; expected e.g. "
            "\"ResNetV2 y=['OVA', 'OK'] c=('277', '380', '425') t=('da',) 0-20 s=42 eps=0.1\"."
        ) from None


AXIS_TOLERANCE = 1e-6
"""Two axes are the same when every x differs by at most this fraction of the largest |x| (or of 1)."""

INPUT_KEYS = ("channels", "axis", "tabular_columns")
"""What data must match for a model to read it."""

# reason: the architecture options with a flag of their own; the others are set by --arch-opt KEY=VALUE.
_NAMED_OPTIONS = {f.name for f in dataclasses.fields(ModelConfig)} - {"arch", "arch_opts"}
# reason: each key with the flag that sets it, so a refusal says how to match the model.
_FLAGS = {"arch": "--arch", "channels": "--channels", "tabular_columns": "--tabular", "transforms": "--transforms"}
# reason: a preprocessing option changes the model only when a transform that reads it is in the model.


def axis_tolerance(want: Sequence[float]) -> float:
    """How far an x may lie from ``want``'s and still be the same point: :data:`AXIS_TOLERANCE` of its largest |x|
    (or of 1).

    Example:
        >>> axis_tolerance([1000.0, 2500.0]), axis_tolerance([0.1, 0.5])
        (0.0025, 1e-06)
    """
    want = np.asarray(want if want is not None else [], float)
    return AXIS_TOLERANCE * (max(1.0, float(np.abs(want).max())) if want.size else 1.0)


def same_axis(have: Sequence[float], want: Sequence[float]) -> bool:
    """Whether two axes have the same points, within :data:`AXIS_TOLERANCE`.

    Example:
        >>> same_axis([300.0, 301.0], [300.0000001, 301.0]), same_axis([300.0, 301.0], [300.0, 302.0])
        (True, False)
    """
    have = np.asarray(have if have is not None else [], float)
    want = np.asarray(want if want is not None else [], float)
    if have.shape != want.shape:
        return False
    return bool(np.allclose(have, want, rtol=0, atol=axis_tolerance(want)))


def describe_axis(axis: Sequence[float]) -> str:
    """``"3 points 1..3"``: the length and the ends of an axis."""
    axis = np.asarray(axis if axis is not None else [], float)
    return f"{len(axis)} points" + (f" {axis[0]:g}..{axis[-1]:g}" if len(axis) else "")


def inference_transforms(transforms: Iterable[str] | None) -> list[str]:
    """The transforms that live in the model (train-only ones, ``da`` and ``mixup``, do not change it)."""
    return [t for t in transforms or () if t not in train_only()]


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _fix(key: str, value) -> str:
    values = " ".join(map(str, _as_list(value)))
    if values:
        return f" (pass {_FLAGS[key]} {values})"
    return " (pass --transforms none)" if key == "transforms" else f" (pass a bare {_FLAGS[key]})"


def _arch_flag(name: str, value) -> str:
    """The flag that sets an architecture option: its own (``--width 0.25``) or ``--arch-opt KEY=VALUE``."""
    if name in _NAMED_OPTIONS:
        return f"--{name.replace('_', '-')} {value}"
    return f"--arch-opt {name}={format_value(value)}"


def differences(model: Mapping, other: Mapping, keys: Iterable[str] = INPUT_KEYS, *, names=("checkpoint", "this data"),
                fixes: bool = False) -> list[str]:
    """What keeps ``other`` (data, a run or another model) from fitting ``model``, one line per difference.

    Only the keys present in ``other`` are compared. ``axis`` uses :func:`same_axis`; ``transforms`` compares the
    inference-time transforms only; ``arch_kwargs`` compares option by option; a ``preprocess_kwargs`` option matters
    only when a transform that reads it is in the model.

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
                    hint = f" (pass {_arch_flag(name, have.get(name))})" if fixes else ""
                    lines.append(f"{name}: {mine} {have.get(name)!r}, {theirs} {want.get(name)!r}{hint}")
        elif key == "preprocess_kwargs":
            used = set(other.get("transforms") or model.get("transforms") or ())
            have, want = have or {}, want or {}
            for name, readers in option_readers().items():
                if used & set(readers):
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
