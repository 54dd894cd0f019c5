"""Where commands write: one run per output folder at a time, leftovers of killed runs removed, output files checked.

- :func:`claim_output_dir`: ``train`` and ``cv`` hold an advisory lock (``fcntl.flock``) on
  ``<output dir>/.spectratorch.lock`` for the whole run; the file says who holds it. A second run into the same
  folder is refused with one line naming the holder; a lock left by a process that died is no lock (the system
  releases it with the process) and is taken over; a folder the run made and wrote nothing in (a refusal of its
  input) is removed at the end. Once held, the temporary files that :func:`~spectratorch.data.io.
  atomic_path` names (``.<name>.<8 characters>.spectratorch.tmp``) left in the folder by a killed run are removed.
- :func:`check_output_file`: an output file that is one of the command's inputs, a folder, or not writable is
  refused before any work.

No torch here.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from spectratorch.errors import ConfigError

__all__ = ["LOCK_NAME", "TEMPORARY_SUFFIX", "claim_output_dir", "remove_leftovers", "check_output_file"]

_logger = logging.getLogger(__name__)

LOCK_NAME = ".spectratorch.lock"
TEMPORARY_SUFFIX = ".spectratorch.tmp"
"""The end of every temporary file name of :func:`~spectratorch.data.io.atomic_path`."""
# reason: tempfile.mkstemp's names: prefix + 8 characters of [a-z0-9_] + suffix; atomic_path's prefix is ".<name>.".
# The suffix names the package, so another program's temporary files are never taken for ours.
_LEFTOVER = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(TEMPORARY_SUFFIX) + "$")
# reason: the deepest folder a run writes under its output directory: trials/<study>/trial-<n> (pipelines/tune.py).
_LEFTOVER_DEPTH = 3


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another run"
    if not isinstance(info, dict):
        return "another run"
    return (f"run {info.get('pid', '?')} on {info.get('host', '?')} (`{info.get('command', '?')}`, started "
            f"{info.get('started', '?')})")


@contextmanager
def claim_output_dir(directory: str | os.PathLike, command: str | None = None):
    """Hold ``directory`` for this run; remove the temporary files a killed run left there.

    Args:
        directory: the output folder (created when missing, and removed again when the run wrote nothing in it).
        command: what runs, for the message another run gets (default: this process's command line).

    Raises:
        ConfigError: another live run holds the folder, or the folder cannot be created.

    Example:
        >>> import tempfile
        >>> with claim_output_dir(tempfile.mkdtemp(), "spectratorch train") as folder:
        ...     (folder / ".spectratorch.lock").is_file()
        True
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"the output directory {directory} is a file; choose a folder with --output-dir.")
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ConfigError(f"the output directory {directory} is not writable ({err.strerror}); choose another with "
                          "--output-dir.") from None
    try:
        _lock(fd, directory)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command or " ".join(sys.argv),
                "started": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        remove_leftovers(directory)
        yield directory
    finally:
        # reason: a run refused before it wrote anything (bad input) leaves no folder it made; otherwise the lock file
        # stays and closing releases the lock, so a lock is never a missing file while the folder holds a run's work.
        if created and [p.name for p in directory.iterdir()] == [LOCK_NAME]:
            _remove_empty(directory)
        os.close(fd)


def _remove_empty(directory: Path) -> None:
    try:
        (directory / LOCK_NAME).unlink()
        directory.rmdir()
    except OSError:
        pass


def _lock(fd: int, directory: Path) -> None:
    try:
        import fcntl
    except ImportError:  # reason: no flock on Windows; runs there are not protected from each other.
        _logger.info("no file locks on this system: %s is not protected from a second run", directory)
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(directory / LOCK_NAME)
        raise ConfigError(f"the output directory {directory} is in use by {holder}; wait for it to finish, or choose "
                          "another --output-dir.") from None


