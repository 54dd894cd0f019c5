"""Instrument text exports: read, write, clean and convert to a dataset file.

The fluorimeter writes one tab-separated file per export for a dataset ``<name>``:

- ``EX_<nm>_<name>_I.txt``: one emission spectrum per row for the excitation ``<nm>`` (277, 380, 425);
- ``LSPR_<name>_I.txt``: the LSPR spectrum, when the dataset has one;
- ``Y_<name>.txt``: the labels and metadata (intensity, type, transmittance, ``integration_oob``, date,
  instrument, ``id``).

Every file has the instrument's ``sequence`` id as first column; spectral files have one column per
wavelength, headed by the wavelength (``295``). :func:`read_raw_exports` joins them on ``sequence`` into the
dataset schema (one row per sample, index ``id``, spectral columns ``<channel>_<x>`` in float32) and
:func:`clean` drops the rows the lab discards (integration out of bounds, saturated, too weak).

This module imports no torch.
"""

import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from spectratorch.data.io import write_dataset
from spectratorch.data.schema import spectral_columns
from spectratorch.errors import DataFormatError, SchemaError

__all__ = [
    "SATURATION_THRESHOLDS",
    "MIN_INTEGRALS",
    "LABEL_DTYPES",
    "write_raw_exports",
    "read_raw_exports",
    "saturated_mask",
    "weak_mask",
    "oob_mask",
    "channel_peaks",
    "channel_integrals",
    "cleaning_masks",
    "clean",
    "convert",
]

_logger = logging.getLogger(__name__)

SATURATION_THRESHOLDS = {"277": 6500.0, "380": 7000.0, "425": 10000.0}
"""Largest count a usable spectrum may reach, per excitation channel."""

MIN_INTEGRALS = {"277": 150000.0, "380": 220000.0, "425": 300000.0}
"""Smallest sum over the points of a usable spectrum, per excitation channel."""

LABEL_DTYPES = {
    "greffon_defaut_severite": "str",
    "greffon_defaut_type": "int64",
    "greffon_transmittance": "float32",
    "integration_oob": "int8",
    "mesure_date": "datetime64[us]",
    "instrument_id": "str",
    "sequence": "int64",
}
"""Dtypes of the non-spectral columns of the dataset schema (a column not listed keeps what pandas reads)."""

_EX_FILE = re.compile(r"^EX_(?P<channel>\d+)_(?P<name>.+)_I\.txt$")
_LSPR_FILE = re.compile(r"^LSPR_(?P<name>.+)_I\.txt$")
_Y_FILE = re.compile(r"^Y_(?P<name>.+)\.txt$")
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
_RULES = ("oob", "saturation", "integral")
_SUFFIXES = (".pkl", ".parquet", ".csv")
_N_EXAMPLES = 5


# --------------------------------------------------------------------------------------------------------------
# Column helpers
# --------------------------------------------------------------------------------------------------------------
def _channel_columns(df: pd.DataFrame) -> dict[str, list[str]]:
    # reason: the schema's own grouping, column names only (sorted by x).
    return {channel: [name for _, name in items] for channel, items in spectral_columns(df.columns).items()}


def _format_x(value: float) -> str:
    # reason: the schema writes integral wavelengths as integers (`277_295`, not `277_295.0`).
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _examples(values) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:_N_EXAMPLES])
    return shown + (", ..." if len(values) > _N_EXAMPLES else "")


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------
def _export_filename(channel: str, name: str) -> str:
    if channel.isdigit():
        return f"EX_{channel}_{name}_I.txt"
    if channel.lower() == "lspr":
        return f"LSPR_{name}_I.txt"
    raise SchemaError(
        f"Spectral channel {channel!r} has no raw export format: the instrument writes numeric excitation channels "
        f"(EX_<nm>_<name>_I.txt) and 'lspr' (LSPR_<name>_I.txt). Rename or drop the columns {channel}_*."
    )


