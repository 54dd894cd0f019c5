"""Is a spectrum like the ones the model learned from? PCA with Hotelling's T² and Q residuals, inside the ONNX file.

A PCA model of the training rows' preprocessed inputs (what the network sees: the spectra after the model's
transforms and scaling, with the scaled tabular values) keeps the components that explain ``VARIANCE`` of their
variance (at most ``MAX_COMPONENTS``). For a new row ``x`` (centred on the training mean):

- ``t2 = sum_j t_j^2 / lambda_j``, Hotelling's T² of its scores ``t = P' x`` (``lambda_j`` the variance of
  component ``j`` on the training rows): how far it lies inside the model's plane;
- ``q = |x - P t|^2``, the Q residual (squared prediction error): how far it lies off that plane.

The limits are the empirical quantiles of ``t2`` and ``q`` on held-out rows (the validation fold), each at
``1 - (1 - confidence) / 2``, so that ``outlier = t2 > t2_limit or q > q_limit`` flags at most about
``1 - confidence`` of in-distribution spectra (a union bound over the two tests). Empirical limits on held-out rows
need no normality assumption and do not inherit the optimism of the training rows' own residuals. A model that
trained on every row it has (the small-set protocol) has no such rows: :func:`fit_ood_out_of_fold` fits the PCA on
all of them and takes the limits from their out-of-fold ``t2`` and ``q`` (each row scored by a PCA of the other
folds), as cross-validated limits in chemometrics are.

:class:`OutlierScores` computes the three outputs as tensor operations, so they are ONNX nodes next to the
probabilities; :func:`fit_ood` fits it (numpy SVD).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from spectratorch.contract import OOD_CONFIDENCE, ood_limit_level
from spectratorch.errors import ConfigError
from spectratorch.models.batched import run_batched

__all__ = ["MAX_COMPONENTS", "VARIANCE", "OOF_FOLDS", "OutlierScores", "fit_model_ood", "fit_ood",
           "fit_ood_out_of_fold", "ood_scores", "preprocessed_inputs"]

_logger = logging.getLogger(__name__)

# reason: the PCA reads the preprocessed inputs, not the network's penultimate features: on the demo data's
# validation fold (bench_trust.py --quick, TinyVGG) the inputs separate instrument B with AUROC 1.000 against 0.866
# for the penultimate features (8 wide), tecator resampled to the axis, a saturated band and a baseline tilt with
# 1.000 against 0.996-1.000.
# reason: 99 % of the variance keeps the bands of the synthetic and demo spectra and leaves the noise to q;
# 20 components bound the cost per spectrum (two [D, 20] products).
VARIANCE = 0.99
MAX_COMPONENTS = 20
# reason: rows the SVD sees at most (a seeded subsample): the lab's training split would otherwise cost minutes.
_MAX_ROWS = 20000
# reason: the folds of the out-of-fold limits, as the small-set protocol's inner CV (each PCA sees 4/5 of the rows,
# nearly the final one's); not chosen on any set.
OOF_FOLDS = 5


class OutlierScores(nn.Module):
    """``(t2, q, outlier)`` ``[N]`` of preprocessed inputs ``[N, D]``, with the fitted PCA as buffers.

    Args:
        record: from :func:`fit_ood` (mean, components, variances, limits).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> train = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 8))
        >>> record = fit_ood(train, train[:50] + rng.normal(0, 0.01, (50, 8)))
        >>> t2, q, outlier = OutlierScores(record)(torch.tensor(np.vstack([train[:1], 50 * np.ones((1, 8))]),
        ...                                                     dtype=torch.float32))
        >>> outlier.tolist()
        [False, True]
    """

    def __init__(self, record: dict):
        super().__init__()
        self.register_buffer("mean", torch.tensor(record["mean"], dtype=torch.float32))
        self.register_buffer("components", torch.tensor(record["components"], dtype=torch.float32).reshape(
            len(record["mean"]), -1))
        self.register_buffer("inverse_variance", 1.0 / torch.tensor(record["variances"], dtype=torch.float32))
        self.register_buffer("t2_limit", torch.tensor(record["t2_limit"], dtype=torch.float32))
        self.register_buffer("q_limit", torch.tensor(record["q_limit"], dtype=torch.float32))

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        centred = inputs - self.mean
        scores = centred @ self.components
        t2 = (scores.pow(2) * self.inverse_variance).sum(dim=1)
        q = (centred - scores @ self.components.T).pow(2).sum(dim=1)
        return t2, q, (t2 > self.t2_limit) | (q > self.q_limit)


def ood_scores(record: dict, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(t2, q)`` ``[N]`` of preprocessed inputs ``[N, D]`` under a record of :func:`fit_ood` (numpy, float64)."""
    centred = np.asarray(inputs, dtype=np.float64) - np.asarray(record["mean"])
    components = np.asarray(record["components"])
    scores = centred @ components
    return (scores**2 / np.asarray(record["variances"])).sum(axis=1), ((centred - scores @ components.T) ** 2).sum(1)


