"""An uploaded file onto disk, checked, so the same readers as ``spectratorch predict`` take it.

A dataset file (``.parquet``, ``.csv``, ``.pkl``: the latter read later through the restricted unpickler of
:mod:`spectratorch.data.io`) is written as it came; a ``.zip`` of instrument exports is unpacked flat into a
folder (only the files' own names are kept, so no member can land outside it), for
:func:`spectratorch.data.raw.read_raw_exports`. Empty files, files over the size limit, and zips that would unpack
over it, hold too many members or a member compressed far more than any export (a zip bomb) are refused with a
message saying what to do. The page runs this in the child process of :mod:`spectratorch.app.isolate`.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath

from spectratorch.data.io import DATASET_SUFFIXES, is_instrument_export
from spectratorch.errors import DataFormatError

__all__ = ["UPLOAD_SUFFIXES", "DEFAULT_LIMIT_MB", "MAX_RATIO", "MAX_MEMBERS", "save_upload", "check_upload"]

_logger = logging.getLogger(__name__)

UPLOAD_SUFFIXES = (".parquet", ".csv", ".tsv", ".txt", ".xlsx", ".pkl", ".pickle", ".zip")
DEFAULT_LIMIT_MB = 200.0
"""Streamlit's own default ``server.maxUploadSize``."""

# reason: exports compress about 3:1; an archive that unpacks past this multiple of the limit is refused (zip bomb).
_UNPACK_FACTOR = 10
# reason: instrument exports (text of numbers) deflate 2.1-3.3 to 1 (the demo's exports, `spectratorch
# make-dataset --raw-dir`); a member that claims 100 times its compressed size is padding or a bomb.
MAX_RATIO = 100
# reason: one batch is 5 exports (three EX_, LSPR_, Y_); 10,000 members is 2,000 batches in one upload, and the
# archive's directory is read before anything is unpacked.
MAX_MEMBERS = 10_000
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._ ()=',\[\]+-]")


def _megabytes(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.3g} MB"


def check_upload(name: str, size: int, limit_mb: float = DEFAULT_LIMIT_MB) -> str:
    """Check an upload's name and size before reading it.

    Args:
        name: the file name the browser sent.
        size: its size in bytes.
        limit_mb: the largest upload accepted, in MB (10^6 bytes).

    Returns:
        The file's suffix, lower case.

    Raises:
        DataFormatError: another file type, one instrument export alone (they come as a zip), an empty file, or a
            file over the limit.

    Example:
        >>> check_upload("batch 12.parquet", 5000)
        '.parquet'
    """
    suffix = Path(name).suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise DataFormatError(
            f"{name}: files of type {suffix or '(none)'!r} are not read here; expected a dataset file "
            f"(.parquet, .csv, .tsv, .txt, .xlsx, .pkl) or a .zip of the instrument's exports."
        )
    if suffix == ".txt" and is_instrument_export(_safe_name(name)):
        raise DataFormatError(f"{name}: one of the instrument's export files; drop a .zip of the folder that holds "
                              "its exports (EX_<nm>_<name>_I.txt and Y_<name>.txt) instead.")
    if size == 0:
        raise DataFormatError(f"{name}: the file is empty (0 bytes). Export it again, or pick another file.")
    if size > limit_mb * 1e6:
        raise DataFormatError(
            f"{name}: {_megabytes(size)} is over the page's upload limit of {_megabytes(limit_mb * 1e6)}. Split the "
            "file, or start the page with a larger `spectratorch app --max-upload-mb`."
        )
    return suffix


def _safe_name(name: str) -> str:
    # reason: keep the inspector's file name in messages, but never a path or a character a file system refuses.
    cleaned = _UNSAFE_CHARS.sub("_", PurePosixPath(name.replace("\\", "/")).name).lstrip(".")
    return cleaned or "upload"