def _export_frames(df: pd.DataFrame, name: str) -> dict[str, pd.DataFrame]:
    if "sequence" not in df.columns:
        raise SchemaError(
            "write_raw_exports needs a 'sequence' column (the instrument sequence id keys every export file); "
            f"found columns {_examples(df.columns)}. Add one, e.g. df['sequence'] = range(len(df))."
        )
    sequence = pd.Index(df["sequence"].to_numpy(), name="sequence")
    if sequence.has_duplicates:
        raise SchemaError(
            f"Column 'sequence' must be unique to key the exports; found duplicated values "
            f"{_examples(sequence[sequence.duplicated()].unique())}. Renumber the samples."
        )
    groups = _channel_columns(df)
    if not groups:
        raise SchemaError("write_raw_exports found no spectral column named '<channel>_<x>' (e.g. '277_295').")
    frames = {}
    for channel, columns in groups.items():
        spectra = pd.DataFrame(df[columns].to_numpy(), index=sequence, columns=[c.split("_", 1)[1] for c in columns])
        frames[_export_filename(channel, name)] = spectra
    spectral = [c for cols in groups.values() for c in cols]
    labels = df.drop(columns=spectral + ["sequence"])
    labels.index = sequence
    labels["id"] = df.index.to_numpy()
    frames[f"Y_{name}.txt"] = labels
    return frames


def _remove_quietly(paths) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def write_raw_exports(df: pd.DataFrame, raw_dir: str | os.PathLike, name: str = "demo") -> list[Path]:
    """Write a dataset as the instrument's text exports, one file per channel plus the label file.

    Each file is first written under a temporary name, then all are renamed, so an error leaves no partial export.

    Args:
        df: a dataset in the schema: spectral columns ``<channel>_<x>`` (numeric channels and ``lspr``), a unique
            ``sequence`` column, label columns; its index becomes the ``id`` column of ``Y_<name>.txt``.
        raw_dir: the folder to write to (created if missing).
        name: the dataset name inside the file names.

    Returns:
        The paths written: ``EX_<nm>_<name>_I.txt`` per numeric channel, ``LSPR_<name>_I.txt`` when the dataset has
        LSPR columns, then ``Y_<name>.txt``.

    Raises:
        SchemaError: no ``sequence`` column, duplicated sequences, no spectral column, or a channel with no
            export format.

    Example:
        >>> import tempfile
        >>> from spectratorch.data.synthetic import make_dataset
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     [p.name for p in write_raw_exports(make_dataset(20, seed=1), tmp)]
        ['EX_277_demo_I.txt', 'EX_380_demo_I.txt', 'EX_425_demo_I.txt', 'LSPR_demo_I.txt', 'Y_demo.txt']
    """
    if not name or "/" in name or os.sep in name:
        raise SchemaError(f"Export name must be a non-empty file-name part; got {name!r}. Pass e.g. name='demo'.")
    frames = _export_frames(df, name)
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    paths = [raw_dir / filename for filename in frames]
    temporaries = [path.with_name(f".{path.name}.{os.getpid()}.tmp") for path in paths]
    try:
        for frame, temporary in zip(frames.values(), temporaries):
            frame.to_csv(temporary, sep="\t", date_format=_DATE_FORMAT)
        for temporary, path in zip(temporaries, paths):
            os.replace(temporary, path)
    finally:
        _remove_quietly(temporaries)
    _logger.info("Wrote %d raw export files for %d samples to %s", len(paths), len(df), raw_dir)
    return paths


