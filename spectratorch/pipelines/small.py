"""The small-set protocol: every choice by inner cross-validation of the training rows, then a refit on all of them.

Below the lab's large-set rule (``defaults.auto_arch``), ``--arch auto`` (and an explicit solved head: ``Linear``,
``PLSDA``, ``MiniRocket``, ``KernelRidge``, ``LDA``) runs here instead of the Adam loop:

1. The held-out rows are the test rows only (fold ``current_split + 1``, or ``--test-source FILE``); the training
   rows are every other row (the training and validation folds together), so ``spectratorch cv`` gives the standard
   k-fold estimate: each row tested once, each fold trained on ``(k - 1) / k`` of the rows.
2. Each candidate (:data:`CANDIDATES`: a registered architecture whose last layer ``fc`` is solved on its own
   features) fits its unsupervised parts (the preprocessing, MiniRocket's biases) on the training rows, computes
   their features once, and is scored by a stratified inner k-fold CV of the training rows for every value of its
   grid (``C``, PLS components, the RBF kernel's ``gamma``, LDA's shrinkage; ridge's and kernel ridge's alpha by
   leave-one-out inside each fit). Out-of-fold scores are turned into probabilities by a temperature fitted on
   them. The choice: the run's target metric, where values within two training rows' worth of the best are ties,
   broken by the lower log-loss; exact ties keep the first (the strongest penalty, the fewest components, the
   simpler candidate).
3. The soft vote of the best 2..n candidates (their out-of-fold probabilities) becomes the model when it raises the
   target metric above the first-ranked candidate's (a lower log-loss alone does not), as ``Ensemble``: one
   network, one ONNX file.
   The CNN (``small_network.py``) joins the candidates from 2,000 training rows on a GPU or with ``--time-budget``; its
   grid is the number of epochs, its out-of-fold logits recorded after every epoch of every inner fold.
4. The chosen heads are solved again on every training row, each divided by its out-of-fold temperature, and
   stored as an ordinary checkpoint; the calibration and the cutoffs come from the out-of-fold predictions.

Test rows reach none of this: they are scored once, at the end. No test, no scikit-learn traceback: a class with
fewer training rows than the inner folds keeps them and is absent from some inner validation folds (one line names
it); when every class has fewer, the inner folds are the largest class's count (one line says so); a class with
fewer than 2 training rows is refused (:class:`~spectratorch.errors.SplitError`, exit 2).
"""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spectratorch.config import RunConfig
from spectratorch.data.io import data_fingerprint
from spectratorch.errors import ConfigError, SchemaError, SplitError
from spectratorch.export.calibration import fit_temperature, softmax
from spectratorch.metrics import classification_metrics, confusion_counts
from spectratorch.models.batched import run_batched
from spectratorch.models.classifier import SpectralClassifier, build_classifier
from spectratorch.models.closed_form import (
    LDA_SHRINKAGES,
    LOGISTIC_CS,
    MAX_PLS_COMPONENTS,
    Standardiser,
    decision,
    kernel_gammas,
    kernel_ridge_head,
    lda_path,
    logistic_path,
    pls_path,
    ridge_head,
    squared_distances,
)
from spectratorch.models.linear import LinearClassifier
from spectratorch.models.preprocess import Preprocess
from spectratorch.outputs import remove_earlier_best, warn_if_replacing
from spectratorch.transforms import preprocess_options

__all__ = ["Candidate", "CANDIDATES", "KERNEL_MAX_ROWS", "OPTIONAL_CANDIDATES", "PREPROCESSING_VARIANTS",
           "SOLVED_ARCHS", "solved_candidate", "with_variants", "INNER_FOLDS", "inner_folds", "choose", "fit_small"]

_logger = logging.getLogger(__name__)

# reason: 5 inner folds is scikit-learn's default; above 500 training rows each held-out fold has 100+ rows, so 3
# folds rank the candidates as well at 60 % of the cost (the 1,000-spectra speed goal). One draw of the folds: the
# mean over 5 draws changed test accuracy by +0.0046 on 32 development sets and by -0.0011 on 32 others
# (benchmarks/check_selection.py --fresh-test 1500, its "inner CV repeated" rules; sets in doc/small-data.md, step 2).
INNER_FOLDS = 5
_FEWER_FOLDS_ABOVE = 500
# reason: the logistic path is warm-started from the previous C; at 1e-3 Newton-CG stopped at once at the weak
# penalties, so the inner CV scored C = 1000 as C = 100 while the refit (at 1e-4) shipped the real C = 1000 (inner CV
# of tecator's training rows, 5 sets of 172: 0.924-0.959 at C = 1000 against 0.948-0.971 for scikit-learn's lbfgs;
# 1e-4 matches it). Test accuracy on fresh rows (benchmarks/check_selection.py --fresh-test 1500, every set trained on
# all its rows): make_generic_frame 60-200 rows, 79 runs, +0.0004 (11 up, 4 down); the lab generator's make_dataset
# 150-300 rows (AVA IN), 15 runs, -0.0024 (2 up, 8 down), where the unconverged path acted as extra shrinkage. The
# inner CV of 800 x 2,000 generated spectra took 0.75 s instead of 0.68 s.
_INNER_TOL, _FINAL_TOL = 1e-4, 1e-4
_TIE_ROWS = 2
# reason: seconds before the solved heads' bar shows; a run on a few hundred rows is done before it.
_BAR_DELAY = 5.0
# the grid parameter of each solver, as the JSON and the console name it
_PARAMETER = {"logistic": "C", "pls": "n_components", "lda": "shrinkage", "ridge": "alpha", "kernel": "gamma",
              "network": "epochs"}


