"""Typed, frozen configuration of a run: the source of truth that the CLI fills and the library reads.

Arguments are checked here, when a config is built (stage one); the data is checked when the table is loaded
(stage two); both happen before ``Trainer.fit``. No torch here.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

from spectratorch.errors import ConfigError
from spectratorch.transforms import TRANSFORM_TABLE, transform_options

__all__ = [
    "TARGET_METRICS",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "RunConfig",
    "normalize_transforms",
    "DEMO_DATA",
    "LOSSES",
    "normalize_loss",
    "parse_class_weights",
    "LOGGERS",
    "normalize_loggers",
    "ACCELERATORS",
    "PRECISIONS",
    "MAX_SEED",
    "RARE_CLASS_POLICIES",
    "parse_devices",
]

# reason: the direction each metric improves in, for early stopping, checkpointing and the scheduler.
TARGET_METRICS = {
    "val_f1": "max",
    "val_accuracy": "max",
    "val_balanced_accuracy": "max",
    "val_auroc": "max",
    "val_loss": "min",
}
_METRIC_ALIASES = {"val_acc": "val_accuracy", "val_bacc": "val_balanced_accuracy"}
DEMO_DATA = Path("datasets") / "demo.pkl"
# what `--rare-classes` does with a class smaller than --n-splits (spectratorch/data/targets.py: handle_rare_classes)
RARE_CLASS_POLICIES = ("keep", "error", "drop", "other")
_TRANSFORM_OPTIONS = transform_options()


def normalize_transforms(transforms) -> tuple[str, ...]:
    """Check transform names; ``none`` (alone) means no transform. ``-`` and ``_`` are accepted alike; one name may
    be given as a string (``transforms="snv"`` in a grid search).

    Example:
        >>> normalize_transforms(["DA", "sg1"]), normalize_transforms(["none"]), normalize_transforms("snv")
        (('da', 'sg1'), (), ('snv',))
    """
    if isinstance(transforms, str):
        transforms = (transforms,)
    names = tuple(str(t).lower().replace("-", "_") for t in (transforms or ()))
    if names in ((), ("none",)):
        return ()
    unknown = [t for t in names if t not in TRANSFORM_TABLE]
    if unknown:
        raise ConfigError(f"unknown transform(s) {unknown}; expected some of {list(TRANSFORM_TABLE)}, or none.")
    if len(set(names)) != len(names):
        raise ConfigError(f"transforms must not repeat; got {list(names)}.")
    return names


# ---- losses: names and class weights, checked when a config is built -------------------------------
LOSSES = ("ce", "focal")


def normalize_loss(name: str) -> str:
    """Check a loss name (case and ``-``/``_`` are free; ``cross-entropy`` means ``ce``).

    Example:
        >>> normalize_loss("Focal"), normalize_loss("cross-entropy")
        ('focal', 'ce')
    """
    key = str(name).lower().replace("-", "_")
    key = {"cross_entropy": "ce", "crossentropy": "ce"}.get(key, key)
    if key not in LOSSES:
        raise ConfigError(f"--loss must be one of {list(LOSSES)}; got {name!r}.")
    return key


def parse_class_weights(spec) -> str | tuple[float, ...]:
    """``none``, ``balanced`` or explicit positive weights ``W1,W2,...`` (a string or a sequence).

    Returns:
        ``"none"``, ``"balanced"`` or a tuple of floats.

    Raises:
        ConfigError: not a keyword and not a list of positive numbers.

    Example:
        >>> parse_class_weights("1,4"), parse_class_weights("Balanced"), parse_class_weights(None)
        ((1.0, 4.0), 'balanced', 'none')
    """
    if spec is None:
        return "none"
    if isinstance(spec, str):
        key = spec.strip().lower()
        if key in ("none", "balanced"):
            return key
        parts = [p for p in spec.replace(" ", ",").split(",") if p]
    else:
        parts = list(spec)
    try:
        weights = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        weights = ()
    if not weights or not all(math.isfinite(w) and w > 0 for w in weights):
        raise ConfigError(f"--class-weights must be none, balanced or positive numbers W1,W2,... (one per class, "
                          f"in the order of the labels); got {spec!r}.")
    return weights


# ---- hardware: the names Lightning takes, checked when a config is built (whether the machine has them: when the
# run starts, spectratorch.training.hardware) --------------------------------------------------------------------
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
PRECISIONS = ("auto", "64-true", "32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64", "32", "16",
              "bf16", "transformer-engine", "transformer-engine-float16")
MAX_SEED = 2**32 - 1
"""numpy's and Lightning's seeds are unsigned 32-bit integers."""


def parse_devices(devices) -> str | int | list[int]:
    """``--devices``: ``auto``, ``-1`` (every GPU), a count, or GPU indices like ``0,1`` or ``[0, 1]``.

    Returns:
        ``"auto"``, an ``int`` (a count, or -1) or a list of indices.

    Raises:
        ConfigError: anything else.

    Example:
        >>> parse_devices("auto"), parse_devices("2"), parse_devices("[0, 1]")
        ('auto', 2, [0, 1])
    """
    text = str(devices).strip().replace(" ", "")
    if text == "auto":
        return "auto"
    try:
        if text.startswith("[") or "," in text:
            ids = [int(d) for d in text.strip("[]").split(",") if d]
            if ids and min(ids) >= 0 and len(set(ids)) == len(ids):
                return ids
        elif int(text) >= 1 or int(text) == -1:
            return int(text)
    except ValueError:
        pass
    raise ConfigError(f"--devices must be auto, -1 (every GPU), a count of at least 1, or GPU indices like 0,1; got "
                      f"{devices!r}.")


LOGGERS = ("tensorboard", "mlflow", "csv")


def normalize_loggers(names) -> tuple[str, ...]:
    """Check logger names, drop repeats; none given means TensorBoard.

    Example:
        >>> normalize_loggers(["CSV", "mlflow", "csv"]), normalize_loggers(None)
        (('csv', 'mlflow'), ('tensorboard',))
    """
    if isinstance(names, str):
        names = [names]
    cleaned = tuple(dict.fromkeys(str(n).lower() for n in (names or ("tensorboard",))))
    unknown = [n for n in cleaned if n not in LOGGERS]
    if unknown:
        raise ConfigError(f"unknown --logger {unknown}; expected some of {list(LOGGERS)}.")
    return cleaned


def _check_range(name: str, value, low, high, inclusive_low=True) -> None:
    if value is None:
        return
    ok = (value >= low if inclusive_low else value > low) and value <= high
    if not ok or (isinstance(value, float) and math.isnan(value)):
        bracket = "[" if inclusive_low else "("
        raise ConfigError(f"{name} must be in {bracket}{low}, {high}]; got {value!r}.")


@dataclass(frozen=True)
class DataConfig:
    """What data, which rows, which inputs and target, which split, which batch transforms.

    ``targets`` and ``channels`` left ``None`` follow the data when it is loaded
    (:func:`spectratorch.data.resolve.resolve_data_defaults`): ``OVA OK`` and ``277 380 425`` on the lab's data, the
    one label column and every channel on other data.
    """

    data: str | None = None
    targets: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    tabular: tuple[str, ...] | str = "default"
    drop_oob: bool = True
    transmittance_min: float | None = None
    transmittance_max: float | None = None
    date_from: str | None = None
    date_to: str | None = None
    n_splits: int = 5
    current_split: int = 0
    test_source: str = "like-val"
    seed: int = 42
    rare_classes: str = "keep"
    min_samples: int | None = None
    groups: str | None = None
    batch_size: int | None = None
    transforms: tuple[str, ...] | None = None
    # the transforms' options: defaults and checks from the table of transforms (spectratorch/transforms.py)
    mixup_alpha: float = _TRANSFORM_OPTIONS["mixup_alpha"].default
    da_multiplier_scale: float = _TRANSFORM_OPTIONS["da_multiplier_scale"].default
    da_rel_noise_scale: float = _TRANSFORM_OPTIONS["da_rel_noise_scale"].default
    da_xshift_scale: float = _TRANSFORM_OPTIONS["da_xshift_scale"].default
    sg_window: int = _TRANSFORM_OPTIONS["sg_window"].default
    sg_order: int = _TRANSFORM_OPTIONS["sg_order"].default
    emsc_order: int = _TRANSFORM_OPTIONS["emsc_order"].default
    als_lambda: float = _TRANSFORM_OPTIONS["als_lambda"].default
    als_p: float = _TRANSFORM_OPTIONS["als_p"].default

    def __post_init__(self):
        if self.targets is not None:
            object.__setattr__(self, "targets", tuple(str(t) for t in self.targets))
        if self.channels is not None:
            object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        if self.transforms is not None:
            object.__setattr__(self, "transforms", normalize_transforms(self.transforms))
        if self.tabular != "default":
            object.__setattr__(self, "tabular", tuple(self.tabular or ()))
        if self.targets is not None and len(self.targets) < 2:
            raise ConfigError(f"--targets takes a mode and a code, e.g. `--targets OVA OK`; got {list(self.targets)}.")
        if self.channels is not None and not self.channels:
            raise ConfigError("--channels needs at least one channel name.")
        if self.n_splits < 2:
            raise ConfigError(f"--n-splits must be at least 2; got {self.n_splits}.")
        if not 0 <= self.current_split < self.n_splits:
            raise ConfigError(
                f"--current-split must be in 0..{self.n_splits - 1} for --n-splits {self.n_splits}; "
                f"got {self.current_split}."
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"--seed must be an integer in 0..{MAX_SEED}; got {self.seed!r}.")
        if self.rare_classes not in RARE_CLASS_POLICIES:
            raise ConfigError(f"--rare-classes must be one of {', '.join(RARE_CLASS_POLICIES)}; "
                              f"got {self.rare_classes!r}.")
        _check_range("--batch-size", self.batch_size, 1, 1 << 24)
        _check_range("--min-samples", self.min_samples, 1, 10**9)
        for name, option in transform_options().items():
            option.check(getattr(self, name, None))
        if self.sg_window < 3 or self.sg_window % 2 == 0 or not 0 < self.sg_order < self.sg_window:
            raise ConfigError(
                f"--sg-window must be odd and >= 3 and --sg-order in 1..window-1; got {self.sg_window}, "
                f"{self.sg_order}."
            )

    @property
    def data_path(self) -> Path:
        return Path(self.data) if self.data else DEMO_DATA


@dataclass(frozen=True)
class ModelConfig:
    """The architecture and its settings; ``None`` keeps the architecture's default.

    ``arch_opts`` holds the options an architecture declares beyond the named fields (``--arch-opt KEY=VALUE``,
    typed and checked against the declaration by the CLI); a named field given there (``width``) is moved to its
    field, so ``--arch-opt width=0.5`` and ``--width 0.5`` are one configuration.
    """

    arch: str = "auto"
    width: float | None = None
    batch_norm: bool | None = None
    block_units: tuple[int, ...] | None = None
    wf: int | None = None
    dropout: float | None = None
    pool_bins: int | None = None
    n_features: int | None = None
    arch_opts: dict = field(default_factory=dict)

    def __post_init__(self):
        _move_named_options(self)
        _check_range("--width", self.width, 0, 64, inclusive_low=False)
        _check_range("--dropout", self.dropout, 0, 0.99)
        if self.block_units is not None:
            units = self.block_units
            if isinstance(units, str):
                try:
                    units = tuple(int(u) for u in units.replace(",", "_").split("_") if u)
                except ValueError:
                    raise ConfigError(
                        f"--block-units expects numbers like 3_4_6_3; got {self.block_units!r}.") from None
            if not units or min(units) < 1:
                raise ConfigError(f"--block-units expects positive numbers like 3_4_6_3; got {self.block_units!r}.")
            object.__setattr__(self, "block_units", tuple(units))

    def arch_kwargs(self) -> dict:
        """The keyword arguments for ``create_model`` (``None`` ones are dropped there)."""
        named = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("arch", "arch_opts")}
        return {**named, **self.arch_opts}


def _move_named_options(model: ModelConfig) -> None:
    """``arch_opts`` keys that are fields go to their field (a different value given both ways is refused)."""
    extra = {str(key).replace("-", "_"): value for key, value in (model.arch_opts or {}).items()}
    named = {f.name for f in dataclasses.fields(model)} - {"arch", "arch_opts"}
    for key in sorted(extra.keys() & named):
        value, current = extra.pop(key), getattr(model, key)
        if current is not None and current != value:
            raise ConfigError(f"--{key.replace('_', '-')} {current} and --arch-opt {key}={value} disagree; give one.")
        object.__setattr__(model, key, value)
    object.__setattr__(model, "arch_opts", extra)


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation, the loop, the outputs and the hardware."""

    eps: float = 0.1
    lr: float | None = None
    weight_decay: float | None = None
    max_epochs: int | None = None
    time_budget: float | None = None
    early_stop_patience: int | None = None
    scheduler_patience: int = 3
    scheduler_cooldown: int = 0
    target_metric: str = "val_f1"
    project: str = "default"
    output_dir: str | None = None
    load_this: str | None = None
    fit: bool = True
    evaluate: bool = True
    baseline: bool = True
    to_onnx: bool = False
    save_test_preds: bool = False
    resume: bool = False
    accelerator: str = "auto"
    devices: str = "auto"
    precision: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    limit_batches: float | None = None
    # losses for imbalanced classes
    loss: str = "ce"
    focal_gamma: float = 2.0
    class_weights: str = "none"
    # experiment tracking
    loggers: tuple[str, ...] | None = ("tensorboard",)
    mlflow_uri: str | None = None
    # fine-tuning (training/finetune.py)
    finetune: bool = False
    freeze_backbone_epochs: int = 0
    unfreeze_lr_factor: float = 1.0
    keep_scaling: bool = False

    def __post_init__(self):
        _check_range("--eps", self.eps, 0.0, 1.0)
        _check_range("--lr", self.lr, 0, 10, inclusive_low=False)
        _check_range("--weight-decay", self.weight_decay, 0, 10)
        _check_range("--max-epochs", self.max_epochs, 1, 10**6)
        _check_range("--time-budget", self.time_budget, 0, 10**7)
        _check_range("--num-nodes", self.num_nodes, 1, 10**5)
        _check_range("--early-stop-patience", self.early_stop_patience, 0, 10**6)
        _check_range("--scheduler-patience", self.scheduler_patience, 0, 10**6)
        _check_range("--scheduler-cooldown", self.scheduler_cooldown, 0, 10**6)
        if not self.project or self.project in (".", "..") or any(c in self.project for c in "/\\\x00"):
            raise ConfigError(f"--project is a name (the outputs go to checkpoints/<project>), not a path; got "
                              f"{self.project!r}; --output-dir takes a path.")
        metric = _METRIC_ALIASES.get(self.target_metric.replace("-", "_"), self.target_metric.replace("-", "_"))
        if metric not in TARGET_METRICS:
            raise ConfigError(f"--target-metric must be one of {list(TARGET_METRICS)}; got {self.target_metric!r}.")
        object.__setattr__(self, "target_metric", metric)
        if not self.fit and not self.load_this:
            raise ConfigError("--no-fit needs a model to evaluate: give --load-this CKPT.")
        # losses
        object.__setattr__(self, "loss", normalize_loss(self.loss))
        _check_range("--focal-gamma", self.focal_gamma, 0.0, 100.0)
        weights = parse_class_weights(self.class_weights)
        object.__setattr__(self, "class_weights", weights if isinstance(weights, str) else
                           ",".join(str(w) for w in weights))
        # experiment tracking
        object.__setattr__(self, "loggers", normalize_loggers(self.loggers))
        _check_finetune(self)
        _check_hardware_names(self)

    @property
    def metric_mode(self) -> str:
        return TARGET_METRICS[self.target_metric]

    @property
    def out_dir(self) -> Path:
        return Path(self.output_dir) if self.output_dir else Path("checkpoints") / self.project