def save_upload(name: str, data: bytes, folder: str | os.PathLike, limit_mb: float = DEFAULT_LIMIT_MB) -> Path:
    """Write an upload into ``folder`` and return what the readers take: a dataset file or a folder of exports.

    Args:
        name: the file name the browser sent.
        data: its bytes.
        folder: an empty working folder (the caller removes it).
        limit_mb: the largest upload accepted, in MB; a zip may unpack to at most 10 times this.

    Returns:
        The dataset file, or the folder holding the unpacked exports (or the one dataset file the zip held).

    Raises:
        DataFormatError: see :func:`check_upload`; a zip that is not one, holds nothing usable, or unpacks too big.

    Example:
        >>> import tempfile
        >>> save_upload("d.csv", b"id,277_300\\na,1\\n", tempfile.mkdtemp()).name
        'd.csv'
    """
    suffix = check_upload(name, len(data), limit_mb)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if suffix != ".zip":
        path = folder / _safe_name(name)
        path.write_bytes(data)
        return path
    return _unpack(name, data, folder / "exports", limit_mb * 1e6 * _UNPACK_FACTOR)


def _unpack(name: str, data: bytes, target: Path, max_bytes: float) -> Path:
    import io

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise DataFormatError(f"{name}: not a readable zip archive. Zip the folder of exports again.") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir() and not _ignored(m.filename)]
        _check_members(name, members, max_bytes)
        names = [_safe_name(m.filename) for m in members]
        repeated = sorted(n for n, count in Counter(names).items() if count > 1)
        if repeated:
            more = f" and {len(repeated) - 5} more" if len(repeated) > 5 else ""
            raise DataFormatError(f"{name}: several files are named {repeated[:5]}{more}; put one dataset's exports "
                                  "in a zip.")
        exports = [m for m, n in zip(members, names) if n.lower().endswith(".txt")]
        datasets = [m for m, n in zip(members, names) if n.lower().endswith(DATASET_SUFFIXES)]
        if not exports and len(datasets) != 1:
            found = ", ".join(names[:5]) or "nothing"
            raise DataFormatError(
                f"{name}: expected the instrument's exports (EX_<nm>_<name>_I.txt and Y_<name>.txt) or one dataset "
                f"file; found {found}. Zip the folder that `spectratorch convert` would read."
            )
        target.mkdir(parents=True, exist_ok=True)
        for member in exports or datasets:
            try:
                (target / _safe_name(member.filename)).write_bytes(archive.read(member))
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as err:
                raise DataFormatError(f"{name}: cannot unpack {member.filename!r} ({err}).") from None
    _logger.info("unpacked %d files of %s", len(exports or datasets), name)
    return target if exports else target / _safe_name(datasets[0].filename)


def _check_members(name: str, members: list[zipfile.ZipInfo], max_bytes: float) -> None:
    """Refuse an archive by what its directory says, before unpacking anything (a member's declared size also bounds
    what unpacking it reads: zipfile stops there and checks the CRC)."""
    if len(members) > MAX_MEMBERS:
        raise DataFormatError(f"{name}: holds {len(members)} files, over the limit of {MAX_MEMBERS}; upload fewer "
                              "exports at a time.")
    total = sum(m.file_size for m in members)
    if total > max_bytes:
        raise DataFormatError(f"{name}: unpacks to {_megabytes(total)}, over the limit of {_megabytes(max_bytes)}; "
                              "upload fewer exports at a time.")
    for member in members:
        if member.file_size > MAX_RATIO * max(member.compress_size, 1):
            raise DataFormatError(
                f"{name}: {member.filename!r} would unpack to {member.file_size / max(member.compress_size, 1):,.0f} "
                f"times its packed size (exports pack about 3 to 1; the limit is {MAX_RATIO}); it is not an export. "
                "Zip the folder of exports again."
            )


def _ignored(filename: str) -> bool:
    # reason: macOS's Finder adds __MACOSX/ and ._* resource forks to every zip it makes.
    parts = PurePosixPath(filename.replace("\\", "/")).parts
    return any(part == "__MACOSX" for part in parts) or (parts and parts[-1].startswith("."))
