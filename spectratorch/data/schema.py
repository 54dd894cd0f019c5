"""The dataset schema and the one in-memory form of a dataset, :class:`SpectralTable`.

A dataset is a DataFrame with one row per sample and a unique index (the sample id). Spectral columns are named
``<channel>_<x>``: the channel is a name without ``_`` (``277``, ``lspr``, ``nir`` ...), ``x`` a number; a channel's
columns sorted by ``x`` are its spectrum. A table with no such column whose spectral columns are bare numbers
(``1100``, ``1100.5``: a wavelength or wavenumber axis, in any order), as instruments and chemometrics tools export
them, is read as one channel named ``spectrum``. Selected channels are placed on the union of their axes, zero outside
a channel's own range. Every other column is a label, a tabular feature or metadata.

numpy/pandas only: no torch, so the torch-free inference path shares this module.
"""

from __future__ import annotations

import logging
import mmap
import re
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from spectratorch.contract import axis_tolerance, describe_axis, same_axis
from spectratorch.errors import SchemaError

__all__ = [
    "SkippedRows",
    "SPECTRAL_COLUMN",
    "BARE_NUMBER",
    "PLAIN_CHANNEL",
    "LAB_DEFAULT_CHANNELS",
    "DEFAULT_TABULAR",
    "OOB_COLUMN",
    "DATE_COLUMN",
    "RowFilter",
    "SpectralTable",
    "spectral_columns",
    "is_plain_layout",
    "apply_filters",
    "load_table",
]

_logger = logging.getLogger(__name__)

SPECTRAL_COLUMN = re.compile(r"^(?P<channel>[^_]+)_(?P<x>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)$")
# reason: how instruments and tools write a bare axis value: R's read.csv prefixes an X to a name that starts with a
# digit (X900.5), and some exports add the unit (900 nm, 4000 cm-1, 2.5 µm).
BARE_NUMBER = re.compile(r"^\s*X?(?P<x>[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)\s*"
                         r"((?i:nm|cm-1|cm\^-1|cm⁻¹|1/cm|µm|um))?\s*$")
PLAIN_CHANNEL = "spectrum"
"""The channel name of a plain table's bare-number columns."""
# reason: the lab's recipe was tuned on these three fluorescence channels; `--channels` defaults to them on data that
# has them all, and to every channel of the data otherwise.
LAB_DEFAULT_CHANNELS = ("277", "380", "425")
DEFAULT_TABULAR = "greffon_transmittance"
OOB_COLUMN = "integration_oob"
DATE_COLUMN = "mesure_date"
_CHUNK_ROWS = 32768


@dataclass(frozen=True)
class RowFilter:
    """Row filters the lab uses, applied before anything else.

    Attributes:
        drop_oob: drop rows whose ``integration_oob`` is 1 (when the column exists).
        transmittance_min: keep rows with transmittance >= this value.
        transmittance_max: keep rows with transmittance <= this value.
        date_from: keep rows measured on or after this date (``YYYY-MM-DD``).
        date_to: keep rows measured on or before this date (inclusive, whole day).
        transmittance_column: the column the transmittance cutoffs read.
        date_column: the column the date range reads.
    """

    drop_oob: bool = True
    transmittance_min: float | None = None
    transmittance_max: float | None = None
    date_from: str | None = None
    date_to: str | None = None
    transmittance_column: str = DEFAULT_TABULAR
    date_column: str = DATE_COLUMN


@dataclass(frozen=True, eq=False)
class SkippedRows:
    """The rows of a source that a table left out, in the source's order: their ``positions`` in it (from 0), their
    ``ids`` and the ``reasons`` (a filter's name, or ``non_finite`` for NaN or inf). Kept by ``predict`` in
    ``frame.attrs``, which pandas deep-copies at every operation on the frame: this one is never copied (it does not
    change)."""

    positions: np.ndarray
    ids: np.ndarray
    reasons: np.ndarray

    def __len__(self) -> int:
        return len(self.positions)

    def __deepcopy__(self, memo) -> SkippedRows:
        return self

    @classmethod
    def of(cls, positions: np.ndarray, ids: np.ndarray, reasons: np.ndarray) -> SkippedRows:
        """The rows given in any order, sorted by position.

        Example:
            >>> rows = SkippedRows.of(np.array([4, 1]), np.array(["s4", "s1"]), np.array(["non_finite", "oob"]))
            >>> rows.positions.tolist(), rows.ids.tolist(), rows.reasons.tolist()
            ([1, 4], ['s1', 's4'], ['oob', 'non_finite'])
        """
        order = np.argsort(positions, kind="stable")
        return cls(np.asarray(positions, dtype=np.int64)[order], np.asarray(ids, dtype=object)[order],
                   np.asarray(reasons, dtype=object)[order])


