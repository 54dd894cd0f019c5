"""Trust at inference: coverage of the conformal label sets and how well the outlier flag separates foreign spectra.

For each fold of a demo dataset (``--samples`` generated samples, ``--folds`` of its 5 folds), a model is trained and
exported as ``spectratorch train --to-onnx`` does (conformal sets fitted on the validation fold, outlier model on the
training rows with limits on the validation fold). On the fold's test split (never seen by the export) it measures:

- ``coverage``: the share of test spectra whose true class is in its label set at ``--coverage`` (goal 0.87-0.95),
  and ``mean_set_size``;
- ``false_alarm``: the share of test spectra flagged ``outlier`` (stated level 1 %, goal at most 3 %);
- ``auroc``: the AUROC of the outlier score ``max(t2 / t2_limit, q / q_limit)`` (the flag is ``score > 1``) at
  separating the test spectra from (a) spectra of instrument B (``spectratorch make-dataset --instrument B``, same
  products, another seed), (b) the test spectra with a saturated band (a fifth of the axis clipped at the row's
  maximum), (c) the test spectra with a baseline tilt (a ramp up to 10 % of the row's maximum); ``flagged``: the
  share of each foreign set flagged (goal AUROC >= 0.95 on (a));
- ``throughput_ratio``: ``predict`` rows per second with the outlier outputs against the probabilities alone (the same
  ONNX file, onnxruntime asked for one output or all; median of rounds at batch 256; goal >= 0.8).

Usage::

    python benchmarks/bench_trust.py            # 6000 samples, 5 folds, VGG11 (minutes per fold on a CPU)
    python benchmarks/bench_trust.py --quick    # 2000 samples, 1 fold, Linear: a smoke run of a few minutes

The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHANNELS = ("277", "380", "425")


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6000, help="demo samples generated")
    parser.add_argument("--folds", type=int, default=5, help="folds (of 5) trained and measured")
    parser.add_argument("--arch", default="VGG11", help="architecture trained")
    parser.add_argument("--epochs", type=int, default=20, help="maximum epochs per fold")
    parser.add_argument("--coverage", type=float, default=0.9, help="coverage of the label sets")
    parser.add_argument("--quick", action="store_true", help="2000 samples, 1 fold, Linear, 10 epochs")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.folds, args.arch, args.epochs = 2000, 1, "Linear", 10
    return args


def _faults(spectra: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, _, length = spectra.shape
    peak = spectra.max(axis=(1, 2), keepdims=True)
    saturated = spectra.copy()
    starts = rng.integers(0, length - length // 5, n)
    positions = np.arange(length)[None, :]
    band = (positions >= starts[:, None]) & (positions < starts[:, None] + length // 5)
    saturated = np.where(band[:, None, :], peak, saturated)
    tilt = spectra + 0.1 * peak * np.linspace(0.0, 1.0, length)
    return {"saturated_band": saturated.astype(np.float32), "baseline_tilt": tilt.astype(np.float32)}


def _score(outputs: dict, ood: dict) -> np.ndarray:
    return np.maximum(outputs["t2"] / ood["t2_limit"], outputs["q"] / ood["q_limit"])


def _throughput_ratio(predictor, spectra, tabular, rounds: int = 15) -> float:
    feed = {"data_spectra": spectra[:256]}
    if predictor.tabular_columns:
        feed["data_tabular"] = tabular[:256]
    alone, full = [], []
    for _ in range(3):
        predictor.session.run(None, feed)
    for _ in range(rounds):
        start = time.perf_counter()
        predictor.session.run(["probabilities"], feed)
        alone.append(time.perf_counter() - start)
        start = time.perf_counter()
        predictor.session.run(None, feed)
        full.append(time.perf_counter() - start)
    return statistics.median(alone) / statistics.median(full)


def _fold(args, data: Path, foreign: Path, fold: int, out: Path) -> dict:
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.data.targets import resolve_target
    from spectratorch.export.conformal import membership
    from spectratorch.inference import Predictor
    from spectratorch.metrics import classification_metrics
    from spectratorch.pipelines.run import train

    config = RunConfig(
        DataConfig(data=str(data), channels=CHANNELS, current_split=fold, transforms=("none",)),
        ModelConfig(arch=args.arch),
        TrainConfig(max_epochs=args.epochs, output_dir=str(out / f"fold{fold}"), accelerator="cpu", devices="1",
                    to_onnx=True, save_test_preds=True),
    )
    summary = train(config)
    predictor = Predictor(summary["files"]["onnx"])
    table = predictor.load(data)
    test_ids = pd.read_csv(summary["files"]["test_predictions"])["id"].astype(str)
    rows = pd.Index(table.ids.astype(str)).get_indexer(test_ids)
    target = resolve_target(table.meta, summary["config"]["data"]["targets"])
    labels = list(predictor.labels)
    y = np.array([labels.index(label) for label in np.asarray(target.labels, dtype=object)[target.y[rows]]])
    spectra, tabular = table.spectra[rows], table.tabular[rows]
    outputs = predictor.predict_outputs(spectra, tabular)
    members = membership(outputs["probabilities"], predictor.conformal, args.coverage)
    ood = predictor.metadata["ood"]
    inside = _score(outputs, ood)
    other = Predictor(summary["files"]["onnx"]).load(foreign)
    sets = {"instrument_b": predictor.predict_outputs(other.spectra, other.tabular),
            **{name: predictor.predict_outputs(x, tabular) for name, x in
               _faults(spectra, np.random.default_rng(fold)).items()}}
    auroc, flagged = {}, {}
    for name, result in sets.items():
        score = _score(result, ood)
        auroc[name] = float(roc_auc_score(np.r_[np.zeros(len(inside)), np.ones(len(score))], np.r_[inside, score]))
        flagged[name] = float(result["outlier"].mean())
    return {
        "fold": fold, "n_test": len(rows), "n_calibration": predictor.conformal["n"],
        "test_accuracy": classification_metrics(y, outputs["probabilities"])["accuracy"],
        "coverage": float(members[np.arange(len(y)), y].mean()), "mean_set_size": float(members.sum(1).mean()),
        "false_alarm": float(outputs["outlier"].mean()), "auroc": auroc, "flagged": flagged,
        "n_components": ood["n_components"], "throughput_ratio": _throughput_ratio(predictor, spectra, tabular),
    }


def main() -> None:
    args = _parse()
    logging.basicConfig(level=logging.WARNING)
    from spectratorch.data.demo import write_demo_dataset

    with tempfile.TemporaryDirectory(prefix="bench-trust-") as tmp:
        tmp = Path(tmp)
        write_demo_dataset(tmp / "demo.pkl", n_samples=args.samples, seed=0)
        write_demo_dataset(tmp / "instrument_b.pkl", n_samples=max(300, args.samples // 5), seed=1, instrument="B")
        folds = [_fold(args, tmp / "demo.pkl", tmp / "instrument_b.pkl", fold, tmp) for fold in range(args.folds)]
    keys = ("coverage", "mean_set_size", "false_alarm", "test_accuracy", "throughput_ratio")
    result = {"samples": args.samples, "arch": args.arch, "target_coverage": args.coverage, "folds": folds,
              **{f"mean_{k}": float(np.mean([f[k] for f in folds])) for k in keys},
              "mean_auroc": {name: float(np.mean([f["auroc"][name] for f in folds])) for name in folds[0]["auroc"]}}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
