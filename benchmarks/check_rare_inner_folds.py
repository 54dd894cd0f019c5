"""A class with fewer training rows than the inner folds: keep the inner folds, or lower them to its rows?

Development sets only: ``make_generic_frame(n, seed)`` sets whose rarest class is cut to ``k`` rows, each trained on
all its rows by a default ``spectratorch train`` and tested on 1,500 fresh rows of the generator (another seed, every
class at its usual share). Two rules, the same sets: ``keep`` (today's :func:`spectratorch.pipelines.small.inner_folds`)
and ``lower`` (the inner folds lowered to the small class's training rows, the rule before).

Usage::

    python benchmarks/check_rare_inner_folds.py                # the two batches of doc/small-data.md ("Bad input")
    python benchmarks/check_rare_inner_folds.py --quick        # one set, a check that it runs

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

# reason: the two batches measured; (rows, seed, rows kept of the rarest class).
BATCHES = {
    "first": [(60, s, 3) for s in range(301, 309)] + [(100, s, 3) for s in range(311, 317)],
    "second": [(80, s, 4) for s in range(321, 328)] + [(150, s, 3) for s in range(331, 338)],
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--batches", nargs="+", choices=sorted(BATCHES), default=sorted(BATCHES))
    parser.add_argument("--quick", action="store_true", help="one set of 60 rows, a check that it runs")
    return parser.parse_args(argv)


def _accuracy(train: Path, test: Path, out: Path, rule: str) -> tuple[float, str]:
    from spectratorch.cli import main
    from spectratorch.pipelines import small

    original = small.inner_folds

    def lowered(y, labels, n_rows, groups=None):
        return int(min(original(y, labels, n_rows, groups), np.bincount(y, minlength=len(labels)).min()))

    with mock.patch.object(small, "inner_folds", original if rule == "keep" else lowered), \
            contextlib.redirect_stdout(io.StringIO()):
        code = main(["train", "--data", str(train), "--test-source", str(test), "--output-dir", str(out)])
    if code != 0:
        raise SystemExit(f"train failed on {train} ({rule})")
    summary = json.loads(next(out.glob("*.json")).read_text())
    return summary["metrics"]["test"]["accuracy"], summary["arch_selection"]["chosen"]


def main(argv=None) -> dict:
    from spectratorch.data.generic import make_generic_frame

    args = parse_args(argv)
    sets = [(60, 301, 3)] if args.quick else [s for name in args.batches for s in BATCHES[name]]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for n, seed, kept in sets:
            frame = make_generic_frame(n, seed, length=200)
            rare = frame["label"].value_counts().index[-1]
            frame = frame.drop(frame.index[frame["label"] == rare][kept:])
            frame.to_pickle(folder / f"train{seed}.pkl")
            make_generic_frame(1500, seed + 5000, length=200).to_pickle(folder / f"test{seed}.pkl")
            row = {"rows": n, "seed": seed, "rare_class": rare, "rare_rows": kept}
            for rule in ("keep", "lower"):
                accuracy, chosen = _accuracy(folder / f"train{seed}.pkl", folder / f"test{seed}.pkl",
                                             folder / f"{rule}{seed}", rule)
                row[rule], row[f"{rule}_chosen"] = accuracy, chosen
            print(f"{n} rows, seed {seed}, {kept} rows of {rare!r}: keep {row['keep']:.4f} ({row['keep_chosen']}), "
                  f"lower {row['lower']:.4f} ({row['lower_chosen']})", flush=True)
            rows.append(row)
    gain = np.array([r["keep"] - r["lower"] for r in rows])
    summary = {"mean_gain_of_keep": float(gain.mean()), "sets_up": int((gain > 0).sum()),
               "sets_down": int((gain < 0).sum()), "sets": len(rows)}
    print(f"keep - lower: {summary['mean_gain_of_keep']:+.4f} ({summary['sets_up']} sets up, "
          f"{summary['sets_down']} down, of {len(rows)})")
    result = {"benchmark": "inner folds with a rare class", "quick": args.quick, "rows": rows, "summary": summary}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