@dataclass(frozen=True)
class Candidate:
    """A registered architecture whose last linear layer (``fc``; Hydra's ``head``) is solved on
    ``[net.forward_features(x), tabular]``.

    Attributes:
        arch: the registered name (the model's name when chosen alone).
        solver: ``logistic`` (grid of ``C``), ``pls`` (grid of components), ``lda`` (grid of shrinkages), ``ridge``
            (alpha by leave-one-out) or ``kernel`` (grid of the RBF ``gamma``, alpha by leave-one-out; its features are
            the squared distances between the training rows, its ``fc`` the dual coefficients on the kernel values).
        options: architecture options (e.g. ``{"n_features": 4000}``).
        transforms: model transforms it adds to the run's (``("snv",)``), in its own first layer.
    """

    arch: str
    solver: str
    options: dict = field(default_factory=dict)
    transforms: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The key of its records: the architecture, with the transforms it adds (``Linear[snv]``)."""
        return f"{self.arch}[{'+'.join(self.transforms)}]" if self.transforms else self.arch


# reason: the classical models a chemometrician would run, simplest first (ties keep the earlier one); a feature
# transform with a ridge head (MultiRocket, Hydra) joins as one more `Candidate(name, "ridge")`. KernelRidge is the
# RBF family (an RBF SVM's), solved in closed form. LDA (shrinkage LDA), with its SNV and first-derivative variants
# below, was chosen on development sets only (benchmarks/check_selection.py --extra-linear snv sg1, its rules with and
# without "LDA, LDA[snv], LDA[sg1]"): test accuracy +0.0163 (13 sets up, 4 down) and +0.0054 (7 up, 9 down) on the
# two batches of real sets of PREPROCESSING_VARIANTS' reason, the gain on corn (collagen and tablet: -0.0008, 13 up,
# 10 down over 41 draws); +0.0037 (14 up, 3 down) on 32 generated sets (--fresh-test 1500, the first batch of
# INNER_FOLDS's reason), 22 of them at or above the best tuned classical model instead of 16.
CANDIDATES = (Candidate("Linear", "logistic"), Candidate("PLSDA", "pls"), Candidate("MiniRocket", "ridge"),
              Candidate("KernelRidge", "kernel"), Candidate("LDA", "lda"))
# reason: solved heads a user names with --arch that --arch auto does not try: Hydra's transform took about 10x
# MiniRocket's time on 2,000-point spectra (bench_rocket.py: 60.6 s against 6.3 s for 100 rows), more than the
# 1,000-spectra speed goal leaves; and as one more candidate it changed the choice on none of 32 development sets
# (benchmarks/check_selection.py --fresh-test 1500 --extra-linear snv --extra-arch Hydra, the sets of the vote's
# reason in choose(); Hydra alone: mean test accuracy 0.787, MiniRocket alone 0.878).
OPTIONAL_CANDIDATES = (Candidate("Hydra", "ridge"),)
# reason: a kernel candidate's inner CV decomposes each inner fold's kernel matrix once per gamma (7 x 3 inner folds),
# and its squared distances hold rows^2 float64 values: numpy's eigh took 1.4 s for 2,666 rows and 12.4 s for
# 5,333 on a 2-core CPU (8-9x per doubling), and its support makes the ONNX file rows x points x 8 bytes. A default
# train on 5,000 generated spectra of 300 points (4,000 training rows) took 71 s in all; above KERNEL_MAX_ROWS
# training rows --arch auto leaves the kernel candidate out, and says so.
KERNEL_MAX_ROWS = 5000
SOLVED_ARCHS = frozenset(c.arch for c in CANDIDATES + OPTIONAL_CANDIDATES)


# reason: a chemometrician tries a scatter correction before a linear model; as one more inner-CV candidate (on the
# channels' default transforms), SNV then logistic regression raised test accuracy on 32 development sets by
# +0.020 (19 sets up, 2 down) and macro F1 by +0.040, and on the lab generator's sets by +0.06 to +0.07 (15 of 15
# runs at or above the best tuned classical model, against 3 of 15 without it): every set trained on all its rows
# and tested on 1,500 fresh rows of its generator (benchmarks/check_selection.py --fresh-test 1500 --extra-linear
# snv: make_generic_frame 60-200 rows, seeds 1-36; make_dataset 150-300 rows, AVA IN, seeds 1-7; no benchmark set).
# It costs one more logistic path (under a second per fold of 800 x 2,000).
# The Savitzky-Golay first derivative (sg1, window 11, order 2), the other correction a chemometrician tries on NIR,
# was chosen on real spectra no benchmark table uses (benchmarks/check_selection.py --extra-linear snv sg1 sg2 msc,
# REAL:N:SEED sets: collagen FTIR, tablet and corn NIR, N rows drawn for training, the others tested): as one more
# candidate beside Linear[snv], test accuracy +0.0165 on 29 sets (7 up, 6 down; seeds 1-6) and +0.0177 on 27 others
# (6 up, 3 down; seeds 11-13, every instrument). The gain is on corn: +0.083 and +0.056 (10 of its 15 draws up,
# 1 down; 20 test rows each); on collagen and tablet it cost -0.0009 (2 up, 6 down) and -0.0012 (1 up, 2 down). On
# 32 generated sets (--fresh-test 1500, the first batch of INNER_FOLDS's reason) +0.0004 (1 up, 1 down). The second
# derivative (sg2) or MSC as the extra candidate instead: +0.0052 and -0.0002 on the first 29 real sets.
PREPROCESSING_VARIANTS = (Candidate("Linear", "logistic", transforms=("snv",)),
                          Candidate("Linear", "logistic", transforms=("sg1",)),
                          Candidate("LDA", "lda", transforms=("snv",)), Candidate("LDA", "lda", transforms=("sg1",)))


def with_variants(candidates, config: RunConfig, dm) -> list[Candidate]:
    """``candidates`` and each :data:`PREPROCESSING_VARIANTS` entry whose transforms the run's lack and can be set up
    on ``dm``'s spectra; a variant that cannot (``sg1``'s window longer than the spectrum) is left out with one line
    saying why."""
    transforms = tuple(config.data.transforms)
    kept = list(candidates)
    for variant in PREPROCESSING_VARIANTS:
        if set(variant.transforms) <= set(transforms):
            continue
        try:
            # reason: the transform's own setup checks its options against the data (a window at most the length).
            Preprocess(list(dm.table.channels), dm.length, dm.n_tabular, transforms=(*transforms, *variant.transforms),
                       **preprocess_options(config.data))
        except ConfigError as error:
            _logger.warning("%s is not a candidate on these spectra: %s", variant.name, error)
            continue
        kept.append(variant)
    return kept


def _within_kernel_rows(candidates, n_rows: int) -> list[Candidate]:
    """``candidates`` without the kernel ones above :data:`KERNEL_MAX_ROWS` training rows, said in one line."""
    if n_rows <= KERNEL_MAX_ROWS:
        return list(candidates)
    left = [c.name for c in candidates if c.solver == "kernel"]
    if left:
        _logger.info("--arch auto: %s is not a candidate on %d training rows (more than %d: its kernel matrix and "
                     "support grow with the rows squared); --arch KernelRidge fits it alone", ", ".join(left), n_rows,
                     KERNEL_MAX_ROWS)
    return [c for c in candidates if c.solver != "kernel"]


def _within_length(candidates, length: int) -> list[Candidate]:
    """``candidates`` without the convolution ones whose kernel is longer than the spectra, said in one line."""
    from spectratorch.models.hydra import MIN_LENGTH as HYDRA_MIN_LENGTH
    from spectratorch.models.minirocket import MIN_LENGTH as ROCKET_MIN_LENGTH

    minimum = {"MiniRocket": ROCKET_MIN_LENGTH, "Hydra": HYDRA_MIN_LENGTH}
    short = [c for c in candidates if length < minimum.get(c.arch, 0)]
    for candidate in short:
        _logger.warning("%s is not a candidate on these spectra: its kernels span %d points, the spectra have %d",
                        candidate.name, minimum[candidate.arch], length)
    return [c for c in candidates if c not in short]


def solved_candidate(arch: str) -> Candidate:
    """The candidate of a solved head named by ``--arch`` (one of :data:`SOLVED_ARCHS`)."""
    return next(c for c in CANDIDATES + OPTIONAL_CANDIDATES if c.arch == arch)


def inner_folds(y: np.ndarray, labels, n_rows: int, groups: np.ndarray | None = None) -> int:
    """The number of inner folds: ``INNER_FOLDS`` (3 above 500 rows), also when a class has fewer training rows (it
    is then in every inner fold's training rows and absent from some inner folds' validation rows; one line says so);
    fewer only when every class has fewer training rows (the largest class's count; one line says so). With
    ``groups`` (the sample of every training row, ``--groups``), a class's groups count instead of its rows.

    Raises:
        SplitError: a class with fewer than 2 training rows (with groups: training rows of fewer than 2 groups).
    """
    if groups is None:
        counts = np.bincount(y, minlength=len(labels))
    else:
        counts = np.array([len(np.unique(groups[y == k])) for k in range(len(labels))])
    units = "training rows" if groups is None else "groups of training rows"
    wanted = INNER_FOLDS if n_rows <= _FEWER_FOLDS_ABOVE else 3
    smallest = int(counts.argmin())
    if counts[smallest] < 2:
        some = "training row(s)" if groups is None else "group(s) of training rows"
        raise SplitError(f"class {labels[smallest]!r} has {counts[smallest]} {some}; choosing a model by "
                         "inner cross-validation needs at least 2 per class. Add rows, or use --rare-classes drop "
                         "or other.")
    # reason: a stratified split needs one class that reaches every fold (with groups: a class's groups; the data
    # has at least as many groups as any class).
    n_folds = min(wanted, int(counts.max()))
    if n_folds < wanted:
        _logger.warning("every class has at most %d %s: %d inner folds instead of %d", counts.max(), units,
                        n_folds, wanted)
    small = [f"{labels[k]!r} ({counts[k]})" for k in np.flatnonzero(counts < n_folds)]
    if small:
        # reason: lowering the inner folds to the small class's rows (each inner fit on half the rows when it has 2)
        # cost test accuracy on development sets: keeping them gained +0.029 (8 sets up, 0 down) and +0.005 (3 up,
        # 2 down) on two batches of 14 generated sets with a class of 3 or 4 rows, each tested on 1,500 fresh rows
        # (python benchmarks/check_rare_inner_folds.py; doc/small-data.md, "Bad input"); no benchmark set has such
        # a class.
        shown = ", ".join(small[:5]) + (f" and {len(small) - 5} more" if len(small) > 5 else "")
        _logger.warning("class(es) %s have fewer %s than the %d inner folds: %d inner folds are kept, "
                        "and some validate none of their rows", shown, units, n_folds, n_folds)
    return n_folds


# ---- features and solvers -------------------------------------------------------------------------------------
@torch.no_grad()
def _features(model: SpectralClassifier, spectra: torch.Tensor, tabular: torch.Tensor) -> np.ndarray:
    model.eval()
    if hasattr(model.net, "support"):
        # reason: a kernel candidate's support is the standardised training rows themselves (in order); its features
        # for the inner CV are their squared distances, in float64, so each gamma costs one exp.
        support = model.net.support.double().numpy()
        if len(support) != len(spectra):
            raise RuntimeError(f"kernel support holds {len(support)} rows, expected the {len(spectra)} training rows")
        return squared_distances(support, support)

    take = getattr(model.net, "take_fit_features", None)
    kept = take() if take is not None else None
    if kept is not None and len(kept) == len(spectra):
        # reason: fit_data saw every training row (fewer than its max_rows) and computed these features for its
        # scaling; a random-kernel transform is most of a small-set run's time, so it is not computed twice.
        if model.n_tabular > 0:
            (pre_tabular,) = run_batched(lambda s, t: model.preprocess(s, t)[1], (spectra, tabular), 512)
            kept = torch.cat([kept, pre_tabular], dim=1)
        return kept.double().numpy()

    return _transformed(model, spectra, tabular)


@torch.no_grad()
def _transformed(model: SpectralClassifier, spectra: torch.Tensor, tabular: torch.Tensor) -> np.ndarray:
    """What a solved head multiplies, for any rows: ``[net.forward_features(preprocessed spectra), tabular]``."""
    model.eval()

    def features(spectra: torch.Tensor, tabular: torch.Tensor) -> torch.Tensor:
        pre_spectra, pre_tabular = model.preprocess(spectra, tabular)
        out = model.net.forward_features(pre_spectra).flatten(1)
        return (torch.cat([out, pre_tabular], dim=1) if model.n_tabular > 0 else out).double()

    return run_batched(features, (spectra, tabular), 512)[0].numpy()


def _grid(candidate: Candidate, n_fit_min: int, x: np.ndarray) -> list:
    n_features = x.shape[1]
    # reason: a value given as the grid parameter's option (--arch-opt n_components=3) is the model's, not searched.
    given = candidate.options.get(_PARAMETER[candidate.solver])
    if candidate.solver == "kernel":
        return kernel_gammas(x)
    if candidate.solver == "logistic":
        return list(LOGISTIC_CS)
    if candidate.solver == "pls":
        most = max(1, min(MAX_PLS_COMPONENTS, n_fit_min - 1, n_features))  # reason: capped by the inner folds' rows
        return [min(given, most)] if given else list(range(1, most + 1))
    if candidate.solver == "lda":
        return [float(given)] if given else list(LDA_SHRINKAGES)
    return ["loo"]


def _solve(candidate: Candidate, x: np.ndarray, y: np.ndarray, n_classes: int, grid: list,
           standardiser: Standardiser | None, tol: float, rows: np.ndarray | None = None) -> tuple[list, list]:
    """Heads for every grid value fitted on rows ``rows`` (default: all) of ``(x, y)``, and what each chose inside.

    A head is ``(weight [K, F], bias [K])`` on the candidate's features (:func:`_head_inputs`); for a kernel, on the
    kernel values against every training row (zero weight on the rows not fitted). What it chose inside: ridge's
    alpha, or a kernel's alpha.
    """
    rows = np.arange(len(y)) if rows is None else rows
    if candidate.solver == "kernel":
        heads, alphas = [], []
        for gamma in grid:
            (dual, bias), alpha = kernel_ridge_head(np.exp(-gamma * x[np.ix_(rows, rows)]), y[rows], n_classes)
            weight = np.zeros((n_classes, x.shape[1]))
            weight[:, rows] = dual
            heads.append((weight, bias))
            alphas.append(alpha)
        return heads, alphas
    x, y = x[rows], y[rows]
    if candidate.solver == "logistic":
        return logistic_path(x, y, n_classes, cs=grid, tol=tol, standardiser=standardiser), list(grid)
    if candidate.solver == "pls":
        heads = pls_path(x, y, n_classes, max_components=max(grid))
        return [heads[min(k, len(heads)) - 1] for k in grid], list(grid)
    if candidate.solver == "lda":
        return lda_path(x, y, n_classes, shrinkages=grid, standardiser=standardiser), list(grid)
    head, alpha = ridge_head(x, y, n_classes, standardiser=standardiser)
    return [head], [alpha]


def _head_inputs(candidate: Candidate, x: np.ndarray, value) -> np.ndarray:
    """What a head multiplies: the features, or for a kernel ``exp(-gamma d²)`` of the squared distances."""
    return np.exp(-value * x) if candidate.solver == "kernel" else x


# ---- inner cross-validation -----------------------------------------------------------------------------------
def _inner_oof(candidate: Candidate, x: np.ndarray, y: np.ndarray, n_classes: int, folds: list, n_fit_min: int,
               standardiser: Standardiser | None = None) -> tuple[np.ndarray, list, Standardiser | None]:
    """Out-of-fold decision scores ``[G, N, K]`` of a solved candidate at every grid value, the grid, and the
    standardiser of every training row (reused by the refit; ``standardiser``: already fitted on ``x``)."""
    if candidate.solver not in ("logistic", "ridge", "lda"):
        standardiser = None
    elif standardiser is None:
        standardiser = Standardiser(x)
    grid = _grid(candidate, n_fit_min, x)
    oof = np.zeros((len(grid), len(y), n_classes))
    for fit, held in folds:
        heads, _ = _solve(candidate, x, y, n_classes, grid, standardiser, _INNER_TOL, rows=fit)
        for g, head in enumerate(heads):
            oof[g, held] = decision(_head_inputs(candidate, x[held], grid[g]), head)
    return oof, grid, standardiser


def _score(oof: np.ndarray, y: np.ndarray, metric: str, full: bool = True) -> dict:
    calibration_log = logging.getLogger("spectratorch.export.calibration")
    level = calibration_log.level
    # reason: a grid value that separates the rows perfectly puts the temperature at its bound; that is expected
    # here (dozens of values per run) and says nothing to the user.
    calibration_log.setLevel(logging.ERROR)
    try:
        temperature = fit_temperature(oof, y)
    finally:
        calibration_log.setLevel(level)
    probabilities = softmax(oof, temperature)
    metrics = classification_metrics(y, probabilities, only=None if full else (metric,))
    return {"temperature": temperature, "probabilities": probabilities, "metrics": metrics,
            "key": (-metrics["loss"] if metric == "loss" else metrics.get(metric) or 0.0, -metrics["loss"])}


def choose(features: dict[str, np.ndarray], y: np.ndarray, n_classes: int, folds: list, metric: str,
           candidates=CANDIDATES, progress: Callable[[], object] | None = None) -> dict:
    """Score every candidate and grid value by inner CV; choose each candidate's value, then the model.

    Args:
        features: ``{name: [N, F] features of the training rows}`` (:attr:`Candidate.name`).
        y: ``[N]`` classes of the training rows.
        n_classes: ``K``.
        folds: ``[(fit rows, held rows), ...]``, the inner folds.
        metric: ``accuracy``, ``f1``, ``balanced_accuracy``, ``auroc`` (higher is better) or ``loss``.
        candidates: the :class:`Candidate` s.
        progress: called after each solved candidate's inner CV.

    Returns:
        ``{"candidates": {name: {"grid", "scores", "chosen", "temperature", "probabilities", "metrics"}},
        "ranking", "ensembles": {"A+B": metrics}, "chosen": [name, ...]}`` (one candidate, or the ensemble's
        members: candidates with the same transforms, as an ensemble has one first layer).
    """
    result, n_fit_min = {}, min(len(fit) for fit, _ in folds)
    # reason: on a few dozen inner rows the metric moves in steps of one row, so a value or candidate within two
    # rows' worth of the best is a tie, and the lower out-of-fold log-loss (a finer measure) breaks it. Chosen on 32
    # generated sets trained on every row and tested on 1,500 fresh rows of the same generator
    # (benchmarks/check_selection.py --fresh-test 1500): make_generic_frame 60 rows seeds 9-16 and 23-28, 100 rows
    # seeds 5-8 and 13-16, 172 rows of 100 points seeds 1-2; make_dataset (AVA IN) 150 rows seeds 1-5, 200 rows
    # seeds 1-2, 300 rows seed 1. Over exact ties: test accuracy +0.0035 (10 sets up, 3 down), macro f1 +0.0086
    # (10 up, 3 down); one row's worth gave +0.0012 and +0.0058. Checked afterwards on 14 other sets
    # (make_generic_frame 60 rows seeds 31-36, 100 rows seeds 17-20, 150 rows seed 3; make_dataset 150 rows seeds
    # 6-7, 200 rows seed 3): accuracy +0.0019 (5 up, 2 down), macro f1 +0.0040 (6 up, 1 down).
    tolerance = 0.0 if metric == "loss" else _TIE_ROWS / len(y)
    # reason: candidates on the same inputs (Linear and LDA on one preprocessing share one array) share its
    # standardiser, an eigendecomposition of the rows' Gram matrix.
    standardisers: dict[int, Standardiser] = {}
    for candidate in candidates:
        x = features[candidate.name]
        if candidate.solver == "network":
            # reason: a network's out-of-fold logits after every epoch come computed (small_network.py); its grid
            # is the number of epochs.
            oof, grid, standardiser = x, list(range(1, len(x) + 1)), None
        else:
            oof, grid, standardiser = _inner_oof(candidate, x, y, n_classes, folds, n_fit_min,
                                                 standardisers.get(id(x)))
            if standardiser is not None:
                standardisers[id(x)] = standardiser
            if progress is not None:
                progress()
        # reason: each grid value on its target metric and log-loss alone; every metric for the value kept.
        scored = [_score(oof[g], y, metric, full=False) for g in range(len(grid))]
        best = _ranked([s["key"] for s in scored], tolerance)[0]
        metrics = classification_metrics(y, scored[best]["probabilities"])
        result[candidate.name] = {"grid": grid, "scores": [s["metrics"] for s in scored], "chosen": grid[best],
                                  "temperature": scored[best]["temperature"], "metrics": metrics,
                                  "probabilities": scored[best]["probabilities"], "key": scored[best]["key"],
                                  "logits": oof[best] / scored[best]["temperature"], "standardiser": standardiser}
    names = list(result)
    ranking = [names[i] for i in _ranked([result[name]["key"] for name in names], tolerance)]
    chosen, best_key, ensembles = [ranking[0]], result[ranking[0]]["key"], {}
    transforms = {c.name: c.transforms for c in candidates}
    # reason: an ensemble has one first layer, so only the candidates with the first-ranked one's transforms vote. A
    # vote across preprocessings (Linear[snv] beside the others) was not worth a first layer per member: on 32
    # development sets (benchmarks/check_selection.py --fresh-test 1500 --extra-linear snv, its two "f1 within 2
    # rows" rules: make_generic_frame 60-200 rows seeds 41-50, 120 rows of 1,000 points seeds 51-52; make_dataset
    # 150-300 rows seeds 11-14) it changed test accuracy by -0.0011 (5 sets up, 4 down; -0.026 and -0.027 on 2 of
    # the 7 lab generator's sets).
    voters = [name for name in ranking if transforms[name] == transforms[ranking[0]]]
    for size in range(2, len(voters) + 1):
        members = voters[:size]
        mean = np.mean([result[arch]["probabilities"] for arch in members], axis=0)
        scored = _score(np.log(np.clip(mean, 1e-12, None)), y, metric)
        ensembles["+".join(members)] = {"metrics": scored["metrics"], "temperature": scored["temperature"],
                                        "logits": np.log(np.clip(mean, 1e-12, None)) / scored["temperature"]}
        # reason: the vote replaces the simpler model only when it raises the target metric itself; a log-loss-only
        # gain (after a tie on the metric) does not. On 9 generated sets (make_generic_frame: 60 and 100 rows with
        # seeds 1-4, 150 rows with seed 1; none a benchmark set), 5 outer folds each, this kept the same mean test
        # accuracy as voting on log-loss ties (0.976) with 7 votes instead of 25, and met the best tuned classical
        # model on 7 of 9 sets instead of 6 (inner-CV records and refits, scored on those sets' own outer folds).
        if scored["key"][0] > best_key[0]:
            chosen, best_key = members, scored["key"]
    return {"candidates": result, "ranking": ranking, "ensembles": ensembles, "chosen": chosen}


def _ranked(keys: list[tuple[float, float]], tolerance: float) -> list[int]:
    """Indices of ``(metric, -log-loss)`` keys, best first: those within ``tolerance`` of the best metric by the
    lower log-loss, then the others by their key. Sorting is stable, so exact ties keep the first (the strongest
    penalty, the fewest components, the earlier candidate)."""
    order = sorted(range(len(keys)), key=lambda i: keys[i], reverse=True)
    near = [i for i in order if keys[i][0] >= keys[order[0]][0] - tolerance - 1e-12]
    return sorted(near, key=lambda i: keys[i][1], reverse=True) + [i for i in order if i not in near]


# ---- the run --------------------------------------------------------------------------------------------------
def _with_options(candidate: Candidate, config: RunConfig) -> Candidate:
    """The candidate with the run's architecture options that it takes (``--n-features`` for MiniRocket...)."""
    from spectratorch.models.registry import model_options

    taken = set(model_options(candidate.arch))
    # reason: an explicit --arch refuses options it does not take (create_model says so); auto leaves them unset.
    explicit = config.model.arch == candidate.arch
    given = {k: v for k, v in config.model.arch_kwargs().items() if v is not None and (explicit or k in taken)}
    return dataclasses.replace(candidate, options={**candidate.options, **given})


def _training_rows(dm) -> np.ndarray:
    train, val = dm.split.train, dm.split.val
    if dm.config.test_source == "is-val":
        return np.sort(train)
    return np.sort(np.concatenate([train, val]))


def _check_varies(spectra: torch.Tensor, tabular: torch.Tensor) -> None:
    """Refuses training rows that are all the same spectrum (and tabular values): no head can learn from them.

    >>> _check_varies(torch.ones(4, 1, 5), torch.zeros(4, 0))
    Traceback (most recent call last):
    ...
    spectratorch.errors.SchemaError: the 4 training spectra are all the same (no point and no tabular value varies
    between them); nothing can tell their classes apart.
    """
    if bool((spectra == spectra[:1]).all()) and bool((tabular == tabular[:1]).all()):
        raise SchemaError(f"the {len(spectra)} training spectra are all the same (no point and no tabular value varies "
                          "between them); nothing can tell their classes apart.")


def _calibrate(final, arch: str, oof_logits: np.ndarray, y: np.ndarray,
               n_classes: int) -> tuple[np.ndarray, dict, float]:
    """The final model's out-of-fold logits, metrics and temperature after its last calibration, which is folded into
    the model: a temperature fitted on its out-of-fold logits, to the labels, or to Platt's targets where every
    out-of-fold row is right (the labels alone would then drive it to its lower bound: probabilities of 1.000 for new
    rows, wrong ones included)."""
    # reason: Platt's targets give a class of n rows (n + 1) / (n + 2) at most; on many classes of few rows (30 of
    # 4 to 6) that halved every probability: fresh rows' mean top probability 0.424 at accuracy 0.813 against 0.748
    # with the labels (generated development sets, benchmarks/check_calibration.py); a wrong row bounds the labels' fit.
    temperature = fit_temperature(oof_logits, y, platt=bool((oof_logits.argmax(1) == y).all()))
    if arch == "Ensemble":
        final.net.inverse_temperature.div_(temperature)
    else:
        _divide_head(final.net, n_classes, temperature)
    oof_logits = oof_logits / temperature
    return oof_logits, classification_metrics(y, softmax(oof_logits)), temperature


@torch.no_grad()
def _divide_head(net: torch.nn.Module, n_classes: int, temperature: float) -> None:
    """Divide the logits of ``net`` by ``temperature``: its last layer's weights and bias."""
    from spectratorch.training.finetune import final_layer

    _, layer = final_layer(net, n_classes)
    layer.weight.div_(temperature)
    layer.bias.div_(temperature)


def _set_head(net: torch.nn.Module, head: tuple[np.ndarray, np.ndarray], temperature: float) -> None:
    from spectratorch.training.finetune import final_layer

    weight, bias = head
    _, layer = final_layer(net, len(bias))
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight / temperature))
        layer.bias.copy_(torch.from_numpy(bias / temperature))


