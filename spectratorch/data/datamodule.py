"""The LightningDataModule: the table in memory, batches by index gather, train-only transforms on the device.

Data flow: file -> :class:`SpectralTable` -> :class:`Target` -> :class:`Split` -> index batches -> one gather per
batch (no per-sample ``__getitem__``, no collate) -> transfer -> ``da`` and ``mixup`` on the device
(``on_after_batch_transfer``). On a CUDA GPU with room for it (:func:`fits_on_device`) the table is copied there
once and the gather runs on the GPU, so nothing is gathered or transferred on the host between two steps. The
per-feature min-max scaling lives in the model's first layer (:class:`~spectratorch.models.preprocess.Preprocess`),
fitted on :meth:`SpectralDataModule.train_arrays`.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from spectratorch.config import DataConfig, RunConfig
from spectratorch.contract import label_remap
from spectratorch.data.demo import ensure_demo_data
from spectratorch.data.resolve import resolve_data_defaults
from spectratorch.data.schema import RowFilter, SpectralTable, load_table
from spectratorch.data.splits import TEST_MODES, Split, check_groups, make_split, suspected_groups
from spectratorch.data.targets import Target, handle_rare_classes, labelled_rows, resolve_target
from spectratorch.data.transforms import one_hot
from spectratorch.defaults import auto_batch_size
from spectratorch.errors import ConfigError, TargetError
from spectratorch.transforms import TRANSFORM_TABLE, default_transforms, transform_function

__all__ = ["SpectralDataModule", "IndexBatchSampler", "StageArrays"]

_logger = logging.getLogger(__name__)


class IndexBatchSampler(Sampler):
    """Yields int64 index tensors, one per batch; shuffled per epoch from ``(seed, epoch)``; sharded per rank.

    Every rank gets the same number of batches (the shuffled indices are cut to a multiple of the world size), so
    distributed training never waits on a rank with one batch less. ``epoch_source`` (the trainer's current epoch)
    wins over ``set_epoch``: Lightning hands a run resumed from an end-of-epoch checkpoint the previous epoch.
    With a ``device``, an epoch's indices are moved there in one copy (the shuffle is drawn on the CPU as without one),
    for a table that lives on that device.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1, epoch_source: Callable[[], int] | None = None,
                 device: torch.device | None = None):
        self.indices = torch.as_tensor(indices, dtype=torch.int64)
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.epoch_source = epoch_source
        self.device = device

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _shard(self) -> torch.Tensor:
        indices = self.indices
        if self.shuffle:
            epoch = self.epoch_source() if self.epoch_source is not None else self.epoch
            generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            indices = indices[torch.randperm(len(indices), generator=generator)]
        if self.world_size > 1:
            usable = len(indices) - len(indices) % self.world_size
            indices = indices[self.rank : usable : self.world_size]
        return indices

    def __iter__(self):
        indices = self._shard()
        if self.device is not None:
            indices = indices.to(self.device)
        batches = indices.split(self.batch_size)
        if self.drop_last and len(batches) > 1 and len(batches[-1]) < self.batch_size:
            batches = batches[:-1]
        return iter(batches)

    def __len__(self) -> int:
        n = len(self.indices) // self.world_size if self.world_size > 1 else len(self.indices)
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest and not (self.drop_last and full) else 0)


class _GatherDataset(Dataset):
    """``dataset[index_tensor]`` is a whole batch, gathered in one ``index_select`` per tensor."""

    def __init__(self, spectra: torch.Tensor, tabular: torch.Tensor, y: torch.Tensor):
        self.spectra, self.tabular, self.y = spectra, tabular, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "spectra": self.spectra.index_select(0, index),
            "tabular": self.tabular.index_select(0, index),
            "y": self.y.index_select(0, index),
        }

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.spectra, self.tabular, self.y))

    def to(self, device: torch.device) -> _GatherDataset:
        return _GatherDataset(self.spectra.to(device), self.tabular.to(device), self.y.to(device))


# reason: a table of at most this share of a GPU's free memory is copied there once, so that every batch is one
# index_select on the device: no gather, pinning or transfer on the host between two steps (the data wait of
# bench_train.py's GPU run). The lab's 300,000 samples x 3 x 446 points are 1.6 GB; the rest is left to the model.
DEVICE_TABLE_SHARE = 0.25


def fits_on_device(nbytes: int, free_bytes: int) -> bool:
    """Whether a table of ``nbytes`` is copied to a GPU with ``free_bytes`` free (:data:`DEVICE_TABLE_SHARE`).

    Example:
        >>> fits_on_device(1_600_000_000, 80_000_000_000), fits_on_device(1_600_000_000, 4_000_000_000)
        (True, False)
    """
    return nbytes <= DEVICE_TABLE_SHARE * free_bytes


