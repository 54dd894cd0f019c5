"""Fit time of the ridge head on more rows than features: ours against scikit-learn's ``RidgeClassifierCV``.

``--rows`` random rows of ``--features`` features and ``--classes`` classes (8,000 x 4,000 x 3 by default, the
shape of MiniRocket's default 4,000 features on a large set), a few features carrying the class. Each fit is timed
``--repeats`` times, median reported; the two must choose the same alpha and give the same weights.

- ours: :func:`spectratorch.models.closed_form.ridge_head`'s solver for more rows than features (one
  eigendecomposition of the centred features' Gram matrix gives every alpha's leave-one-out error);
- scikit-learn: ``RidgeClassifierCV(alphas=RIDGE_ALPHAS)``, which picks its covariance mode on such a shape.

Usage::

    python benchmarks/bench_ridge.py             # 8,000 x 4,000, about a minute and a half on a 2-core CPU
    python benchmarks/bench_ridge.py --quick     # seconds, a check that it runs

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--rows", type=int, default=8000, help="rows (default: %(default)s)")
    parser.add_argument("--features", type=int, default=4000, help="features (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=3, help="classes (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="timed fits of each (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="600 x 200, a check that it runs")
    return parser.parse_args(argv)


def _median_seconds(fit, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fit()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv=None) -> dict:
    from sklearn.linear_model import RidgeClassifierCV

    from spectratorch.models.closed_form import RIDGE_ALPHAS, _ridge_loo_long

    args = parse_args(argv)
    rows, features = (600, 200) if args.quick else (args.rows, args.features)
    rng = np.random.default_rng(0)
    y = rng.integers(0, args.classes, rows)
    x = rng.normal(size=(rows, features))
    x[:, :10] += 0.5 * y[:, None]
    classes = np.unique(y)
    ours_s, ((coef, intercept), alpha) = _median_seconds(lambda: _ridge_loo_long(x, y, classes, RIDGE_ALPHAS),
                                                         args.repeats)
    sklearn_s, reference = _median_seconds(lambda: RidgeClassifierCV(alphas=np.asarray(RIDGE_ALPHAS)).fit(x, y),
                                           args.repeats)
    result = {"benchmark": "ridge head, more rows than features", "shape": [rows, features, args.classes],
              "quick": args.quick, "ours_s": round(ours_s, 3), "sklearn_s": round(sklearn_s, 3),
              "speedup": round(sklearn_s / ours_s, 2), "same_alpha": alpha == reference.alpha_,
              "max_weight_difference": float(np.abs(coef - reference.coef_).max()),
              "max_bias_difference": float(np.abs(intercept - reference.intercept_).max())}
    print(f"{rows} x {features}, {args.classes} classes: ours {ours_s:.2f} s, RidgeClassifierCV {sklearn_s:.2f} s "
          f"({result['speedup']}x); same alpha: {result['same_alpha']}, largest weight difference "
          f"{result['max_weight_difference']:.1e}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