def fit_ood(train: np.ndarray, held_out: np.ndarray, confidence: float = OOD_CONFIDENCE, seed: int = 0,
            log: bool = True) -> dict:
    """Fit the PCA on training rows and the T² and Q limits on held-out rows.

    Args:
        train: ``[N, D]`` preprocessed training inputs.
        held_out: ``[M, D]`` preprocessed held-out inputs (validation rows), ``M >= 1``.
        confidence: the flag's stated confidence, in (0.5, 1).
        seed: of the subsample when ``N`` exceeds 20,000 rows.
        log: say the fitted model in one INFO line (the export does; the result sheet, which draws the same model,
            does not say it again).

    Returns:
        JSON-serialisable ``{"mean", "components", "variances", "t2_limit", "q_limit", "confidence",
        "n_components", "explained", "n_train", "n_held_out", "held_out_flagged", "inputs", "limits_from"}``.

    Raises:
        ConfigError: an invalid confidence or too few rows.
    """
    _check_confidence(confidence)
    train, held_out = np.asarray(train, dtype=np.float64), np.asarray(held_out, dtype=np.float64)
    if train.ndim != 2 or len(train) < 3 or held_out.ndim != 2 or len(held_out) < 1 \
            or held_out.shape[1] != train.shape[1]:
        raise ConfigError(f"the outlier model needs >= 3 training rows and >= 1 held-out row of the same width; got "
                          f"{train.shape} and {held_out.shape}.")
    train = train[_subsample(len(train), seed)]
    record, explained = _pca(train)
    return _with_limits(record, *ood_scores(record, held_out), confidence, explained, len(train),
                        "validation rows", log)


def fit_ood_out_of_fold(train: np.ndarray, confidence: float = OOD_CONFIDENCE, seed: int = 0, log: bool = True,
                        n_folds: int = OOF_FOLDS, groups: np.ndarray | None = None) -> dict:
    """Fit the PCA on every training row and the T² and Q limits on their out-of-fold scores: the rows of each of
    ``n_folds`` shuffled folds are scored by a PCA of the other folds with as many components as the final one.

    For a model that trained on every row it has: the rows the final PCA saw would get optimistic (noise-fitted)
    scores, and there is no other row to set the limits on.

    Args:
        train: ``[N, D]`` preprocessed training inputs, ``N >= 3``.
        confidence, seed, log: as :func:`fit_ood`'s (``seed`` also shuffles the folds).
        n_folds: of the out-of-fold scores (at most ``N``: leave-one-out on the fewest rows).
        groups: ``[N]`` the sample of each row (``--groups``): a sample's rows are scored in one fold (at most as
            many folds as samples), so the limits hold for new samples, not for another scan of a sample the PCA
            saw; ``None``: each row on its own.

    Returns:
        The record of :func:`fit_ood`; ``n_held_out`` is ``N`` (every row scored out of fold).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> train = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 8)) + rng.normal(0, 0.1, (200, 8))
        >>> record = fit_ood_out_of_fold(train, log=False)
        >>> record["n_held_out"], record["limits_from"]
        (200, '5-fold out-of-fold scores of the training rows')
    """
    _check_confidence(confidence)
    train = np.asarray(train, dtype=np.float64)
    if train.ndim != 2 or len(train) < 3:
        raise ConfigError(f"the outlier model's out-of-fold limits need >= 3 training rows; got {train.shape}.")
    rows = _subsample(len(train), seed)
    train = train[rows]
    record, explained = _pca(train)
    # reason: without groups every row is its own unit; with them a sample's rows share their fold.
    units = np.arange(len(train)) if groups is None else np.unique(np.asarray(groups)[rows], return_inverse=True)[1]
    n_units = int(units.max()) + 1
    n_folds = min(n_folds, n_units)
    t2, q = np.empty(len(train)), np.empty(len(train))
    folds = (np.random.default_rng(seed).permutation(n_units) % n_folds)[units]
    for fold in range(n_folds):
        held = folds == fold
        fitted, _ = _pca(train[~held], record["n_components"])
        t2[held], q[held] = ood_scores(fitted, train[held])
    grouped = "" if groups is None else ", each sample's rows in one fold (--groups)"
    return _with_limits(record, t2, q, confidence, explained, len(train),
                        f"{n_folds}-fold out-of-fold scores of the training rows{grouped}", log)