@dataclass(frozen=True, eq=False)
class _Source:
    table: SpectralTable
    target: Target
    dataset: _GatherDataset
    placed: dict[str, _GatherDataset] = dataclasses.field(default_factory=dict)

    def on(self, device: torch.device) -> _GatherDataset:
        """The dataset copied to ``device`` (once, then kept)."""
        key = str(device)
        if key not in self.placed:
            self.placed[key] = self.dataset.to(device)
            _logger.debug("table of %d rows (%.2f GB) copied to %s", len(self.dataset), self.dataset.nbytes / 1e9,
                          key)
        return self.placed[key]


@dataclass(frozen=True, eq=False)
class StageArrays:
    """The rows of one stage, in the order its loader (unshuffled) yields them.

    Attributes:
        spectra: raw float32 ``[N, C, L]`` (CPU).
        tabular: raw float32 ``[N, T]`` (CPU).
        y: int64 classes ``[N]`` (CPU), in the order of the data module's labels.
        full_truth: ``[N]`` the finest label of each row.
        ids: ``[N]`` the row ids.
        rows: ``[N]`` the rows' indices in the stage's table (the training file, or the test file).
    """

    spectra: torch.Tensor
    tabular: torch.Tensor
    y: torch.Tensor
    full_truth: np.ndarray
    ids: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


