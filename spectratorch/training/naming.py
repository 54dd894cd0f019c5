"""Model names: the stem every file of a run starts with, and its exact inverse.

``{arch} y={targets!r} c={channels!r} t={transforms!r} {split}-{n_splits} s={seed} eps={eps:g}``, e.g.
``ResNetV2 y=['OVA', 'OK'] c=('277', '380', '425') t=('da',) 0-20 s=42 eps=0.1``. ``t=None`` without transforms;
the split is a fold number, ``ens`` for an ensemble of the folds, or ``cv`` for the summary of a cross-validation.
No torch here.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from spectratorch.errors import ConfigError

__all__ = ["NameParts", "model_name", "parse_model_name"]

_FILE_SUFFIXES = (".onnx", ".ckpt", ".json", ".csv", ".png")
_HEAD = re.compile(r"^(?P<arch>[^\s=]+) y=")
_TAIL = re.compile(r"^ (?P<split>\d+|ens|cv)-(?P<n_splits>\d+) s=(?P<seed>-?\d+) eps=(?P<eps>[-+0-9.eE]+)")


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
        f"t={transforms if transforms else None!r} {split}-{get('n_splits')} s={get('seed')} eps={_format_eps(get('eps'))}"
    )
    # reason: the stem names files inside the output folder; a separator or a control character (from a channel or
    # a target naming a column) would put them elsewhere.
    unsafe = re.search(r"[/\\\x00-\x1f\x7f]", stem)
    if unsafe:
        raise ConfigError(
            f"the run's name {stem!r} would hold {unsafe.group()!r} (a path separator or a control character): "
            "rename the channel or column it comes from."
        )
    return stem


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


def check_name_fields(channels: Sequence[str]) -> None:
    """Refuse channel names a file name cannot hold (a path separator or a control character)."""
    bad = [c for c in channels if re.search(r"[/\\\x00-\x1f\x7f]", c) or c in (".", "..")]
    if bad:
        raise ConfigError(f"channel names must not contain '/', '\\' or control characters; got {bad}.")