# --------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------
def _find_exports(raw_dir: Path) -> tuple[str, dict[str, Path], Path]:
    if not raw_dir.is_dir():
        raise DataFormatError(
            f"Raw export folder {str(raw_dir)!r} does not exist or is not a folder. Pass the folder that holds "
            "the EX_<nm>_<name>_I.txt and Y_<name>.txt files."
        )
    spectra: dict[str, dict[str, Path]] = {}
    labels: dict[str, Path] = {}
    for path in sorted(raw_dir.iterdir()):
        if match := _EX_FILE.match(path.name):
            spectra.setdefault(match["name"], {})[match["channel"]] = path
        elif match := _LSPR_FILE.match(path.name):
            spectra.setdefault(match["name"], {})["lspr"] = path
        elif match := _Y_FILE.match(path.name):
            labels[match["name"]] = path
    names = sorted(set(spectra) | set(labels))
    if not names:
        raise DataFormatError(
            f"Found no raw export in {str(raw_dir)!r}: expected EX_<nm>_<name>_I.txt, LSPR_<name>_I.txt and "
            f"Y_<name>.txt files, found {_examples(p.name for p in sorted(raw_dir.iterdir())) or 'an empty folder'}."
        )
    if len(names) > 1:
        raise DataFormatError(
            f"Raw export folder {str(raw_dir)!r} holds several datasets {names}; expected one <name> per folder. "
            "Move each dataset's files into its own folder."
        )
    name = names[0]
    if name not in labels:
        raise DataFormatError(
            f"Label file Y_{name}.txt is missing in {str(raw_dir)!r}: found only "
            f"{_examples(p.name for p in spectra[name].values())}. Export the labels of dataset {name!r} too."
        )
    channels = spectra.get(name, {})
    if not any(channel.isdigit() for channel in channels):
        raise DataFormatError(
            f"No excitation export EX_<nm>_{name}_I.txt in {str(raw_dir)!r} (found {_examples(sorted(channels))} "
            f"besides Y_{name}.txt); expected at least one, e.g. EX_277_{name}_I.txt. Export the spectra too."
        )
    ordered = dict(sorted(channels.items(), key=lambda item: (not item[0].isdigit(), _channel_key(item[0]))))
    return name, ordered, labels[name]


def _channel_key(channel: str):
    return int(channel) if channel.isdigit() else channel


def _read_table(path: Path, **read_kwargs) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t", index_col=0, **read_kwargs)
    except pd.errors.EmptyDataError:
        raise DataFormatError(
            f"File {path.name!r} is empty; expected a tab-separated table with a header row and one row per "
            "sample. Export it again."
        ) from None
    except pd.errors.ParserError as error:
        raise DataFormatError(
            f"File {path.name!r} is ragged: {error} Every row must have as many tab-separated fields as the "
            "header. Export it again or fix the row."
        ) from None
    if len(table.index) == 0:
        raise DataFormatError(
            f"File {path.name!r} has a header but no sample row; expected one row per sample. Export it again."
        )
    if not pd.api.types.is_integer_dtype(table.index.dtype):
        bad = [v for v in table.index if not str(v).lstrip("-").isdigit()]
        raise DataFormatError(
            f"File {path.name!r}: the first column must be the integer 'sequence' id; found {_examples(bad)}. "
            "Export the sequence ids as the first column."
        )
    table.index = table.index.astype("int64").rename("sequence")
    if table.index.has_duplicates:
        duplicated = table.index[table.index.duplicated()].unique()
        raise DataFormatError(
            f"File {path.name!r} has {len(duplicated)} duplicated sequence ids, e.g. {_examples(duplicated)}; "
            "expected one row per sequence. Remove the repeated rows."
        )
    return table