def fit_small(config: RunConfig, dm, module_kwargs, candidates=CANDIDATES) -> dict:
    """Choose, refit and assemble the model of a small set (see the module docstring).

    Args:
        config: the run's configuration (``--arch auto`` or a solved head).
        dm: its prepared data module.
        module_kwargs: ``(config, dm) -> SpectralModule keyword arguments`` for the chosen architecture.
        candidates: the candidates (one for an explicit ``--arch``).

    Returns:
        ``{"module", "selection", "val_metrics", "oof_logits", "y_train", "seconds"}``: the fitted
        :class:`~spectratorch.training.module.SpectralModule`, what was chosen and how (for the JSON), the
        out-of-fold metrics and logits of the final model on the training rows.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    from spectratorch.training.module import SpectralModule

    start = time.perf_counter()
    rows = dm.stage_arrays("train", rows=_training_rows(dm))
    spectra, tabular, y = rows.spectra, rows.tabular, rows.y.numpy()
    _check_varies(spectra, tabular)
    labels, n_classes = list(dm.labels), dm.n_classes
    groups = None if getattr(dm, "groups", None) is None else dm.groups[_training_rows(dm)]
    n_folds = inner_folds(y, labels, len(y), groups)
    splitter = StratifiedKFold if groups is None else StratifiedGroupKFold
    with warnings.catch_warnings():
        # reason: a class with fewer rows than the inner folds is kept on purpose; inner_folds said so in one line.
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        folds = list(splitter(n_folds, shuffle=True, random_state=config.data.seed).split(np.zeros(len(y)), y, groups))
    # reason: a kernel's support is every training row, so its size is an option the checkpoint rebuilds it with.
    candidates = [dataclasses.replace(c, options={**c.options, "n_support": len(y)}) if c.solver == "kernel" else c
                  for c in (_with_options(c, config) for c in candidates)]
    from spectratorch.pipelines.small_network import NETWORK, NETWORK_MIN_ROWS, network_rule
    from spectratorch.training.hardware import trains_on_cpu

    joins, why = (network_rule(len(y), config.train.time_budget, trains_on_cpu(config.train.accelerator))
                  if config.model.arch == "auto" else (False, f"--arch {config.model.arch}"))
    if not joins and len(y) >= NETWORK_MIN_ROWS:
        _logger.info("--arch auto: the network candidate (%s) stays out: %s", NETWORK, why)
    if not joins and (unused := network_flags_set(config)):
        _logger.warning("%s shape the training of a network; the solved heads of the small-set protocol take none of "
                        "them, so they change nothing in this run", ", ".join(unused))
    if not joins and "mlflow" in (config.train.loggers or ()):
        # reason: the loggers record a network's epochs; solved heads have none, and nothing is written to them. Said
        # for MLflow, a store one looks in (the estimator's own csv logger of its temporary folder is no one's ask).
        _logger.warning("--logger %s: the solved heads of the small-set protocol train no epochs, so nothing is "
                        "tracked; the run's JSON, result sheet and checkpoint are its record",
                        " --logger ".join(config.train.loggers))
    if joins:
        candidates.append(_with_options(Candidate(NETWORK, "network"), config))
    from spectratorch.pipelines.fold_bars import fold_bar

    models, features, network, flat = {}, {}, None, {}
    solved = sum(c.solver != "network" for c in candidates)
    # reason: seconds on a few hundred rows, minutes on tens of thousands: the bar shows only when it is slow.
    bar = fold_bar(total=2 * solved, desc="solved heads: features, inner CV", unit="step", leave=False,
                   delay=_BAR_DELAY)
    for candidate in candidates:
        if candidate.solver == "network":
            network = _network_inner_cv(config, dm, module_kwargs, candidate, spectra, tabular, y, folds, why)
            features[candidate.name] = network.pop("oof")
            continue
        model = build_classifier(candidate.arch, list(dm.table.channels), dm.length, dm.n_tabular, n_classes,
                                 (*config.data.transforms, *candidate.transforms), preprocess_options(config.data),
                                 **candidate.options)
        # reason: unsupervised parts only (no y); a transform's features of these rows are kept for _features.
        model.fit(spectra, tabular, seed=config.data.seed, keep_features=True)
        models[candidate.name] = model
        if isinstance(model.net, LinearClassifier):
            # reason: Linear, PLSDA and LDA multiply the same inputs (the flattened preprocessed spectrum; the
            # preprocessing is fitted on the same rows without labels), so one array serves them per preprocessing.
            key = candidate.transforms
            if key not in flat:
                flat[key] = _features(model, spectra, tabular)
            features[candidate.name] = flat[key]
        else:
            features[candidate.name] = _features(model, spectra, tabular)
        bar.update()
    metric = config.train.target_metric.removeprefix("val_")
    choice = choose(features, y, n_classes, folds, metric, candidates, progress=bar.update)
    bar.close()
    by_name = {c.name: c for c in candidates}
    refit = {}
    for name in choice["chosen"]:
        candidate, entry = by_name[name], choice["candidates"][name]
        if candidate.solver == "network":
            models[name] = _network_refit(network, spectra, tabular, y, entry["chosen"], entry["temperature"],
                                          config.data.seed, n_classes)
            refit[name] = {"value": entry["chosen"], "alpha": None}
            continue
        heads, inside = _solve(candidate, features[name], y, n_classes, [entry["chosen"]], entry["standardiser"],
                               _FINAL_TOL)
        if candidate.solver == "kernel":
            weight, bias = heads[-1]
            models[name].net.set_head(entry["chosen"], weight / entry["temperature"], bias / entry["temperature"])
        else:
            _set_head(models[name].net, heads[-1], entry["temperature"])
        refit[name] = {"value": entry["chosen"], "head": heads[-1],
                       "alpha": inside[-1] if candidate.solver in ("ridge", "kernel") else None}
    if len(choice["chosen"]) == 1:
        name = choice["chosen"][0]
        arch, arch_kwargs, final = by_name[name].arch, dict(by_name[name].options), models[name]
        oof_logits, val_metrics = choice["candidates"][name]["logits"], choice["candidates"][name]["metrics"]
    else:
        arch = "Ensemble"
        ensemble = choice["ensembles"]["+".join(choice["chosen"])]
        arch_kwargs = {"members": [{"arch": by_name[a].arch, **by_name[a].options} for a in choice["chosen"]]}
        final = build_classifier(arch, list(dm.table.channels), dm.length, dm.n_tabular, n_classes,
                                 (*config.data.transforms, *by_name[choice["chosen"][0]].transforms),
                                 preprocess_options(config.data), **arch_kwargs)
        final.preprocess.load_state_dict(models[choice["chosen"][0]].preprocess.state_dict())
        for member, name in zip(final.net.members, choice["chosen"]):
            member.load_state_dict(models[name].net.state_dict())
        final.net.inverse_temperature.fill_(1.0 / ensemble["temperature"])
        oof_logits, val_metrics = ensemble["logits"], ensemble["metrics"]
    oof_logits, val_metrics, final_temperature = _calibrate(final, arch, oof_logits, y, n_classes)
    # reason: the chosen candidate's own transforms (SNV for Linear[snv]) are the model's: checkpoint, name, ONNX.
    transforms = (*config.data.transforms, *by_name[choice["chosen"][0]].transforms)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, transforms=transforms))
    kwargs = module_kwargs(dataclasses.replace(config, model=dataclasses.replace(config.model, arch=arch)), dm)
    kwargs.update(arch=arch, arch_kwargs=arch_kwargs)
    module = SpectralModule(**kwargs)
    module.model.load_state_dict(final.state_dict())
    module.eval()
    baselines = _linear_baselines(choice, by_name, models, features, refit, y, n_classes)
    selection = _record(choice, refit, arch, n_folds, len(y), metric, candidates)
    selection["final_temperature"] = final_temperature
    selection["network"] = ({"joined": why, **{k: v for k, v in network.items() if k != "kwargs"}} if network
                            else {"joined": None, "rule": f"stays out: {why}"})
    return {"module": module, "selection": selection, "val_metrics": val_metrics, "oof_logits": oof_logits,
            "y_train": y, "baselines": baselines, "transforms": transforms, "seconds": time.perf_counter() - start}


# reason: the run's linear baselines (training/baseline.py's names) are the Linear and PLSDA candidates: the same
# models, tuned by the same inner CV of the same training rows; refitting them with a second tuning protocol cost
# a third of a 1,000 x 2,000 set's run and would report a more weakly tuned reference.
_BASELINE_OF = {"logistic_regression": "Linear", "pls_da": "PLSDA"}


def _linear_baselines(choice: dict, by_name: dict, models: dict, features: dict, refit: dict, y: np.ndarray,
                      n_classes: int) -> dict | None:
    """The ``Linear`` and ``PLSDA`` candidates at their inner-CV choice, refit on every training row (not divided by
    a temperature: a logistic regression's own probabilities), or ``None`` when either is not a candidate."""
    if any(arch not in by_name for arch in _BASELINE_OF.values()):
        return None
    out = {}
    for name, arch in _BASELINE_OF.items():
        candidate, entry = by_name[arch], choice["candidates"][arch]
        start = time.perf_counter()
        if arch in refit:
            head = refit[arch]["head"]
        else:
            head = _solve(candidate, features[arch], y, n_classes, [entry["chosen"]], entry["standardiser"],
                          _FINAL_TOL)[0][-1]
        out[name] = {"model": models[arch], "head": head, "solver": candidate.solver,
                     "parameter": _PARAMETER[candidate.solver],
                     "value": entry["chosen"], "n_train": len(y), "inner_cv": entry["metrics"],
                     "seconds": time.perf_counter() - start}
    return out


def _network_inner_cv(config: RunConfig, dm, module_kwargs, candidate: Candidate, spectra, tabular, y, folds,
                      joins: str) -> dict:
    """The network's out-of-fold logits after every epoch on the inner folds, and its record (small_network.py)."""
    from spectratorch.defaults import resolve_defaults
    from spectratorch.pipelines.small_network import network_inner_cv

    with_arch = dataclasses.replace(config, model=dataclasses.replace(config.model, arch=candidate.arch))
    kwargs = module_kwargs(with_arch, dm)
    kwargs.update(arch=candidate.arch, arch_kwargs=dict(candidate.options))
    max_epochs = resolve_defaults(with_arch, len(y)).train.max_epochs
    _logger.info("--arch auto: %s joins the choice (%s); its epochs by inner CV, at most %d", candidate.arch, joins,
                 max_epochs)
    oof, record = network_inner_cv(kwargs, spectra, tabular, y, dm.n_classes, folds, max_epochs, config.data.seed,
                                   config.train.time_budget)
    return {"oof": oof, "kwargs": kwargs, **record}


def _network_refit(network: dict, spectra, tabular, y, epochs: int, temperature: float, seed: int,
                   n_classes: int) -> SpectralClassifier:
    """The network trained on every training row for the chosen epochs, its last layer divided by the temperature."""
    from spectratorch.pipelines.small_network import train_network

    start = time.perf_counter()
    module, _, _ = train_network(network["kwargs"], spectra, tabular, y, epochs, seed)
    _divide_head(module.model.net, n_classes, temperature)
    network["refit_seconds"] = round(time.perf_counter() - start, 2)
    return module.model


def _record(choice: dict, refit: dict, arch: str, n_folds: int, n_rows: int, metric: str, candidates) -> dict:
    """What the JSON keeps: every candidate's inner-CV scores per grid value, the ensembles tried, the choice."""
    by_name = {c.name: c for c in candidates}
    solver = {name: c.solver for name, c in by_name.items()}
    chosen = choice["chosen"]
    how = (f"{n_rows} training rows, inner {n_folds}-fold CV on them only: "
           + ", ".join(f"{a} {choice['candidates'][a]['metrics'][metric]:.3f}" for a in choice["ranking"])
           + (f"; soft vote of {'+'.join(chosen)} {choice['ensembles']['+'.join(chosen)]['metrics'][metric]:.3f}"
              if len(chosen) > 1 else "")
           + (f" ({metric}; scores within {_TIE_ROWS / n_rows:.3f} are ties, ranked by out-of-fold log-loss) -> "
              if metric != "loss" else f" ({metric}) -> ") + (f"{arch} of " if len(chosen) > 1 else "")
           + ", ".join(f"{a} ({_PARAMETER[solver[a]]}="
                       f"{refit[a]['alpha'] if solver[a] == 'ridge' else refit[a]['value']:g}"
                       + (f", alpha={refit[a]['alpha']:g}" if solver[a] == "kernel" else "") + ")" for a in chosen))
    return {
        "rule": how,
        "protocol": "inner-cv",
        "chosen": arch,
        "members": chosen,
        "transforms": list(by_name[chosen[0]].transforms),
        "metric": metric,
        "inner_folds": n_folds,
        "training_rows": n_rows,
        "candidates": {
            a: {"arch": by_name[a].arch, "transforms": list(by_name[a].transforms), "solver": solver[a],
                "parameter": _PARAMETER[solver[a]], "grid": c["grid"], "chosen": c["chosen"],
                "temperature": c["temperature"], "inner_cv": c["metrics"],
                "inner_cv_per_value": [{metric: s.get(metric), "loss": s["loss"]} for s in c["scores"]],
                **({"alpha": refit[a]["alpha"]} if a in refit and refit[a]["alpha"] is not None else {})}
            for a, c in choice["candidates"].items()},
        "ensembles": {name: e["metrics"] for name, e in choice["ensembles"].items()},
    }


def save_checkpoint(module, path: Path, out_of_fold: tuple[np.ndarray, ...] | None = None) -> Path:
    """Write ``module`` as a checkpoint that ``SpectralModule.load_from_checkpoint`` reads; ``out_of_fold``: the
    training rows' out-of-fold ``(logits, y)``, which the export's calibration, label sets, outlier limits and
    cutoffs come from (they travel with the model, so ``spectratorch export`` makes the same file as the run), and
    optionally the rows of the data they are (an ensemble of folds counts each row once)."""
    import lightning

    from spectratorch.data.io import atomic_path
    from spectratorch.export.onnx import OUT_OF_FOLD_KEY

    payload = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams), "epoch": 0,
               "global_step": 0, "pytorch-lightning_version": lightning.__version__}
    if out_of_fold is not None:
        payload[OUT_OF_FOLD_KEY] = {"logits": torch.as_tensor(np.asarray(out_of_fold[0], dtype=np.float64)),
                                    "y": torch.as_tensor(np.asarray(out_of_fold[1], dtype=np.int64))}
        if len(out_of_fold) > 2:
            payload[OUT_OF_FOLD_KEY]["rows"] = torch.as_tensor(np.asarray(out_of_fold[2], dtype=np.int64))
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


