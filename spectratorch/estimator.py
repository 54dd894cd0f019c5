"""A scikit-learn classifier on spectra: :class:`SpectraClassifier`.

``fit(X, y)`` writes the spectra and labels as a dataset in the package's schema and trains it with the same
recipe as ``spectratorch train --test-source none`` (:func:`spectratorch.pipelines.run.train`: the architecture
choice of ``arch="auto"``, the data-adaptive defaults, calibration; no row is held out as a test set: on a small set
every row trains the model, as in scikit-learn's own ``fit``), then keeps the exported ONNX model in memory.
``predict_proba`` runs that ONNX model with onnxruntime, so what the estimator predicts is what the exported file
predicts. ``save``/``load`` write and read one ONNX file; ``to_onnx`` writes the plain model that ``spectratorch
predict`` and the inspectors' page take.

Importing this module imports no torch; ``fit`` does.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from spectratorch.data.schema import PLAIN_CHANNEL, spectral_columns
from spectratorch.logs import console_handler

__all__ = ["SpectraClassifier"]

_logger = logging.getLogger(__name__)

ESTIMATOR_KEY = "sklearn_estimator"
"""The ONNX metadata entry :meth:`SpectraClassifier.save` adds: classes, input layout and parameters."""
_LABEL = "label"
_GROUP = "sample_group"

try:  # reason: scikit-learn >= 1.6 has the public function; older releases the private method.
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover
    def _validate_data(estimator, X, y="no_validation", **kwargs):
        return estimator._validate_data(X, y, **kwargs)


class SpectraClassifier(ClassifierMixin, BaseEstimator):
    """spectratorch's classifier as a scikit-learn estimator: spectra in, calibrated probabilities out.

    Parameters mirror the flags of ``spectratorch train``; ``None`` keeps the recipe's data-adaptive default.

    Args:
        arch: ``"auto"`` (the recipe's choice) or a registered architecture (``"Linear"``, ``"MiniRocket"``,
            ``"VGG11"`` ...).
        max_epochs: ``--max-epochs``.
        lr: ``--lr``.
        weight_decay: ``--weight-decay``.
        batch_size: ``--batch-size``.
        transforms: ``--transforms`` (e.g. ``("snv",)``); ``None``: the recipe's default.
        eps: ``--eps``, label smoothing.
        n_splits: for a network trained by Adam (the lab's large sets), one fold in ``n_splits`` is the validation
            fold (early stopping, checkpoint, calibration) and the model trains on the others; the small-set
            protocol trains on every row and chooses by inner CV. Lowered to the smallest class's count when a
            class is smaller.
        seed: ``--seed``.
        output_dir: keep the run's files (checkpoint, JSON, logs) here; ``None``: a temporary folder, removed.
        threads: onnxruntime threads for prediction; ``None``: the physical cores.
        verbose: show the training's progress bars and info lines (warnings are always shown).

    Attributes:
        classes_: the class values, sorted.
        n_features_in_: features per sample (columns of a 2-D ``X``).
        feature_names_in_: the column names of a DataFrame ``X``.
        onnx_model_: the exported model, as bytes.
        summary_: the run's summary (name, labels, metrics, configuration).

    Example:
        >>> from spectratorch.data.generic import make_generic_frame
        >>> df = make_generic_frame(90, seed=0)
        >>> X, y = df.drop(columns="label"), df["label"]
        >>> clf = SpectraClassifier(arch="Linear", max_epochs=2).fit(X, y)         # doctest: +SKIP
        >>> clf.score(X, y) > 0.9                                                    # doctest: +SKIP
        True
    """

    def __init__(self, arch="auto", max_epochs=None, lr=None, weight_decay=None, batch_size=None, transforms=None,
                 eps=0.1, n_splits=5, seed=42, output_dir=None, threads=None, verbose=False):
        self.arch = arch
        self.max_epochs = max_epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.transforms = transforms
        self.eps = eps
        self.n_splits = n_splits
        self.seed = seed
        self.output_dir = output_dir
        self.threads = threads
        self.verbose = verbose

    # ---- scikit-learn's conventions ---------------------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.non_deterministic = False
        return tags

    def __getstate__(self):
        # reason: an onnxruntime session cannot be pickled; it is made again from the model's bytes.
        state = dict(self.__dict__)
        state.pop("_predictor", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "onnx_model_" in state:
            self._predictor = self._make_predictor()

    # ---- fit --------------------------------------------------------------------------------------------------
    def fit(self, X, y, groups=None):
        """Train on spectra ``X`` and labels ``y`` with the recipe of ``spectratorch train``.

        Args:
            X: a DataFrame whose columns are the spectral axis (bare numbers like ``"1100.5"``, or
                ``<channel>_<x>``; other names are taken as points 0..L-1), or an array ``[N, L]`` or ``[N, C, L]``.
            y: ``[N]`` class labels.
            groups: ``[N]`` the sample of every row (replicate scans of one sample share it), or ``None``: the
                recipe's inner cross-validation keeps a sample's rows in one fold (``--groups``), so its choice is not
                flattered by a sample's other scans. scikit-learn's ``cross_val_score(..., groups=g)`` with a
                ``GroupKFold`` splits the outer folds the same way.

        Returns:
            self.

        Raises:
            ValueError: scikit-learn's checks (lengths differ, NaN or inf in ``X``, a 1-D ``X``, a continuous ``y``),
                a column of text in ``X``, a column beside its wavelengths that is not one, labels mixing text and
                numbers, one class, a class with a single sample,
                ``groups`` of another length or with a missing value; all before training.
        """
        _check_no_text(X)
        from spectratorch.inference import session_options

        session_options(self.threads)  # reason: a bad ``threads`` is refused before the training, not after it
        layout = _layout(X) if isinstance(X, pd.DataFrame) else None
        # reason: scikit-learn checks the names of later X's columns only when every name is text; numeric names
        # (a DataFrame with columns=wavelengths) are checked by _check_columns.
        self._columns = ([str(c) for c in X.columns] if isinstance(X, pd.DataFrame)
                         and not all(isinstance(c, str) for c in X.columns) else None)
        X, y = _validate_data(self, X, y, allow_nd=True, dtype=np.float32, ensure_min_samples=2)
        _check_one_kind(y)
        if y.dtype == object and len(y) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                                for v in y):
            # reason: integer class codes stored as objects (an Excel column, a pandas object Series) are integers;
            # scikit-learn calls their type "unknown".
            y = y.astype(np.int64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; got 1 class "
                             f"({self.classes_[0]!r}).")
        counts = np.bincount(codes)
        if counts.min() < 2:
            raise ValueError(f"each class needs at least 2 samples (one to train, one to validate); class "
                             f"{self.classes_[counts.argmin()]!r} has 1.")
        if layout is None or X.ndim != 2 or len(layout["channel_of"]) != X.shape[1]:
            layout = _array_layout(X.shape[1:])
        self._layout = layout
        self.input_shape_ = tuple(X.shape[1:])
        keys = _label_keys(self.classes_)
        frame = _frame(self._spectra(X), self._layout, keys[codes])
        if groups is not None:
            groups = pd.Series(np.asarray(groups, dtype=object).ravel())
            if len(groups) != len(frame) or groups.isna().any():
                raise ValueError(f"groups must hold one sample name per row of X, none missing; got {len(groups)} "
                                 f"values ({int(groups.isna().sum())} missing) for {len(frame)} rows.")
            frame[_GROUP] = groups.astype(str).to_numpy()
        n_splits = int(min(self.n_splits, counts.min()))
        # reason: said inside the fit's console (below), where verbose shows info lines.
        notes = []
        if n_splits < self.n_splits:
            notes.append(f"n_splits lowered from {self.n_splits} to {n_splits} (class "
                         f"{self.classes_[counts.argmin()]!r} has {counts.min()} samples): the folds of the data "
                         "split; a small set's inner CV chooses its own")
        n_groups = frame[_GROUP].nunique() if groups is not None else n_splits
        if n_groups < n_splits:
            notes.append(f"n_splits lowered from {n_splits} to {max(2, n_groups)}: there are {n_groups} groups")
            n_splits = max(2, int(n_groups))
        with _quiet(self.verbose), tempfile.TemporaryDirectory(prefix="spectratorch-fit-") as tmp:
            for note in notes:
                _logger.info(note)
            data = Path(tmp) / "data.parquet"
            frame.to_parquet(data)
            out = Path(self.output_dir) if self.output_dir is not None else Path(tmp) / "run"
            summary = _train(self._config(str(data), out, n_splits, grouped=groups is not None))
            self.onnx_model_ = Path(summary["files"]["onnx"]).read_bytes()
        self.summary_ = summary
        self._keys = [str(k) for k in keys]
        self._predictor = self._make_predictor()
        return self

    def _config(self, data: str, out: Path, n_splits: int, grouped: bool = False):
        from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig

        layout = self._layout
        return RunConfig(
            DataConfig(data=data, targets=("AVA", _LABEL), channels=tuple(layout["channels"]), tabular=(),
                       groups=_GROUP if grouped else None,
                       n_splits=n_splits, current_split=0, test_source="none", seed=self.seed,
                       batch_size=self.batch_size, transforms=self.transforms),
            ModelConfig(arch=self.arch),
            TrainConfig(eps=self.eps, lr=self.lr, weight_decay=self.weight_decay, max_epochs=self.max_epochs,
                        output_dir=str(out), to_onnx=True, baseline=False, evaluate=False, loggers=("csv",)),
        )

    # ---- predict ----------------------------------------------------------------------------------------------
    def _make_predictor(self):
        from spectratorch.inference import Predictor

        return Predictor(self.onnx_model_, threads=self.threads)

    def _spectra(self, X: np.ndarray) -> np.ndarray:
        """``X`` (2-D or 3-D, validated) as ``[N, C, L]`` on the model's axis, zero outside a channel's points."""
        layout = self._layout
        if X.ndim == 3:
            return np.ascontiguousarray(X, dtype=np.float32)
        spectra = np.zeros((len(X), len(layout["channels"]), len(layout["axis"])), dtype=np.float32)
        spectra[:, layout["channel_of"], layout["position_of"]] = X
        return spectra

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated class probabilities ``[N, n_classes]``, columns in the order of :attr:`classes_`."""
        check_is_fitted(self)
        _check_no_text(X)
        _check_columns(X, getattr(self, "_columns", None))
        X = _validate_data(self, X, reset=False, allow_nd=True, dtype=np.float32)
        if tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(f"X has samples of shape {tuple(X.shape[1:])}, but {type(self).__name__} was fitted "
                             f"on samples of shape {self.input_shape_}.")
        probabilities = self._predictor.predict_arrays(self._spectra(X))
        order = [self._predictor.labels.index(key) for key in self._keys]
        return probabilities[:, order]

    def predict(self, X) -> np.ndarray:
        """The most probable class of each sample, ``[N]``, values of :attr:`classes_`."""
        probabilities = self.predict_proba(X)
        return self.classes_[np.argmax(probabilities, axis=1)]

    # ---- files ------------------------------------------------------------------------------------------------
    def to_onnx(self, path) -> Path:
        """Write the exported model, as ``spectratorch predict``, ``Predictor`` and the page take it.

        Its labels are the class values as text; its axis is ``X``'s columns (bare numbers, or ``<channel>_<x>``),
        or ``0..L-1`` for arrays and other column names.
        """
        check_is_fitted(self)
        return _write(path, self.onnx_model_)

    def save(self, path) -> Path:
        """Write the fitted estimator as one ONNX file (the model plus the estimator's classes, input layout and
        parameters in its metadata); :meth:`load` reads it back, without torch. The file is also a model that
        ``spectratorch predict`` takes."""
        import onnx

        check_is_fitted(self)
        proto = onnx.load_from_string(self.onnx_model_)
        state = {
            "classes": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str if self.classes_.dtype != object else "object",
            "keys": self._keys,
            "layout": {"channels": list(self._layout["channels"]), "axis": [float(x) for x in self._layout["axis"]],
                       "channel_of": [int(c) for c in self._layout["channel_of"]],
                       "position_of": [int(p) for p in self._layout["position_of"]]},
            "input_shape": list(self.input_shape_),
            "n_features_in": int(self.n_features_in_),
            "feature_names_in": [str(n) for n in getattr(self, "feature_names_in_", [])] or None,
            "columns": getattr(self, "_columns", None),
            "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()},
            "summary": {k: self.summary_.get(k) for k in ("name", "labels", "metrics", "config", "arch_selection")},
        }
        entry = proto.metadata_props.add()
        entry.key, entry.value = ESTIMATOR_KEY, json.dumps(state, default=str)
        return _write(path, proto.SerializeToString())

    @classmethod
    def load(cls, path) -> "SpectraClassifier":
        """Read an estimator written by :meth:`save` (needs onnxruntime, not torch).

        Raises:
            ValueError: the file is not an estimator saved by :meth:`save`.
        """
        from spectratorch.inference import Predictor

        data = Path(path).read_bytes()
        meta = Predictor(data).metadata
        if ESTIMATOR_KEY not in meta:
            raise ValueError(f"{path}: not a SpectraClassifier saved with save() (its metadata has no "
                             f"{ESTIMATOR_KEY!r}); use spectratorch.inference.Predictor for a plain model.")
        state = meta[ESTIMATOR_KEY]
        estimator = cls(**state["params"])
        dtype = object if state["classes_dtype"] == "object" else np.dtype(state["classes_dtype"])
        estimator.classes_ = np.asarray(state["classes"], dtype=dtype)
        layout = state["layout"]
        estimator._layout = {"channels": tuple(layout["channels"]), "axis": np.asarray(layout["axis"]),
                             "channel_of": np.asarray(layout["channel_of"]),
                             "position_of": np.asarray(layout["position_of"])}
        estimator._keys = list(state["keys"])
        estimator.input_shape_ = tuple(state["input_shape"])
        estimator.n_features_in_ = state["n_features_in"]
        if state.get("feature_names_in"):
            estimator.feature_names_in_ = np.asarray(state["feature_names_in"], dtype=object)
        estimator._columns = state.get("columns")
        estimator.summary_ = state["summary"]
        estimator.onnx_model_ = data
        estimator._predictor = estimator._make_predictor()
        return estimator


# ---- helpers ------------------------------------------------------------------------------------------------------
def _train(config) -> dict:
    from spectratorch.pipelines.run import train

    return train(config)


def _write(path, payload: bytes) -> Path:
    from spectratorch.data.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return path


def _array_layout(shape: tuple[int, ...]) -> dict:
    """Points ``0..L-1``: one channel ``spectrum`` for ``[N, L]``, channels ``c0, c1, ...`` for ``[N, C, L]``."""
    if len(shape) == 2:
        channels = tuple(f"c{k}" for k in range(shape[0])) if shape[0] > 1 else (PLAIN_CHANNEL,)
        return {"channels": channels, "axis": np.arange(shape[1], dtype=float), "channel_of": np.zeros(0, int),
                "position_of": np.zeros(0, int)}
    n = shape[0] if shape else 0
    return {"channels": (PLAIN_CHANNEL,), "axis": np.arange(n, dtype=float), "channel_of": np.zeros(n, int),
            "position_of": np.arange(n)}


def _check_no_text(X) -> None:
    """Refuses a DataFrame with a column of text (an id or a label column left in ``X``) in one line naming it;
    scikit-learn's own message ("could not convert string to float: 'G00000'") names neither the column nor the
    cure."""
    if not isinstance(X, pd.DataFrame):
        return
    text = [column for column in X.columns if not pd.api.types.is_numeric_dtype(X[column])
            and (pd.to_numeric(X[column], errors="coerce").isna() & X[column].notna()).any()]
    if text:
        shown = ", ".join(repr(str(c)) for c in text[:5]) + (f" and {len(text) - 5} more" if len(text) > 5 else "")
        raise ValueError(f"X's column(s) {shown} hold text, not spectral values: make an id column the index "
                         f"(pd.read_csv(..., index_col={str(text[0])!r})) and pass the labels as y.")


def _check_columns(X, fitted: list[str] | None) -> None:
    """Refuses a DataFrame whose numeric column names are not those ``fit`` had, in its order (``fitted``, as text),
    naming the first that differs: the columns would be read as other wavelengths.

    Example:
        >>> _check_columns(pd.DataFrame([[1.0, 2.0]], columns=[901.0, 900.0]), ["900.0", "901.0"])
        Traceback (most recent call last):
        ...
        ValueError: X's column 0 is 901.0 where fit had 900.0: give the columns fit had, in its order (900.0, 901.0).
    """
    if fitted is None or not isinstance(X, pd.DataFrame):
        return
    given = [str(c) for c in X.columns]
    if given == fitted:
        return
    at = next((k for k, (a, b) in enumerate(zip(given, fitted)) if a != b), min(len(given), len(fitted)))
    found = given[at] if at < len(given) else "missing"
    shown = ", ".join(fitted[:3]) + (f", ... {fitted[-1]}" if len(fitted) > 3 else "")
    raise ValueError(f"X's column {at} is {found} where fit had {fitted[at] if at < len(fitted) else 'none'}: give "
                     f"the columns fit had, in its order ({shown}).")


def _check_one_kind(y: np.ndarray) -> None:
    """Refuses labels that mix text and numbers in one line naming one of each; scikit-learn's own message
    ("Unknown label type: unknown. Maybe you are trying to fit a classifier ... on a regression target") suggests a
    continuous target where there is none."""
    if y.dtype != object:
        return
    text = next((v for v in y if isinstance(v, str)), None)
    number = next((v for v in y if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)), None)
    if text is not None and number is not None:
        raise ValueError(f"y mixes text and number labels (e.g. {text!r} and {number!r}): give them all as text "
                         "(y.astype(str)) or all as numbers.")


