"""Predict with an exported model on a PC without torch: onnxruntime, numpy and pandas only.

An exported ``<stem>.onnx`` (see :func:`spectratorch.export.onnx.export_onnx`) takes raw spectra and tabular values
and answers calibrated class probabilities (and, when exported with an outlier model, ``t2``, ``q`` and ``outlier``
per spectrum); its metadata (with the conformal calibration that turns probabilities into label sets) says what it
needs (channels, axis, tabular columns) and
what it answers (class labels, cutoffs). :class:`Predictor` reads a dataset file or a folder of instrument exports
with the same schema code as training (:func:`spectratorch.data.schema.load_table`), checks it against the
metadata, runs the model in chunks and writes one CSV row per sample.

This module imports neither torch nor lightning, even indirectly; a test runs it with both blocked.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from spectratorch.contract import OOD_CONFIDENCE, differences, ood_flag_rate
from spectratorch.data.io import DATASET_SUFFIXES, atomic_path
from spectratorch.data.schema import RowFilter, SpectralTable, load_table
from spectratorch.errors import ConfigError, DataFormatError, SchemaError, no_file

__all__ = [
    "FORMAT_KEY",
    "FORMAT_VERSION",
    "INPUT_SPECTRA",
    "INPUT_TABULAR",
    "METADATA_KEYS",
    "NO_LABEL",
    "UNKNOWN_CLASS",
    "OUTPUT_OOD",
    "OUTPUT_PROBABILITIES",
    "UNCLASSIFIED",
    "Predictor",
    "decode_metadata",
    "describe_outliers",
    "describe_scores",
    "encode_metadata",
    "physical_cores",
    "prediction_frame",
    "predictions_csv",
    "with_skipped_rows",
    "scores_against_labels",
    "open_session",
    "session_options",
    "trust_columns",
    "truth_indices",
    "with_truth",
    "write_predictions",
]

_logger = logging.getLogger(__name__)

FORMAT_KEY = "spectratorch_format"
FORMAT_VERSION = 1
"""Version of the metadata layout; a reader refuses files of a newer version than it knows."""

METADATA_KEYS = (
    FORMAT_KEY,
    "name",
    "arch",
    "labels",
    "channels",
    "axis",
    "tabular_columns",
    "channel_ranges",
    "targets",
    "transforms",
    "seed",
    "split",
    "n_splits",
    "eps",
    "version",
    "metrics",
    "temperature",
    "calibration",
    "cutoffs",
    "inputs",
    "output",
    "outputs",
    "conformal",
    "ood",
)
"""Keys of an exported model's ``metadata_props``; every value is a JSON document (a string)."""

INPUT_SPECTRA = "data_spectra"
INPUT_TABULAR = "data_tabular"
OUTPUT_PROBABILITIES = "probabilities"
OUTPUT_OOD = ("t2", "q", "outlier")
"""The outlier outputs of a model exported with an outlier model: Hotelling's T², the Q residual, the flag."""
UNCLASSIFIED = "unclassified"
UNKNOWN_CLASS = -1
"""The true class :meth:`Predictor.truth` gives a row labelled with a class the model lacks."""
NO_LABEL = -2
"""The true class :meth:`Predictor.truth` gives a row with an empty label cell."""
DEFAULT_CUTOFF_KEY = "default"
"""The entry of the metadata's ``cutoffs`` that ``cutoff="auto"`` uses."""

_REQUIRED_KEYS = ("labels", "channels", "axis", "tabular_columns")
# reason: a progress bar for fewer chunks than this would flash by; stdout stays clean either way (bar on stderr).
_PROGRESS_MIN_CHUNKS = 4


# ---- metadata -------------------------------------------------------------------------------------------------
def encode_metadata(fields: Mapping[str, object]) -> dict[str, str]:
    """JSON-encode each value, for an ONNX file's ``metadata_props``.

    Args:
        fields: ``{key: JSON-serialisable value}``.

    Returns:
        ``{key: JSON string}``.

    Example:
        >>> encode_metadata({"labels": ["The rest", "OK"], "temperature": 1.5})
        {'labels': '["The rest", "OK"]', 'temperature': '1.5'}
    """
    return {str(key): json.dumps(value, ensure_ascii=False) for key, value in fields.items()}


def decode_metadata(props: Mapping[str, str], source: str = "the model") -> dict:
    """Decode the ``metadata_props`` of an exported model and check that it is ours.

    Args:
        props: ``{key: JSON string}`` as stored in the ONNX file.
        source: the file, for messages.

    Returns:
        ``{key: value}``.

    Raises:
        DataFormatError: the metadata lacks ``spectratorch_format`` or a required key, holds invalid JSON, or comes
            from a newer format than this version reads.

    Example:
        >>> meta = decode_metadata({"spectratorch_format": "1", "labels": '["a", "b"]', "channels": '["277"]',
        ...                         "axis": "[300.0]", "tabular_columns": "[]"})
        >>> meta["labels"]
        ['a', 'b']
    """
    if FORMAT_KEY not in props:
        raise DataFormatError(
            f"{source} has no spectratorch metadata (no {FORMAT_KEY!r} key): it was not exported by "
            "`spectratorch export`. Export the checkpoint with `spectratorch export CKPT`."
        )
    decoded = {}
    for key, text in props.items():
        try:
            decoded[key] = json.loads(text)
        except json.JSONDecodeError:
            raise DataFormatError(f"{source}: metadata {key!r} is not valid JSON ({text[:60]!r}).") from None
    version = decoded[FORMAT_KEY]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise DataFormatError(
            f"{source} uses metadata format {version!r}; this spectratorch reads format {FORMAT_VERSION} or older. "
            "Update spectratorch."
        )
    missing = [key for key in _REQUIRED_KEYS if key not in decoded]
    if missing:
        raise DataFormatError(f"{source}: the metadata lacks {missing}; export the model again.")
    _check_fields(decoded, source)
    return decoded


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_fields(meta: dict, source: str) -> None:
    """Refuse metadata whose required fields have the wrong form (a file edited by hand, or damaged)."""
    text = (str,)
    checks = {
        "labels": (lambda v: isinstance(v, list) and len(v) >= 2
                   and all(isinstance(x, text) or _is_number(x) for x in v) and len(set(map(str, v))) == len(v),
                   "a list of at least 2 distinct class names"),
        "channels": (lambda v: isinstance(v, list) and len(v) >= 1 and all(isinstance(x, text) for x in v)
                     and len(set(v)) == len(v), "a list of distinct channel names"),
        "axis": (lambda v: isinstance(v, list) and len(v) >= 1 and all(_is_number(x) for x in v)
                 and all(a < b for a, b in itertools.pairwise(v)), "a list of increasing finite numbers"),
        "tabular_columns": (lambda v: isinstance(v, list) and all(isinstance(x, text) for x in v),
                            "a list of column names"),
    }
    if "channel_ranges" in meta:
        checks["channel_ranges"] = (
            lambda v: isinstance(v, dict) and all(isinstance(r, list) and len(r) == 2 and all(map(_is_number, r))
                                                  and r[0] <= r[1] for r in v.values()),
            "a mapping of channel names to [min x, max x]")
    for key, (ok, expected) in checks.items():
        if not ok(meta[key]):
            found = json.dumps(meta[key])
            raise DataFormatError(f"{source}: metadata {key!r} must be {expected}; found "
                                  f"{found if len(found) <= 60 else found[:57] + '...'}. Export the model again.")


