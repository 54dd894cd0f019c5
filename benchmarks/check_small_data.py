"""Small data from another instrument: the default recipe against PLS-DA and logistic regression, same folds.

Generates a generic dataset (one NIR-like channel ``nir`` of 200 points, a ``label`` column with 3 classes, no
tabular values) of a few dozen to a few hundred spectra, trains ``spectratorch train`` with its defaults
(``--targets AVA label --channels nir --tabular``) on every fold, and fits the two linear baselines on the same
training rows (min-max scaled like the network's input), all scored on the same test folds.

    python benchmarks/check_small_data.py [--sizes 60 200 400] [--n-splits 5] [--quick]

Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from spectratorch.data.generic import make_generic_frame


def _scaled(train: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low, high = train.min(0), train.max(0)
    span = np.where(high > low, high - low, 1)
    return 2 * (train - low) / span - 1, 2 * (other - low) / span - 1


def baselines(table, target, split) -> dict[str, float]:
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV

    flat = table.spectra.reshape(len(table), -1)
    train, test = _scaled(flat[split.train], flat[split.test])
    y_train, y_test = target.y[split.train], target.y[split.test]
    logistic = LogisticRegression(max_iter=5000).fit(train, y_train)
    onehot = np.eye(len(target.labels))[y_train]
    n_max = max(1, min(15, len(train) // 3))
    pls = GridSearchCV(PLSRegression(scale=False), {"n_components": list(range(1, n_max + 1))}, cv=3,
                       scoring="neg_mean_squared_error").fit(train, onehot)
    return {
        "logistic_regression": float((logistic.predict(test) == y_test).mean()),
        "pls_da": float((pls.predict(test).argmax(1) == y_test).mean()),
    }


def run(sizes, n_splits: int, max_epochs: int | None, seed: int) -> dict:
    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.data.datamodule import SpectralDataModule
    from spectratorch.pipelines.run import train

    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"generic-{n}.pkl"
            make_generic_frame(n, seed).to_pickle(path)
            scores = {"network": [], "logistic_regression": [], "pls_da": []}
            start = time.perf_counter()
            for fold in range(n_splits):
                data = DataConfig(data=str(path), targets=("AVA", "label"), channels=("nir",), tabular=(),
                                  n_splits=n_splits, current_split=fold)
                extra = {"max_epochs": max_epochs} if max_epochs else {}
                summary = train(RunConfig(data, ModelConfig(), TrainConfig(output_dir=f"{tmp}/out", **extra)))
                scores["network"].append(summary["metrics"]["test"]["accuracy"])
                dm = SpectralDataModule(data)
                dm.prepare()
                for name, value in baselines(dm.table, dm.target, dm.split).items():
                    scores[name].append(value)
            row = {"samples": n, "seconds": round(time.perf_counter() - start, 1)}
            row.update({k: round(statistics.mean(v), 3) for k, v in scores.items()})
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"benchmark": "small_data", "n_splits": n_splits, "metric": "test accuracy, mean over folds",
            "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 200, 400])
    parser.add_argument("--n-splits", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="one small size, 3 folds, 3 epochs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if args.quick:
        result = run([60], 3, 3, args.seed)
    else:
        result = run(args.sizes, args.n_splits, None, args.seed)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