def _read_spectra(path: Path, channel: str) -> pd.DataFrame:
    # reason: only an empty cell is missing; text such as 'n/a' in a spectrum is reported as non-numeric.
    table = _read_table(path, keep_default_na=False, na_values=[""])
    try:
        axis = [float(x) for x in table.columns]
    except ValueError:
        bad = [x for x in table.columns if not _is_number(x)]
        raise DataFormatError(
            f"File {path.name!r}: spectral headers must be wavelengths (e.g. '295'); found {_examples(bad)}. "
            "Fix the header row."
        ) from None
    values = table.apply(pd.to_numeric, errors="coerce")
    non_numeric = values.isna() & table.notna()
    if non_numeric.to_numpy().any():
        row, col = np.argwhere(non_numeric.to_numpy())[0]
        raise DataFormatError(
            f"File {path.name!r}: {int(non_numeric.to_numpy().sum())} non-numeric values, e.g. "
            f"{table.iat[row, col]!r} at sequence {table.index[row]} wavelength {table.columns[col]}; expected "
            "numbers only. Fix or remove these rows."
        )
    missing = values.isna().any(axis=1)
    if missing.any():
        raise DataFormatError(
            f"File {path.name!r}: {int(missing.sum())} rows are short or have empty cells, e.g. sequence "
            f"{_examples(values.index[missing])}; expected {len(axis)} values per row. Export them again or remove "
            "these rows."
        )
    columns = [f"{channel}_{_format_x(x)}" for x in axis]
    return pd.DataFrame(values.to_numpy(dtype=np.float32), index=values.index, columns=columns)


def _is_number(text) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_same_sequences(labels_path: Path, labels: pd.DataFrame, path: Path, spectra: pd.DataFrame) -> None:
    missing = labels.index.difference(spectra.index)
    extra = spectra.index.difference(labels.index)
    if len(missing) or len(extra):
        raise DataFormatError(
            f"Sequences of {path.name!r} do not match {labels_path.name!r}: {len(missing)} label sequences have no "
            f"spectrum (e.g. {_examples(missing)}) and {len(extra)} spectra have no label (e.g. {_examples(extra)}). "
            "Export both files from the same measurement set, or remove the unmatched rows."
        )


def _cast_labels(labels: pd.DataFrame, path: Path) -> pd.DataFrame:
    labels = labels.copy()
    for column, dtype in LABEL_DTYPES.items():
        if column not in labels.columns:
            continue
        try:
            if dtype.startswith("datetime64"):
                labels[column] = pd.to_datetime(labels[column], format="ISO8601").astype(dtype)
            else:
                labels[column] = labels[column].astype(dtype)
        except (TypeError, ValueError) as error:
            raise DataFormatError(
                f"File {path.name!r}: column {column!r} must convert to {dtype}; {error}. Fix its values."
            ) from None
    return labels


def _label_ids(labels: pd.DataFrame, path: Path) -> pd.Index:
    if "id" not in labels.columns:
        _logger.info("File %s has no 'id' column; the sequence ids become the sample ids", path.name)
        return labels.index.astype("str")
    ids = labels.pop("id")
    if ids.isna().any():
        raise DataFormatError(
            f"File {path.name!r}: {int(ids.isna().sum())} rows have no 'id' (short row or empty cell), e.g. "
            f"sequence {_examples(ids.index[ids.isna()])}. Fill in the ids or export the file again."
        )
    return pd.Index(ids.astype("str"))