class SpectralDataModule(pl.LightningDataModule):
    """Spectra and tabular values in memory, split, batched, augmented on the device.

    Keywords are those of :class:`~spectratorch.config.DataConfig` (the CLI flags, hyphens as underscores). A target
    or channels left ``None`` follow the data (:func:`~spectratorch.data.resolve.resolve_data_defaults`); once
    :meth:`prepare` has run, :attr:`config` holds what was chosen.

    Example:
        >>> from spectratorch.data.synthetic import make_dataset
        >>> df = make_dataset(600, seed=0)
        >>> dm = SpectralDataModule(data=df, targets=("OVA", "OK"), channels=("277", "380"), batch_size=64)
        >>> dm.prepare()
        >>> dm.n_channels, dm.length, dm.labels
        (2, 446, ('The rest', 'OK'))
    """

    def __init__(self, config: DataConfig | None = None, *, data=None, **kwargs):
        super().__init__()
        if config is None:
            config = DataConfig(data=None if data is None or not isinstance(data, (str, Path)) else str(data), **kwargs)
        elif kwargs:
            config = dataclasses.replace(config, **kwargs)
        self.config = config
        self._frame = data if data is not None and not isinstance(data, (str, Path)) else None
        # reason: a checkpoint's data module (export, report) takes the model's points from a wider file, as predict
        # does; set by training.restore.datamodule_from_hparams.
        self.model_axis: np.ndarray | None = None
        self.model_ranges: dict | None = None
        self._fit: _Source | None = None
        self._test: _Source | None = None
        self.split: Split | None = None
        # reason: the sample of every row of the table (``--groups``), whose rows stay in one fold; None: no groups.
        self.groups: np.ndarray | None = None

    # ---- loading -------------------------------------------------------------------------------------------
    def _filters(self) -> RowFilter:
        c = self.config
        return RowFilter(c.drop_oob, c.transmittance_min, c.transmittance_max, c.date_from, c.date_to)

    def _load(self, source, expected_axis=None, expected_ranges=None) -> SpectralTable:
        if source is None:
            source = ensure_demo_data(self.config.data_path)
        channels = "default" if self.config.channels is None else self.config.channels
        return load_table(source, channels, self.config.tabular, self._filters(), expected_axis,
                          model_axis=self.model_axis, expected_ranges=expected_ranges or self.model_ranges)

    def prepare(self, say_split: bool = True) -> None:
        """Load the table, resolve the target and split it (idempotent; called by ``setup``); ``say_split``: log the
        split's sizes."""
        if self._fit is not None:
            return
        table = self._load(self._frame if self._frame is not None else self.config.data)
        self.config = c = resolve_data_defaults(self.config, table)
        table = _labelled(table, c.targets, "")
        target = resolve_target(table.meta, c.targets)
        target, keep = handle_rare_classes(target, c.n_splits, c.rare_classes, c.min_samples)
        if not keep.all():
            table = table.subset(keep)
        external = c.test_source not in TEST_MODES
        self.groups = _groups(table, c.groups)
        if self.groups is not None:
            check_groups(target.y, self.groups, c.n_splits, "folds", target.labels)
        else:
            for column in suspected_groups(table.meta, target.y, c.n_splits, exclude=c.targets)[:1]:
                sizes = table.meta[column].value_counts()
                rows = f"{sizes.min()}" if sizes.min() == sizes.max() else f"{sizes.min()} to {sizes.max()}"
                _logger.warning("column %r holds %d values of %s rows each, each value of one class: if they name "
                                "samples scanned more than once, a sample's scans land in both training and test "
                                "folds and flatter the accuracy; --groups %s keeps each sample in one fold", column,
                                len(sizes), rows, shlex.quote(column))
        self.split = make_split(target.y, target.full_truth, c.n_splits, c.current_split, c.seed,
                                "external" if external else c.test_source, self.groups)
        self._fit = self._source(table, target)
        self._test = self._fit
        if external:
            test_table = _labelled(self._load(c.test_source, table.axis, table.describe()["channel_ranges"]), c.targets,
                                   " of the test file")
            if test_table.tabular_columns != table.tabular_columns:
                raise TargetError(f"the test file's tabular columns {test_table.tabular_columns} differ from "
                                  f"{table.tabular_columns}.")
            self._test = self._source(test_table, self._align_target(resolve_target(test_table.meta, c.targets),
                                                                     target.labels))
        if say_split:
            _logger.info("split %s: %s", c.current_split, self.split.sizes())

    def with_data_defaults(self, config: RunConfig, for_folds: bool = False) -> RunConfig:
        """``config`` with the target and channels it left unset taken from this data (loads it if needed).

        ``for_folds``: the data is read for several folds to come (``cv``), each of which says its own split; this
        one is not said.
        """
        self.prepare(say_split=not for_folds)
        if config.data.targets is not None and config.data.channels is not None:
            return config
        data = dataclasses.replace(config.data, targets=self.config.targets, channels=self.config.channels)
        return dataclasses.replace(config, data=data)

    @staticmethod
    def _align_target(target: Target, labels: tuple[str, ...]) -> Target:
        remap = label_remap(labels, target.labels, names=("training data", "test file"), error=TargetError)
        return Target(remap[target.y], labels, target.full_truth, target.code)

    @staticmethod
    def _source(table: SpectralTable, target: Target) -> _Source:
        # reason: pandas (copy-on-write) may hand out read-only arrays; torch wants writable ones (copied only then).
        tensors = [torch.from_numpy(np.require(a, requirements=["C", "W"])) for a in (table.spectra, table.tabular,
                                                                                   target.y)]
        dataset = _GatherDataset(*tensors)
        return _Source(table, target, dataset)

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    # ---- description ---------------------------------------------------------------------------------------
    @property
    def table(self) -> SpectralTable:
        self.prepare()
        return self._fit.table

    @property
    def target(self) -> Target:
        self.prepare()
        return self._fit.target

    @property
    def labels(self) -> tuple[str, ...]:
        return self.target.labels

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def n_channels(self) -> int:
        return self.table.spectra.shape[1]

    @property
    def length(self) -> int:
        return self.table.spectra.shape[2]

    @property
    def n_tabular(self) -> int:
        return self.table.tabular.shape[1]

    def _stage_rows(self, stage: str) -> tuple[_Source, np.ndarray]:
        """The source and row indices of ``train``, ``val`` or ``test``."""
        self.prepare()
        if stage not in ("train", "val", "test"):
            raise ValueError(f"stage must be 'train', 'val' or 'test'; got {stage!r}.")
        if stage == "test":
            if self._test is not self._fit:
                return self._test, np.arange(len(self._test.target.y))
            return self._fit, self.split.test
        return self._fit, getattr(self.split, stage)

    def stage_arrays(self, stage: str, rows: np.ndarray | None = None) -> StageArrays:
        """The rows of ``train``, ``val`` or ``test``: what that stage's loader yields, gathered in one piece.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            rows: indices into the stage's table to take instead of the stage's own rows (e.g. the training and
                validation folds together); default: the stage's rows.

        Returns:
            :class:`StageArrays` (tensors share memory with the table where no gather is needed; do not write).

        Example:
            >>> from spectratorch.data.synthetic import make_dataset
            >>> dm = SpectralDataModule(data=make_dataset(600, seed=0), targets=("OVA", "OK"), channels=("277",))
            >>> val = dm.stage_arrays("val")
            >>> val.spectra.shape == (len(dm.split.val), 1, dm.length), len(val) == len(dm.split.val)
            (True, True)
        """
        source, own = self._stage_rows(stage)
        rows = np.asarray(own if rows is None else rows, dtype=np.int64)
        index = torch.as_tensor(rows)
        data = source.dataset
        return StageArrays(data.spectra.index_select(0, index), data.tabular.index_select(0, index),
                           data.y.index_select(0, index), np.asarray(source.target.full_truth)[rows],
                           np.asarray(source.table.ids)[rows], rows)

    def fit_groups(self) -> np.ndarray | None:
        """The sample (``--groups``) of each training row, then of each validation row (the order of
        ``stage_arrays("train")`` followed by ``stage_arrays("val")``), or ``None`` without ``--groups``."""
        if self.groups is None:
            return None
        return self.groups[np.concatenate([self.split.train, self.split.val])]

    def class_counts(self) -> dict[str, dict[str, int]]:
        """Members per class in each split."""
        counts = {}
        for stage in ("train", "val", "test"):
            source, rows = self._stage_rows(stage)
            bins = np.bincount(source.target.y[rows], minlength=self.n_classes)
            counts[stage] = {label: int(n) for label, n in zip(self.labels, bins)}
        return counts

    def train_arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw training spectra ``[N, C, L]`` and tabular values ``[N, T]``, to fit the preprocessing on."""
        train = self.stage_arrays("train")
        return train.spectra, train.tabular

    def train_labels(self) -> torch.Tensor:
        """Classes ``[N]`` of the training rows, in the order of :meth:`train_arrays`."""
        return self.stage_arrays("train").y

    # ---- loaders -------------------------------------------------------------------------------------------
    def _rank(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _epoch(self) -> int:
        # reason: epochs processed so far is the index of the epoch about to run, also when the iterator is made
        # while Lightning restores a run (its current_epoch still says the previous epoch then).
        trainer = getattr(self, "trainer", None)
        return trainer.fit_loop.epoch_progress.current.processed if trainer is not None else 0

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        source, rows = self._stage_rows(stage)
        rank, world = self._rank() if stage == "train" else (0, 1)
        batch_size = self.config.batch_size or auto_batch_size(len(self.split.train))
        drop_last = shuffle and len(rows) > batch_size
        device = self._table_device(source)
        sampler = IndexBatchSampler(rows, batch_size, shuffle, self.config.seed, drop_last, rank, world,
                                    epoch_source=self._epoch if shuffle and getattr(self, "trainer", None) else None,
                                    device=device)
        dataset = source.dataset if device is None else source.on(device)
        # reason: an own generator, so making the iterator draws nothing from the global RNG (resumed runs make it
        # at another moment than uninterrupted ones, and would otherwise draw different augmentations).
        return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=0,
                          pin_memory=device is None and torch.cuda.is_available(),
                          generator=torch.Generator().manual_seed(0))

    def _table_device(self, source: _Source) -> torch.device | None:
        """The trainer's CUDA device when the source's table fits there (:func:`fits_on_device`), else ``None``."""
        trainer = getattr(self, "trainer", None)
        device = trainer.strategy.root_device if trainer is not None else None
        if device is None or device.type != "cuda":
            return None
        if str(device) in source.placed:
            return device
        free, _ = torch.cuda.mem_get_info(device)
        return device if fits_on_device(source.dataset.nbytes, free) else None

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ---- train-only transforms, on the device --------------------------------------------------------------
    def train_transform(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Apply the train-only transforms (``da``, ``mixup``..., in the order given) to a training batch; add soft
        ``target`` ``[B, K]``."""
        spectra, tabular = batch["spectra"], batch["tabular"]
        target = one_hot(batch["y"], self.n_classes).to(spectra.dtype)
        transforms = self.config.transforms
        for name in default_transforms(self.config.channels) if transforms is None else transforms:
            entry = TRANSFORM_TABLE[name]
            if entry.stage == "data":
                spectra, tabular, target = transform_function(entry.function)(self.config, spectra, tabular, target)
        return {**batch, "spectra": spectra, "tabular": tabular, "target": target}

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training:
            return self.train_transform(batch)
        return batch