# ---- outputs: what `spectratorch train` writes for a small set ------------------------------------------------
def _cutoffs(oof_logits: np.ndarray, y_train: np.ndarray) -> dict:
    """The calibration record of a small-set run: temperature 1 (folded into the model) and the cutoffs chosen on
    the out-of-fold predictions of the training rows (no test row needed)."""
    from spectratorch.report.metrics import cutoff_table, named_cutoffs

    cutoffs = cutoff_table(softmax(oof_logits), y_train)
    return {"temperature": 1.0, "source": "out-of-fold predictions of the training rows",
            "cutoffs": named_cutoffs(cutoffs), "cutoff_table": cutoffs.to_dict("records")}


def _result_sheet(module, dm, path: Path, stem: str, out_of_fold: tuple[np.ndarray, np.ndarray],
                  test_logits: np.ndarray, metrics: dict) -> dict:
    """The result sheet of the test rows, its cutoffs and temperature from the training rows' out-of-fold
    predictions (as ``spectratorch report`` of the checkpoint draws it), the run's baselines in its title; the
    calibration error on the test rows."""
    from spectratorch.report.sheet import baseline_accuracies, make_result_sheet

    sheet = make_result_sheet(module, dm, path, stem, baseline=baseline_accuracies(metrics), out_of_fold=out_of_fold,
                              test_logits=test_logits)
    return {"result_sheet": sheet["result_sheet"], "test_ece_after": sheet["ece_after"]}