@dataclass(frozen=True, eq=False)
class SpectralTable:
    """A dataset in memory: spectra on a common axis, tabular features, ids and label columns.

    Attributes:
        spectra: float32 ``[N, C, L]``, zero outside each channel's own range.
        tabular: float32 ``[N, T]``.
        ids: the sample ids ``[N]``.
        meta: the label and metadata columns (everything neither spectral nor tabular), ``N`` rows, index = ids.
        channels: the channel names, in the order asked for.
        axis: float64 ``[L]``, the union of the channels' x values, sorted.
        tabular_columns: the names of the ``T`` tabular features.
        channel_ranges: each channel's own ``(min x, max x)``.
        report: how many rows each filter or check removed.
        skipped: the source's rows left out (by a filter, or for NaN or inf); ``None`` for a table not read from a
            source.
    """

    spectra: np.ndarray
    tabular: np.ndarray
    ids: np.ndarray
    meta: pd.DataFrame
    channels: tuple[str, ...]
    axis: np.ndarray
    tabular_columns: tuple[str, ...]
    channel_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    report: dict[str, int] = field(default_factory=dict)
    skipped: SkippedRows | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: np.ndarray) -> "SpectralTable":
        """Return the rows ``index`` (an integer array or a boolean mask) as a new table."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        return SpectralTable(
            spectra=self.spectra[index],
            tabular=self.tabular[index],
            ids=self.ids[index],
            meta=self.meta.iloc[index],
            channels=self.channels,
            axis=self.axis,
            tabular_columns=self.tabular_columns,
            channel_ranges=self.channel_ranges,
            report=dict(self.report),
            skipped=self.skipped,
        )

    def describe(self) -> dict:
        """The description a model needs to check its inputs: channels, axis, tabular columns, each channel's range."""
        return {
            "channels": list(self.channels),
            "axis": [float(x) for x in self.axis],
            "tabular_columns": list(self.tabular_columns),
            "channel_ranges": {str(c): [float(low), float(high)] for c, (low, high) in self.channel_ranges.items()},
        }


def spectral_columns(columns: Sequence) -> dict[str, list[tuple[float, str]]]:
    """Group spectral column names by channel, each list sorted by x.

    Columns named ``<channel>_<x>`` form their channels. When there is none, bare-number columns (``1100``,
    ``"1100.5"``, ascending or descending; R's ``X1100.5`` and a unit such as ``1100 nm`` or ``4000 cm-1`` too) form
    one channel, :data:`PLAIN_CHANNEL`.

    Args:
        columns: column names; the others are ignored.

    Returns:
        ``{channel: [(x, column), ...]}`` in the order channels first appear.

    Example:
        >>> spectral_columns(["277_300", "277_299", "greffon_transmittance", "lspr_450.5"])
        {'277': [(299.0, '277_299'), (300.0, '277_300')], 'lspr': [(450.5, 'lspr_450.5')]}
        >>> spectral_columns(["label", "1100.5", "1100", 1099])
        {'spectrum': [(1099.0, 1099), (1100.0, '1100'), (1100.5, '1100.5')]}
        >>> spectral_columns(["X900", "X900.5", "label"])
        {'spectrum': [(900.0, 'X900'), (900.5, 'X900.5')]}
        >>> spectral_columns(["4000 cm-1", "3998 cm-1"])
        {'spectrum': [(3998.0, '3998 cm-1'), (4000.0, '4000 cm-1')]}
    """
    groups: dict[str, list[tuple[float, str]]] = {}
    for column in columns:
        match = SPECTRAL_COLUMN.match(str(column))
        if match:
            groups.setdefault(match["channel"], []).append((float(match["x"]), column))
    if not groups:
        plain = [(float(match["x"]), column) for column in columns
                 if not isinstance(column, bool) and (match := BARE_NUMBER.match(str(column)))]
        if plain:
            groups[PLAIN_CHANNEL] = plain
    for items in groups.values():
        items.sort(key=lambda item: item[0])
    return groups


def is_plain_layout(columns: Sequence) -> bool:
    """Whether the spectral columns are bare numbers (one channel, :data:`PLAIN_CHANNEL`) rather than
    ``<channel>_<x>``.

    Example:
        >>> is_plain_layout(["label", "1100", "1102"]), is_plain_layout(["nir_1100", "label"])
        (True, False)
    """
    return not any(SPECTRAL_COLUMN.match(str(c)) for c in columns) and any(
        not isinstance(c, bool) and BARE_NUMBER.match(str(c)) for c in columns)


def apply_filters(df: pd.DataFrame, filters: RowFilter) -> tuple[pd.DataFrame, dict[str, int]]:
    """Apply the lab's row filters.

    Args:
        df: the dataset.
        filters: which filters to apply.

    Returns:
        The kept rows and ``{filter name: rows removed}``.

    Raises:
        SchemaError: a filter names a column the data does not have, or a date that cannot be read.
    """
    reasons, report = _filter_reasons(df, filters)
    keep = reasons == ""
    return (df if keep.all() else df.loc[keep]), report


def _filter_reasons(df: pd.DataFrame, filters: RowFilter) -> tuple[np.ndarray, dict[str, int]]:
    """The name of the filter that removes each row (``""``: kept), and ``{filter name: rows removed}``."""
    reasons = np.full(len(df), "", dtype=object)
    report: dict[str, int] = {}

    def _remove(name: str, drop: np.ndarray) -> None:
        drop = drop & (reasons == "")
        report[name] = int(drop.sum())
        reasons[drop] = name

    if filters.drop_oob and OOB_COLUMN in df.columns:
        _remove("integration_oob", df[OOB_COLUMN].fillna(0).to_numpy().astype(float) == 1)
    if filters.transmittance_min is not None or filters.transmittance_max is not None:
        values = _require_column(df, filters.transmittance_column, "--transmittance-min/--transmittance-max")
        values = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        if filters.transmittance_min is not None:
            _remove("transmittance_min", ~(values >= filters.transmittance_min))
        if filters.transmittance_max is not None:
            _remove("transmittance_max", ~(values <= filters.transmittance_max))
    if filters.date_from is not None or filters.date_to is not None:
        dates = pd.to_datetime(_require_column(df, filters.date_column, "--date-from/--date-to"), errors="coerce")
        if getattr(dates.dt, "tz", None) is not None:
            dates = dates.dt.tz_localize(None)
        if filters.date_from is not None:
            _remove("date_from", ~(dates >= _parse_date(filters.date_from, "--date-from")).to_numpy())
        if filters.date_to is not None:
            end = _parse_date(filters.date_to, "--date-to") + pd.Timedelta(days=1)
            _remove("date_to", ~(dates < end).to_numpy())
    for name, count in report.items():
        if count:
            _logger.info("filter %s removed %d rows", name, count)
    return reasons, report


