"""An upload read and predicted in a child process with a memory and a time limit, so a bad file costs that upload only.

The page's server serves every user from one process. A file that crashes a reader (a fault in compiled code), asks
for more memory than the machine has, or never finishes would otherwise take the page down for all of them; a
pickle that changes a class would change it for everyone after. Here the upload is unpacked, read, checked and
predicted by ``python -m spectratorch.app.isolate`` with ``RLIMIT_AS`` (address space) and no core file, killed past
the time limit; the server only reads back plain arrays (``.npy``, never a pickle) and one JSON object. Whatever
goes wrong, the caller gets one :class:`~spectratorch.errors.DataFormatError` line naming the file.

No torch here (the child imports what ``spectratorch predict`` imports).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from spectratorch.app.upload import DEFAULT_LIMIT_MB, check_upload
from spectratorch.data.schema import SkippedRows
from spectratorch.errors import DataFormatError

__all__ = ["Prediction", "predict_upload", "default_memory_mb", "DEFAULT_SECONDS", "apply_limits", "main"]

_logger = logging.getLogger(__name__)

# reason: the child's own address space before it reads anything is about 1.9 GB (numpy, pandas, pyarrow and
# onnxruntime mapped, the example model loaded; VmPeak of a 240-sample predict); the file, its frame, the float32
# table and the probabilities then take a few times the upload's size. 16 times is room for a text export read
# into float64 columns and copied once.
_BASE_MEMORY_MB = 2560
_MEMORY_PER_UPLOAD_MB = 16
DEFAULT_SECONDS = 600.0
"""Wall-clock seconds the child may take (reason: a VGG11 on 300,000 spectra on an old 4-core PC takes minutes)."""
_CHILD_MODULE = "spectratorch.app.isolate"
_RESULT = "result.json"
_ARRAYS = ("spectra", "tabular", "ids", "probabilities", "true_labels")
# reason: the outlier outputs of a model that has them (t2, q: float32 [N]; outlier: bool [N]).
_TRUST_ARRAYS = ("t2", "q", "outlier")
# reason: a result file larger than this is not one our child wrote.
_MAX_RESULT_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What the page shows of an upload: the rows it read, their probabilities and, when the file has them, labels.

    Attributes:
        spectra: float32 ``[N, C, L]`` on the model's channels and axis.
        tabular: float32 ``[N, T]``.
        ids: ``[N]`` sample ids.
        probabilities: float32 ``[N, K]``, columns in the model's label order.
        true_labels: ``[N]`` each row's label as the file has it (text; empty: none), or ``None`` when the file has
            no labels for the model's target (:func:`~spectratorch.inference.truth_indices` maps them to the
            model's classes).
        report: rows skipped by each check.
        trust: the model's outlier outputs, ``t2``, ``q`` (float32 ``[N]``) and ``outlier`` (bool ``[N]``), when it
            has them.
        skipped: the file's rows that got no prediction, with their places and reasons (what ``predict`` writes
            back in its CSV), or ``None``.
    """

    spectra: np.ndarray
    tabular: np.ndarray
    ids: np.ndarray
    probabilities: np.ndarray
    true_labels: np.ndarray | None
    report: dict
    trust: dict = dataclasses.field(default_factory=dict)
    skipped: SkippedRows | None = None

    @property
    def outputs(self) -> dict:
        """Every output of the model, as :meth:`~spectratorch.inference.Predictor.predict_outputs` gives them."""
        from spectratorch.inference import OUTPUT_PROBABILITIES

        return {OUTPUT_PROBABILITIES: self.probabilities, **self.trust}


def default_memory_mb(limit_mb: float = DEFAULT_LIMIT_MB) -> int:
    """The child's address-space limit for uploads of up to ``limit_mb``.

    Example:
        >>> default_memory_mb(200)
        5760
    """
    return int(_BASE_MEMORY_MB + _MEMORY_PER_UPLOAD_MB * limit_mb)