# reason: the flags of a network's Adam loop and of its architecture; no solved head reads them.
_NETWORK_FLAGS = {"train": ("lr", "weight_decay", "max_epochs", "early_stop_patience", "scheduler_patience",
                            "scheduler_cooldown", "eps", "loss", "focal_gamma", "class_weights", "resume", "strategy"),
                  "data": ("batch_size",),
                  "model": ("width", "batch_norm", "block_units", "wf", "dropout", "pool_bins")}


def network_flags_set(config: RunConfig) -> list[str]:
    """The flags of a network's training that ``config`` sets to other than their defaults, as ``--flag value``.

    Example:
        >>> from spectratorch.config import TrainConfig
        >>> network_flags_set(RunConfig(train=TrainConfig(lr=0.5, eps=0.1, max_epochs=2, resume=True)))
        ['--lr 0.5', '--max-epochs 2', '--resume']
    """
    found = []
    for group, names in _NETWORK_FLAGS.items():
        part = getattr(config, group)
        defaults = {f.name: f.default for f in dataclasses.fields(part)}
        found += [f"--{name.replace('_', '-')}" + ("" if getattr(part, name) is True else f" {getattr(part, name)}")
                  for name in names if getattr(part, name) != defaults[name]]
    return found


def train_small(config: RunConfig, dm, candidates=None, result_sheet: bool = True) -> dict:
    """``spectratorch train`` on a small set: :func:`fit_small`, then the checkpoint, JSON, sheet and ONNX.

    ``candidates``: default :data:`CANDIDATES`, with the :data:`PREPROCESSING_VARIANTS` on the channels' default
    transforms; a list given is used as given.

    Returns:
        The summary written to ``<stem>.json`` (``metrics.val`` holds the inner-CV out-of-fold metrics of the final
        model on the training rows; ``metrics.test`` the test rows').
    """
    from spectratorch._version import __version__
    from spectratorch.contract import model_name
    from spectratorch.defaults import auto_transforms, resolve_defaults
    from spectratorch.models.batched import predict_logits
    from spectratorch.pipelines.run import _module_kwargs, _save_test_predictions, _write_json

    defaults = tuple(auto_transforms(config.data.channels))
    if config.data.transforms is None:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data, transforms=defaults))
    if candidates is None:
        # reason: a run on its channels' default transforms also tries the preprocessing variants; transforms the
        # user set are kept as given.
        candidates = with_variants(CANDIDATES, config, dm) if tuple(config.data.transforms) == defaults else CANDIDATES
        candidates = _within_length(_within_kernel_rows(candidates, len(_training_rows(dm))), dm.length)
    dm.config = config.data
    out_dir = config.train.out_dir
    # reason: the data module's split line counts a validation fold that the small-set protocol trains on.
    folds = "the train folds" if config.data.test_source == "is-val" else "the train and val folds"
    _logger.info("small-set protocol: %s are its %d training rows, no validation fold; %d test rows", folds,
                 len(_training_rows(dm)), len(dm.stage_arrays("test")))
    fitted = fit_small(config, dm, lambda c, d: _module_kwargs(resolve_defaults(c, len(_training_rows(d))), d),
                       candidates)
    module, selection = fitted["module"], fitted["selection"]
    _logger.info("--arch %s: %s", config.model.arch, selection["rule"])
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, transforms=fitted["transforms"]))
    dm.config = config.data
    config = resolve_defaults(dataclasses.replace(config, model=dataclasses.replace(config.model,
                                                                                   arch=selection["chosen"])),
                              selection["training_rows"])
    stem = model_name(config.name_fields())
    earlier_best = warn_if_replacing(out_dir, stem)
    val = fitted["val_metrics"]
    test_rows = dm.stage_arrays("test")
    metrics = {"val": val}
    test_logits = test_probabilities = None
    if len(test_rows):
        # reason: the test rows' logits are computed once, for the metrics, the predictions file and the sheet.
        test_logits = predict_logits(module, test_rows.spectra, test_rows.tabular)
        test_probabilities = softmax(test_logits)
        metrics["test"] = classification_metrics(test_rows.y.numpy(), test_probabilities)
    else:
        # reason: the model was chosen on these inner-CV scores among many candidates and grid values, so they are
        # optimistic (accuracy 0.417 on labels shuffled at random, 3 classes: doc/small-data.md, step 1); cv's test
        # folds are the estimate.
        _logger.info("no test rows (--test-source none): the model is trained on every row; metrics.val is the inner "
                     "CV it was chosen on, optimistic; `spectratorch cv` with the same flags gives the k-fold estimate")
    if config.train.baseline and len(test_rows):
        metrics["baseline"] = _baseline(module, dm, config.data.seed, fitted["baselines"], test_rows)
    elif config.train.baseline and fitted["baselines"] is not None:
        # reason: no test rows: the baselines' estimate is their inner CV, as the model's is (the same folds).
        metrics["baseline"] = {name: {"val": {k: v for k, v in fit["inner_cv"].items() if k != "loss"},
                                      fit["parameter"]: fit["value"], "n_train": int(fit["n_train"]),
                                      "chosen_by": "inner CV of the training rows"}
                               for name, fit in fitted["baselines"].items()}
    checkpoint = out_dir / f"{stem}_{val['loss']:.3E}_{val['f1']:.4f}_{val['accuracy']:.4f}.ckpt"
    save_checkpoint(module, checkpoint, (fitted["oof_logits"], fitted["y_train"], _training_rows(dm)))
    remove_earlier_best(earlier_best, checkpoint)
    summary = {"name": stem, "version": __version__, "config": config.to_dict(), "labels": list(dm.labels),
               "description": dm.table.describe(), "class_counts": _class_counts(dm),
               "filters_removed": dm.table.report, "data_files": data_fingerprint(config.data),
               "arch_selection": selection, "metrics": metrics,
               "files": {"checkpoint": str(checkpoint)}, "seconds_fit": round(fitted["seconds"], 2)}
    if test_probabilities is not None:
        summary["confusion"] = {"test": confusion_counts(test_rows.y.numpy(), test_probabilities.argmax(1),
                                                         len(dm.labels))}
    files = summary["files"]
    if config.train.save_test_preds and len(test_rows):
        files["test_predictions"] = str(out_dir / f"{stem}.csv")
        _save_test_predictions(out_dir / f"{stem}.csv", module, dm, test_probabilities)
    summary["calibration"] = _cutoffs(fitted["oof_logits"], fitted["y_train"])
    if result_sheet and len(test_rows):
        sheet = _result_sheet(module, dm, out_dir / f"{stem} result sheet.png", stem,
                              (fitted["oof_logits"], fitted["y_train"]), test_logits, metrics)
        files["result_sheet"] = sheet.pop("result_sheet")
        summary["calibration"].update(sheet)
    if config.train.to_onnx:
        from spectratorch.export.onnx import export_onnx, read_metadata

        # reason: the checkpoint carries the out-of-fold predictions: the export takes its calibration, label sets,
        # outlier limits and cutoffs from them, as `spectratorch export` of the same checkpoint does.
        files["onnx"] = str(export_onnx(checkpoint, out_dir / f"{stem}.onnx", dm, metrics=metrics))
        exported = read_metadata(files["onnx"])
        # reason: the conformal calibration and the outlier model's limits travel in the ONNX; the JSON repeats them.
        summary["trust"] = {"conformal": exported.get("conformal"), "ood": exported.get("ood")}
    files["json"] = str(out_dir / f"{stem}.json")
    _write_json(out_dir / f"{stem}.json", summary)
    return summary