def _require_column(df: pd.DataFrame, column: str, option: str) -> pd.Series:
    if column not in df.columns:
        raise SchemaError(f"{option} reads column {column!r}, which the data does not have.")
    return df[column]


def _parse_date(value: str, option: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(value).tz_localize(None)
    except (ValueError, TypeError):
        raise SchemaError(f"{option} expects a date like 2024-03-31; got {value!r}.") from None


def _check_ids(df: pd.DataFrame) -> None:
    duplicated = df.index.duplicated()
    if duplicated.any():
        examples = list(dict.fromkeys(df.index[duplicated]))[:5]
        raise SchemaError(
            f"the sample ids (the DataFrame index) must be unique; {int(duplicated.sum())} are repeated, e.g. "
            f"{examples}. Give every row an id of its own (replicate scans of one sample too), e.g. by resetting the "
            "index; a column of sample names then lets --groups keep a sample's scans in one fold."
        )


def runs_like_axis(values: pd.Index | pd.Series) -> bool:
    """Whether a first column (or the index read from it) looks like the points of a spectral axis: at least 10
    distinct numbers in order, none missing (one spectrum per column: an instrument's export of several samples side
    by side). Rows numbered by the reader or by pandas (a ``RangeIndex``) are no column of the file.

    Example:
        >>> runs_like_axis(pd.Series(np.linspace(900, 1700, 12))), runs_like_axis(pd.RangeIndex(12))
        (True, False)
    """
    # reason: fewer rows are in order by chance too often.
    numeric = len(values) >= 10 and pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return (numeric and not isinstance(values, pd.RangeIndex) and not values.isna().any() and values.is_unique
            and (values.is_monotonic_increasing or values.is_monotonic_decreasing))


def _transposed_hint(index: pd.Index) -> str:
    """A hint when the rows look like the points of a spectral axis (:func:`runs_like_axis`)."""
    if not runs_like_axis(index):
        return ""
    return (f" Its first column runs from {index[0]:g} to {index[-1]:g} over {len(index)} rows, like a spectral axis: "
            "if each column is one sample, transpose the table (one spectrum per row), e.g. in pandas "
            "`pd.read_csv(path, index_col=0).T.to_csv(new_path)`.")


def _select_channels(df: pd.DataFrame, groups: dict, channels: Sequence[str] | str | None) -> tuple[str, ...]:
    if not groups:
        shown = ", ".join(repr(str(c)) for c in list(df.columns)[:5]) + (", ..." if df.shape[1] > 5 else "")
        raise SchemaError(
            "no spectral column: expected column names that are numbers (one channel: '1100', '1100.5', ...) or "
            f"<channel>_<x> ('nir_1100', '277_295', ...); the first columns are {shown or '(none)'}"
            + ("" if shown.endswith("...") else ".") + _transposed_hint(df.index)
        )
    if isinstance(channels, str) and channels == "default":
        return LAB_DEFAULT_CHANNELS if set(LAB_DEFAULT_CHANNELS) <= set(groups) else tuple(groups)
    if channels is None:
        return tuple(groups)
    channels = tuple(str(c) for c in channels)
    missing = [c for c in channels if c not in groups]
    if missing:
        raise SchemaError(f"unknown channel(s) {missing}; the data has channels {list(groups)}.")
    if len(set(channels)) != len(channels):
        raise SchemaError(f"channels must not repeat; got {list(channels)}.")
    return channels


# reason: a channel name goes into the stem of every file a run writes; a separator or a control character there
# would write outside the output folder or garble a file name.
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def _check_channels(groups: dict, channels: tuple[str, ...], axis: np.ndarray) -> None:
    """Channel names fit in a file name; no x appears twice in a channel; no point inside a channel is missing."""
    for channel in channels:
        items = groups[channel]
        if _UNSAFE_NAME.search(channel) or channel in (".", ".."):
            raise SchemaError(
                f"column {items[0][1]!r}: the channel name {channel!r} holds a path separator or a control character; "
                "channel names become part of file names. Rename the columns."
            )
        xs = np.array([x for x, _ in items])
        repeated = np.flatnonzero(np.diff(xs) == 0)
        if len(repeated):
            i = repeated[0]
            raise SchemaError(
                f"columns {items[i][1]!r} and {items[i + 1][1]!r} are the same point ({xs[i]:g}) of channel "
                f"{channel!r}; keep one of them."
            )
        # reason: the spectra live on the union of the channels' axes, zeros where a channel has no column; inside
        # a channel's own range such a zero is a made-up value, so a point another channel has and this one lacks is
        # refused (outside its range, as for a shorter LSPR channel, zeros stay the documented padding).
        inside = axis[(axis > xs[0]) & (axis < xs[-1])]
        lacking = np.setdiff1d(inside, xs)
        if len(lacking):
            i = int(np.searchsorted(xs, lacking[0])) - 1
            raise SchemaError(
                f"channel {channel!r} has no column at {lacking[0]:g} between {items[i][1]!r} and {items[i + 1][1]!r} "
                f"({len(lacking)} such points), which another channel has; they would be read as zeros. Add the "
                "columns, or interpolate the channel onto the common axis before loading."
            )


def _resolve_tabular(df: pd.DataFrame, tabular: Sequence[str] | str | None) -> tuple[str, ...]:
    if tabular == "default":
        return (DEFAULT_TABULAR,) if DEFAULT_TABULAR in df.columns else ()
    columns = tuple(tabular or ())
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"unknown tabular column(s) {missing}; the data has columns {_non_spectral(df)[:30]}.")
    for column in columns:
        if not pd.api.types.is_numeric_dtype(df[column]) or pd.api.types.is_bool_dtype(df[column]):
            raise SchemaError(f"tabular column {column!r} must be numeric; found dtype {df[column].dtype}.")
    return columns


