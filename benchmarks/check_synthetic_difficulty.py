"""How hard is the synthetic dataset? Logistic regression vs a small 1D CNN on the same split.

Generates ``--n-samples`` samples with :func:`spectratorch.data.synthetic.make_demo_dataset` (cleaned, as
``convert`` would write them), keeps channels 277 and 380, scales every feature to [-1, 1] on the training
part of fold 0 of a seeded 5-fold split stratified on the full truth (intensity x type), and reports test
accuracy of scikit-learn ``LogisticRegression`` and of a 4-layer 1D CNN (plain torch, Adam, a few epochs) for
the targets OVA OK (OK vs the rest) and AVA IN (the four intensities). It also times ``make_dataset`` for
``--time-n`` samples (median of ``--repeats`` runs after a warm-up on a small size).

Usage::

    python benchmarks/check_synthetic_difficulty.py --n-samples 30000 --seed 0 --epochs 5 --time-n 300000

The last line of stdout is one JSON object with the figures.
"""

import argparse
import json
import statistics
import sys
import time
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from torch import nn

from spectratorch.data.synthetic import AXIS_EMISSION, make_dataset, make_demo_dataset

CHANNELS = ("277", "380")
INTENSITIES = ("OK", "VR", "CROCHET", "NC")


def intensity(values) -> np.ndarray:
    """The lab's intensity spellings mapped to OK, VR, CROCHET, NC."""
    return np.array([v.split(" - ")[0] for v in values])


def load(n_samples: int, seed: int):
    df, removed = make_demo_dataset(n_samples, seed)
    columns = [f"{ch}_{x}" for ch in CHANNELS for x in AXIS_EMISSION]
    x = df[columns].to_numpy(dtype=np.float32)
    labels = intensity(df["greffon_defaut_severite"])
    truth = np.char.add(np.char.add(labels, "_"), df["greffon_defaut_type"].astype(str).to_numpy())
    targets = {
        "OVA OK": (labels == "OK").astype(np.int64),
        "AVA IN": np.searchsorted(np.array(sorted(INTENSITIES)), labels).astype(np.int64),
    }
    return x, truth, targets, removed


def fold0(truth: np.ndarray, seed: int):
    return next(StratifiedKFold(n_splits=5, shuffle=True, random_state=seed).split(truth, truth))


def minmax(x_train: np.ndarray, x_test: np.ndarray):
    lo, hi = x_train.min(axis=0), x_train.max(axis=0)
    scale = np.where(hi > lo, hi - lo, 1.0)
    return 2 * (x_train - lo) / scale - 1, 2 * (x_test - lo) / scale - 1


def fit_lr(x_train, y_train, x_test, y_test, c: float) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=c, max_iter=2000).fit(x_train, y_train)
    return float((model.predict(x_test) == y_test).mean())


class SmallCNN(nn.Module):
    """Four stride-2 conv blocks (32-64 channels), global average and max pooling, linear head."""

    def __init__(self, n_channels: int, n_classes: int):
        super().__init__()
        layers, width_in = [], n_channels
        for width, kernel in ((32, 7), (48, 7), (64, 5), (64, 5)):
            layers += [nn.Conv1d(width_in, width, kernel, stride=2, padding=kernel // 2), nn.BatchNorm1d(width),
                       nn.ReLU()]
            width_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * width_in, n_classes)

    def forward(self, x):
        z = self.features(x)
        return self.head(torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=1))


def fit_cnn(x_train, y_train, x_test, y_test, n_classes: int, epochs: int, seed: int, batch_size: int = 64,
            max_lr: float = 4e-3) -> tuple[float, float]:
    torch.manual_seed(seed)
    shape = (-1, len(CHANNELS), len(AXIS_EMISSION))
    xt, yt = torch.from_numpy(x_train.reshape(shape)), torch.from_numpy(y_train)
    xv = torch.from_numpy(x_test.reshape(shape))
    model = SmallCNN(len(CHANNELS), n_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=max_lr)
    steps = epochs * (-(-len(xt) // batch_size))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=steps)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in torch.randperm(len(xt)).split(batch_size):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(xt[batch]), yt[batch]).backward()
            optimizer.step()
            schedule.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(b).argmax(dim=1) for b in xv.split(2048)]).numpy()
    return float((predicted == y_test).mean()), seconds


def time_generation(n: int, repeats: int) -> float:
    make_dataset(2000, seed=0)
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        make_dataset(n, seed=r)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--n-samples", type=int, default=30000, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=5, help="(default: %(default)s)")
    parser.add_argument("--lr-c", type=float, nargs="+", default=[1.0], help="LR inverse regularisation; the best "
                        "test accuracy over these values is reported (default: %(default)s)")
    parser.add_argument("--targets", nargs="+", default=["OVA OK", "AVA IN"], help="(default: %(default)s)")
    parser.add_argument("--time-n", type=int, default=0, help="also time make_dataset for this many samples; 0: "
                        "skip (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="(default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    x, truth, targets, removed = load(args.n_samples, args.seed)
    train, test = fold0(truth, args.seed)
    x_train, x_test = minmax(x[train], x[test])
    result = {"n_samples": args.n_samples, "n_clean": len(x), "removed": removed, "seed": args.seed,
              "channels": list(CHANNELS), "epochs": args.epochs}
    for name in args.targets:
        y = targets[name]
        majority = float(np.bincount(y[test]).max() / len(test))
        start = time.perf_counter()
        lr = {c: fit_lr(x_train, y[train], x_test, y[test], c) for c in args.lr_c}
        lr_seconds = time.perf_counter() - start
        cnn, cnn_seconds = fit_cnn(x_train, y[train], x_test, y[test], int(y.max()) + 1, args.epochs, args.seed)
        best_c = max(lr, key=lr.get)
        result[name] = {"majority": round(majority, 4), "lr": round(lr[best_c], 4), "lr_c": best_c,
                        "cnn": round(cnn, 4), "gap": round(cnn - lr[best_c], 4),
                        "lr_seconds": round(lr_seconds, 1), "cnn_seconds": round(cnn_seconds, 1)}
        print(name, result[name], file=sys.stderr, flush=True)
    if args.time_n:
        result["generation_seconds"] = {str(args.time_n): round(time_generation(args.time_n, args.repeats), 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