def _baseline(module, dm, seed: int, solved: dict | None, test_rows) -> dict:
    """The run's own linear baselines (logistic regression, PLS-DA) on the model's preprocessed inputs, fitted on
    the training rows and scored on the test rows, as every run reports them.

    With ``--arch auto`` they are the ``Linear`` and ``PLSDA`` candidates refit at their inner-CV choice
    (``solved``, from :func:`fit_small`); with one explicit head, ``training/baseline.py`` fits them."""
    from spectratorch.pipelines.run import _stage_features
    from spectratorch.training.baseline import fit_baselines

    if solved is not None:
        y_test, out = test_rows.y.numpy(), {}
        for name, fit in solved.items():
            logits = decision(_transformed(fit["model"], test_rows.spectra, test_rows.tabular), fit["head"])
            scores = (classification_metrics(y_test, softmax(logits)) if fit["solver"] == "logistic" else
                      classification_metrics(y_test, None, logits.argmax(1)))
            # reason: no loss: PLS-DA has no probabilities, so the two baselines report the same keys (as
            # training/baseline.py does).
            out[name] = {"test": {k: v for k, v in scores.items() if k != "loss"}, fit["parameter"]: fit["value"],
                         "n_train": int(fit["n_train"]), "chosen_by": "inner CV of the training rows"}
            _logger.info("baseline %s: the %s candidate at its inner-CV %s=%g, refit on %d rows in %.1f s", name,
                         _BASELINE_OF[name], fit["parameter"], fit["value"], fit["n_train"], fit["seconds"])
        return out
    stages = ("train",) if dm.config.test_source == "is-val" else ("train", "val")
    parts = [_stage_features(module, dm, stage) for stage in stages]
    train = (np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))
    return fit_baselines(train, {"test": _stage_features(module, dm, "test")}, dm.n_classes, seed=seed)


def _class_counts(dm) -> dict:
    """Members per class in the training rows (training and validation folds together) and the test rows."""
    counts = {}
    for stage, rows in (("train", dm.stage_arrays("train", rows=_training_rows(dm))),
                        ("test", dm.stage_arrays("test"))):
        bins = np.bincount(rows.y.numpy(), minlength=dm.n_classes)
        counts[stage] = {label: int(n) for label, n in zip(dm.labels, bins)}
    return counts