def read_raw_exports(raw_dir: str | os.PathLike) -> pd.DataFrame:
    """Read the instrument's text exports of one dataset into the dataset schema.

    Args:
        raw_dir: a folder with the exports of one dataset ``<name>``: ``EX_<nm>_<name>_I.txt`` (at least one),
            optionally ``LSPR_<name>_I.txt``, and ``Y_<name>.txt``.

    Returns:
        One row per sample in the order of ``Y_<name>.txt``: its label columns (typed as in :data:`LABEL_DTYPES`),
        ``sequence`` (int64), then the spectral columns ``<channel>_<x>`` (float32; numeric channels ascending,
        then ``lspr``). The index is the ``id`` column of the label file, or the sequence as a string if it has
        none; it is named ``id``.

    Raises:
        DataFormatError: missing folder or files, several datasets in the folder, an empty or ragged file,
            non-numeric spectral values, duplicated sequences or ids, or sequences that differ between files.

    Example:
        >>> import tempfile
        >>> from spectratorch.data.synthetic import make_dataset
        >>> df = make_dataset(20, seed=1)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = write_raw_exports(df, tmp)
        ...     back = read_raw_exports(tmp)
        >>> back.shape == df.shape, back.index.name
        (True, 'id')
    """
    raw_dir = Path(raw_dir)
    name, channel_paths, labels_path = _find_exports(raw_dir)
    labels = _read_table(labels_path)
    parts = []
    for channel, path in channel_paths.items():
        spectra = _read_spectra(path, channel)
        _check_same_sequences(labels_path, labels, path, spectra)
        parts.append(spectra.reindex(labels.index))
    labels = _cast_labels(labels, labels_path)
    ids = _label_ids(labels, labels_path)
    labels["sequence"] = labels.index.to_numpy(dtype=np.int64)
    df = pd.concat([labels, *parts], axis=1)
    df.index = pd.Index(ids, name="id")
    if df.index.has_duplicates:
        raise DataFormatError(
            f"File {labels_path.name!r}: column 'id' must be unique; found duplicated ids "
            f"{_examples(df.index[df.index.duplicated()].unique())}. Fix the ids."
        )
    _logger.info("Read %d samples of dataset %r (%s) from %s", len(df), name, ", ".join(channel_paths), raw_dir)
    return df


# --------------------------------------------------------------------------------------------------------------
# Cleaning
# --------------------------------------------------------------------------------------------------------------
def _channel_stat(df: pd.DataFrame, channels, reduce) -> pd.DataFrame:
    groups = _channel_columns(df)
    wanted = list(groups) if channels is None else [str(c) for c in channels]
    skipped = [c for c in wanted if c not in groups]
    if skipped:
        _logger.debug("Channels %s are not in the dataset; their cleaning rules are skipped", skipped)
    present = [c for c in wanted if c in groups]
    stats = {c: reduce(df[groups[c]].to_numpy(dtype=np.float32)) for c in present}
    return pd.DataFrame(stats, index=df.index, columns=present)


def channel_peaks(df: pd.DataFrame, channels: Iterable[str] | None = None) -> pd.DataFrame:
    """Largest value of each spectrum (its peak count), one column per channel: what the saturation rule reads.

    Args:
        df: a dataset with spectral columns ``<channel>_<x>``.
        channels: the channels to summarise; None = every channel of ``df``. Channels missing from ``df`` are
            left out of the result.

    Returns:
        Float32 DataFrame ``[N, channels]`` on ``df.index``.

    Example:
        >>> df = pd.DataFrame({"277_295": [100.0, 7000.0], "277_296": [200.0, 10.0]}, index=["a", "b"])
        >>> channel_peaks(df)["277"].tolist()
        [200.0, 7000.0]
    """
    return _channel_stat(df, channels, lambda values: values.max(axis=1, initial=-np.inf))


def channel_integrals(df: pd.DataFrame, channels: Iterable[str] | None = None) -> pd.DataFrame:
    """Sum over the points of each spectrum (its integral), one column per channel: what the weak rule reads.

    Args:
        df: a dataset with spectral columns ``<channel>_<x>``.
        channels: the channels to summarise; None = every channel of ``df``. Channels missing from ``df`` are
            left out of the result.

    Returns:
        Float64 DataFrame ``[N, channels]`` on ``df.index``.

    Example:
        >>> df = pd.DataFrame({"277_295": [100000.0, 10.0], "277_296": [60000.0, 10.0]}, index=["a", "b"])
        >>> channel_integrals(df)["277"].tolist()
        [160000.0, 20.0]
    """
    return _channel_stat(df, channels, lambda values: values.sum(axis=1, dtype=np.float64))


