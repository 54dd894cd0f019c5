"""Reading and writing dataset files (``.pkl``, ``.parquet``, ``.csv``, ``.tsv``, ``.xlsx``; ``.txt`` read) safely.

Pickle is the lab's fast format, but unpickling can run code: ``.pkl`` files go through the restricted unpickler of
:mod:`spectratorch.data.unpickle`, which admits only what a pandas DataFrame needs, checks every argument before
pandas' compiled code sees it, and refuses anything else before it is called. Parquet runs no code and is the format
to exchange data with strangers.

A CSV file may be separated by commas, semicolons or tabs, and a semicolon- or tab-separated one may write decimal
commas (``0,412``), as spreadsheets set to a European locale export it: the separator is the one that splits most of
the first lines into the same number of fields (a tab or semicolon before a comma on a tie), the decimal mark is a
comma when more of the first data rows' numbers have one than a point (a text column of codes such as ``1.1``
aside); a header number such as ``900,5`` then reads as 900.5. Text is UTF-8, else Windows-1252 (a Western
spreadsheet's "CSV"). Lines of notes before the header (one or two fields, as some instruments write their settings)
are skipped. Data lines one field longer than the header are
R's ``write.table`` (row names the header does not name: the sample ids) or, when that field is empty on every line,
a separator ending the data lines only; a line of another length is refused, naming it. In a workbook, the table is
the first sheet's whose header names spectral columns, below rows of notes of at most two cells.

In a CSV or Excel file only an empty (or blank) cell is missing in a column of text: a class named ``None``, ``NA``
or ``null`` stays a class. A column of numbers reads pandas' words for a missing value (``NaN``, ``NA``, ``nan``,
``#N/A`` ...) as missing, as an empty cell. A header that names a column twice is refused, as pandas would rename the
second one (``936.1``, a wavelength of its own).

CSV and Excel files have no index of their own: the first column is the sample id in the lab's layout
(``<channel>_<x>`` columns, as :func:`write_dataset` writes them) unless it is itself a numeric ``<channel>_<x>``
column of a channel the other columns continue (a table written without its ids) or its values repeat under a header
that is no id's (a label column placed first); in any other table only when it looks like one (a blank header, a name
such as ``id`` or ``sample``, or distinct text values; in a table with no spectral header, also a column of numbers
that runs like a spectral axis, one spectrum per column), else the rows are numbered from 0. A first column read as the
sample id must not repeat a value.

numpy/pandas only: no torch, so the torch-free inference path shares this module.
"""

from __future__ import annotations

import collections
import csv
import itertools
import logging
import mmap
import os
import pickle
import re
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from spectratorch.data.splits import TEST_MODES
from spectratorch.data.unpickle import load_frame_pickle
from spectratorch.errors import ConfigError, DataFormatError
from spectratorch.outputs import TEMPORARY_SUFFIX

__all__ = ["DATASET_SUFFIXES", "data_fingerprint", "is_instrument_export", "read_dataset", "read_dataset_mapped",
           "write_dataset", "atomic_path", "CsvDialect", "csv_dialect", "safe_load_pickle", "MISSING_WORDS",
           "DECIMAL_COMMA"]

_logger = logging.getLogger(__name__)

DATASET_SUFFIXES = (".pkl", ".pickle", ".parquet", ".csv", ".tsv", ".xlsx")
# reason: the names instruments and spreadsheets give a sample-id column.
_ID_NAMES = frozenset({"id", "ids", "sample", "sample_id", "sampleid", "sample id", "sample name", "name"})

# reason: an in-band buffer at least this large is read as a view of the file's mapping instead of a copy.
MAP_BUFFERS_FROM = 64 * 2**20