def _check_confidence(confidence: float) -> None:
    if not 0.5 < confidence < 1.0:
        raise ConfigError(f"the outlier confidence must be in (0.5, 1); got {confidence!r}.")


def _pca(train: np.ndarray, n_components: int | None = None) -> tuple[dict, float]:
    """The PCA record (``mean``, ``components``, ``variances``, ``n_components``) of ``train`` with the components
    that explain ``VARIANCE`` of its variance (at most ``MAX_COMPONENTS``), or ``n_components`` of them when given
    (fewer when the rows cannot carry them); and the share of the variance they explain.

    One symmetric eigendecomposition of the smaller of the rows' Gram matrix ``[N, N]`` and the covariance
    ``[D, D]`` (the squared singular values and their vectors), not an SVD of ``[N, D]``: the out-of-fold limits fit
    six PCAs of up to 2,000 rows of 2,000 points, and an SVD of each would cost seconds.
    """
    n, width = train.shape
    mean = train.mean(axis=0)
    centred = train - mean
    by_rows = n <= width
    values, vectors = np.linalg.eigh(centred @ centred.T if by_rows else centred.T @ centred)
    values, vectors = np.clip(values[::-1], 0.0, None), vectors[:, ::-1]
    variances = values / (n - 1)
    explained = np.cumsum(variances) / max(variances.sum(), np.finfo(float).tiny)
    k = int(min(np.searchsorted(explained, VARIANCE) + 1, MAX_COMPONENTS) if n_components is None else n_components)
    k = min(k, n - 1, width)
    # reason: a component of (nearly) zero variance (constant inputs) would divide by zero and carries nothing; the
    # bound is above the rounding of a Gram matrix's eigenvalues (about 1e-16 of the largest).
    k = max(1, min(k, int((variances > variances[0] * 1e-10).sum())))
    scale = np.sqrt(np.maximum(values[:k], np.finfo(float).tiny))
    components = centred.T @ (vectors[:, :k] / scale) if by_rows else vectors[:, :k]
    return ({"mean": mean.tolist(), "components": components.tolist(), "variances": variances[:k].tolist(),
             "n_components": k}, float(explained[k - 1]))


def _with_limits(record: dict, t2: np.ndarray, q: np.ndarray, confidence: float, explained: float, n_train: int,
                 limits_from: str, log: bool) -> dict:
    """``record`` with the limits at the :func:`~spectratorch.contract.ood_limit_level` quantiles of the held-out
    ``t2`` and ``q``."""
    level = ood_limit_level(confidence)
    t2_limit, q_limit = float(np.quantile(t2, level, method="higher")), float(np.quantile(q, level, method="higher"))
    flagged = float(((t2 > t2_limit) | (q > q_limit)).mean())
    record.update(t2_limit=t2_limit, q_limit=q_limit, confidence=confidence, explained=explained, n_train=n_train,
                  n_held_out=len(t2), held_out_flagged=flagged, inputs="preprocessed", limits_from=limits_from)
    _logger.log(logging.INFO if log else logging.DEBUG,
                "outlier model: %d components (%.3f of the variance), T² limit %.4g, Q limit %.4g, from the %s; "
                "%.3f of %d held-out rows flagged", record["n_components"], explained, t2_limit, q_limit, limits_from,
                flagged, len(t2))
    return record