def saturated_mask(df: pd.DataFrame, thresholds: Mapping[str, float] = SATURATION_THRESHOLDS) -> pd.Series:
    """Rows whose spectrum exceeds the saturation threshold in any channel.

    Args:
        df: a dataset with spectral columns ``<channel>_<x>``.
        thresholds: ``{channel: largest allowed count}``; channels missing from ``df`` are skipped.

    Returns:
        Boolean Series ``[N]`` on ``df.index``, True where the maximum of a listed channel is above its threshold.

    Example:
        >>> df = pd.DataFrame({"277_295": [100.0, 7000.0], "277_296": [200.0, 10.0]}, index=["a", "b"])
        >>> saturated_mask(df).tolist()
        [False, True]
    """
    thresholds = {str(channel): float(value) for channel, value in thresholds.items()}
    peaks = channel_peaks(df, thresholds)
    mask = (peaks.to_numpy() > np.array([thresholds[c] for c in peaks.columns])).any(axis=1)
    return pd.Series(mask, index=df.index, name="saturated")


def weak_mask(df: pd.DataFrame, min_integrals: Mapping[str, float] = MIN_INTEGRALS) -> pd.Series:
    """Rows whose spectrum integral (sum over its points) is below the minimum in any channel.

    Args:
        df: a dataset with spectral columns ``<channel>_<x>``.
        min_integrals: ``{channel: smallest allowed sum}``; channels missing from ``df`` are skipped.

    Returns:
        Boolean Series ``[N]`` on ``df.index``, True where the sum of a listed channel is below its minimum.

    Example:
        >>> df = pd.DataFrame({"277_295": [100000.0, 10.0], "277_296": [60000.0, 10.0]}, index=["a", "b"])
        >>> weak_mask(df).tolist()
        [False, True]
    """
    min_integrals = {str(channel): float(value) for channel, value in min_integrals.items()}
    integrals = channel_integrals(df, min_integrals)
    mask = (integrals.to_numpy() < np.array([min_integrals[c] for c in integrals.columns])).any(axis=1)
    return pd.Series(mask, index=df.index, name="weak")


def oob_mask(df: pd.DataFrame) -> pd.Series:
    """Rows the instrument flagged with an integration time out of bounds (``integration_oob == 1``).

    Args:
        df: a dataset; without an ``integration_oob`` column no row is flagged.

    Returns:
        Boolean Series ``[N]`` on ``df.index``.

    Example:
        >>> oob_mask(pd.DataFrame({"integration_oob": [0, 1]})).tolist()
        [False, True]
    """
    if "integration_oob" not in df.columns:
        _logger.debug("No 'integration_oob' column; the oob rule is skipped")
        return pd.Series(np.zeros(len(df), dtype=bool), index=df.index, name="oob")
    return pd.Series(df["integration_oob"].to_numpy() == 1, index=df.index, name="oob")


def cleaning_masks(
    df: pd.DataFrame,
    saturation: Mapping[str, float] | None = SATURATION_THRESHOLDS,
    min_integral: Mapping[str, float] | None = MIN_INTEGRALS,
    drop_oob: bool = True,
) -> pd.DataFrame:
    """Which rows each cleaning rule flags, independently of the others (a row may be flagged by several).

    Args:
        df: a dataset in the schema.
        saturation: ``{channel: largest allowed count}``, or None (or ``{}``) to flag no saturated spectrum.
        min_integral: ``{channel: smallest allowed sum}``, or None (or ``{}``) to flag no weak spectrum.
        drop_oob: flag the rows with ``integration_oob == 1``.

    Returns:
        Boolean DataFrame ``[N, 3]`` on ``df.index`` with the columns ``oob``, ``saturation``, ``integral``, in the
        order :func:`clean` applies them.

    Example:
        >>> df = pd.DataFrame({"277_295": [1e5, 9e3, 10.0], "277_296": [1e5, 1e5, 10.0],
        ...                    "integration_oob": [0, 0, 1]})
        >>> cleaning_masks(df)
             oob  saturation  integral
        0  False        True     False
        1  False        True      True
        2   True       False      True
    """
    masks = {
        "oob": oob_mask(df).to_numpy() if drop_oob else np.zeros(len(df), dtype=bool),
        "saturation": saturated_mask(df, saturation or {}).to_numpy(),
        "integral": weak_mask(df, min_integral or {}).to_numpy(),
    }
    return pd.DataFrame(masks, index=df.index, columns=list(_RULES))