def remove_leftovers(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`~spectratorch.data.io.atomic_path` in ``directory`` and the folders a run
    writes under it (a run killed mid-write leaves them; a live run's are protected by the folder's lock, so call this
    only while holding it). A sub-folder with a lock of its own belongs to another run and is left alone, as is
    anything deeper than a run writes.

    Returns:
        The files removed.
    """
    directory = Path(directory)
    removed, size = [], 0
    for root, folders, files in os.walk(directory):
        here = Path(root)
        depth = len(here.relative_to(directory).parts)
        # reason: os.walk visits only the folders left in the list; another run's folder and deeper ones are not ours.
        folders[:] = [] if depth >= _LEFTOVER_DEPTH else [f for f in folders if not (here / f / LOCK_NAME).exists()]
        for name in files:
            if _LEFTOVER.match(name):
                path = here / name
                try:
                    size += path.lstat().st_size
                    path.unlink()
                except OSError:
                    continue
                removed.append(path)
    if removed:
        _logger.warning("removed %d temporary files (%.3g MB) left in %s by an interrupted run", len(removed),
                        size / 1e6, directory)
    return removed


# reason: files a wrong -o must not replace with another kind (data, instrument exports, models, run records);
# written out here, as data.io imports this module.
_OTHER_KINDS = (".pkl", ".pickle", ".parquet", ".csv", ".tsv", ".xlsx", ".txt", ".onnx", ".ckpt", ".json", ".png",
                ".yaml", ".yml")


def warn_if_replacing(directory: str | os.PathLike, stem: str) -> set[Path]:
    """Say, in one warning, that a run is about to replace the files of an earlier run of the same name (the name
    holds the architecture, targets, channels, transforms, split, seed and epsilon, not the data file or the other
    settings); returns the earlier runs' best checkpoints (:func:`best_checkpoints`), for
    :func:`remove_earlier_best` once this run has saved its own."""
    if (Path(directory) / f"{stem}.json").is_file():
        _logger.warning("%s holds an earlier run of the same name (%s.json): this run replaces its JSON, result "
                        "sheet, ONNX file and best checkpoint; --output-dir DIR keeps both", directory, stem)
    return best_checkpoints(directory, stem)


def best_checkpoints(directory: str | os.PathLike, stem: str) -> set[Path]:
    """The best checkpoints of runs named ``stem`` in ``directory``: ``<stem>_<val_loss>_<val_f1>_<val_accuracy>.ckpt``
    (not ``<stem> last.ckpt``, nor a longer name that starts with ``stem``).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("m_3.374E-01_0.8517_0.8692.ckpt", "m last.ckpt", "m2_3.374E-01_0.8517_0.8692.ckpt"):
        ...     _ = (folder / name).write_bytes(b"")
        >>> sorted(p.name for p in best_checkpoints(folder, "m"))
        ['m_3.374E-01_0.8517_0.8692.ckpt']
    """
    directory = Path(directory)
    if not directory.is_dir():
        return set()
    pattern = re.compile(re.escape(stem) + r"_[^_\s]+_[^_\s]+_[^_\s]+\.ckpt")
    return {path for path in directory.iterdir() if pattern.fullmatch(path.name) and path.is_file()}


def remove_earlier_best(earlier: set[Path], best: str | os.PathLike, keep: Iterable = ()) -> None:
    """Remove the best checkpoints an earlier run of the same name left (``earlier``, listed before this run
    trained), once this run has saved its own ``best``: a folder then holds one best checkpoint per name. A file
    in ``keep`` (the run's own inputs, e.g. ``--load-this``) stays."""
    spared = {Path(best).resolve(), *(Path(path).resolve() for path in keep if path)}
    for path in sorted(earlier):
        if path.resolve() in spared:
            continue
        path.unlink(missing_ok=True)
        _logger.info("removed %s, the best checkpoint of the earlier run of the same name", path.name)


def check_output_file(path: str | os.PathLike, inputs: dict[str, str | os.PathLike], option: str = "-o",
                      example: str = "predictions.csv") -> Path:
    """Refuse an output file that would overwrite an input, is a folder, is empty, cannot be written, or would replace
    a device or an existing file of another kind (``-o data.pkl`` for a CSV).

    Args:
        path: the output file asked for.
        inputs: ``{what: path}`` of the command's inputs (the model, the data).
        option: the flag, for messages.
        example: a file name the messages suggest.

    Returns:
        The path.

    Raises:
        ConfigError: see above.

    Example:
        >>> check_output_file("data.csv", {"the data": "data.csv"})
        Traceback (most recent call last):
        ...
        spectratorch.errors.ConfigError: -o data.csv is the data itself; write to another file.
    """
    text = os.fspath(path)
    if not text.strip():
        raise ConfigError(f"{option} is empty; give the file to write, e.g. {option} {example}.")
    path = Path(text)
    resolved = path.resolve()
    for what, source in inputs.items():
        if resolved == Path(source).resolve():
            raise ConfigError(f"{option} {text} is {what} itself; write to another file.")
    if path.is_dir():
        raise ConfigError(f"{option} {text} is a folder; give a file name, e.g. {option} '{path / example}'.")
    if path.exists() and not path.is_file():
        raise ConfigError(f"{option} {text} is not a regular file (a device, a pipe or a socket), which would be "
                          "replaced; write to a file.")
    expected = Path(example).suffix.lower()
    if path.is_file() and path.suffix.lower() != expected and path.suffix.lower() in _OTHER_KINDS:
        raise ConfigError(f"{option} {text} is an existing {path.suffix or 'suffix-less'} file, which this would "
                          f"replace with a {expected} file; write to a {expected} file.")
    parent = next(p for p in (resolved.parent, *resolved.parent.parents) if p.exists())
    if not parent.is_dir():
        raise ConfigError(f"{option} {text} cannot be written: {parent} is a file, not a folder; choose another file.")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option} {text} cannot be written (no write permission in {parent}); choose another "
                          "file.")
    return path
