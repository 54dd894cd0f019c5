"""The small-set model's last temperature: fitted to the labels, or to Platt's targets, on fresh spectra.

Development sets only, each trained by a default ``spectratorch train`` (its test fold held out, as the command does
by default) and its ONNX file run on fresh rows of the same generator:

- ``g60``: ``make_generic_frame(60, 0)``; fresh: ``make_generic_frame(300, s)`` for s = 101, 102, 103 (every
  out-of-fold row right: the labels alone drive the temperature to its lower bound);
- ``lab320``: ``spectratorch make-dataset --samples 320 --seed 5``; fresh: ``--samples 3000 --seed 77`` (classes
  that overlap);
- ``many20``, ``many30``: 20 classes of 4 to 10 rows and 30 of 4 to 6 (each class a narrow peak at its own place on a
  shared broad band, 200 points, noise 0.02; rows per class drawn by seed 5); fresh: 60 rows of every class.

Two rules, the same sets: ``labels`` (today's :func:`spectratorch.pipelines.small._calibrate`: the labels, Platt's
targets where every out-of-fold row is right) and ``platt`` (Platt's targets always, the rule before). Accuracy is the
same under both (a temperature moves no argmax); the figures are the fresh rows' log-loss, calibration error (15
bins) and mean top probability.

Usage::

    python benchmarks/check_calibration.py               # the four sets of doc/small-data.md, step 5
    python benchmarks/check_calibration.py --quick       # g60 alone, a check that it runs

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd

SETS = ("g60", "lab320", "many20", "many30")
RULES = ("labels", "platt")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--quick", action="store_true", help="g60 alone, a check that it runs")
    return parser.parse_args(argv)


def peaks_frame(counts, seed: int, length: int = 200) -> pd.DataFrame:
    """Class ``k`` of ``len(counts)``: a narrow peak at its own place on a broad band shared by all, ``counts[k]``
    rows, each with its own band height and slope and white noise of 0.02."""
    rng = np.random.default_rng(seed)
    axis = np.linspace(900, 1700, length)
    x = (axis - axis[0]) / (axis[-1] - axis[0])
    rows, labels = [], []
    for k, n in enumerate(counts):
        centre = 0.2 + 0.6 * k / max(len(counts) - 1, 1)
        for _ in range(n):
            band = rng.normal(1, 0.1) * np.exp(-((x - 0.5) ** 2) / 0.1) + rng.normal(0, 0.05) * x
            peak = 0.1 * np.exp(-((x - centre - rng.normal(0, 0.005)) ** 2) / 0.002)
            rows.append(band + peak + rng.normal(0, 0.02, length))
            labels.append(f"c{k:02d}")
    frame = pd.DataFrame(np.array(rows), columns=[f"nir_{v:.2f}" for v in axis])
    frame.insert(0, "label", labels)
    return frame.rename_axis("id")


def _write_sets(name: str, folder: Path) -> tuple[Path, Path]:
    from spectratorch.cli import main
    from spectratorch.data.generic import make_generic_frame

    train, fresh = folder / f"{name}.csv", folder / f"{name}_fresh.csv"
    if name == "g60":
        make_generic_frame(60, 0).to_csv(train)
        frames = [make_generic_frame(300, s) for s in (101, 102, 103)]
        pd.concat(frames).reset_index(drop=True).rename_axis("id").to_csv(fresh)
    elif name == "lab320":
        train, fresh = train.with_suffix(".pkl"), fresh.with_suffix(".pkl")
        with contextlib.redirect_stdout(io.StringIO()):
            for path, samples, seed in ((train, 320, 5), (fresh, 3000, 77)):
                main(["make-dataset", "--samples", str(samples), "--seed", str(seed), "-o", str(path)])
    else:
        classes, high = (20, 11) if name == "many20" else (30, 7)
        counts = np.random.default_rng(5).integers(4, high, classes)
        peaks_frame(counts, seed=11).to_csv(train)
        peaks_frame([60] * classes, seed=99).to_csv(fresh)
    return train, fresh


def _scores(predictions: Path) -> dict:
    from spectratorch.export.calibration import expected_calibration_error

    frame = pd.read_csv(predictions)
    labels = [c[2:] for c in frame.columns if c.startswith("p_")]
    p = frame[[f"p_{label}" for label in labels]].to_numpy()
    y = np.array([labels.index(str(t)) for t in frame["truth"]])
    return {"rows": len(y), "accuracy": float((p.argmax(1) == y).mean()),
            "log_loss": float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean()),
            "ece": expected_calibration_error(p, y), "mean_top": float(p.max(1).mean())}


def _run(train: Path, fresh: Path, out: Path, rule: str) -> dict:
    from spectratorch.cli import main
    from spectratorch.pipelines import small

    original = small.fit_temperature

    def platt_always(logits, y, **options):
        # reason: only the last calibration passes `platt`; the candidates' own temperatures keep the labels.
        return original(logits, y, **({**options, "platt": True} if "platt" in options else options))

    with mock.patch.object(small, "fit_temperature", original if rule == "labels" else platt_always), \
            contextlib.redirect_stdout(io.StringIO()):
        if main(["train", "--data", str(train), "--to-onnx", "--output-dir", str(out)]) != 0:
            raise SystemExit(f"train failed on {train} ({rule})")
        model = next(out.glob("*.onnx"))
        if main(["predict", str(model), str(fresh), "-o", str(out / "fresh.csv")]) != 0:
            raise SystemExit(f"predict failed on {fresh} ({rule})")
    summary = json.loads(next(out.glob("*.json")).read_text())
    return {**_scores(out / "fresh.csv"), "final_temperature": summary["arch_selection"]["final_temperature"],
            "chosen": summary["arch_selection"]["chosen"]}


def main(argv=None) -> dict:
    args = parse_args(argv)
    sets = ["g60"] if args.quick else args.sets
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in sets:
            train, fresh = _write_sets(name, Path(tmp))
            results[name] = {rule: _run(train, fresh, Path(tmp) / f"{name}-{rule}", rule) for rule in RULES}
            for rule, r in results[name].items():
                print(f"{name:7s} {rule:7s} fresh rows {r['rows']:5d}  accuracy {r['accuracy']:.3f}  log-loss "
                      f"{r['log_loss']:.3f}  calibration error {r['ece']:.3f}  mean top probability "
                      f"{r['mean_top']:.3f}  last temperature {r['final_temperature']:.3g} ({r['chosen']})")
    summary = {"benchmark": "check_calibration", "rows": results}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