def clean(
    df: pd.DataFrame,
    saturation: Mapping[str, float] | None = SATURATION_THRESHOLDS,
    min_integral: Mapping[str, float] | None = MIN_INTEGRALS,
    drop_oob: bool = True,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Drop the rows the lab discards: integration out of bounds, then saturated, then too weak.

    Args:
        df: a dataset in the schema.
        saturation: ``{channel: largest allowed count}``, or None (or ``{}``) to keep saturated spectra.
        min_integral: ``{channel: smallest allowed sum}``, or None (or ``{}``) to keep weak spectra.
        drop_oob: drop the rows with ``integration_oob == 1``.

    Returns:
        ``(cleaned, removed)``: the kept rows in their original order, and how many rows each rule removed,
        ``{"oob": n, "saturation": n, "integral": n}``; a row is counted by the first rule (in that order) that
        removes it.

    Example:
        >>> df = pd.DataFrame({"277_295": [1e5, 9e3, 10.0], "277_296": [1e5, 1e5, 10.0],
        ...                    "integration_oob": [0, 0, 1]})
        >>> kept, removed = clean(df)
        >>> len(kept), removed
        (0, {'oob': 1, 'saturation': 2, 'integral': 0})
    """
    masks = cleaning_masks(df, saturation, min_integral, drop_oob)
    removed_so_far = np.zeros(len(df), dtype=bool)
    removed = {}
    for rule in _RULES:
        newly = masks[rule].to_numpy() & ~removed_so_far
        removed[rule] = int(newly.sum())
        removed_so_far |= newly
    _logger.info("Cleaning kept %d of %d rows (removed %s)", len(df) - int(removed_so_far.sum()), len(df), removed)
    return df.loc[~removed_so_far], removed


# --------------------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------------------
def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in _SUFFIXES:
        raise DataFormatError(
            f"Output file {path.name!r} has suffix {path.suffix!r}; expected one of {list(_SUFFIXES)}. "
            "Name the output e.g. 'dataset.pkl'."
        )


def convert(raw_dir: str | os.PathLike, out_path: str | os.PathLike, **clean_kwargs) -> dict[str, int]:
    """Read a dataset's raw exports, clean it, and write it as ``.pkl``, ``.parquet`` or ``.csv``.

    Args:
        raw_dir: the folder of the raw exports (see :func:`read_raw_exports`).
        out_path: the dataset file to write; its suffix picks the format. It is written under a temporary name
            and renamed, so an error leaves no file.
        **clean_kwargs: ``saturation``, ``min_integral``, ``drop_oob`` of :func:`clean`.

    Returns:
        How many rows each cleaning rule removed, ``{"oob": n, "saturation": n, "integral": n}``.

    Raises:
        DataFormatError: an unknown output suffix (checked before reading) or unreadable exports.

    Example:
        >>> import tempfile
        >>> from spectratorch.data.synthetic import make_dataset
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = write_raw_exports(make_dataset(20, seed=1), tmp + "/raw")
        ...     removed = convert(tmp + "/raw", tmp + "/demo.pkl")
        >>> sorted(removed)
        ['integral', 'oob', 'saturation']
    """
    out_path = Path(out_path)
    _check_suffix(out_path)
    cleaned, removed = clean(read_raw_exports(raw_dir), **clean_kwargs)
    write_dataset(cleaned, out_path)
    _logger.info("Wrote %d samples to %s", len(cleaned), out_path)
    return removed