def _non_spectral(df: pd.DataFrame) -> list[str]:
    spectral = {name for items in spectral_columns(df.columns).values() for _, name in items}
    return [c for c in df.columns if c not in spectral]


def _union_axis(groups: dict, channels: tuple[str, ...]) -> np.ndarray:
    return np.unique(np.concatenate([[x for x, _ in groups[c]] for c in channels]))


def _fill_spectra(df: pd.DataFrame, groups: dict, channels: tuple[str, ...], axis: np.ndarray,
                  release: Callable[[], None] | None = None) -> np.ndarray:
    """The ``[N, C, L]`` float32 spectra, copied out of ``df`` a block of rows at a time; ``release`` after each."""
    spectra = _zeros((len(df), len(channels), len(axis)))
    for c, channel in enumerate(channels):
        xs = np.array([x for x, _ in groups[channel]])
        pos = np.searchsorted(axis, xs)
        columns = [name for _, name in groups[channel]]
        # reason: a contiguous block is a slice assignment, no fancy-index temporaries.
        target = slice(pos[0], pos[-1] + 1) if pos[-1] - pos[0] + 1 == len(pos) else pos
        source = _float32_view(df, columns)
        for start in range(0, len(df), _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, len(df))
            if source is not None:
                # reason: straight from the frame's memory (or the file's mapping) into the table, transposed by
                # numpy on the way: no temporary.
                spectra[start:stop, c, target] = source[start:stop]
            else:
                spectra[start:stop, c, target] = _to_float32(df.iloc[start:stop][columns], channel)
            if release is not None:
                release()
    return spectra


def _zeros(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 array of zeros, its pages allocated up front in plain 4 KiB pages where the system allows.

    Faulting in 1.5 GB one page at a time on first write took 0.8 to 2.7 s on our VM, and numpy's default (it asks for
    transparent huge pages on large arrays) 0.2 to 2.3 s, stalls of memory compaction included; an anonymous mapping
    populated in one call took 0.51 to 0.57 s. The system zero-fills it; it is freed with the array.
    """
    size = int(np.prod(shape)) * 4
    if size < 2**26:
        return np.zeros(shape, dtype=np.float32)
    flags = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0) | getattr(mmap, "MAP_POPULATE", 0)
    mapping = mmap.mmap(-1, size, flags=flags) if flags else mmap.mmap(-1, size)
    return np.frombuffer(mapping, dtype=np.float32).reshape(shape)


def _float32_view(df: pd.DataFrame, columns: list[str]) -> np.ndarray | None:
    """``df[columns]`` as a ``[N, len(columns)]`` float32 array when they are adjacent float32 columns, else None.

    A view of the frame's block when the columns share one (a frame read from a file); otherwise pandas copies them
    once, which is still cheaper than a copy per chunk.
    """
    positions = df.columns.get_indexer(columns)
    if (positions < 0).any() or not (np.diff(positions) == 1).all():
        return None
    part = df.iloc[:, positions[0] : positions[-1] + 1]
    if not (part.dtypes == np.float32).all():
        return None
    return part.to_numpy(dtype=np.float32, copy=False)


def _to_float32(block: pd.DataFrame, channel: str) -> np.ndarray:
    try:
        return block.to_numpy(dtype=np.float32)
    except (ValueError, TypeError):
        from spectratorch.data.io import DECIMAL_COMMA

        bad = next(n for n in block.columns if not pd.api.types.is_numeric_dtype(block[n]))
        values = block[bad]
        wrong = values[pd.to_numeric(values, errors="coerce").isna() & values.notna()]
        where = f", row {wrong.index[0]!r}: {wrong.iloc[0]!r}" if len(wrong) else ""
        # reason: a number written with a decimal comma in a file read with decimal points (or the reverse) is the
        # usual cause; the sniffed mark comes from the first rows, which a text column can mislead.
        mark = (" A decimal comma in a file read with decimal points: save the file with one decimal mark, or "
                "separated by semicolons with decimal commas throughout." if len(wrong) and
                DECIMAL_COMMA.match(str(wrong.iloc[0])) else "")
        raise SchemaError(
            f"channel {channel!r} has non-numeric values ({len(wrong)} in column {bad!r}{where}); expected "
            f"numbers.{mark}"
        ) from None


def _finite_rows(spectra: np.ndarray, tabular: np.ndarray) -> np.ndarray:
    finite = np.empty(len(spectra), dtype=bool)
    for start in range(0, len(spectra), _CHUNK_ROWS):
        stop = start + _CHUNK_ROWS
        finite[start:stop] = np.isfinite(spectra[start:stop]).all(axis=(1, 2)) & np.isfinite(tabular[start:stop]).all(
            axis=1
        )
    return finite


def _nonfinite_counts(spectra: np.ndarray) -> np.ndarray:
    """``[C, L]``: in how many rows each channel's point is NaN or inf, a chunk at a time (no copy of the spectra)."""
    bad = np.zeros(spectra.shape[1:], dtype=np.int64)
    for start in range(0, len(spectra), _CHUNK_ROWS):
        bad += (~np.isfinite(spectra[start : start + _CHUNK_ROWS])).sum(0)
    return bad