def _layout(X: pd.DataFrame) -> dict:
    """Where each column of ``X`` goes: channel and axis position, from the column names."""
    groups = spectral_columns(X.columns)
    named = {name for items in groups.values() for _, name in items}
    xs = [[x for x, _ in items] for items in groups.values()]
    other = [c for c in X.columns if c not in named]
    # reason: a numeric column beside the wavelengths (a temperature, a label code) would turn the whole axis into
    # 0..L-1 and be read as one more point of the spectrum.
    if named and other and len(named) >= 2 * len(other):
        shown = ", ".join(repr(c) for c in other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise ValueError(f"X's column(s) {shown} are not wavelengths, while its other {len(named)} columns are: X "
                         "holds the spectra only; drop them (a label as y, an id as the index).")
    if len(named) != X.shape[1] or any(len(set(x)) != len(x) for x in xs):
        return _array_layout((X.shape[1],))
    channels = tuple(groups)
    axis = np.unique(np.concatenate([np.asarray(x, float) for x in xs]))
    where = {name: (c, int(np.searchsorted(axis, x))) for c, items in enumerate(groups.values()) for x, name in items}
    return {"channels": channels, "axis": axis, "channel_of": np.array([where[n][0] for n in X.columns]),
            "position_of": np.array([where[n][1] for n in X.columns])}


def _label_keys(classes: np.ndarray) -> np.ndarray:
    """The text each class has in the dataset and the model: the classes as text as the package reads a label
    column (surrounding spaces removed, whole numbers without a decimal point), or ``class<k>`` where two classes
    would then read the same.

    >>> _label_keys(np.array([" rye", "wheat "], dtype=object)).tolist(), _label_keys(np.array([1.0, 2.5])).tolist()
    (['rye', 'wheat'], ['1', '2.5'])
    >>> _label_keys(np.array(["rye", " rye"], dtype=object)).tolist()
    ['class0', 'class1']
    """
    from spectratorch.data.targets import _type_strings

    keys = _type_strings(pd.Series([str(c) for c in classes], dtype=object))
    if len(set(keys.tolist())) != len(keys) or any(k in ("", "nan") for k in keys.tolist()):
        keys = np.array([f"class{k}" for k in range(len(classes))], dtype=object)
    return np.asarray(keys, dtype=object)


def _frame(spectra: np.ndarray, layout: dict, labels: np.ndarray) -> pd.DataFrame:
    """The dataset in the package's schema: ``<channel>_<x>`` columns (only the points each channel has) and
    ``label``."""
    columns, blocks = [], []
    for c, channel in enumerate(layout["channels"]):
        if len(layout["channel_of"]):
            positions = np.sort(layout["position_of"][layout["channel_of"] == c])
        else:
            positions = np.arange(len(layout["axis"]))
        columns += [f"{channel}_{float(layout['axis'][p])!r}" for p in positions]
        blocks.append(spectra[:, c, positions])
    frame = pd.DataFrame(np.concatenate(blocks, axis=1), columns=columns,
                         index=pd.Index(np.arange(len(spectra)), name="id"))
    frame[_LABEL] = labels
    return frame


@contextlib.contextmanager
def _quiet(verbose: bool):
    """What a fit shows: with ``verbose``, its info lines and progress bars; without, its warnings only (no bars).

    The lines go to the application's logging when it has set some up, else to standard error for the fit's
    duration.
    """
    package = logging.getLogger("spectratorch")
    quieted = [package] if verbose else [package] + [logging.getLogger(name) for name in
                                                     ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in quieted]
    level = logging.INFO if verbose else logging.WARNING
    handler = None
    if not logging.getLogger().handlers and not package.handlers:
        # reason: Python's last-resort handler writes warnings only, to sys.stderr, which is silenced below; this
        # handler holds the real stream.
        handler = console_handler(level)
        package.addHandler(handler)
    for logger in quieted:
        logger.setLevel(level)
    try:
        if verbose:
            yield
        else:
            # reason: Lightning draws its bars on stdout or stderr depending on the release; both are silenced.
            with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
                yield
    finally:
        for logger, old_level in zip(quieted, levels):
            logger.setLevel(old_level)
        if handler is not None:
            package.removeHandler(handler)