_SEPARATORS = ("\t", ";", ",")
DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d*,\d+([eE][-+]?\d+)?\s*$")
_DECIMAL_POINT = re.compile(r"^\s*[-+]?\d*\.\d+([eE][-+]?\d+)?\s*$")
# reason: enough rows to see a decimal mark in a table whose first values are whole numbers, and enough lines to see
# past the notes some instruments write before the table (a title, a date, the instrument's settings).
_SNIFF_ROWS = 5
_SNIFF_LINES = 40
# reason: one line of a spectrum of thousands of points is 100k+ characters, and a separator tried while sniffing reads
# it as one field: over the csv module's default limit (131,072), which stopped a 7,000-point FTIR file with a
# traceback. 2**31 - 1 is the largest limit every platform's C long takes.
_MAX_FIELD = 2**31 - 1
# reason: a line of notes is a text ("Instrument: NIR-1") or a name and a value ("Date;2024-05-01"); a wider short line
# is more likely a damaged header, which is refused rather than skipped.
_NOTE_FIELDS = 2
# reason: pandas' default missing-value words (the ``na_values`` of ``read_csv``/``read_excel``): still missing in a
# column of numbers, as they were; text in any other column, where they are classes ("None" against "Low", "High").
MISSING_WORDS = frozenset({"#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                            "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


def safe_load_pickle(path: str | os.PathLike) -> object:
    """Unpickle a file, admitting only pandas/numpy containers.

    Args:
        path: a pickle file.

    Returns:
        The unpickled object.

    Raises:
        UnsafePickleError: the pickle asks for anything else (``os.system``, ``builtins.open``, ...).
        DataFormatError: the file is truncated or not a pickle.
    """
    return load_frame_pickle(path)


def _load_mapped_pickle(path: Path, map_from: int) -> tuple[object, Callable[[], None]]:
    """Unpickle like :func:`safe_load_pickle`, with buffers of ``map_from`` bytes or more viewing a private mapping.

    Returns the object and ``release``: it hands the mapped pages read so far back to the page cache (the views stay
    valid; a page read again is mapped again), so a caller copying the data out a chunk at a time holds one copy.
    """
    with open(path, "rb") as file:
        # reason: copy-on-write, so the arrays are writable like unpickled ones and a write never reaches the file.
        mapping = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
    obj = load_frame_pickle(path, mapping, map_from)

    def release() -> None:
        if hasattr(mapping, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            mapping.madvise(mmap.MADV_DONTNEED)

    return obj, release


# reason: the names the fluorimeter gives its exports (data/raw.py), which `spectratorch convert` reads as a folder.
_INSTRUMENT_EXPORT = re.compile(r"^(EX_\d+_.+_I|LSPR_.+_I|Y_.+)\.txt$", re.IGNORECASE)


def is_instrument_export(name: str) -> bool:
    """Whether a file name is one of the lab fluorimeter's exports (read as a folder, not as a table).

    Example:
        >>> [is_instrument_export(name) for name in ("EX_277_batch 3_I.txt", "Y_batch 3.txt", "nir.txt")]
        [True, True, False]
    """
    return _INSTRUMENT_EXPORT.match(name) is not None


def _check_suffix(path: Path, writing: bool = False) -> str:
    """The file's suffix, ``.txt`` read as a delimited table (a spreadsheet's or an instrument's text export of one
    spectrum per row), refused for writing and for the lab fluorimeter's own exports."""
    suffix = path.suffix.lower()
    expected = ", ".join(DATASET_SUFFIXES)
    if path.is_dir():
        raise DataFormatError(f"{path}: a folder; expected a dataset file ({expected}). A folder of the instrument's "
                              "exports is made into one by `spectratorch convert`.")
    if suffix == ".txt" and not writing:
        if is_instrument_export(path.name):
            raise DataFormatError(f"{path}: one of the fluorimeter's export files; give the folder of the exports (or "
                                  "make a dataset of them with `spectratorch convert FOLDER -o data.pkl`).")
        return suffix
    if suffix not in DATASET_SUFFIXES:
        raise DataFormatError(f"{path}: unsupported dataset file type {suffix or '(none)'!r}; expected one of "
                              f"{expected}{'' if writing else ', or a .txt table'}.")
    return suffix


def read_dataset(path: str | os.PathLike) -> pd.DataFrame:
    """Read a dataset file into a DataFrame (one row per sample, the index is the sample id).

    Args:
        path: a ``.pkl``/``.pickle`` (restricted unpickler), ``.parquet``, ``.csv``/``.tsv`` or ``.xlsx`` file (for
            the last two, the first column is the id as the module's docstring says).

    Returns:
        The DataFrame as stored.

    Raises:
        DataFormatError: missing file, unsupported suffix, truncated or unreadable file, not a DataFrame.

    Example:
        >>> import pandas as pd, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "d.parquet")
        >>> write_dataset(pd.DataFrame({"277_300": [1.0]}, index=pd.Index(["a"], name="id")), path)
        >>> read_dataset(path).shape
        (1, 1)
    """
    return _read(Path(path), None)[0]


def read_dataset_mapped(
    path: str | os.PathLike, map_from: int | None = None
) -> tuple[pd.DataFrame, Callable[[], None]]:
    """Read a dataset file like :func:`read_dataset`, the large buffers of a pickle as views of the file.

    For a reader that copies what it needs out of the frame and then drops it: the spectral block of a large pickle
    (protocol 5, as pandas writes them) is not copied into memory but mapped, and ``release()`` hands the pages read
    so far back to the system, so the copy being built is the only one resident. The frame must not outlive the
    read: its mapped columns show the file as it is (a file truncated meanwhile makes a read fail).

    Args:
        path: as for :func:`read_dataset`.
        map_from: the size in bytes from which a pickle's buffer is mapped instead of copied (default
            ``MAP_BUFFERS_FROM``, 64 MiB; a smaller pickle is read like :func:`read_dataset`).

    Returns:
        ``(frame, release)``; ``release`` does nothing for parquet, CSV and small buffers.
    """
    return _read(Path(path), MAP_BUFFERS_FROM if map_from is None else map_from)


def _read(path: Path, map_from: int | None) -> tuple[pd.DataFrame, Callable[[], None]]:
    suffix = _check_suffix(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such dataset file. Check the path, or make one with "
                              "`spectratorch make-dataset`.")
    if path.stat().st_size == 0:
        raise DataFormatError(f"{path}: the file is empty (0 bytes).")
    release = _nothing
    if suffix in (".pkl", ".pickle"):
        if map_from is not None and path.stat().st_size >= map_from:
            df, release = _load_mapped_pickle(path, map_from)
        else:
            df = safe_load_pickle(path)
    elif suffix == ".parquet":
        df = _read_with(_read_parquet, path, "parquet")
    elif suffix == ".xlsx":
        _require_openpyxl(path)
        sheet, row, header = _read_with(_excel_table, path, "Excel (.xlsx)")
        _check_header(path, header)
        df = _with_id_column(_read_with(lambda p: _read_excel(p, sheet, row), path, "Excel (.xlsx)"), path)
    else:
        dialect = csv_dialect(path)
        extra = _check_csv(path, dialect)
        df = _with_id_column(_read_with(lambda p: _read_csv(p, dialect, extra), path, "CSV"), path)
    if not isinstance(df, pd.DataFrame):
        raise DataFormatError(f"{path}: expected a pandas DataFrame, found a {type(df).__name__}.")
    return df, release


class CsvDialect(NamedTuple):
    """How a CSV file is written: its separator, its decimal mark, and the lines of notes before its header."""

    separator: str = ","
    decimal: str = "."
    skip: int = 0


def csv_dialect(path: str | os.PathLike) -> CsvDialect:
    """The separator, decimal mark and lines of notes before the header of a CSV file (see the module's docstring).

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "d.csv")
        >>> _ = open(path, "w").write("Instrument: NIR-1\\nid;label;900;901\\na;x;0,41;0,42\\n")
        >>> csv_dialect(path)
        CsvDialect(separator=';', decimal=',', skip=1)
    """
    with open(path, newline="", encoding="utf-8", errors="replace") as file:
        lines = list(itertools.islice(file, _SNIFF_LINES))
    with _wide_fields():
        return _dialect(path, lines)


@contextmanager
def _wide_fields():
    """The csv module's field size limit raised to :data:`_MAX_FIELD` for the duration, then restored."""
    previous = csv.field_size_limit(_MAX_FIELD)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _dialect(path, lines: list[str]) -> CsvDialect:
    layouts = {separator: _layout(lines, separator) for separator in _SEPARATORS}
    # reason: the separator that splits the most lines into the same number of fields (more than one); on a tie a tab
    # or semicolon, since a file separated by them may hold commas as decimal marks, not the other way round.
    separator = max(_SEPARATORS, key=lambda s: (layouts[s][1] > 1, layouts[s][2], layouts[s][1]))
    widths, width, _ = layouts[separator]
    skip = next((i for i, w in enumerate(widths) if w == width), 0)
    if any(w > _NOTE_FIELDS for w in widths[:skip]):
        skip = 0  # reason: not notes before a table; _check_csv names the line that does not fit
    decimal = "."
    if separator != ",":
        fields = [f for row in csv.reader(lines[skip + 1 : skip + 1 + _SNIFF_ROWS], delimiter=separator) for f in row]
        # reason: the mark most numbers use; a text column (batch codes such as 1.1) may hold the other one.
        commas = sum(1 for field in fields if DECIMAL_COMMA.match(field))
        decimal = "," if commas > sum(1 for field in fields if _DECIMAL_POINT.match(field)) else "."
        _logger.info("%s: read as %s-separated values with decimal %s", path,
                     "tab" if separator == "\t" else "semicolon", "commas" if decimal == "," else "points")
    if skip:
        _logger.info("%s: the %d line(s) before the table's header skipped (%r...)", path, skip, lines[0].strip()[:40])
    return CsvDialect(separator, decimal, skip)


def _layout(lines: list[str], separator: str) -> tuple[list[int], int, int]:
    """Fields per line split by ``separator``, the most common number of fields (blank lines aside), and how many
    lines have it."""
    widths = [len(row) for row in csv.reader(lines, delimiter=separator)]
    counts = collections.Counter(w for w in widths if w) or collections.Counter([0])
    width, count = max(counts.items(), key=lambda item: (item[1], item[0]))
    return widths, width, count


def _read_csv(path: Path, dialect: CsvDialect, extra: str = "") -> pd.DataFrame:
    """UTF-8 (with or without a byte-order mark), else Windows-1252, as a Western-locale spreadsheet saves text; an
    empty column that a separator at the end of every line makes (``Unnamed: N``, no value) is dropped, and with
    decimal commas a header number such as ``900,5`` reads as ``900.5``. ``extra`` (from :func:`_check_csv`):
    ``"trailing"``, a separator at the end of every data line only; ``"row_names"``, a first field of each data line
    that the header does not name (R's ``write.table``), read as the sample id."""
    options = {"sep": dialect.separator, "decimal": dialect.decimal, "skiprows": dialect.skip}
    if extra == "trailing":
        options["index_col"] = False
    elif extra == "row_names":
        options["index_col"] = 0
    try:
        df = _read_keeping_words(lambda **more: _read_csv_float32(path, **options, **more))
    except UnicodeDecodeError:
        df = _read_keeping_words(lambda **more: _read_csv_float32(path, encoding="cp1252", **options, **more))
        _logger.info("%s: not UTF-8 text, read as Windows-1252", path)
    empty = [name for name in df.columns if str(name).startswith("Unnamed: ") and df[name].isna().all()]
    df = df.drop(columns=empty)
    if dialect.decimal == ",":
        df = df.rename(columns=lambda name: name.replace(",", ".") if DECIMAL_COMMA.match(name) else name)
    return df


_CSV_BLOCK_ROWS = 1 << 20


def _read_csv_float32(path: Path, **options) -> pd.DataFrame:
    """``pd.read_csv(path, **options)`` with the spectral columns parsed straight to float32, the values the schema
    keeps (each number rounded once, as from float64), where float64 would take twice the memory: 0.6 GB at the
    peak against 2.9 GB for 50,000 spectra of 2,000 points (``make_generic_frame(50000, 2, length=2000)``, 1.06 GB of
    CSV); as pandas reads them when a spectral column holds text (a word for a missing value, handled by
    :func:`_read_keeping_words`)."""
    from spectratorch.data.schema import spectral_columns

    if "usecols" not in options:
        names = pd.read_csv(path, nrows=0, **options).columns
        # reason: with decimal commas, a header's 900,5 is the wavelength 900.5 (renamed by the caller once read).
        comma = options.get("decimal") == ","
        as_read = {str(n).replace(",", ".") if comma and DECIMAL_COMMA.match(str(n)) else n: n for n in names}
        spectral = [as_read[name] for items in spectral_columns(list(as_read)).values() for _, name in items]
        if spectral:
            try:
                # reason: in blocks of rows, pandas' parser holds one block's text at a time (a whole-file read keeps
                # every piece until the end: 2.5 against 0.6 GB at its peak for the 50,000 spectra above).
                blocks = list(pd.read_csv(path, dtype=dict.fromkeys(spectral, "float32"), chunksize=_CSV_BLOCK_ROWS,
                                          **options))
                return blocks[0] if len(blocks) == 1 else pd.concat(blocks)
            except (ValueError, TypeError, OverflowError):
                pass  # reason: text in a spectral column; read again as pandas reads it, and its words kept or not
    return pd.read_csv(path, **options)


# reason: the spectral columns of a parquet file are read this many at a time, so that pyarrow holds the file's
# bytes and decoded values of a few columns at once, never of the whole file.
_PARQUET_COLUMNS = 64
# reason: pandas 2 copies the frames pd.concat joins unless told not to; pandas 3 copies on write and deprecates it.
_NO_COPY = {"copy": False} if int(pd.__version__.split(".")[0]) < 3 else {}


def _read_parquet(path: Path) -> pd.DataFrame:
    """``pd.read_parquet(path)``, with the spectral columns read a few at a time into one block of the file's float
    type: a whole-file read holds the file's compressed bytes, pyarrow's table and pandas' copy at once (``predict``
    of the lab generator's 186,000 samples peaked at 5.9 GB that way, 2.8 GB this way: doc/INFERENCE.md, with its
    command). A file whose
    spectral columns are not all of one float type, not side by side, or under more than one level of column names,
    or that has no other column, is read by pandas whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spectratorch.data.schema import spectral_columns

    with open(path, "rb") as handle:
        file = pq.ParquetFile(handle)
        schema = file.schema_arrow
        names = list(schema.names)
        spectral = {name for items in spectral_columns(names).values() for _, name in items}
        where = [i for i, name in enumerate(names) if name in spectral]
        types = {schema.field(name).type for name in spectral}
        pandas = schema.pandas_metadata or {}
        others = [name for name in names if name not in spectral]
        uniform = len(types) == 1 and pa.types.is_floating(next(iter(types))) and types != {pa.float16()}
        side_by_side = bool(where) and where[-1] - where[0] + 1 == len(where)
        flat = len(set(names)) == len(names) and len(pandas.get("column_indexes") or [None]) == 1
        if not (others and uniform and side_by_side and flat):
            block = None
        else:
            rest = file.read(columns=others, use_pandas_metadata=True).to_pandas()
            block = np.empty((len(where), file.metadata.num_rows), dtype=next(iter(types)).to_pandas_dtype())
            for start in range(where[0], where[-1] + 1, _PARQUET_COLUMNS):
                columns = names[start : min(start + _PARQUET_COLUMNS, where[-1] + 1)]
                for row, column in enumerate(file.read(columns=columns).columns, start - where[0]):
                    block[row] = column.to_numpy()
    if block is None:
        return pd.read_parquet(path)
    # reason: the file's column order (its index columns aside); the block's transpose is a frame, not a copy.
    index = {name for name in pandas.get("index_columns") or [] if isinstance(name, str)}
    before = sum(name not in index for name in names[: where[0]])
    spectra = pd.DataFrame(block.T, columns=names[where[0] : where[-1] + 1], index=rest.index)
    frame = pd.concat([rest.iloc[:, :before], spectra, rest.iloc[:, before:]], axis=1, **_NO_COPY)
    frame.columns.name = rest.columns.name
    return frame


def _excel_table(path: Path) -> tuple[int | str, int, list[str]]:
    """Where a workbook's table of spectra is: ``(sheet, header row, header)``, the first sheet whose header names
    spectral columns, below rows of notes of at most two cells, as in a CSV file (a sheet of settings before it, a
    title above the header); the first sheet's first row when none does (the schema's error then names its columns).
    The header is as written, blank cells left out."""
    from spectratorch.data.schema import spectral_columns

    first: list[str] = []
    with pd.ExcelFile(path, engine="openpyxl") as book:
        for number, sheet in enumerate(book.sheet_names):
            # reason: cells as written (a header's 936 stays 936, not the 936.0 of a column of floats)
            top = pd.read_excel(book, sheet_name=sheet, header=None, nrows=_SNIFF_LINES, dtype=object)
            for row in range(len(top)):
                names = [str(v) for v in top.iloc[row] if pd.notna(v) and str(v).strip()]
                if number == row == 0:
                    first = names
                if any(len(points) > 1 for points in spectral_columns(names).values()):
                    if number or row:
                        _logger.info("%s: the table of spectra read from sheet %r%s", path, sheet,
                                     f", its header on row {row + 1}" if row else "")
                    return sheet, row, names
                if len(names) > _NOTE_FIELDS:
                    break  # reason: a header of another table (or a row of data), not notes above the spectra's
    return 0, 0, first


def _read_excel(path: Path, sheet: int | str = 0, row: int = 0) -> pd.DataFrame:
    """A sheet's table from its header row on, its missing cells as in a CSV file (see :func:`_read_keeping_words`)."""
    return _read_keeping_words(lambda **more: pd.read_excel(path, engine="openpyxl", sheet_name=sheet, skiprows=row,
                                                            **more))


def _read_keeping_words(read: Callable[..., pd.DataFrame]) -> pd.DataFrame:
    """A table read by ``read`` (``pd.read_csv`` or ``pd.read_excel`` with their ``path`` and options bound) where only
    an empty or blank cell is missing in a column of text, and a column of numbers reads as pandas reads it.

    A column that holds one of pandas' missing-value words (:data:`MISSING_WORDS`) is read again with pandas' default
    ``na_values``: numbers there (a spectral column with ``NaN`` cells), it is taken as read again, exactly as before;
    else it keeps its words as text (a class named ``None``).
    """
    df = read(keep_default_na=False, na_values=[""])
    texts = [i for i in range(df.shape[1]) if _is_text(df.iloc[:, i])]
    worded = [i for i in texts if df.iloc[:, i].isin(MISSING_WORDS).any()]
    if worded:
        # reason: pandas' own parser for these columns (decimal commas, exponents, integers), not a second number
        # parser of ours; the file is read a second time only when a column holds such a word.
        again = read(usecols=worded)
        for i, column in zip(worded, range(again.shape[1])):
            values = again.iloc[:, column]
            if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
                df.isetitem(i, values)
                texts.remove(i)
    for i in texts:
        values = df.iloc[:, i]
        blank = values.map(lambda value: isinstance(value, str) and not value.strip()).astype(bool)
        if blank.any():
            df.isetitem(i, values.mask(blank))
    return df


def _is_text(values: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(values) or pd.api.types.is_object_dtype(values)


def _check_header(path: Path, header: list[str]) -> None:
    """Refuse a repeated column name, which pandas would read as ``name.1``: a wavelength of its own."""
    seen: set[str] = set()
    for name in header:
        if name in seen and name:
            raise DataFormatError(f"{path}: the column {name!r} appears twice in the header; keep one of them.")
        seen.add(name)


def _check_csv(path: Path, dialect: CsvDialect) -> str:
    """Refuse what pandas would silently repair: a repeated column name (read as ``name.1``) and a short row (a file
    cut mid-row, its missing fields read as NaN), or a row longer than the header.

    Returns:
        ``""``; ``"trailing"`` when every data line has one more field, empty (a separator at the end of the data
        lines only); ``"row_names"`` when every data line has one more field in front (R's ``write.table``, whose
        header does not name the row names).
    """
    with open(path, newline="", encoding="utf-8", errors="replace") as file, _wide_fields():
        reader = csv.reader(file, delimiter=dialect.separator)
        for _ in range(dialect.skip):
            next(reader, None)
        header = next(reader, [])
        _check_header(path, header)
        try:
            extra = _check_rows(path, dialect, len(header), _rows_by_bytes(path, dialect))
        except _NeedsQuotes:
            extra = _check_rows(path, dialect, len(header), ((reader.line_num, len(row), not row[-1].strip())
                                                              for row in reader if row))
    return extra


class _NeedsQuotes(Exception):
    """A line holds a quote or a lone carriage return: only the csv module tells its fields."""


def _rows_by_bytes(path: Path, dialect: CsvDialect):
    """``(line number, fields, last field blank)`` of each data line (blank lines aside), its fields counted by the
    separator's byte: four times faster than the csv module, and exact while no line holds a quote (a quoted field may
    hold the separator, or a line break) or a lone carriage return (an old Mac line end), where it raises
    :class:`_NeedsQuotes`."""
    separator = dialect.separator.encode()
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            if number <= dialect.skip + 1:
                continue  # reason: the notes and the header, read by the csv module
            line = line.rstrip(b"\n")
            line = line[:-1] if line.endswith(b"\r") else line
            if b'"' in line or b"\r" in line:
                raise _NeedsQuotes
            if line:
                yield number, line.count(separator) + 1, not line.rpartition(separator)[2].strip()


def _check_rows(path: Path, dialect: CsvDialect, width: int, rows) -> str:
    """:func:`_check_csv`'s verdict on ``rows``, ``(line number, fields, last field blank)`` of each data line."""
    extra, trailing = None, True
    for number, fields, last_blank in rows:
        if extra is None:
            extra = fields == width + 1
        if fields != width + extra:
            found = f"line {number} has {fields} fields, the header {width}"
            if fields < width:
                raise DataFormatError(f"{path}: {found}; the file may be truncated (cut mid-row) or damaged.")
            raise DataFormatError(f"{path}: {found}; a value holding the separator {dialect.separator!r}, or a "
                                  "column without a name in the header?")
        trailing = trailing and (not extra or last_blank)
    if not extra:
        return ""
    return "trailing" if trailing else "row_names"


def _nothing() -> None:
    return None


def _require_openpyxl(path: Path) -> None:
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        raise DataFormatError(f"{path}: reading or writing .xlsx files needs openpyxl, which is not installed: "
                              "`pip install openpyxl` (or save the sheet as .csv).") from None


def _with_id_column(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Make the first column the index when it holds the sample ids (see the module's docstring).

    Raises:
        DataFormatError: the column read as the sample id repeats a value.
    """
    from spectratorch.data.schema import BARE_NUMBER, SPECTRAL_COLUMN, is_plain_layout, runs_like_axis

    if df.shape[1] == 0:
        return df
    first = df.columns[0]
    name = str(first)
    values = df[first]
    blank = name.startswith("Unnamed: 0") or not name.strip()
    named_id = blank or name.strip().lower() in _ID_NAMES
    spectral = SPECTRAL_COLUMN.match(name)
    if spectral and pd.api.types.is_numeric_dtype(values) and any(
            (m := SPECTRAL_COLUMN.match(str(c))) and m["channel"] == spectral["channel"] for c in df.columns[1:]):
        # reason: a lab-layout table written without its ids (``to_csv(index=False)``) starts with a spectral
        # column of a channel the others continue; it stays a column, so no wavelength is lost.
        return df
    if any(SPECTRAL_COLUMN.match(str(c)) for c in df.columns):
        # reason: the lab's layout, written by write_dataset: the index comes first whatever its name or type (ids,
        # sequence numbers); only values that repeat under another header are no ids (a label column placed first).
        is_id = named_id or values.is_unique
    else:
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        text_ids = not numeric and not pd.api.types.is_bool_dtype(values) and values.notna().all() and values.is_unique
        # reason: with no spectral header at all (neither layout: the schema refuses the table), a first column that
        # runs like a spectral axis is an export of one spectrum per column; as the index, the schema's error says
        # to transpose it. Any other column stays one, so the error names it among the columns.
        axis = not is_plain_layout(df.columns) and runs_like_axis(values)
        is_id = named_id or (not BARE_NUMBER.match(name) and text_ids) or axis
    if not is_id:
        return df
    _check_ids(path, name if not blank else None, values)
    df = df.set_index(first)
    if blank:
        df.index.name = None
    return df


def _check_ids(path: Path, name: str | None, values: pd.Series) -> None:
    """Refuse a first column read as the sample id that repeats a value, in the file's terms (the schema's own check
    speaks of a DataFrame's index)."""
    repeated = values.duplicated()
    if not repeated.any():
        return
    examples = list(dict.fromkeys(values[repeated].tolist()))[:5]
    column = f"the first column, {name!r}," if name is not None else "the first column (no header)"
    # reason: repeated ids may be replicate scans of one sample, rows to keep: the fix is ids of their own, or a
    # header under which the column is no id.
    raise DataFormatError(
        f"{path}: {column} is read as the sample id and must be unique; {int(repeated.sum())} rows repeat the id of an "
        f"earlier row, e.g. {examples}. Give every row an id of its own (replicate scans of one sample too, e.g. "
        "'A-1', 'A-2'), or, if the column is not the sample id, give it another header (e.g. 'group'): it then stays "
        "a column, the rows are numbered from 0, and `--groups group` keeps a sample's scans in one fold."
    )


def _read_with(reader, path: Path, kind: str) -> pd.DataFrame:
    try:
        return reader(path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataFormatError(
            f"{path}: cannot read it as {kind} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
            "the file may be truncated or of another format."
        ) from None


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.

    Nothing is left half-written: on an error the temporary file is removed and ``path`` keeps its old content.

    Raises:
        ConfigError: ``path`` is a directory (nothing is written).
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; expected the path of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(fd)
    # reason: mkstemp creates 0600; a dataset or a model is as readable as any file the user writes.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_dataset(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a dataset atomically as ``.pkl``, ``.parquet``, ``.csv``, ``.tsv`` (tabs) or ``.xlsx`` (by suffix).

    Args:
        df: one row per sample, unique index.
        path: the destination; its suffix picks the format.

    Raises:
        DataFormatError: unsupported suffix.
    """
    path = Path(path)
    suffix = _check_suffix(path, writing=True)
    with atomic_path(path) as tmp:
        if suffix in (".pkl", ".pickle"):
            df.to_pickle(tmp, protocol=pickle.HIGHEST_PROTOCOL)
        elif suffix == ".parquet":
            df.to_parquet(tmp)
        elif suffix == ".xlsx":
            _require_openpyxl(path)
            df.to_excel(tmp, engine="openpyxl")
        else:
            df.to_csv(tmp, sep="\t" if suffix == ".tsv" else ",")
    _logger.info("wrote %s (%d rows, %d columns)", path, len(df), df.shape[1])


def data_fingerprint(config) -> dict:
    """What identifies the files a run read, for a later run to tell whether they changed: ``{"data": {"size",
    "mtime_ns"}, "test_source": ...}`` for the run's data file and its ``--test-source`` file (files only).

    Args:
        config: a :class:`~spectratorch.config.DataConfig`.
    """
    sources = {"data": config.data_path}
    if config.test_source not in TEST_MODES:
        sources["test_source"] = Path(config.test_source)
    out = {}
    for key, path in sources.items():
        try:
            stat = Path(path).stat()
        except OSError:
            continue
        out[key] = {"size": int(stat.st_size), "mtime_ns": int(stat.st_mtime_ns)}
    return out