def _worst_columns(bad: np.ndarray, tabular: np.ndarray, channels: Sequence[str], axis: np.ndarray,
                   tabular_columns: Sequence[str], show: int = 3) -> str:
    """Where rows' NaN or inf values are: the (at most ``show``) spectral points (``bad``, from
    :func:`_nonfinite_counts`) and tabular columns in the most rows.

    Example:
        >>> bad = _nonfinite_counts(np.array([[[np.nan, 1.0, np.inf]], [[np.nan, 1.0, 2.0]]]))
        >>> _worst_columns(bad, np.zeros((2, 0)), ["nir"], np.array([900.0, 901.0, 902.0]), [])
        'most at nir 900 (2 rows), nir 902 (1 row)'
    """
    counts = [*bad.reshape(-1).tolist(), *(~np.isfinite(tabular)).sum(0).tolist()]
    names = [f"{channel} {x:g}" for channel in channels for x in axis] + list(tabular_columns)
    order = [i for i in np.argsort(-np.asarray(counts), kind="stable")[:show] if counts[i]]
    return "most at " + ", ".join(f"{names[i]} ({counts[i]} row{'s' if counts[i] > 1 else ''})" for i in order)


def load_table(
    source,
    channels: Sequence[str] | str | None = None,
    tabular: Sequence[str] | str | None = "default",
    filters: RowFilter | None = None,
    expected_axis: Sequence[float] | None = None,
    model_axis: Sequence[float] | None = None,
    expected_ranges: dict[str, Sequence[float]] | None = None,
) -> SpectralTable:
    """Turn a dataset file or DataFrame into a :class:`SpectralTable`.

    Rows with NaN or inf in a selected spectral or tabular column are reported (logged, and counted in
    ``table.report["non_finite"]``) and dropped, never used.

    Args:
        source: a path (``.pkl``, ``.parquet``, ``.csv``, ``.xlsx``) or a DataFrame.
        channels: channel names to select, in this order; ``None`` = every channel of the data; ``"default"`` =
            the lab's ``277 380 425`` when the data has them all, else every channel.
        tabular: tabular feature columns; ``"default"`` = ``greffon_transmittance`` where present; ``None`` or
            ``()`` = none.
        filters: row filters; ``None`` = :class:`RowFilter` defaults (drop ``integration_oob`` rows).
        expected_axis: when given, the union axis must equal it (a model's axis), else an error says how it differs;
            an axis that holds every one of its points and more (a wider range) gives those points only.
        model_axis: a model's axis whose points are taken, as for ``expected_axis``, from an axis that holds every
            one of them and more; any other axis is kept as it is (the caller compares it with the model's).
        expected_ranges: a model's ``{channel: (min x, max x)}``: each selected channel must cover its range, as a
            point the channel lacks would be read as zero (the union axis can be the model's while one channel is
            shorter).

    Returns:
        The table.

    Raises:
        SchemaError: unknown channel or column, duplicated ids, non-numeric spectra, nothing left after filtering,
            another axis than expected, a channel shorter than expected.
        DataFormatError: the file cannot be read.

    Example:
        >>> df = pd.DataFrame({"277_300": [1.0, 2.0], "277_301": [3.0, 4.0], "lspr_301": [5.0, 6.0]},
        ...                   index=pd.Index(["a", "b"], name="id"))
        >>> table = load_table(df, channels=["277", "lspr"], tabular=None)
        >>> table.spectra.shape, table.axis.tolist()
        ((2, 2, 2), [300.0, 301.0])
        >>> table.spectra[0].tolist()
        [[1.0, 3.0], [0.0, 5.0]]
    """
    from_file = not isinstance(source, pd.DataFrame)
    if from_file:
        from spectratorch.data.io import read_dataset_mapped

        # reason: the spectra are copied out of the frame a chunk at a time, and the mapped pages of each chunk are
        # released, so a large pickle's spectral block and the table's spectra are never both resident.
        df, release = read_dataset_mapped(source)
    else:
        df, release = source, None
    _check_ids(df)
    groups = spectral_columns(df.columns)
    channels = _select_channels(df, groups, channels)
    if PLAIN_CHANNEL in channels and is_plain_layout(df.columns):
        xs = [x for x, _ in groups[PLAIN_CHANNEL]]
        _logger.info("spectral columns: %d columns named by their axis values, %g..%g, read as one channel %r",
                     len(xs), xs[0], xs[-1], PLAIN_CHANNEL)
    axis = _union_axis(groups, channels)
    points = expected_axis if expected_axis is not None else model_axis
    if points is not None and len(axis) > len(points):
        groups, axis = _at_points(groups, channels, axis, np.asarray(points, dtype=float))
    elif points is not None:
        groups, axis = _as_written_otherwise(groups, channels, axis, np.asarray(points, dtype=float))
    _check_channels(groups, channels, axis)
    tabular_columns = _resolve_tabular(df, tabular)
    if len(df) == 0:
        raise SchemaError("the data has a header and no rows; expected one row per sample below the header.")
    reasons, report = _filter_reasons(df, filters or RowFilter())
    positions = np.flatnonzero(reasons == "")
    filtered = np.flatnonzero(reasons != "")
    skipped = [(filtered, df.index.to_numpy()[filtered], reasons[filtered])]
    if len(positions) < len(df):
        df = df.iloc[positions]
    if len(df) == 0:
        raise SchemaError(f"no rows left after filtering (removed: {report}); relax the filters.")
    if expected_axis is not None:
        _check_axis(axis, np.asarray(expected_axis, dtype=float))
    ranges = _ranges(groups, channels)
    if expected_ranges:
        _check_ranges(ranges, expected_ranges)
    spectra = _fill_spectra(df, groups, channels, axis, release)
    tab = (df[list(tabular_columns)].to_numpy(dtype=np.float32, copy=from_file) if tabular_columns
           else np.zeros((len(df), 0), np.float32))
    meta = df.drop(columns=[name for c in groups for _, name in groups[c]] + list(tabular_columns))
    ids = df.index.to_numpy(copy=from_file)
    if from_file:
        # reason: nothing returned may view a file's mapping (it would change with the file).
        meta = meta.copy(deep=True)
    finite = _finite_rows(spectra, tab)
    # reason: a model's points cannot be dropped (the axis check would refuse the file); only training drops them.
    where, hint = "", "drop or fill those columns" if points is None else "fill those columns: the model takes them"
    if not finite.all():
        bad = _nonfinite_counts(spectra)
        if points is None:
            spectra, bad, groups, axis = _without_empty_points(spectra, bad, groups, channels, axis)
            # reason: a channel's range is that of the points it keeps (a model's, which new data must cover).
            ranges = _ranges(groups, channels)
            finite = _finite_rows(spectra, tab)
        if not finite.any():
            hint = _empty_channels_hint(bad, len(finite), groups, channels, axis) or hint
    report["non_finite"] = int((~finite).sum())
    if report["non_finite"]:
        where = _worst_columns(bad, tab, channels, axis, tabular_columns)
        trim = _edge_hint(spectra, tab, bad, finite, axis) if points is None else ""
        _logger.warning(
            "%d rows have NaN or inf in the selected channels or tabular columns; they are dropped (e.g. ids %s; %s)%s",
            report["non_finite"],
            ids[~finite][:5].tolist(),
            where,
            trim,
        )
        skipped.append((positions[~finite], ids[~finite], np.full(int((~finite).sum()), "non_finite", dtype=object)))
        spectra, tab, ids, meta = spectra[finite], tab[finite], ids[finite], meta.iloc[np.flatnonzero(finite)]
    if len(ids) == 0:
        raise SchemaError(f"no rows left: every row has NaN or inf in the selected channels or tabular columns "
                          f"({where}); {hint}.")
    _warn_zero_spectra(spectra, ids, channels)
    return SpectralTable(spectra, tab, ids, meta, channels, axis, tabular_columns, ranges, report,
                         SkippedRows.of(*(np.concatenate(part) for part in zip(*skipped))))


