"""The honest baseline of every run: linear models fitted on the network's own inputs, scored on the same rows.

A network that loses to a logistic regression is a defect the user must see. Every ``train`` fits two linear
models with scikit-learn on the *preprocessed* inputs (the fitted ``Preprocess``: scaling, ``simulate``, ``snv``,
Savitzky–Golay; flattened, tabular values appended), on the same training rows, and scores them on the same
validation and test rows as the network:

- ``logistic_regression``: multinomial, L2, lbfgs, on standardised features, ``C`` chosen among 1e-3..1e3 by 3-fold
  CV on at most 2000 training rows (a stratified subsample), then refitted on all of them (with ``C`` = 1
  on min-max inputs it scored 0.60 on NIR fat classes where a tuned one scores 0.96);
- ``pls_da``: PLS regression on the one-hot classes, arg-max of the prediction; the number of components (1 to 20)
  chosen on a seeded 20 % hold-out of the training rows, then refitted on all of them.

Both see at most ``max_train`` training rows (a seeded stratified subsample above that), so the baseline stays
seconds on the lab's 30k-sample sets. The metrics have the network's names (``accuracy``, ``f1`` (macro),
``balanced_accuracy``, ``auroc``).

This module serves the runs that keep a validation fold (a network, an explicit head on a large set). On a small set
(``pipelines/small.py``) the baselines are the ``Linear`` and ``PLSDA`` candidates of the inner CV instead, at the
``C`` and components it chose, refit on every training row; their inputs are the same preprocessed ones (min-max
scaled per point, so PLS-DA there is not PLS on the raw mean-centred spectra).
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch

from spectratorch.metrics import classification_metrics
from spectratorch.models.batched import run_batched
from spectratorch.models.logistic import fit_logistic, stratified_subsample

__all__ = ["BASELINES", "fit_baselines", "compare_with_baseline", "preprocessed_features"]

_logger = logging.getLogger(__name__)

BASELINES = ("logistic_regression", "pls_da")
_MAX_COMPONENTS = 20


@torch.no_grad()
def preprocessed_features(preprocess: torch.nn.Module, spectra: torch.Tensor, tabular: torch.Tensor,
                          batch_size: int = 4096) -> np.ndarray:
    """The network's inputs as one float32 matrix ``[N, C * L + T]``: spectra after ``preprocess``, then tabular.

    Args:
        preprocess: a fitted ``Preprocess``.
        spectra: raw ``[N, C, L]``.
        tabular: raw ``[N, T]``.
        batch_size: rows per pass (memory bound).

    Returns:
        ``[N, C * L + T]`` float32.
    """
    preprocess = preprocess.cpu().eval()
    if len(spectra) == 0:
        return np.zeros((0, 0), np.float32)

    def features(spectra: torch.Tensor, tabular: torch.Tensor) -> torch.Tensor:
        s, t = preprocess(spectra, tabular)
        return torch.cat([s.flatten(1), t], dim=1) if t is not None else s.flatten(1)

    return run_batched(features, (spectra, tabular), batch_size)[0].numpy()


class _PLSDA:
    """PLS-DA with the component count chosen on a hold-out: one fit gives the predictions of every count."""

    def __init__(self, n_classes: int, seed: int):
        self.n_classes, self.seed = n_classes, seed

    def _fit_pls(self, x: np.ndarray, y: np.ndarray, n_components: int):
        from sklearn.cross_decomposition import PLSRegression

        onehot = np.eye(self.n_classes)[y]
        n_components = max(1, min(n_components, x.shape[1], len(x) - 1))
        with warnings.catch_warnings():
            # reason: a constant column (zero-filled points outside a channel's range) warns on every fit.
            warnings.simplefilter("ignore")
            return PLSRegression(n_components=n_components, scale=False).fit(x, onehot)

    @staticmethod
    def _predict_each_count(pls, x: np.ndarray) -> list[np.ndarray]:
        # reason: the first k components of a fitted PLS are the k-component model (NIPALS is sequential), so one
        # fit scores every count: y_k = scores[:, :k] @ loadings[:, :k].T + the mean of y.
        scores, loadings = pls.transform(x), pls.y_loadings_
        y_mean = pls.predict(x[:1]) - scores[:1] @ loadings.T
        return [scores[:, :k] @ loadings[:, :k].T + y_mean for k in range(1, scores.shape[1] + 1)]

    def fit(self, x: np.ndarray, y: np.ndarray) -> "_PLSDA":
        from sklearn.model_selection import train_test_split

        n_max = max(1, min(_MAX_COMPONENTS, len(x) // 5))
        try:
            fit_rows, hold_rows = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y,
                                                   random_state=self.seed)
        except ValueError:  # reason: a class with one member cannot be stratified; fall back to a plain split.
            fit_rows, hold_rows = train_test_split(np.arange(len(y)), test_size=0.2, random_state=self.seed)
        pls = self._fit_pls(x[fit_rows], y[fit_rows], n_max)
        hold = [(p.argmax(1) == y[hold_rows]).mean() for p in self._predict_each_count(pls, x[hold_rows])]
        self.n_components = int(np.argmax(hold)) + 1
        self.pls = self._fit_pls(x, y, self.n_components)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.pls.predict(x).argmax(1)


def fit_baselines(train: tuple[np.ndarray, np.ndarray], stages: dict[str, tuple[np.ndarray, np.ndarray]],
                  n_classes: int, seed: int = 0, max_train: int = 10_000) -> dict:
    """Fit the linear baselines on ``train`` and score them on each of ``stages``.

    Args:
        train: ``(x [N, F], y [N])`` of the training rows (preprocessed features, class indices).
        stages: ``{"val": (x, y), "test": (x, y)}``.
        n_classes: ``K``.
        seed: for the subsample and PLS-DA's hold-out.
        max_train: training rows used at most (stratified subsample above).

    Returns:
        ``{name: {"val": {metric: value}, "test": {...}, "n_train": n, ...}}`` for each of
        :data:`BASELINES`; a model that could not be fitted (one class only, say) has ``"error"`` instead.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(200, 5)); y = (x[:, 0] > 0).astype(int)
        >>> out = fit_baselines((x[:150], y[:150]), {"test": (x[150:], y[150:])}, 2)
        >>> out["logistic_regression"]["test"]["accuracy"] > 0.9, out["pls_da"]["test"]["accuracy"] > 0.9
        (True, True)
    """

    x, y = train
    keep = stratified_subsample(y, max_train, seed)
    x, y = x[keep], y[keep]
    results = {}
    for name in BASELINES:
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # reason: lbfgs may stop at max_iter on hard data; the baseline is still the honest reference.
                warnings.simplefilter("ignore")
                if name == "logistic_regression":
                    model, c = fit_logistic(x, y, seed)
                    extra = {"C": c}
                else:
                    model = _PLSDA(n_classes, seed).fit(x, y)
                    extra = {"n_components": model.n_components}
                result = {}
                for stage, (xs, ys) in stages.items():
                    if len(ys) == 0:
                        continue
                    predicted = model.predict(xs)
                    proba = _full_proba(model, xs, n_classes) if name == "logistic_regression" else None
                    # reason: no loss: PLS-DA has no probabilities, so the two baselines report the same keys.
                    scores = classification_metrics(ys, proba, predicted)
                    result[stage] = {key: value for key, value in scores.items() if key != "loss"}
        except ValueError as err:
            _logger.warning("baseline %s could not be fitted: %s", name, err)
            results[name] = {"error": str(err)}
            continue
        # reason: no wall time in the results: the same command must give the same JSON metrics twice.
        _logger.info("baseline %s fitted on %d rows in %.1f s", name, len(y), time.perf_counter() - start)
        results[name] = {**result, **extra, "n_train": int(len(y))}
    return results


def _full_proba(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    # reason: a class absent from the (subsampled) training rows has no column in predict_proba.
    proba = np.zeros((len(x), n_classes))
    proba[:, model.classes_] = model.predict_proba(x)
    return proba


def compare_with_baseline(network: dict, baseline: dict, metric: str = "f1") -> dict | None:
    """Whether the network beats the best linear baseline on validation ``metric``.

    Args:
        network: the network's validation metrics (``metrics.val``).
        baseline: the output of :func:`fit_baselines`.
        metric: ``accuracy``, ``f1``, ``balanced_accuracy`` or ``auroc``.

    Returns:
        ``{"metric", "network", "best_baseline", "baseline", "network_is_worse", "message"}``, or ``None`` when
        there is nothing to compare.

    Example:
        >>> compare_with_baseline({"f1": 0.8}, {"pls_da": {"val": {"f1": 0.85}}})["network_is_worse"]
        True
    """
    scored = {name: result["val"][metric] for name, result in baseline.items()
              if result.get("val", {}).get(metric) is not None}
    if not scored or network.get(metric) is None:
        return None
    best = max(scored, key=scored.get)
    worse = network[metric] < scored[best]
    verdict = "WORSE than" if worse else "at or above"
    message = (f"validation {metric}: network {network[metric]:.4f}, {verdict} the best linear baseline "
               f"({best} {scored[best]:.4f})")
    if worse:
        message += ("; prefer the baseline or try another recipe (e.g. --arch Linear or MiniRocket, --transforms "
                    "none or sg1, --arch auto)")
    return {"metric": metric, "network": float(network[metric]), "best_baseline": best,
            "baseline": float(scored[best]), "network_is_worse": bool(worse), "message": message}
