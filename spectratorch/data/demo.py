"""The embedded demo dataset: generated on first use, cleaned as `convert` would clean the instrument's exports."""

from __future__ import annotations

import logging
from pathlib import Path

from spectratorch.data.io import write_dataset
from spectratorch.data.raw import clean, write_raw_exports
from spectratorch.data.synthetic import make_dataset

__all__ = ["DEMO_SAMPLES", "write_demo_dataset", "ensure_demo_data"]

_logger = logging.getLogger(__name__)

# reason: sized so the README's main job (train.py on the demo) finishes within 5 minutes on a 2-core CPU.
DEMO_SAMPLES = 12_000


def write_demo_dataset(path, n_samples: int = DEMO_SAMPLES, seed: int = 0, instrument: str = "A",
                       raw_dir=None) -> dict:
    """Generate ``n_samples``, write the raw exports of all of them (optional) and the cleaned dataset.

    Args:
        path: the dataset file (``.pkl``, ``.parquet``, ``.csv``).
        n_samples: samples generated, before cleaning.
        seed: the generator's seed.
        instrument: which instrument's response to simulate.
        raw_dir: when given, also write the instrument's text exports there.

    Returns:
        ``{"output", "rows", "removed": {rule: rows}, "raw_files"}``.
    """
    raw = make_dataset(n_samples, seed, instrument=instrument)
    raw_files = [str(p) for p in write_raw_exports(raw, raw_dir)] if raw_dir else []
    df, removed = clean(raw)
    write_dataset(df, path)
    return {"output": str(path), "rows": len(df), "removed": removed, "raw_files": raw_files}


def ensure_demo_data(path: Path) -> Path:
    """Generate the demo dataset at ``path`` when it is missing, saying so."""
    path = Path(path)
    if not path.exists():
        _logger.warning("the demo dataset %s is missing: generating it (%d samples, seed 0), once", path, DEMO_SAMPLES)
        report = write_demo_dataset(path)
        _logger.info("demo dataset: %d rows after cleaning (removed %s)", report["rows"], report["removed"])
    return path
