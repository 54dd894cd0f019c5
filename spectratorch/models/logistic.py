"""Multinomial logistic regression fitted by scikit-learn, as weights a ``torch.nn.Linear`` can take.

One fitter for two uses: the run's linear baseline (``training/baseline.py``) and the closed-form start of the
linear heads (``Linear``, ``MiniRocket``), which otherwise have to find the same solution (the optimum of one convex
objective) by Adam on hundreds of strongly correlated points, where a solver reaches it directly.

Features are standardised; ``C`` is chosen among 1e-3..1e3 by 3-fold CV on at most ``TUNE_ROWS`` rows (a
stratified subsample), then the model is refitted on every row with it.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["TUNE_ROWS", "fit_logistic", "logistic_as_linear", "stratified_subsample", "set_logistic_head"]

TUNE_ROWS = 2000


def stratified_subsample(y: np.ndarray, max_rows: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_rows`` rows, stratified by ``y`` (all rows when there are fewer)."""
    if len(y) <= max_rows:
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(y)), train_size=max_rows, stratify=y, random_state=seed)
    return np.sort(keep)


def fit_logistic(x: np.ndarray, y: np.ndarray, seed: int = 0):
    """Standardise, choose ``C`` by 3-fold CV on at most ``TUNE_ROWS`` rows, refit on all rows with it.

    Args:
        x: features ``[N, F]``.
        y: class indices ``[N]``.
        seed: of the subsample and the folds.

    Returns:
        ``(pipeline, C)``: a fitted scikit-learn ``StandardScaler`` + ``LogisticRegression`` pipeline and the ``C``
        it uses (1 when a class has fewer than 3 rows to cross-validate).
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    z = scaler.transform(x)
    c = 1.0
    tune = stratified_subsample(y, TUNE_ROWS, seed)
    counts = np.bincount(y[tune])
    with warnings.catch_warnings():
        # reason: lbfgs may stop at max_iter on hard data; the result is still the reference.
        warnings.simplefilter("ignore")
        if (counts[counts > 0] >= 3).all() and (counts > 0).sum() > 1:
            folds = StratifiedKFold(3, shuffle=True, random_state=seed)
            # reason: tol 1e-3 for the search only: the default 1e-4 spent 34 s on the demo's 2000 x 1339 rows,
            # mostly converging large-C fits, for the same scores at three decimals and the same C (12 s).
            search = LogisticRegressionCV(Cs=np.logspace(-3, 3, 7), cv=folds, max_iter=1000, tol=1e-3)
            search.fit(z[tune], y[tune])
            c = float(search.C_[0])
        return make_pipeline(scaler, LogisticRegression(C=c, max_iter=1000)).fit(x, y), c


def logistic_as_linear(pipeline, n_classes: int, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fitted pipeline as logits ``x @ weight.T + bias`` on the raw (unstandardised) features.

    Args:
        pipeline: from :func:`fit_logistic`.
        n_classes: ``K``; a class absent from the fit gets zero weights and a constant logit 30 below the lowest
            logit of the fitted classes on ``x``.
        x: the rows it was fitted on ``[N, F]``.

    Returns:
        ``(weight [K, F], bias [K])``, float32; the softmax of the logits is the pipeline's ``predict_proba``.
    """
    scaler, model = pipeline[0], pipeline[-1]
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:
        # reason: a binary fit is one logit z for the second class; (−z/2, z/2) has the same softmax.
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    weight = np.zeros((n_classes, coef.shape[1]))
    bias = np.zeros(n_classes)
    weight[model.classes_] = coef / scale
    bias[model.classes_] = intercept - (coef / scale) @ scaler.mean_
    if len(model.classes_) < n_classes:
        absent = np.setdiff1d(np.arange(n_classes), model.classes_)
        bias[absent] = (x @ weight[model.classes_].T + bias[model.classes_]).min() - 30.0
    return weight.astype(np.float32), bias.astype(np.float32)


@torch.no_grad()
def set_logistic_head(fc: torch.nn.Linear, features: torch.Tensor, y: torch.Tensor, seed: int = 0) -> float:
    """Set ``fc`` to the logistic regression of ``y`` on ``features`` (:func:`fit_logistic`); returns its ``C``."""
    x = features.double().cpu().numpy()
    pipeline, c = fit_logistic(x, y.cpu().numpy(), seed)
    weight, bias = logistic_as_linear(pipeline, fc.out_features, x)
    fc.weight.copy_(torch.from_numpy(weight))
    fc.bias.copy_(torch.from_numpy(bias))
    return c