# ---- onnxruntime session --------------------------------------------------------------------------------------
def physical_cores() -> int:
    """Physical CPU cores this process may use (hyper-threads and cores outside its affinity mask excluded).

    Returns:
        At least 1.

    Example:
        >>> physical_cores() >= 1
        True
    """
    logical = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    threads_per_core = 1
    try:
        text = Path("/proc/cpuinfo").read_text()
        blocks = [block for block in text.split("\n\n") if "processor" in block]
        cores = {(_field(block, "physical id"), _field(block, "core id")) for block in blocks}
        if blocks and len(cores) > 1:
            threads_per_core = max(1, round(len(blocks) / len(cores)))
    except OSError:
        # reason: no /proc (Windows, macOS): count logical CPUs; onnxruntime would use about that many anyway.
        pass
    return max(1, logical // threads_per_core)


def _field(block: str, name: str) -> str:
    for line in block.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def session_options(threads: int | None = None):
    """The onnxruntime settings :class:`Predictor` uses (see doc/INFERENCE.md for why).

    Full graph optimisation (``ORT_ENABLE_ALL``: constant folding, operator fusion and the blocked ``NCHWc``
    convolution layout), sequential execution (the graph is a chain, so parallel execution only adds overhead),
    one inter-op thread, and ``threads`` intra-op threads (default: the physical cores).

    Args:
        threads: intra-op threads; ``None`` = :func:`physical_cores`.

    Returns:
        An ``onnxruntime.SessionOptions``.

    Raises:
        ConfigError: ``threads`` < 1, or onnxruntime is not installed.
    """
    ort = _onnxruntime()
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer or None; got {threads!r}.")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if threads is not None and threads > cpus:
        # reason: onnxruntime starts every thread asked for, each with its own stack and scratch memory (100,000
        # grow memory until the machine stalls); more threads than CPUs only wait for each other.
        raise ConfigError(f"--threads {threads} is more than the {cpus} CPUs this process may use; give at most "
                          f"{cpus}, or leave it out (the physical cores).")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    # reason: onnxruntime warns about fusions it skips; those are not the user's business.
    options.log_severity_level = 3
    return options


def open_session(model: str | os.PathLike | bytes, threads: int | None = None,
                 providers: Sequence[str] | None = None):
    """An onnxruntime session of an ONNX file (or its bytes) with :func:`session_options`: the one way the package
    opens a model, for ``predict``, the page, the export's parity check and the ensemble's test.

    Args:
        model: an ``.onnx`` path, or the model's bytes.
        threads: intra-op threads; ``None`` = :func:`physical_cores`.
        providers: execution providers, best first; ``None`` = ``["CPUExecutionProvider"]``.

    Returns:
        An ``onnxruntime.InferenceSession``.

    Raises:
        DataFormatError: a missing file, or one onnxruntime cannot read.
        ConfigError: onnxruntime is missing or ``threads`` is invalid.

    Example:
        >>> session = open_session("model.onnx", threads=1)        # doctest: +SKIP
        >>> session.run(None, {INPUT_SPECTRA: spectra})[0]          # doctest: +SKIP
    """
    in_memory = isinstance(model, (bytes, bytearray))
    name = "<in-memory model>" if in_memory else str(model)
    if not in_memory and not Path(model).is_file():
        raise DataFormatError(no_file(name, "model file", ".onnx"))
    if not in_memory and Path(model).suffix.lower() in DATASET_SUFFIXES:
        # reason: the model and the data given the other way round; onnxruntime would say "Protobuf parsing failed".
        raise DataFormatError(f"{name}: a dataset file, not an ONNX model; the model comes first "
                              "(`spectratorch predict MODEL.onnx DATA`).")
    if not in_memory and Path(model).suffix.lower() == ".ckpt":
        # reason: `train` without --to-onnx leaves the checkpoint only; onnxruntime would say "Protobuf parsing failed".
        raise DataFormatError(f"{name}: a training checkpoint, not an ONNX model; export it first: spectratorch export "
                              f"{_quoted(name)} (or train with --to-onnx).")
    ort = _onnxruntime()
    options = session_options(threads)
    try:
        return ort.InferenceSession(bytes(model) if in_memory else str(model), options,
                                    providers=list(providers or ["CPUExecutionProvider"]))
    # reason: onnxruntime raises its own pybind classes (InvalidProtobuf, Fail...), which share no base to name.
    except Exception as err:  # noqa: BLE001
        raise DataFormatError(
            f"{name}: not a readable ONNX model ({_first_line(err)}). Is the file complete? Export it again."
        ) from None


def _quoted(path: str) -> str:
    """``path`` as a shell word (checkpoint names hold spaces, brackets and quotes).

    Example:
        >>> print(_quoted("out/Linear y=['AVA', 'label'] all-5.ckpt"), _quoted("out/model.ckpt"))
        "out/Linear y=['AVA', 'label'] all-5.ckpt" out/model.ckpt
    """
    return path if re.fullmatch(r"[\w./-]+", path) else '"' + path.replace('"', '\\"') + '"'


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is not None:
            # reason: installed but broken (a missing system library), not missing: the cure differs.
            raise ConfigError(f"onnxruntime is installed but cannot be imported ({_first_line(err)}).") from None
        raise ConfigError("prediction needs onnxruntime: `pip install -r requirements-inference.txt`.") from None
    return onnxruntime


def _first_line(err: Exception, limit: int = 200) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- the predictor --------------------------------------------------------------------------------------------
# reason: samples per onnxruntime call. A MiniRocket model (what --arch auto picks on the lab's small sets) holds its
# features of a whole call: 930 rows took 2.29 GB at the peak and 3.2 s at 1024, 1.11 GB and 2.2 s at 256; the
# example VGG11 ran 55,800 rows no slower at 256 (`spectratorch predict MODEL FILE --batch-size B`, MODEL of
# `spectratorch train --data a.pkl --targets OVA OK --channels 277 380 --to-onnx` on `make-dataset --samples 2000
# --seed 0`, FILE `make-dataset --samples 1000 --seed 11`).
PREDICT_BATCH = 256


class Predictor:
    """An exported model, ready to predict: raw spectra in, calibrated probabilities out.

    Args:
        model_path: an ``.onnx`` file written by ``spectratorch export`` (or ``train --to-onnx``), or its bytes.
        providers: onnxruntime execution providers, best first; ``None`` = ``["CPUExecutionProvider"]``.
        threads: intra-op threads; ``None`` = the physical cores.

    Attributes:
        metadata: the decoded metadata (see ``METADATA_KEYS``).
        labels: class labels, in the order of the probability columns.
        channels: channel names the model takes, in order.
        axis: float64 ``[L]``, the spectral axis the model takes.
        tabular_columns: tabular feature names the model takes (empty: none).
        channel_ranges: ``{channel: [min x, max x]}`` each channel covered in training; a file whose channel is
            shorter is refused (empty for a model exported before it was recorded).

    Raises:
        DataFormatError: the file is missing, not an ONNX model, truncated, or has no spectratorch metadata.
        ConfigError: onnxruntime is missing or ``threads`` is invalid.

    Example:
        >>> predictor = Predictor("model.onnx")                     # doctest: +SKIP
        >>> predictor.predict("batch_12.csv").head()                # doctest: +SKIP
        >>> predictor.predict(frame)        # a DataFrame in the same layout   # doctest: +SKIP
        >>> predictor.predict(spectra)      # an array [N, C, L] or [N, L]     # doctest: +SKIP
    """

    def __init__(self, model_path: str | os.PathLike | bytes, providers: Sequence[str] | None = None,
                 threads: int | None = None):
        in_memory = isinstance(model_path, (bytes, bytearray))
        self.path = Path("<in-memory model>") if in_memory else Path(model_path)
        self.session = open_session(bytes(model_path) if in_memory else self.path, threads, providers)
        self.metadata = decode_metadata(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.labels: tuple[str, ...] = tuple(str(label) for label in self.metadata["labels"])
        self.channels: tuple[str, ...] = tuple(str(c) for c in self.metadata["channels"])
        self.axis = np.asarray(self.metadata["axis"], dtype=np.float64)
        self.tabular_columns: tuple[str, ...] = tuple(str(c) for c in self.metadata["tabular_columns"])
        self.channel_ranges: dict[str, list[float]] = dict(self.metadata.get("channel_ranges") or {})
        self._check_graph()

    def _check_graph(self) -> None:
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        expected = {INPUT_SPECTRA: [len(self.channels), len(self.axis)]}
        if self.tabular_columns:
            expected[INPUT_TABULAR] = [len(self.tabular_columns)]
        outputs = {o.name: o.shape for o in self.session.get_outputs()}
        problems = []
        if set(inputs) != set(expected):
            problems.append(f"inputs {sorted(inputs)}, expected {sorted(expected)}")
        else:
            problems += [f"input {name} has shape {inputs[name]}, expected [batch, {', '.join(map(str, dims))}]"
                         for name, dims in expected.items() if list(inputs[name][1:]) != dims]
        names = list(outputs)
        if names not in ([OUTPUT_PROBABILITIES], [OUTPUT_PROBABILITIES, *OUTPUT_OOD]) \
                or outputs[OUTPUT_PROBABILITIES][1:] != [len(self.labels)]:
            problems.append(f"outputs {outputs}, expected {OUTPUT_PROBABILITIES} [batch, {len(self.labels)}] (then "
                            f"optionally {', '.join(OUTPUT_OOD)} [batch])")
        if problems:
            raise DataFormatError(f"{self.path}: the graph disagrees with its metadata: {'; '.join(problems)}.")

    @property
    def outputs(self) -> tuple[str, ...]:
        """The graph's outputs: ``probabilities``, then ``t2, q, outlier`` when the model has an outlier model."""
        return tuple(o.name for o in self.session.get_outputs())

    @property
    def conformal(self) -> dict | None:
        """The conformal calibration of the metadata (``None``: the model was exported without one)."""
        record = self.metadata.get("conformal")
        return record if isinstance(record, dict) and record.get("n") else None

    def trust_notes(self) -> list[str]:
        """One line per piece of trust data the model lacks (an older export): no conformal sets, no outlier flag."""
        notes = []
        if self.conformal is None:
            notes.append(f"{self.path.name} has no conformal calibration: no label sets (it was exported without one; "
                         "spectratorch export of its checkpoint adds it)")
        if OUTPUT_OOD[0] not in self.outputs:
            notes.append(f"{self.path.name} has no outlier model: no t2, q and outlier columns (it was exported "
                         "without one; spectratorch export of its checkpoint adds it)")
        return notes

    @property
    def cutoffs(self) -> dict:
        """The metadata's named cutoffs on the top probability (``{}`` when none were recorded)."""
        cutoffs = self.metadata.get("cutoffs")
        if not isinstance(cutoffs, dict):
            return {}
        # reason: an entry that is not a probability (a damaged or hand-edited file) is left out, not fatal.
        return {str(k): v for k, v in cutoffs.items() if _is_number(v) and 0 <= v <= 1}

    def resolve_cutoff(self, cutoff: str | float | None) -> float | None:
        """Turn a ``cutoff`` argument into a probability or ``None``.

        Args:
            cutoff: ``"auto"`` (the metadata's ``cutoffs["default"]`` when present, else none), ``None`` or
                ``"none"``, a probability in [0, 1] (a number or its text), or the name of an entry of ``cutoffs``.

        Returns:
            The cutoff, or ``None`` for no cutoff.

        Raises:
            ConfigError: a number outside [0, 1] or an unknown name.
        """
        if cutoff is None or (isinstance(cutoff, str) and cutoff.lower() == "none"):
            return None
        if isinstance(cutoff, str) and cutoff.lower() == "auto":
            value = self.cutoffs.get(DEFAULT_CUTOFF_KEY)
            if value is None:
                return None
            return _check_probability(value, f"the model's cutoffs[{DEFAULT_CUTOFF_KEY!r}]")
        if isinstance(cutoff, str):
            if cutoff in self.cutoffs:
                return _check_probability(self.cutoffs[cutoff], f"the model's cutoffs[{cutoff!r}]")
            try:
                cutoff = float(cutoff)
            except ValueError:
                raise ConfigError(
                    f"--cutoff must be auto, none, a probability in [0, 1] or one of the model's cutoffs "
                    f"{sorted(self.cutoffs)}; got {cutoff!r}."
                ) from None
        return _check_probability(cutoff, "--cutoff")

    # ---- data ------------------------------------------------------------------------------------------------
    def load(self, path_or_dir: str | os.PathLike | pd.DataFrame | np.ndarray) -> SpectralTable:
        """Read a dataset file (``.pkl``, ``.parquet``, ``.csv``, ``.xlsx``), a folder of instrument exports, a
        DataFrame in the same layout, or an array of spectra for this model.

        An array is ``[N, C, L]`` (or ``[N, L]`` for a one-channel model) on the model's channels and axis; its ids are
        ``0..N-1``. A model that takes tabular columns needs a file or a DataFrame.

        A folder is read with :func:`~spectratorch.data.raw.read_raw_exports` and cleaned with
        :func:`~spectratorch.data.raw.clean` (what the cleaning removed is logged). Rows flagged
        ``integration_oob`` and rows with NaN or inf in the model's channels or tabular columns are skipped and
        counted in ``table.report``.

        Args:
            path_or_dir: the data.

        Returns:
            The table, with the model's channels in its order, on its axis, with its tabular columns.

        Raises:
            DataFormatError: missing, unreadable or empty data.
            SchemaError: a channel or tabular column is missing, the axis differs, or no row is left.
        """
        if isinstance(path_or_dir, np.ndarray):
            return self._array_table(path_or_dir)
        if isinstance(path_or_dir, pd.DataFrame):
            source, path = path_or_dir, Path("the DataFrame")
        elif isinstance(path_or_dir, (str, os.PathLike)):
            source = path = Path(path_or_dir)
        else:
            raise DataFormatError(f"expected a dataset path, a folder of exports, a DataFrame or a numpy array of "
                                  f"spectra; got a {type(path_or_dir).__name__}.")
        cleaning: dict[str, int] = {}
        if isinstance(source, pd.DataFrame):
            pass
        elif path.is_dir():
            from spectratorch.data.raw import clean, read_raw_exports

            source, cleaning = clean(read_raw_exports(path))
            if any(cleaning.values()):
                _logger.warning("cleaning the exports in %s skipped %s rows", path, cleaning)
        elif not path.exists():
            raise DataFormatError(f"{path}: no such dataset file or folder.")
        try:
            table = load_table(source, channels=self.channels, tabular=self.tabular_columns or None,
                               filters=RowFilter(), expected_axis=self.axis, expected_ranges=self.channel_ranges)
        except SchemaError as err:
            raise SchemaError(
                f"{path.name}: {str(err).rstrip('.')}; the model takes channels {list(self.channels)} on "
                f"{len(self.axis)} points, {self.axis[0]:g}..{self.axis[-1]:g}, and tabular columns "
                f"{list(self.tabular_columns)}."
            ) from None
        report = {**{f"cleaning_{rule}": n for rule, n in cleaning.items()}, **table.report}
        table = dataclasses.replace(table, report=report)
        skipped = {rule: n for rule, n in report.items() if n}
        if skipped:
            _logger.warning("%s: skipped %d rows (%s)", path.name, sum(skipped.values()), skipped)
        return table

    def _array_table(self, spectra: np.ndarray) -> SpectralTable:
        if self.tabular_columns:
            raise SchemaError(f"the model also takes tabular columns {list(self.tabular_columns)}; pass a DataFrame or "
                              "a file that has them, or call predict_arrays(spectra, tabular).")
        if spectra.ndim == 2 and len(self.channels) == 1:
            spectra = spectra[:, None, :]
        expected = (len(self.channels), len(self.axis))
        if spectra.ndim != 3 or spectra.shape[1:] != expected:
            raise SchemaError(f"spectra must have shape [N, {expected[0]}, {expected[1]}] (channels "
                              f"{list(self.channels)} on {expected[1]} points) for this model; got {spectra.shape}.")
        n = len(spectra)
        return SpectralTable(np.asarray(spectra, dtype=np.float32), np.zeros((n, 0), np.float32), np.arange(n),
                             pd.DataFrame(index=pd.RangeIndex(n)), self.channels, self.axis, ())

    def _check_table(self, table: SpectralTable) -> None:
        offered = {"channels": list(table.channels), "axis": table.axis, "tabular_columns": list(table.tabular_columns)}
        problems = differences({"channels": list(self.channels), "axis": self.axis,
                                "tabular_columns": list(self.tabular_columns)}, offered, names=("model", "data"))
        if problems:
            raise SchemaError("the data does not fit the model: " + "; ".join(problems)
                              + ". Read the data with Predictor.load.")

    # ---- prediction ------------------------------------------------------------------------------------------
    def predict_arrays(self, spectra: np.ndarray, tabular: np.ndarray | None = None,
                       batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """Probabilities for raw arrays, ``batch_size`` samples per onnxruntime call.

        Args:
            spectra: float ``[N, C, L]``, on the model's channels and axis.
            tabular: float ``[N, T]`` (``None`` when the model takes no tabular features).
            batch_size: samples per call (bounds the memory onnxruntime uses).

        Returns:
            float32 ``[N, K]``, rows summing to 1.

        Raises:
            SchemaError: shapes that do not fit the model.
            ConfigError: ``batch_size`` < 1.
        """
        return self.predict_outputs(spectra, tabular, batch_size, [OUTPUT_PROBABILITIES])[OUTPUT_PROBABILITIES]

    def predict_outputs(self, spectra: np.ndarray, tabular: np.ndarray | None = None, batch_size: int = PREDICT_BATCH,
                        names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Outputs of the model for raw arrays: ``probabilities [N, K]``, and ``t2``, ``q`` (float32 ``[N]``) and
        ``outlier`` (bool ``[N]``) when the model has an outlier model.

        Args:
            spectra: float ``[N, C, L]``, on the model's channels and axis.
            tabular: float ``[N, T]`` (``None`` when the model takes no tabular features).
            batch_size: samples per onnxruntime call.
            names: the outputs to compute (default: all of :attr:`outputs`).

        Returns:
            ``{output name: array}``.

        Raises:
            SchemaError: shapes that do not fit the model.
            ConfigError: ``batch_size`` < 1.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"--batch-size must be a positive integer; got {batch_size!r}.")
        spectra = np.asarray(spectra, dtype=np.float32)
        n = len(spectra)
        expected = (len(self.channels), len(self.axis))
        if spectra.ndim != 3 or spectra.shape[1:] != expected:
            raise SchemaError(f"spectra must have shape [N, {expected[0]}, {expected[1]}] for this model; got "
                              f"{spectra.shape}.")
        if self.tabular_columns:
            tabular = np.asarray(tabular if tabular is not None else np.zeros((0, 0)), dtype=np.float32)
            if tabular.shape != (n, len(self.tabular_columns)):
                raise SchemaError(f"tabular must have shape [{n}, {len(self.tabular_columns)}] "
                                  f"({list(self.tabular_columns)}); got {tabular.shape}.")
        return self._run(spectra, tabular, batch_size, list(names or self.outputs))

    def _run(self, spectra, tabular, batch_size: int, names: list[str]) -> dict[str, np.ndarray]:
        spectra = np.asarray(spectra, dtype=np.float32)
        n = len(spectra)
        if n == 0:
            return {name: np.empty((0, len(self.labels)) if name == OUTPUT_PROBABILITIES else (0,),
                                   dtype=bool if name == "outlier" else np.float32) for name in names}
        parts: dict[str, list] = {name: [] for name in names}
        starts = range(0, n, batch_size)
        bar = _progress(n, len(starts))
        for start in starts:
            stop = min(start + batch_size, n)
            feed = {INPUT_SPECTRA: np.ascontiguousarray(spectra[start:stop])}
            if self.tabular_columns:
                feed[INPUT_TABULAR] = np.ascontiguousarray(tabular[start:stop])
            for name, value in zip(names, self.session.run(names, feed)):
                parts[name].append(value)
            if bar is not None:
                bar.update(stop - start)
        if bar is not None:
            bar.close()
        return {name: np.concatenate(values) for name, values in parts.items()}

    def predict_table(self, table: SpectralTable, batch_size: int = PREDICT_BATCH) -> np.ndarray:
        """Probabilities ``[N, K]`` (float32) for every row of ``table``, in chunks of ``batch_size``.

        Args:
            table: a table on the model's channels, axis and tabular columns (see :meth:`load`).
            batch_size: samples per onnxruntime call.

        Returns:
            float32 ``[N, K]``, columns in the order of :attr:`labels`.

        Raises:
            SchemaError: the table's channels, axis or tabular columns differ from the model's.
        """
        self._check_table(table)
        return self.predict_arrays(table.spectra, table.tabular, batch_size)

    def check_coverage(self, coverage: float | None) -> float | None:
        """Check a ``--coverage`` against the model's conformal calibration before any data is read.

        Returns:
            The coverage, or ``None`` (no coverage asked, or a model without conformal calibration).

        Raises:
            ConfigError: a coverage the calibration rows do not support (the line names the supported range).
        """
        if coverage is None:
            return None
        if isinstance(coverage, bool) or not _is_number(coverage) or not 0 < float(coverage) < 1:
            raise ConfigError(f"--coverage must be a probability between 0 and 1, e.g. 0.9; got {coverage!r}.")
        if self.conformal is None:
            return None
        from spectratorch.export.conformal import threshold

        threshold(self.conformal, coverage)
        return float(coverage)

    def true_labels(self, table: SpectralTable) -> np.ndarray | None:
        """The table's own label of every row for the model's target, as text (``""``: an empty label cell), or
        ``None`` when the table has no labels for that target."""
        from spectratorch.data.targets import labelled_rows, resolve_target
        from spectratorch.errors import SpectratorchError

        code = self.metadata.get("targets")
        if not code or table.meta.shape[1] == 0:
            return None
        labelled = labelled_rows(table.meta, code)
        try:
            target = resolve_target(table.meta[labelled], code)
        except SpectratorchError:
            return None
        text = np.full(len(labelled), "", dtype=object)
        text[labelled] = np.asarray([str(label) for label in target.labels], dtype=object)[target.y]
        return text

    def truth(self, table: SpectralTable) -> np.ndarray | None:
        """The table's true classes as indices into the model's labels (:data:`UNKNOWN_CLASS`: a class the model
        does not know; :data:`NO_LABEL`: an empty label cell), or ``None`` when the table has no labels for the
        model's target."""
        return truth_indices(self.true_labels(table), self.labels)

    def predict(self, data, top_k: int = 2, cutoff: str | float | None = "auto", batch_size: int = PREDICT_BATCH,
                coverage: float | None = None) -> pd.DataFrame:
        """Predict every usable sample of a dataset file, a folder of exports, a DataFrame or an array of spectra.

        The same as :meth:`predict_file`, named for data that is not a file.
        """
        return self.predict_file(data, top_k=top_k, cutoff=cutoff, batch_size=batch_size, coverage=coverage)

    def predict_file(self, path_or_dir, top_k: int = 2, cutoff: str | float | None = "auto",
                     batch_size: int = PREDICT_BATCH, coverage: float | None = None) -> pd.DataFrame:
        """Predict every usable sample of a dataset file or a folder of instrument exports (or a DataFrame, an array).

        Args:
            path_or_dir: the data (see :meth:`load`).
            top_k: how many ranked classes to list per sample.
            cutoff: below this top probability a sample is ``unclassified`` (see :meth:`resolve_cutoff`).
            batch_size: samples per onnxruntime call.
            coverage: add each sample's conformal label set at this coverage (``set``, ``set_size``); ``None``: none.

        Returns:
            One row per predicted sample (see :func:`prediction_frame`, then :func:`trust_columns`);
            ``frame.attrs["skipped"]`` holds how many rows each check skipped, ``frame.attrs["cutoff"]`` the cutoff
            applied and ``frame.attrs["against_labels"]`` the scores against the data's own labels
            (:func:`scores_against_labels`; ``None`` without them).

        Raises:
            DataFormatError, SchemaError: unreadable data or data that does not fit the model.
            ConfigError: invalid ``top_k``, ``cutoff`` or ``batch_size``.
        """
        coverage = self.check_coverage(coverage)
        threshold = self.resolve_cutoff(cutoff)
        _check_top_k(top_k, len(self.labels))
        table = self.load(path_or_dir)
        self._check_table(table)
        outputs = self.predict_outputs(table.spectra, table.tabular, batch_size)
        if threshold is None and isinstance(cutoff, str) and cutoff.lower() == "auto":
            # reason: said once the data is read, so that a refused file stays the one line it is.
            _logger.info("the model has no default cutoff (its export found none reaching 95 % accuracy, or made "
                         "none): every sample gets its most probable class, however unsure; --cutoff P sets one")
        frame = prediction_frame(outputs[OUTPUT_PROBABILITIES], table.ids, self.labels, top_k, threshold)
        true_labels = self.true_labels(table)
        frame = with_truth(trust_columns(frame, self, outputs, coverage), true_labels)
        frame.attrs["skipped"] = dict(table.report)
        frame.attrs["skipped_rows"] = table.skipped
        kept = (frame["label"] != UNCLASSIFIED).to_numpy()
        frame.attrs["cutoff"] = threshold
        frame.attrs["against_labels"] = scores_against_labels(outputs[OUTPUT_PROBABILITIES].argmax(axis=1),
                                                              truth_indices(true_labels, self.labels), kept)
        return frame


def scores_against_labels(predicted: np.ndarray, truth: np.ndarray | None, kept: np.ndarray) -> dict | None:
    """How right the predictions are against the data's own labels.

    Args:
        predicted: ``[N]`` most probable classes.
        truth: ``[N]`` true classes (:data:`UNKNOWN_CLASS`, -1: a class the model does not know; :data:`NO_LABEL`,
            -2: no label), or ``None``.
        kept: ``[N]`` whether each prediction is over the cutoff (all ``True`` without one).

    Returns:
        ``{"labelled", "right", "accuracy", "kept", "right_kept", "unknown", "unlabelled"}`` (counts of the rows of
        known classes, and the accuracy over them; the rows of other classes; the rows without a label), or ``None``
        when no row has a class the model knows.

    Example:
        >>> scores_against_labels(np.array([0, 1, 1, 0]), np.array([0, 1, 0, -1]), np.array([True, True, False, True]))
        {'labelled': 3, 'right': 2, 'accuracy': 0.6666666666666666, 'kept': 2, 'right_kept': 2, 'unknown': 1, \
'unlabelled': 0}
    """
    if truth is None or not (truth >= 0).any():
        return None
    known = truth >= 0
    right = predicted[known] == truth[known]
    kept = np.asarray(kept, dtype=bool)[known]
    return {"labelled": int(known.sum()), "right": int(right.sum()), "accuracy": float(right.mean()),
            "kept": int(kept.sum()), "right_kept": int(right[kept].sum()),
            "unknown": int((truth == UNKNOWN_CLASS).sum()), "unlabelled": int((truth == NO_LABEL).sum())}


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"


# reason: the outlier limits flag about 1 % of spectra like the training ones at the exported confidence, 0.99
# (doc/TRUST.md); ten times that is no longer chance (more than 10 of 100 rows flagged at 1 % each: probability
# 1e-8), and leaves room for a model's own training file (5.8 % of the rows of make_generic_frame(120, 4) flagged by
# its model).
OUTLIER_SHARE_WARNING = 10
"""How many times the share of spectra the outlier flag expects by chance makes ``predict`` warn."""
# reason: with few held-out rows the chance share is up to 2 / (n + 1); ten times that would never warn (30 % of the
# file flagged is no chance at any n).
_OUTLIER_SHARE_CEILING = 0.3


def describe_outliers(frame: pd.DataFrame, confidence: float = OOD_CONFIDENCE,
                      n_held_out: int | None = None) -> str | None:
    """One line when far more spectra are flagged outliers than the limits let through by chance, else ``None``.

    By chance: :func:`~spectratorch.contract.ood_flag_rate` of the model's ``ood.confidence`` and ``n_held_out``
    (``1 - confidence``, or up to ``2 / (n + 1)`` where few held-out rows set the limits).

    Example:
        >>> describe_outliers(pd.DataFrame({"outlier": [True] * 30 + [False] * 70}))[:117]
        "30 of the 100 spectra (30.0%) are outliers of the model's training data (column outlier), where about 1% are \
expected"
        >>> describe_outliers(pd.DataFrame({"outlier": [True] * 5 + [False] * 95})) is None
        True
        >>> describe_outliers(pd.DataFrame({"outlier": [True] * 5 + [False] * 95}), confidence=0.999)[:55]
        "5 of the 100 spectra (5.0%) are outliers of the model's"
        >>> describe_outliers(pd.DataFrame({"outlier": [True] * 40 + [False] * 60}), n_held_out=48)[90:178]
        'where up to 4.1% are expected (its limits rest on 48 held-out rows): their probabilities'
        >>> describe_outliers(pd.DataFrame({"outlier": [True] * 25 + [False] * 75}), n_held_out=48) is None
        True
    """
    if "outlier" not in frame.columns or not len(frame):
        return None
    flagged, expected = int(frame["outlier"].sum()), ood_flag_rate(confidence, n_held_out)
    if flagged / len(frame) <= min(OUTLIER_SHARE_WARNING * expected, _OUTLIER_SHARE_CEILING):
        return None
    chance = (f"about {100 * expected:.2g}% are expected" if expected <= 1.0 - confidence + 1e-9 else
              f"up to {100 * expected:.2g}% are expected (its limits rest on {n_held_out} held-out rows)")
    return (f"{flagged} of the {len(frame)} spectra ({flagged / len(frame):.1%}) are outliers of the model's "
            f"training data (column outlier), where {chance}: their probabilities are "
            "not to be trusted; check that the file is in the training data's units and preprocessing, from the same "
            "kind of instrument and samples (the model's own training rows can be flagged far more often than new "
            "spectra: judge the flag on spectra it has not seen)")


def describe_scores(scores: dict, cutoff: float | None) -> str:
    """:func:`scores_against_labels` in one line.

    Example:
        >>> scores = scores_against_labels(np.array([0, 1, 1, 0]), np.array([0, 1, 0, -1]), np.array([1, 1, 0, 1]))
        >>> describe_scores(scores, 0.9)
        "against the file's labels: accuracy 0.667 (2 of 3); over the cutoff 0.900: 1.000 (2 of the 2 kept, 66.7%); \
1 row of classes the model does not know left out"
    """
    text = f"against the file's labels: accuracy {scores['accuracy']:.3f} ({scores['right']} of {scores['labelled']})"
    if cutoff and scores["kept"] < scores["labelled"]:
        share = scores["kept"] / scores["labelled"]
        text += (f"; over the cutoff {cutoff:.3f}: " + (f"{scores['right_kept'] / scores['kept']:.3f} "
                 if scores["kept"] else "") + f"({scores['right_kept']} of the {scores['kept']} kept, {share:.1%})")
    if scores["unknown"]:
        text += f"; {_rows(scores['unknown'])} of classes the model does not know left out"
    if scores["unlabelled"]:
        text += f"; {_rows(scores['unlabelled'])} without a label left out"
    return text


def _check_probability(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a probability in [0, 1]; got {value!r}.") from None
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ConfigError(f"{name} must be a probability in [0, 1]; got {value!r}.")
    return value


def _check_top_k(top_k: int, n_classes: int) -> None:
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= n_classes:
        raise ConfigError(f"--top-k must be an integer in 1..{n_classes} (the model's classes); got {top_k!r}.")


def _progress(n: int, n_chunks: int):
    if n_chunks < _PROGRESS_MIN_CHUNKS:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=n, unit="sample", desc="predict", file=sys.stderr, leave=False)


def prediction_frame(probabilities: np.ndarray, ids: Sequence, labels: Sequence[str], top_k: int = 2,
                     cutoff: float | None = None) -> pd.DataFrame:
    """The prediction table: id, label, the ``top_k`` ranked classes and one probability column per class.

    Columns: ``id``; ``label`` (the most probable class, or ``unclassified`` where its probability is under
    ``cutoff``); ``top1_label, top1_prob, ..., top{k}_label, top{k}_prob``; ``p_<label>`` for every class.

    Args:
        probabilities: ``[N, K]``.
        ids: ``[N]`` sample ids.
        labels: the ``K`` class labels.
        top_k: ranked classes listed, 1..K.
        cutoff: probability under which the top class is not trusted; ``None`` = always trusted.

    Returns:
        The DataFrame, ``N`` rows.

    Example:
        >>> frame = prediction_frame(np.array([[0.2, 0.8], [0.55, 0.45]]), ["a", "b"], ["no", "yes"], 1, 0.6)
        >>> frame[["id", "label", "top1_label"]].values.tolist()
        [['a', 'yes', 'yes'], ['b', 'unclassified', 'no']]
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    labels = np.asarray([str(label) for label in labels], dtype=object)
    _check_top_k(top_k, len(labels))
    # reason: a stable sort on the negated probabilities breaks ties towards the earlier class, like argmax.
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
    ranked = np.take_along_axis(probabilities, order, axis=1)
    label = labels[order[:, 0]].copy()
    if cutoff is not None:
        label[ranked[:, 0] < cutoff] = UNCLASSIFIED
    columns: dict[str, object] = {"id": np.asarray(ids), "label": label}
    for k in range(top_k):
        columns[f"top{k + 1}_label"] = labels[order[:, k]]
        columns[f"top{k + 1}_prob"] = ranked[:, k]
    for index, name in enumerate(labels):
        columns[f"p_{name}"] = probabilities[:, index]
    return pd.DataFrame(columns)


def trust_columns(frame: pd.DataFrame, predictor: Predictor, outputs: Mapping[str, np.ndarray],
                  coverage: float | None = None) -> pd.DataFrame:
    """The prediction table with the model's trust columns inserted after ``label``.

    ``set`` (the classes of the conformal label set at ``coverage``, most probable first, joined by ``|``) and
    ``set_size``, when ``coverage`` is given and the model has a conformal calibration; ``t2``, ``q`` and
    ``outlier`` when the model has an outlier model.

    Args:
        frame: from :func:`prediction_frame`, rows in the order of ``outputs``.
        predictor: the model.
        outputs: from :meth:`Predictor.predict_outputs`.
        coverage: the sets' coverage, or ``None`` for no sets.

    Returns:
        A new frame.

    Raises:
        ConfigError: a coverage the calibration does not support.
    """
    columns: dict[str, np.ndarray] = {}
    if coverage is not None and predictor.conformal is not None:
        from spectratorch.export.conformal import label_sets

        columns["set"], columns["set_size"] = label_sets(outputs[OUTPUT_PROBABILITIES], predictor.conformal,
                                                         coverage, predictor.labels)
    for name in OUTPUT_OOD:
        if name in outputs:
            columns[name] = np.asarray(outputs[name])
    if not columns:
        return frame
    at = list(frame.columns).index("label") + 1
    head, tail = frame.iloc[:, :at], frame.iloc[:, at:]
    return pd.concat([head, pd.DataFrame(columns, index=frame.index), tail], axis=1)


def with_truth(frame: pd.DataFrame, true_labels: np.ndarray | None) -> pd.DataFrame:
    """The prediction table with the data's own label of each row, ``truth``, right after ``label`` (empty where
    the data has no label); ``frame`` itself when the data has no labels for the model's target.

    Example:
        >>> frame = prediction_frame(np.array([[0.2, 0.8], [0.6, 0.4]]), ["a", "b"], ["no", "yes"], 1)
        >>> with_truth(frame, np.array(["yes", ""], dtype=object))[["label", "truth"]].values.tolist()
        [['yes', 'yes'], ['no', '']]
    """
    if true_labels is None:
        return frame
    frame = frame.copy()
    frame.insert(list(frame.columns).index("label") + 1, "truth", np.asarray(true_labels, dtype=object))
    return frame


def truth_indices(true_labels: np.ndarray | None, labels: Sequence[str]) -> np.ndarray | None:
    """Each row's true class as its index among ``labels`` (:data:`UNKNOWN_CLASS`: a class not among them;
    :data:`NO_LABEL`: no label), from the labels as text (``""``: none); ``None`` stays ``None``.

    Example:
        >>> truth_indices(np.array(["b", "", "c", "a"], dtype=object), ["a", "b"]).tolist()
        [1, -2, -1, 0]
    """
    if true_labels is None:
        return None
    text = np.asarray(true_labels, dtype=object)
    codes = pd.Index([str(label) for label in labels]).get_indexer(text)
    return np.where(text == "", NO_LABEL, np.where(codes < 0, UNKNOWN_CLASS, codes)).astype(np.int64)


def with_skipped_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The predictions with the data's skipped rows (``frame.attrs["skipped_rows"]``,
    :class:`~spectratorch.data.schema.SkippedRows`) put
    back in their places: their id, a ``skipped`` column with the reason, every other column empty; so the rows keep
    the data's order. A frame that skipped nothing is returned as it is (no ``skipped`` column).

    Example:
        >>> from spectratorch.data.schema import SkippedRows
        >>> frame = prediction_frame(np.array([[0.25, 0.75], [0.9, 0.1]]), ["a", "c"], ["no", "yes"], 1)
        >>> frame.attrs["skipped_rows"] = SkippedRows(np.array([1]), np.array(["b"]), np.array(["non_finite"]))
        >>> with_skipped_rows(frame)[["id", "label", "skipped"]]
          id label     skipped
        0  a   yes
        1  b   NaN  non_finite
        2  c    no
    """
    skipped = frame.attrs.get("skipped_rows")
    if skipped is None or not len(skipped):
        return frame
    total = len(frame) + len(skipped)
    predicted = frame.set_axis(np.setdiff1d(np.arange(total), skipped.positions), axis=0).assign(skipped="")
    left_out = pd.DataFrame({"id": skipped.ids, "skipped": skipped.reasons}, index=skipped.positions)
    return pd.concat([predicted, left_out]).sort_index(kind="stable").reset_index(drop=True)


def predictions_csv(frame: pd.DataFrame) -> bytes:
    """The bytes of the prediction CSV: what ``spectratorch predict`` writes and the app's download button serves.

    UTF-8, ``\\n`` line ends on every platform, probabilities with 6 significant digits, no index column. The rows
    the data had and that got no prediction are in their places, with the reason (:func:`with_skipped_rows`).

    Args:
        frame: from :func:`prediction_frame`.

    Returns:
        The CSV document.

    Example:
        >>> predictions_csv(prediction_frame(np.array([[0.25, 0.75]]), ["a"], ["no", "yes"], 1)).decode()
        'id,label,top1_label,top1_prob,p_no,p_yes\\na,yes,yes,0.75,0.25,0.75\\n'
    """
    return with_skipped_rows(frame).to_csv(index=False, float_format="%.6g", lineterminator="\n").encode("utf-8")


def write_predictions(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the prediction table as CSV (:func:`predictions_csv`), atomically (nothing is left half-written).

    Args:
        frame: from :func:`prediction_frame`.
        path: the ``.csv`` file.

    Returns:
        The path.

    Raises:
        ConfigError: the file or its folder cannot be written.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(predictions_csv(frame))
    except OSError as err:
        raise ConfigError(f"cannot write {path} ({err.strerror or type(err).__name__}); choose another file.") from None
    _logger.info("wrote %s (%d rows)", path, len(frame))
    return path