# ---- the server's side --------------------------------------------------------------------------------------------
def predict_upload(model: str | os.PathLike, name: str, data: bytes, limit_mb: float = DEFAULT_LIMIT_MB,
                   memory_mb: int | None = None, seconds: float = DEFAULT_SECONDS) -> Prediction:
    """Read and predict an upload in a child process with limits.

    Args:
        model: the ``.onnx`` file.
        name: the file name the browser sent.
        data: its bytes.
        limit_mb: the page's upload limit, in MB.
        memory_mb: the child's address-space limit (default :func:`default_memory_mb`).
        seconds: the child's wall-clock limit.

    Returns:
        The prediction.

    Raises:
        DataFormatError: the file is refused (the reader's own line), or its reading crashed, ran out of memory or
            time: one line naming the file.
    """
    check_upload(name, len(data), limit_mb)
    memory_mb = int(memory_mb or default_memory_mb(limit_mb))
    with tempfile.TemporaryDirectory(prefix="spectratorch-app-") as tmp:
        work = Path(tmp)
        (work / "upload").write_bytes(data)
        request = {"model": str(Path(model).resolve()), "name": name, "limit_mb": limit_mb, "memory_mb": memory_mb}
        (work / "request.json").write_text(json.dumps(request))
        try:
            done = subprocess.run([sys.executable, "-m", _CHILD_MODULE, str(work)], capture_output=True,
                                  timeout=seconds, env=_child_env(), stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            _logger.warning("reading %s took longer than %g s; stopped", name, seconds)
            raise DataFormatError(f"{name}: reading it took longer than the page allows ({seconds:g} s); it was "
                                  "stopped. Split the file, or predict it with `spectratorch predict`.") from None
        if done.stderr:
            _logger.info("the reader of %s said: %s", name, done.stderr.decode(errors="replace")[-4000:])
        return _result(name, work, done.returncode, memory_mb)


def _child_env() -> dict:
    # reason: the child imports this very spectratorch, whatever the server's working folder.
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _result(name: str, work: Path, returncode: int, memory_mb: int) -> Prediction:
    if returncode < 0:
        try:
            kind = signal.Signals(-returncode).name
        except ValueError:
            kind = f"signal {-returncode}"
        _logger.warning("the reader of %s died of %s", name, kind)
        raise DataFormatError(f"{name}: reading it crashed the reader ({kind}); the file is damaged or not a dataset. "
                              "The page carries on; try another file.")
    path = work / _RESULT
    if not path.is_file() or path.stat().st_size > _MAX_RESULT_BYTES:
        raise DataFormatError(f"{name}: the reader stopped without an answer (exit status {returncode}); the file is "
                              "damaged or too large for the page. Try `spectratorch predict`.")
    try:
        result = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        raise DataFormatError(f"{name}: the reader's answer is unreadable; the file is damaged.") from None
    if result.get("error") == "memory":
        raise DataFormatError(f"{name}: reading it needs more memory than the page allows ({memory_mb} MB); "
                              "split the file, or predict it with `spectratorch predict`.")
    if result.get("error"):
        raise DataFormatError(str(result["error"]).splitlines()[0])
    arrays = {}
    for key in (*_ARRAYS, *_TRUST_ARRAYS):
        file = work / f"{key}.npy"
        arrays[key] = np.load(file, allow_pickle=False) if file.is_file() else None
    report = {str(k): int(v) for k, v in (result.get("report") or {}).items()}
    trust = {key: arrays[key] for key in _TRUST_ARRAYS if arrays[key] is not None}
    skipped = [work / f"skipped_{key}.npy" for key in ("positions", "ids", "reasons")]
    rows = SkippedRows(*(np.load(file, allow_pickle=False).astype(dtype) for file, dtype in
                         zip(skipped, (np.int64, object, object)))) if all(f.is_file() for f in skipped) else None
    return Prediction(arrays["spectra"], arrays["tabular"], arrays["ids"], arrays["probabilities"],
                      arrays["true_labels"], report, trust, rows)


# ---- the child's side ---------------------------------------------------------------------------------------------
def apply_limits(memory_mb: int) -> None:
    """Limit this process's address space to ``memory_mb`` and write no core file when it crashes.

    Args:
        memory_mb: the limit, in MB (2^20 bytes).
    """
    try:
        import resource
    except ImportError:  # reason: no rlimits on Windows; the time limit and the separate process still hold there.
        return
    wanted = int(memory_mb) * 2**20
    for kind, value in ((resource.RLIMIT_AS, wanted), (resource.RLIMIT_CORE, 0)):
        _, hard = resource.getrlimit(kind)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(kind, (value, hard))


def _plain_ids(ids: np.ndarray) -> np.ndarray:
    # reason: .npy without pickle holds numbers and fixed-width text only; other ids travel as their text.
    ids = np.asarray(ids)
    return ids if ids.dtype.kind in "biuf" else np.array([str(i) for i in ids], dtype=str)


def _work(work: Path, request: dict) -> dict:
    from spectratorch.app.upload import save_upload
    from spectratorch.inference import Predictor

    name = request["name"]
    folder = work / "unpacked"
    try:
        source = save_upload(name, (work / "upload").read_bytes(), folder, request["limit_mb"])
        (work / "upload").unlink()
        predictor = Predictor(request["model"])
        table = predictor.load(source)
        predictor._check_table(table)
        outputs = predictor.predict_outputs(table.spectra, table.tabular)
        true_labels = predictor.true_labels(table)
    except MemoryError:
        return {"error": "memory"}
    # reason: .npy without pickle holds fixed-width text, not Python strings.
    text = None if true_labels is None else np.asarray(true_labels, dtype=str)
    arrays = {"spectra": table.spectra, "tabular": table.tabular, "ids": _plain_ids(table.ids), "true_labels": text,
              **outputs}
    for key, value in arrays.items():
        if value is not None:
            np.save(work / f"{key}.npy", np.ascontiguousarray(value), allow_pickle=False)
    skipped = table.skipped
    if skipped is not None and len(skipped):
        arrays = {"skipped_positions": skipped.positions, "skipped_ids": _plain_ids(skipped.ids),
                  "skipped_reasons": np.asarray(skipped.reasons, dtype=str)}
        for key, value in arrays.items():
            np.save(work / f"{key}.npy", np.ascontiguousarray(value), allow_pickle=False)
    return {"report": {str(k): int(v) for k, v in table.report.items()}}


def _message(err: Exception, name: str, work: Path) -> str:
    # reason: the inspector knows the file by its name, not by this temporary folder.
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    folder = work / "unpacked"
    for prefix in (str(folder.resolve()) + os.sep, str(folder) + os.sep):
        message = message.replace(prefix, "")
    if message.startswith("exports: "):
        message = f"{name}: {message.removeprefix('exports: ')}"
    return message.replace("exports" + os.sep, "")


def main(argv: list[str] | None = None) -> int:
    """The child: ``python -m spectratorch.app.isolate WORK`` reads ``WORK/request.json`` and ``WORK/upload``, writes
    ``WORK/result.json`` and the arrays."""
    from spectratorch.errors import SpectratorchError

    work = Path((argv if argv is not None else sys.argv[1:])[0])
    request = json.loads((work / "request.json").read_text())
    apply_limits(request["memory_mb"])
    try:
        result = _work(work, request)
    except SpectratorchError as err:
        result = {"error": _message(err, request["name"], work)}
    except MemoryError:
        result = {"error": "memory"}
    # reason: anything else is a fault of the reader, not the user's; the server logs our stderr.
    except Exception as err:  # noqa: BLE001
        import traceback

        traceback.print_exc()
        result = {"error": f"{request['name']}: cannot be read ({type(err).__name__}); the file is damaged or not a "
                           "dataset of spectra."}
    (work / _RESULT).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
