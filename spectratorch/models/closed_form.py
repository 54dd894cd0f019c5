"""Closed-form (or convex) solutions of a linear head, as ``(weight [K, F], bias [K])`` for a ``torch.nn.Linear``.

Five heads, each fitted on a model's own features (its ``forward_features`` of the preprocessed spectra, with the
tabular values appended):

- logistic regression (standardised features, Newton-CG, L2 strength ``C``): :func:`logistic_path`;
- PLS-DA (PLS regression of the one-hot classes, ``n_components``; projection and regression folded into one
  linear map): :func:`pls_path`;
- ridge classification of ±1 targets (standardised features, ``alpha`` by efficient leave-one-out, as scikit-learn's
  ``RidgeClassifierCV`` does; with more rows than features, every alpha from one eigendecomposition):
  :func:`ridge_head`;
- shrinkage linear discriminant analysis (standardised features, the pooled within-class covariance shrunk towards
  the identity by ``shrinkage``, as scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr")`` fits it):
  :func:`lda_path`;
- RBF kernel ridge classification of ±1 one-vs-rest targets, an unpenalised intercept, ``alpha`` by efficient
  leave-one-out from one eigendecomposition of the centred kernel matrix: :func:`kernel_ridge_head` (its features are
  the kernel values against the training rows, its weights the dual coefficients).

Each ``*_path`` fits every value of its grid on one set of rows and returns the heads in grid order, so an inner
cross-validation fits each fold once. Ridge and PLS outputs are scores, not log-odds: the caller divides them by a
temperature fitted on out-of-fold predictions before the softmax. numpy and scikit-learn only.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["LOGISTIC_CS", "RIDGE_ALPHAS", "KERNEL_ALPHAS", "KERNEL_GAMMAS", "MAX_PLS_COMPONENTS", "Standardiser",
           "LDA_SHRINKAGES", "cv_hits", "logistic_path", "pls_path", "lda_path", "ridge_head", "squared_distances",
           "kernel_gammas", "kernel_ridge_loo", "kernel_ridge_head", "as_two_logits", "decision"]

# reason: the grid scikit-learn users search by default for C (powers of ten around 1, as in the baseline); it
# was not chosen on any set of ours.
LOGISTIC_CS = tuple(float(c) for c in np.logspace(-3, 3, 7))
# reason: RidgeClassifierCV's usual wide grid for MiniRocket features (the MiniRocket paper uses logspace(-3, 3, 10)).
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 10))
# reason: a wide grid (one eigendecomposition gives every alpha's leave-one-out error, so its length costs nothing);
# sklearn's KernelRidge default (1.0) in the middle. Not chosen on any set of ours.
KERNEL_ALPHAS = tuple(float(a) for a in np.logspace(-4, 2, 13))
# reason: RBF widths as multiples of 1 / median squared distance between training rows (the median heuristic), from
# nearly linear (0.01) to nearly nearest-neighbour (10); 7 values keep an inner fold of 1,000 rows to a few seconds.
# Not chosen on any set of ours.
KERNEL_GAMMAS = tuple(float(g) for g in np.logspace(-2, 1, 7))
# reason: from nearly the identity (0.9) to nearly the plain pooled covariance (0.001), strongest first (exact ties
# keep the simpler), denser at the weak end; a grid over the range, not chosen on any set of ours.
LDA_SHRINKAGES = (0.9, 0.6, 0.3, 0.1, 0.03, 0.01, 0.001)
# reason: spectra rarely need more latent variables than this; the inner CV chooses among 1..20 (capped by rows).
MAX_PLS_COMPONENTS = 20


class Standardiser:
    """Centre and scale features, with the row space of the fitted rows as an orthonormal basis.

    With fewer rows than features, every L2-penalised linear fit on a subset of these rows has its weights in the
    span of the rows (representer theorem), so fitting on ``project(x)`` (``[N, rank]``) and mapping the weights back
    with :meth:`weights_back` gives exactly the fit on the ``F`` standardised features, at a fraction of the cost.

    Args:
        x: ``[N, F]`` features of every training row.
    """

    def __init__(self, x: np.ndarray):
        x = np.asarray(x, dtype=np.float64)
        self.mean = x.mean(0)
        scale = x.std(0)
        self.scale = np.where(scale > 1e-12, scale, 1.0)
        z = (x - self.mean) / self.scale
        self.basis = None
        if x.shape[0] < x.shape[1]:
            # reason: the eigenvectors of the N x N Gram matrix give the row space at O(N^2 F), far cheaper than an
            # SVD of the N x F matrix when F is thousands of points.
            values, vectors = np.linalg.eigh(z @ z.T)
            keep = values > max(values[-1], 0.0) * 1e-10
            self.basis = (z.T @ vectors[:, keep]) / np.sqrt(values[keep])  # [F, rank], orthonormal columns

    def project(self, x: np.ndarray) -> np.ndarray:
        """``[N, F]`` -> standardised features in the row-space basis ``[N, rank]`` (or ``[N, F]``)."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return z if self.basis is None else z @ self.basis

    def weights_back(self, coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weights on the projected features -> ``(weight [K, F], bias [K])`` on the raw features."""
        w = coef if self.basis is None else coef @ self.basis.T
        w = w / self.scale
        return w, intercept - w @ self.mean


def as_two_logits(coef: np.ndarray, intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A binary model's single score ``z`` (for the second class) as two logits ``(-z/2, z/2)``: same softmax."""
    if coef.shape[0] != 1:
        return coef, intercept
    return np.vstack([-coef[0] / 2, coef[0] / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])


def decision(x: np.ndarray, head: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``x @ weight.T + bias`` -> ``[N, K]``."""
    weight, bias = head
    return np.asarray(x, dtype=np.float64) @ weight.T + bias


def _full_classes(coef: np.ndarray, intercept: np.ndarray, classes: np.ndarray, n_classes: int,
                  fill: float) -> tuple[np.ndarray, np.ndarray]:
    """Heads of the classes present -> ``[K, F]``; an absent class gets zero weights and a constant low logit."""
    weight = np.zeros((n_classes, coef.shape[1]))
    bias = np.full(n_classes, fill, dtype=np.float64)
    weight[classes], bias[classes] = coef, intercept
    return weight, bias


def logistic_path(x: np.ndarray, y: np.ndarray, n_classes: int, cs=LOGISTIC_CS, tol: float = 1e-4,
                  max_iter: int = 200, standardiser: Standardiser | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Multinomial logistic regressions of ``y`` on standardised ``x``, one per ``C`` (warm-started along the path).

    Solved by Newton-CG: on spectra (hundreds of strongly correlated points) lbfgs stopped at 100 iterations far from
    the optimum (training accuracy 0.77 against 0.99 at C = 1, 640 generated spectra of 2,000 points), where
    Newton-CG converged in 8 iterations.

    Args:
        x: ``[N, F]`` features.
        y: ``[N]`` class indices.
        n_classes: ``K``.
        cs: the inverse L2 strengths, in the order fitted (strongest penalty first is fastest).
        tol: Newton-CG's tolerance.
        max_iter: Newton iterations at most per ``C``.
        standardiser: fitted on a superset of these rows (default: on ``x``).

    Returns:
        One ``(weight [K, F], bias [K])`` per ``C``, on the raw features.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(40, 5)); y = (x[:, 0] > 0).astype(int)
        >>> heads = logistic_path(x, y, 2, cs=(1.0,))
        >>> float((decision(x, heads[0]).argmax(1) == y).mean()) > 0.9
        True
    """
    from sklearn.linear_model import LogisticRegression

    standardiser = standardiser or Standardiser(x)
    z = standardiser.project(x)
    classes = np.unique(y)
    if len(classes) < 2:
        return [_full_classes(np.zeros((1, x.shape[1])), np.zeros(1), classes, n_classes, -30.0) for _ in cs]
    model = LogisticRegression(C=cs[0], solver="newton-cg", max_iter=max_iter, tol=tol, warm_start=True)
    heads = []
    with warnings.catch_warnings():
        # reason: the solver may stop at max_iter at the weakest penalties on separable rows; the result still ranks.
        warnings.simplefilter("ignore")
        for c in cs:
            model.set_params(C=c)
            model.fit(z, y)
            coef, intercept = as_two_logits(model.coef_, model.intercept_)
            weight, bias = standardiser.weights_back(coef, intercept)
            heads.append(_full_classes(weight, bias, classes, n_classes, -30.0))
    return heads


def pls_path(x: np.ndarray, y: np.ndarray, n_classes: int, max_components: int = MAX_PLS_COMPONENTS
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    """PLS-DA heads with 1..``max_components`` latent variables from one NIPALS fit (PLS2 on one-hot classes).

    The first ``k`` components of a fit with more components are those of a fit with ``k`` (NIPALS deflates one
    component at a time), so the head with ``k`` is ``W_k (P_kᵀ W_k)⁻¹ Q_kᵀ``: what scikit-learn's
    ``PLSRegression(n_components=k, scale=False)`` predicts.

    Args:
        x: ``[N, F]`` features (centred inside, not scaled).
        y: ``[N]`` class indices.
        n_classes: ``K``.
        max_components: the most latent variables (capped at ``N - 1`` and ``F``).

    Returns:
        ``[(weight [K, F], bias [K]) for k in 1..n]``: the predicted one-hot scores are ``x @ weight.T + bias``.
    """
    from sklearn.cross_decomposition import PLSRegression

    x = np.asarray(x, dtype=np.float64)
    onehot = np.eye(n_classes)[y]
    n = max(1, min(max_components, len(x) - 1, x.shape[1]))
    with warnings.catch_warnings():
        # reason: a constant column (a class absent from these rows) and late components near zero only warn.
        warnings.simplefilter("ignore")
        model = PLSRegression(n_components=n, scale=False).fit(x, onehot)
    w, p, q = model.x_weights_, model.x_loadings_, model.y_loadings_
    x_mean, y_mean = x.mean(0), onehot.mean(0)
    heads = []
    for k in range(1, n + 1):
        rotation = w[:, :k] @ np.linalg.pinv(p[:, :k].T @ w[:, :k])
        coef = (rotation @ q[:, :k].T).T  # [K, F]
        heads.append((coef, y_mean - coef @ x_mean))
    return heads


def cv_hits(x: np.ndarray, y: np.ndarray, n_classes: int, path, n_folds: int = 5, seed: int = 0) -> np.ndarray | None:
    """Right predictions of every head of ``path(x_fit, y_fit)`` over a stratified ``n_folds`` CV of the rows.

    Args:
        x: ``[N, F]`` features.
        y: ``[N]`` classes.
        n_classes: ``K``.
        path: ``(x, y) -> [(weight, bias), ...]``, one head per grid value.
        n_folds: folds (fewer when a class has fewer rows).
        seed: of the folds.

    Returns:
        ``[G]`` counts (a fold whose path is shorter, as PLS's on few rows, adds nothing to the later values), or
        ``None`` when a class has a single row (no CV).
    """
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=n_classes)
    folds = min(n_folds, int(counts[counts > 0].min()))
    if folds < 2:
        return None
    hits = np.zeros(0)
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        right = np.array([(decision(x[held], h).argmax(1) == y[held]).sum() for h in path(x[fit], y[fit])], float)
        hits = np.pad(hits, (0, max(0, len(right) - len(hits))))
        hits[: len(right)] += right
    return hits


def lda_path(x: np.ndarray, y: np.ndarray, n_classes: int, shrinkages=LDA_SHRINKAGES,
             standardiser: Standardiser | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shrinkage LDA heads of ``y`` on standardised ``x``, one per shrinkage, from one eigendecomposition.

    The covariance is the pooled within-class covariance ``W`` (each class's, normalised by its rows, weighted by the
    class share) shrunk towards the identity at its mean variance: ``(1 - s) W + s tr(W) / F I``; the priors are the
    class shares. That is scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr", shrinkage=s)`` on the
    standardised features. With fewer rows than features the fit runs in the row space of the standardiser's rows
    (the class means and ``W`` lie in it; the identity part acts alone outside it), so its cost does not grow with
    ``F²``.

    Args:
        x: ``[N, F]`` features.
        y: ``[N]`` class indices.
        n_classes: ``K``.
        shrinkages: the values of ``s`` in (0, 1].
        standardiser: fitted on a superset of these rows (default: on ``x``).

    Returns:
        One ``(weight [K, F], bias [K])`` per shrinkage, on the raw features: the discriminant scores (scikit-learn's
        ``decision_function`` for three classes or more; for two, it gives the second minus the first), centred over
        the classes. An absent class gets a score 30 below the lowest on these rows.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(40, 5)); y = (x[:, 0] > 0).astype(int)
        >>> heads = lda_path(x, y, 2, shrinkages=(0.1,))
        >>> float((decision(x, heads[0]).argmax(1) == y).mean()) > 0.9
        True
    """
    standardiser = standardiser or Standardiser(x)
    z = standardiser.project(x)
    classes, index, counts = np.unique(y, return_inverse=True, return_counts=True)
    if len(classes) < 2:
        return [_full_classes(np.zeros((1, x.shape[1])), np.zeros(1), classes, n_classes, -30.0) for _ in shrinkages]
    means = np.stack([z[index == k].mean(0) for k in range(len(classes))])  # [K', R]
    centred = z - means[index]
    # reason: with one row per class (an inner fit of a set of two rows per class) there is no within-class spread;
    # the standardised features' unit variance stands for it, and the head is the nearest class mean's.
    mean_variance = float((centred**2).sum()) / len(y) / x.shape[1] or 1.0
    if centred.shape[0] < centred.shape[1]:
        # reason: W = CᵀC / N has rank below N; the eigenvectors of the smaller N x N Gram matrix give its non-zero
        # part, and the shrinkage alone acts on the rest (the second term below).
        values, vectors = np.linalg.eigh(centred @ centred.T)
        keep = values > max(values[-1], 0.0) * 1e-12
        values, vectors = values[keep] / len(y), (centred.T @ vectors[:, keep]) / np.sqrt(values[keep])
    else:
        values, vectors = np.linalg.eigh(centred.T @ centred / len(y))
    projected = vectors.T @ means.T  # [M, K']
    rest = means.T - vectors @ projected  # [R, K']: the part of the means outside W's range
    log_priors = np.log(counts / len(y))
    heads = []
    for s in shrinkages:
        coef = (vectors @ (projected / ((1 - s) * values + s * mean_variance)[:, None])
                + rest / (s * mean_variance)).T  # [K', R]
        intercept = -0.5 * np.einsum("kr,kr->k", means, coef) + log_priors
        # reason: the softmax ignores a score common to every class; removing it keeps the logits small in float32.
        coef, intercept = coef - coef.mean(0), intercept - intercept.mean()
        weight, bias = standardiser.weights_back(coef, intercept)
        lowest = float(decision(x, (weight, bias)).min()) - 30.0
        heads.append(_full_classes(weight, bias, classes, n_classes, lowest))
    return heads


def ridge_head(x: np.ndarray, y: np.ndarray, n_classes: int, alphas=RIDGE_ALPHAS,
               standardiser: Standardiser | None = None) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    """Ridge classification (±1 targets) on standardised ``x``, alpha by efficient leave-one-out (GCV).

    Args:
        x: ``[N, F]`` features.
        y: ``[N]`` class indices.
        n_classes: ``K``.
        alphas: the L2 strengths searched.
        standardiser: fitted on a superset of these rows (default: on ``x``).

    Returns:
        ``((weight [K, F], bias [K]), alpha)``: the decision scores of ``RidgeClassifierCV`` as ``K`` logits (a
        binary problem's single score ``z`` as ``(-z/2, z/2)``), and the alpha chosen.
    """
    from sklearn.linear_model import RidgeClassifierCV

    standardiser = standardiser or Standardiser(x)
    classes = np.unique(y)
    if len(classes) < 2:
        return _full_classes(np.zeros((1, x.shape[1])), np.ones(1), classes, n_classes, -1.0), float(alphas[0])
    z = standardiser.project(x)
    if z.shape[0] > z.shape[1]:
        (coef, intercept), alpha = _ridge_loo_long(z, y, classes, alphas)
    else:
        model = RidgeClassifierCV(alphas=np.asarray(alphas)).fit(z, y)
        coef, intercept, alpha = np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_), model.alpha_
    weight, bias = standardiser.weights_back(*as_two_logits(coef, intercept))
    return _full_classes(weight, bias, classes, n_classes, -1.0), float(alpha)


def _ridge_loo_long(z: np.ndarray, y: np.ndarray, classes: np.ndarray, alphas) -> tuple[tuple, float]:
    """``RidgeClassifierCV``'s fit on more rows than features, every alpha from one eigendecomposition.

    scikit-learn's covariance mode multiplies ``N x F x F`` again for every alpha; here the centred features' Gram
    matrix ``Z'Z = V diag(l) V'`` and ``Q = Z V`` are computed once, and each alpha costs ``N x F``: the hat matrix's
    diagonal is ``1/N + (Q**2) @ (1 / (l + alpha))`` (the unpenalised intercept's ``1/N`` included). The alpha of the
    lowest mean squared leave-one-out error wins, the first on ties, as in scikit-learn.

    Returns:
        ``((coef [K or 1, F], intercept [K or 1]), alpha)`` on ``z``'s features, scikit-learn's layout.
    """
    targets = np.where(y[:, None] == classes[None, :], 1.0, -1.0)
    targets = targets[:, 1:] if len(classes) == 2 else targets  # reason: a binary problem has one ±1 score
    mean = z.mean(0)
    centred = z - mean
    values, vectors = np.linalg.eigh(centred.T @ centred)
    values = np.maximum(values, 0.0)
    q = centred @ vectors
    del centred
    y_mean = targets.mean(0)
    qty = q.T @ (targets - y_mean)
    q2 = q * q
    best, best_error = None, np.inf
    for alpha in alphas:
        shrink = 1.0 / (values + alpha)
        residual = targets - y_mean - q @ (shrink[:, None] * qty)
        leverage = 1.0 / len(z) + q2 @ shrink
        error = float(np.mean((residual / (1.0 - leverage)[:, None]) ** 2))
        if error < best_error:
            best, best_error = alpha, error
    coef = (vectors @ (qty / (values + best)[:, None])).T
    return (coef, y_mean - coef @ mean), float(best)


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, F]``, ``[M, F]`` -> ``[N, M]`` squared Euclidean distances (float64, clipped at 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


def kernel_gammas(d2: np.ndarray, multipliers=KERNEL_GAMMAS) -> list[float]:
    """RBF ``gamma`` values: ``multipliers`` / the median squared distance between distinct rows of ``d2`` [N, N]."""
    d2 = np.asarray(d2, dtype=np.float64)
    off = d2[~np.eye(len(d2), dtype=bool)]
    median = float(np.median(off)) if off.size else 1.0
    median = median if median > 1e-12 else 1.0
    return [float(m) / median for m in multipliers]


def _centred_eigen(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kernel centred in feature space (``H K H``), its eigenvalues and vectors, and its row means."""
    row_mean = kernel.mean(1)
    centred = kernel - row_mean[:, None] - row_mean[None, :] + row_mean.mean()
    values, vectors = np.linalg.eigh((centred + centred.T) / 2)
    return centred, np.maximum(values, 0.0), vectors, row_mean


def _targets(y: np.ndarray, n_classes: int) -> np.ndarray:
    """One-vs-rest ±1 targets ``[N, K]``."""
    return 2.0 * np.eye(n_classes)[y] - 1.0


def kernel_ridge_loo(kernel: np.ndarray, targets: np.ndarray, alphas=KERNEL_ALPHAS, eigen=None) -> np.ndarray:
    """Mean squared leave-one-out error of kernel ridge (unpenalised intercept) for every alpha, from one ``eigh``.

    Ridge in the kernel's feature space with an unpenalised intercept predicts ``ŷ = S y`` with the hat matrix
    ``S = 11ᵀ/n + K_c (K_c + αI)⁻¹`` (``K_c`` the centred kernel), so the leave-one-out residual of row ``i`` is
    ``(y_i - ŷ_i) / (1 - S_ii)``, exactly, and ``K_c = V Λ Vᵀ`` gives ``S`` for every ``α`` at once.

    Args:
        kernel: ``[N, N]`` kernel matrix of the rows.
        targets: ``[N, K]``.
        alphas: the L2 strengths.
        eigen: ``_centred_eigen(kernel)`` when the caller has it (default: computed here).

    Returns:
        ``[len(alphas)]`` mean over rows and targets of the squared leave-one-out residuals.
    """
    _, values, vectors, _ = eigen or _centred_eigen(np.asarray(kernel, dtype=np.float64))
    targets = np.asarray(targets, dtype=np.float64)
    n = len(targets)
    centred_targets = targets - targets.mean(0)
    projected = vectors.T @ centred_targets  # [N, K]
    errors = []
    for alpha in alphas:
        shrink = values / (values + alpha)
        fitted = targets.mean(0) + vectors @ (shrink[:, None] * projected)
        leverage = 1.0 / n + (vectors ** 2) @ shrink
        residual = (targets - fitted) / np.maximum(1.0 - leverage, 1e-12)[:, None]
        errors.append(float((residual ** 2).mean()))
    return np.asarray(errors)


def kernel_ridge_head(kernel: np.ndarray, y: np.ndarray, n_classes: int, alphas=KERNEL_ALPHAS
                      ) -> tuple[tuple[np.ndarray, np.ndarray], float]:
    """Kernel ridge classification of ±1 one-vs-rest targets with an unpenalised intercept, alpha by leave-one-out.

    The fit is ridge regression in the kernel's feature space with an intercept: dual coefficients
    ``a = (K_c + αI)⁻¹ (Y - Ȳ)`` on the centred kernel, and since ``Σ a = 0`` the score of a new row with kernel
    values ``k`` [N] against the rows is ``k · a + (Ȳ - mean(K a))``: a linear layer on the kernel values.

    Args:
        kernel: ``[N, N]`` kernel matrix of the training rows.
        y: ``[N]`` class indices.
        n_classes: ``K``.
        alphas: the L2 strengths searched (the smallest mean squared leave-one-out error wins; ties keep the first).

    Returns:
        ``((weight [K, N], bias [K]), alpha)``: scores = ``kernel values [M, N] @ weight.T + bias``.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    targets = _targets(np.asarray(y), n_classes)
    eigen = _centred_eigen(kernel)  # reason: one eigh for the leave-one-out path and the fit
    alpha = float(alphas[int(np.argmin(kernel_ridge_loo(kernel, targets, alphas, eigen)))]) if len(alphas) > 1 \
        else float(alphas[0])
    _, values, vectors, row_mean = eigen
    dual = vectors @ ((vectors.T @ (targets - targets.mean(0))) / (values + alpha)[:, None])  # [N, K]
    bias = targets.mean(0) - row_mean @ dual
    return (dual.T, bias), alpha