def _groups(table: SpectralTable, column: str | None) -> np.ndarray | None:
    """The ``--groups`` column's value of every row, as text; ``None`` without ``--groups``.

    Raises:
        ConfigError: the column is not in the data, or a row has no value in it.
    """
    if column is None:
        return None
    if column not in table.meta.columns:
        others = [str(c) for c in table.meta.columns]
        raise ConfigError(f"--groups {column!r}: the data has no such column; its columns besides the spectra: "
                          f"{others[:10]}{' ...' if len(others) > 10 else ''}.")
    values = table.meta[column]
    if values.isna().any():
        raise ConfigError(f"--groups {column!r}: {int(values.isna().sum())} rows have no value in it (e.g. ids "
                          f"{table.ids[values.isna().to_numpy()][:5].tolist()}); every row needs its sample.")
    return values.astype(str).to_numpy()


def _labelled(table: SpectralTable, targets, where: str) -> SpectralTable:
    """``table`` without the rows that have no value in the target's label column (samples not labelled yet),
    said in one warning."""
    keep = labelled_rows(table.meta, targets)
    if keep.all():
        return table
    # reason: as rows with NaN spectra: reported and left out, never guessed; the label column is the target's.
    _logger.warning("%d rows%s have no value in the label column %r; they are left out (e.g. ids %s)",
                    int((~keep).sum()), where, targets[1], table.ids[~keep][:5].tolist())
    return table.subset(keep)