def _zero_spectra(spectra: np.ndarray) -> np.ndarray:
    """``[N, C]``: whether each row's channel is 0 at every point, a chunk at a time.

    Example:
        >>> _zero_spectra(np.array([[[0.0, 0.0], [1.0, 0.0]], [[0.0, 2.0], [1.0, 1.0]]])).tolist()
        [[True, False], [False, False]]
    """
    zero = np.empty(spectra.shape[:2], dtype=bool)
    for start in range(0, len(spectra), _CHUNK_ROWS):
        zero[start : start + _CHUNK_ROWS] = ~spectra[start : start + _CHUNK_ROWS].any(axis=2)
    return zero


def _warn_zero_spectra(spectra: np.ndarray, ids: np.ndarray, channels: Sequence[str]) -> None:
    """One warning naming the rows whose spectrum is 0 at every point in some channel (a failed measurement, or a
    row of an export filled with zeros): they are kept, as a zero spectrum may be a real blank."""
    zero = _zero_spectra(spectra)
    rows = zero.any(axis=1)
    if not rows.any():
        return
    names = [channels[c] for c in np.flatnonzero(zero.any(axis=0))]
    _logger.warning("%d rows have a spectrum that is 0 at every point (channel %s; e.g. ids %s): failed "
                    "measurements? they are kept; leave them out of the file if so", int(rows.sum()),
                    ", ".join(map(str, names)), ids[rows][:5].tolist())


def _edge_hint(spectra: np.ndarray, tabular: np.ndarray, bad: np.ndarray, finite: np.ndarray,
               axis: np.ndarray) -> str:
    """How many of the dropped rows would be kept without the edge points that hold their NaN (spectra measured over
    ragged ranges), when that is at least half of them and 10 % of all rows; else ``""``.

    Example:
        >>> spectra = np.ones((10, 1, 12), dtype=np.float32)
        >>> spectra[:4, 0, :2] = np.nan
        >>> tabular = np.zeros((10, 0))
        >>> finite = _finite_rows(spectra, tabular)
        >>> _edge_hint(spectra, tabular, _nonfinite_counts(spectra), finite, np.arange(900.0, 912.0))
        '; 4 of them have it only at the edge points 900..901: leave those points out of the file to keep them'
    """
    dropped = int((~finite).sum())
    clean = np.flatnonzero(bad.sum(0) == 0)
    first, last = (int(clean[0]), int(clean[-1]) + 1) if clean.size else (len(axis), 0)
    edges = first + len(axis) - last
    # reason: a hint to drop most of the axis would be no hint; edge points are at most a quarter of it.
    if dropped < max(1, 0.1 * len(finite)) or not 0 < edges <= len(axis) // 4:
        return ""
    kept = _finite_rows(spectra[:, :, first:last], tabular)
    recovered = int((kept & ~finite).sum())
    if recovered < dropped / 2:
        return ""
    ranges = [f"{axis[a]:g}..{axis[b - 1]:g}" for a, b in ((0, first), (last, len(axis))) if b > a]
    return (f"; {recovered} of them have it only at the edge points {' and '.join(ranges)}: leave those points out "
            "of the file to keep them")