def _subsample(n: int, seed: int) -> np.ndarray:
    """Sorted row indices: all ``n`` rows, or a seeded subsample of ``_MAX_ROWS`` of them."""
    if n <= _MAX_ROWS:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, _MAX_ROWS, replace=False))


def fit_model_ood(model: nn.Module, train: tuple, held_out: tuple, confidence: float = OOD_CONFIDENCE,
                  seed: int = 0, log: bool = True, out_of_fold: bool = False, groups: np.ndarray | None = None) -> dict:
    """:func:`fit_ood` on a model's preprocessed inputs: what the export stores and the result sheet draws.

    Only the training rows the SVD sees (at most 20,000, the same seeded subsample as :func:`fit_ood`'s) are
    preprocessed, so the lab's training split is never held in float64 at once.

    Args:
        model: a :class:`~spectratorch.models.classifier.SpectralClassifier` (its ``preprocess`` is used).
        train: ``(spectra [N, C, L], tabular [N, T])`` raw training rows (numpy).
        held_out: ``(spectra [M, C, L], tabular [M, T])`` raw held-out rows (numpy), for the limits.
        confidence: the flag's stated confidence.
        seed: of the subsample.
        log: as :func:`fit_ood`'s.
        out_of_fold: the model trained on the ``held_out`` rows too (the small-set protocol): the PCA sees both
            parts, and the limits come from their out-of-fold scores (:func:`fit_ood_out_of_fold`).
        groups: with ``out_of_fold``, the sample of each training row, then of each held-out row (``--groups``):
            a sample's rows are scored in one fold; ``None``: each row on its own.

    Returns:
        The record of :func:`fit_ood`.
    """
    if out_of_fold:
        train = tuple(None if part is None else np.concatenate([part, held]) for part, held in zip(train, held_out))
    rows = _subsample(len(train[0]), seed)
    tabular = None if train[1] is None else train[1][rows]
    inputs = preprocessed_inputs(model, train[0][rows], tabular)
    if out_of_fold:
        return fit_ood_out_of_fold(inputs, confidence, seed, log, groups=None if groups is None else groups[rows])
    return fit_ood(inputs, preprocessed_inputs(model, *held_out), confidence, seed, log)


def summary(record: dict) -> dict:
    """The record without its arrays, for the ONNX metadata and the run's JSON."""
    return {key: value for key, value in record.items() if key not in ("mean", "components", "variances")}


@torch.no_grad()
def preprocessed_inputs(model: nn.Module, spectra: np.ndarray, tabular: np.ndarray | None,
                        batch: int = 1024) -> np.ndarray:
    """``[N, C * L + T]`` (float64): the model's preprocessing of raw rows, flattened, tabular values appended."""
    inputs = [torch.as_tensor(np.ascontiguousarray(spectra), dtype=torch.float32)]
    if model.n_tabular:
        inputs.append(torch.as_tensor(np.ascontiguousarray(tabular), dtype=torch.float32))

    def flat(spectra: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        return flatten_inputs(*model.preprocess(spectra, tabular)).double()

    # reason: the result sheet calls this with the model still on the training device.
    device = next(model.preprocess.buffers()).device
    return run_batched(flat, inputs, batch, device)[0].numpy()


def flatten_inputs(spectra: torch.Tensor, tabular: torch.Tensor | None) -> torch.Tensor:
    """``[N, C * L + T]`` from preprocessed ``spectra [N, C, L]`` and ``tabular [N, T]`` (or ``None``)."""
    flat = spectra.flatten(1)
    return flat if tabular is None or tabular.shape[1] == 0 else torch.cat([flat, tabular], dim=1)