def _check_hardware_names(train: TrainConfig) -> None:
    accelerator = str(train.accelerator).lower()
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"--accelerator must be one of {list(ACCELERATORS)}; got {train.accelerator!r}.")
    object.__setattr__(train, "accelerator", accelerator)
    if str(train.precision) not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS[:7])} (or Lightning's short forms 64, 32, "
                          f"16, bf16); got {train.precision!r}.")
    parse_devices(train.devices)


def _check_finetune(train: TrainConfig) -> None:
    """Fine-tuning flags: --finetune needs --load-this and training; the others need --finetune."""
    _check_range("--freeze-backbone-epochs", train.freeze_backbone_epochs, 0, 10**6)
    _check_range("--unfreeze-lr-factor", train.unfreeze_lr_factor, 0, 1e3, inclusive_low=False)
    if train.finetune and not train.load_this:
        raise ConfigError("--finetune trains from a checkpoint, but no checkpoint was given; add --load-this CKPT "
                          "(a checkpoint written by `spectratorch train`).")
    if train.finetune and not train.fit:
        raise ConfigError("--finetune trains, but --no-fit was given; drop one of them.")
    used = [flag for flag, on in (("--freeze-backbone-epochs", train.freeze_backbone_epochs),
                                  ("--unfreeze-lr-factor", train.unfreeze_lr_factor != 1.0),
                                  ("--keep-scaling", train.keep_scaling)) if on]
    if used and not train.finetune:
        raise ConfigError(f"{', '.join(used)} only apply to a fine-tune; add --finetune --load-this CKPT, or drop "
                          "them.")


@dataclass(frozen=True)
class RunConfig:
    """A whole run: data, model and training settings."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def name_fields(self) -> dict:
        """The fields that make up the model name."""
        return dict(
            arch=self.model.arch,
            targets=self.data.targets,
            channels=self.data.channels,
            transforms=self.data.transforms,
            # reason: a model trained without test rows (the model to ship) is not fold 0 of a cv into the same folder.
            current_split="all" if self.data.test_source == "none" else self.data.current_split,
            n_splits=self.data.n_splits,
            seed=self.data.seed,
            eps=self.train.eps,
        )

    def to_dict(self) -> dict:
        return {"data": dataclasses.asdict(self.data), "model": dataclasses.asdict(self.model),
                "train": dataclasses.asdict(self.train)}

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        return cls(DataConfig(**values["data"]), ModelConfig(**values["model"]), TrainConfig(**values["train"]))