def _nearest(axis: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The index of the point of the ascending, non-empty ``axis`` nearest to each of ``points``."""
    right = np.clip(np.searchsorted(axis, points), 0, len(axis) - 1)
    left = np.clip(right - 1, 0, len(axis) - 1)
    return np.where(np.abs(axis[left] - points) <= np.abs(axis[right] - points), left, right)


def _at_points(groups: dict, channels: tuple[str, ...], axis: np.ndarray,
               expected: np.ndarray) -> tuple[dict, np.ndarray]:
    """The channels' columns at the points of ``expected`` when ``axis`` holds all of them (within the tolerance of
    :func:`~spectratorch.contract.same_axis`), and the axis they make; else ``groups`` and ``axis`` unchanged."""
    nearest = _nearest(axis, expected)
    if not expected.size or np.abs(axis[nearest] - expected).max() > axis_tolerance(expected):
        return groups, axis
    # reason: the points are the model's own (the same x values), so nothing is interpolated; the rest is unused.
    keep = set(axis[nearest].tolist())
    taken = {**groups, **{c: [(x, name) for x, name in groups[c] if x in keep] for c in channels}}
    _logger.info("the data's axis has %d points (%g..%g); the model's %d points (%g..%g) are taken from it",
                 len(axis), axis[0], axis[-1], len(expected), expected[0], expected[-1])
    return taken, _union_axis(taken, channels)


# reason: the most decimals a header is looked at with; float32 exports and instruments write fewer.
_MAX_DECIMALS = 10


def written_decimals(axis: np.ndarray, expected: np.ndarray) -> int | None:
    """The decimals ``d`` with which one of two axes of the same length is the other written with fewer decimals:
    its values have ``d`` decimals and each lies within half a unit of the ``d``-th decimal of its own point of the
    other (so an export that rounds a half up or down is read alike), and within a quarter of the model's spacing of
    it; ``None`` when there is none (another axis, a shift, a point more or less).

    Example:
        >>> written_decimals(np.array([900.12, 901.35]), np.array([900.123456, 901.345678]))
        2
        >>> written_decimals(np.array([900.123456, 901.345678]), np.array([900.12, 901.35]))  # the model's fewer
        2
        >>> written_decimals(np.array([1109.0, 1113.1]), np.array([1109.05, 1113.07]))  # a half rounded down
        1
        >>> written_decimals(np.array([900.13, 901.35]), np.array([900.123456, 901.345678])) is None  # a shift
        True
        >>> written_decimals(np.array([900.0, 901.0]), np.array([900.4, 901.4])) is None  # nearer another grid
        True
    """
    if len(axis) != len(expected) or len(expected) < 2:
        return None
    offset = float(np.abs(axis - expected).max())
    # reason: a quarter of the model's spacing, as for the rounding hint: an offset of half a step is another grid.
    if offset > 0.25 * float(np.median(np.diff(expected))):
        return None
    exact = 1e-9 * max(1.0, float(np.abs(expected).max()))
    for decimals in range(_MAX_DECIMALS + 1):
        if offset > 0.5 * 10.0**-decimals + exact:
            continue
        if any(np.allclose(short, np.round(short, decimals), rtol=0, atol=exact) for short in (axis, expected)):
            return decimals
    return None


def _as_written_otherwise(groups: dict, channels: tuple[str, ...], axis: np.ndarray,
                          expected: np.ndarray) -> tuple[dict, np.ndarray]:
    """The channels' columns at the model's points when the data's axis is the model's written with other decimals
    (:func:`written_decimals`), and the model's axis; else ``groups`` and ``axis`` unchanged."""
    if same_axis(axis, expected):
        return groups, axis
    decimals = written_decimals(axis, expected)
    if decimals is None:
        return groups, axis
    # reason: one to one and in order (both ascending, each point within a quarter step of its own), so a column
    # takes the model's x of its rank; nothing is interpolated.
    model_x = dict(zip(axis.tolist(), expected.tolist()))
    placed = {**groups, **{c: [(model_x[x], name) for x, name in groups[c]] for c in channels}}
    worst = int(np.argmax(np.abs(axis - expected)))
    _logger.info("the data's %d axis values are the model's written with %d decimals (e.g. %.10g for %.10g): read "
                 "as the model's points", len(axis), decimals, axis[worst], expected[worst])
    return placed, _union_axis(placed, channels)


def _without_empty_points(spectra: np.ndarray, bad: np.ndarray, groups: dict, channels: tuple[str, ...],
                          axis: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict, np.ndarray]:
    """The spectra, their non-finite counts ``bad`` (:func:`_nonfinite_counts`), groups and axis without the points
    that hold no finite value in any row of any channel (an empty column of an export, a trailing delimiter's
    column); unchanged when there is none.

    Example:
        >>> spectra = np.array([[[1.0, np.nan, 2.0]], [[3.0, np.nan, np.nan]]], dtype=np.float32)
        >>> groups = {"nir": [(900.0, "900"), (901.0, "901"), (902.0, "902")]}
        >>> kept, bad, groups, axis = _without_empty_points(spectra, _nonfinite_counts(spectra), groups, ("nir",),
        ...                                                 np.array([900.0, 901.0, 902.0]))
        >>> kept.tolist(), bad.tolist(), axis.tolist(), [name for _, name in groups["nir"]]
        ([[[1.0, 2.0]], [[3.0, nan]]], [[0, 1]], [900.0, 902.0], ['900', '902'])
    """
    # reason: a point is left out only when no channel holds it in any row: a value missing in one channel only is
    # a gap in that channel's spectra, and its rows are dropped as any row with NaN.
    empty = (bad == len(spectra)).all(0)
    kept = set(axis[~empty].tolist())
    if not empty.any() or not all(any(x in kept for x, _ in groups[c]) for c in channels):
        # reason: a channel left with no point is no channel; its rows are dropped as before, and the error says so.
        return spectra, bad, groups, axis
    names = [name for c in channels for x, name in groups[c] if x not in kept]
    _logger.warning("%d spectral column(s) hold no value in any row and are left out: %s%s", len(names),
                    ", ".join(repr(n) for n in names[:5]), " ..." if len(names) > 5 else "")
    groups = {**groups, **{c: [(x, name) for x, name in groups[c] if x in kept] for c in channels}}
    return np.ascontiguousarray(spectra[:, :, ~empty]), bad[:, ~empty], groups, axis[~empty]


def _empty_channels_hint(bad: np.ndarray, n_rows: int, groups: dict, channels: tuple[str, ...],
                         axis: np.ndarray) -> str:
    """How to leave out the selected channels whose own points are NaN or inf in every row (``bad``:
    :func:`_nonfinite_counts`), or ``""`` when there is none or no channel would be left."""
    empty = [channel for c, channel in enumerate(channels)
             if (bad[c, np.searchsorted(axis, [x for x, _ in groups[channel]])] == n_rows).all()]
    kept = [c for c in channels if c not in empty]
    if not empty or not kept:
        return ""
    return (f"channel(s) {', '.join(repr(c) for c in empty)} hold no value in any row: leave them out with "
            f"`--channels {' '.join(kept)}`")


def _ranges(groups: dict, channels: Sequence[str]) -> dict[str, tuple[float, float]]:
    """Each channel's ``(min x, max x)`` (its columns are in axis order)."""
    return {c: (groups[c][0][0], groups[c][-1][0]) for c in channels}


def _check_ranges(ranges: dict[str, tuple[float, float]], expected: dict[str, Sequence[float]]) -> None:
    """Refuse a channel whose ``(min x, max x)`` does not reach both ends of the model's range for it.

    Example:
        >>> model = {"277": [300.0, 302.0], "380": [300.0, 302.0]}
        >>> _check_ranges({"277": (300.0, 302.0), "380": (300.0, 301.0)}, model)
        Traceback (most recent call last):
        spectratorch.errors.SchemaError: channel '380' of the data covers 300..301, the model's 300..302: the model's \
points outside it would be read as zeros; give the channel its full range.
    """
    for channel, (first, last) in ranges.items():
        if channel not in expected:
            continue
        low, high = (float(x) for x in expected[channel])
        tolerance = axis_tolerance(np.array([low, high]))
        if first > low + tolerance or last < high - tolerance:
            raise SchemaError(f"channel {channel!r} of the data covers {first:g}..{last:g}, the model's "
                              f"{low:g}..{high:g}: the model's points outside it would be read as zeros; give the "
                              "channel its full range.")


def _check_axis(axis: np.ndarray, expected: np.ndarray) -> None:
    """Refuse an axis that is not the model's, naming the model's points the data lacks and, unless the data has more
    points than the model, the data's points the model lacks (up to 5 of each).

    Example:
        >>> _check_axis(np.array([900.0, 901.0, 903.0]), np.array([900.0, 901.0, 902.0]))
        Traceback (most recent call last):
        spectratorch.errors.SchemaError: the data's axis (3 points 900..903) differs from the model's (3 points \
900..902): the data lacks the model's point(s) 902; the model has no point 903.
    """
    if same_axis(axis, expected):
        return
    tolerance = axis_tolerance(expected)

    def unmatched(points: np.ndarray, among: np.ndarray) -> str:
        lost = points[np.abs(among[_nearest(among, points)] - points) > tolerance]
        return ", ".join(f"{x:.10g}" for x in lost[:5]) + (f" and {len(lost) - 5} more" if len(lost) > 5 else "")

    # reason: the model takes its own points from a wider axis, so a wider axis's other points are not the cause.
    missing, extra = unmatched(expected, axis), unmatched(axis, expected) if len(axis) <= len(expected) else ""
    parts = ([f"the data lacks the model's point(s) {missing}"] if missing else []) + (
        [f"the model has no point {extra}"] if extra else [])
    raise SchemaError(f"the data's axis ({describe_axis(axis)}) differs from the model's ({describe_axis(expected)})"
                      + (": " + "; ".join(parts) if parts else "") + _rounding_hint(axis, expected) + ".")


def _rounding_hint(axis: np.ndarray, expected: np.ndarray) -> str:
    """A note when every model point has a data point much nearer than the model's spacing: the same wavelengths
    written with other decimals (or a small shift), not missing points.

    Example:
        >>> _rounding_hint(np.array([900.12, 901.35]), np.array([900.123456, 901.345678]))
        " (every point is within 0.0043 of one of the model's: the same wavelengths written with other decimals? write \
them as the model's, e.g. 901.345678, or resample onto its axis)"
        >>> _rounding_hint(np.array([900.0, 901.0]), np.array([900.0, 902.0]))
        ''
        >>> _rounding_hint(np.linspace(900, 910, 101), np.linspace(900, 910, 11))  # a finer grid: resample it
        ''
    """
    if len(expected) < 2 or not len(axis):
        return ""
    offsets = np.abs(axis[_nearest(axis, expected)] - expected)
    # reason: a quarter of the model's spacing keeps a missing point (offset of a whole step, or half of one where
    # the model's points are twice as dense) from reading as rounding.
    near = 0.25 * float(np.median(np.diff(expected)))
    if offsets.max() > near:
        return ""
    # reason: a finer grid over the same range has a point near every model point too, and more points: another
    # axis to resample, not the model's written with other decimals.
    if np.count_nonzero((axis >= expected[0] - near) & (axis <= expected[-1] + near)) > len(expected):
        return ""
    return (f" (every point is within {offsets.max():.2g} of one of the model's: the same wavelengths written with "
            f"other decimals? write them as the model's, e.g. {expected[np.argmax(offsets)]:.10g}, or resample onto "
            "its axis)")
