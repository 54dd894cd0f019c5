"""The benchmark scripts run end to end at tiny sizes (``--quick``) and end on one JSON object.

These check that the scripts work and report what they promise; they time nothing.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

EXPECTED = {
    "bench_accuracy.py": {
        "top": {"benchmark", "metric", "recipe", "rows", "goals"},
        "goals": {"at_or_above_best_classical"},
        "optional_gpu": None,
        "positive": ["rows.0.samples", "rows.0.default_recipe", "rows.0.pls_da", "rows.0.minirocket_ridge"],
    },
    "bench_data.py": {
        "top": {"benchmark", "torch", "batch_shape", "per_sample", "batched_cpu", "ratio", "cuda", "goals"},
        "goals": {"batched_cpu_vs_per_sample", "cuda_vs_per_sample"},
        "optional_gpu": "cuda",
        "positive": ["per_sample.batches_per_s", "batched_cpu.batches_per_s", "ratio"],
    },
    "bench_train.py": {
        "top": {"benchmark", "torch", "lightning", "cpu", "gpu", "goals"},
        "goals": {"lightning_overhead", "gpu_data_wait"},
        "optional_gpu": "gpu",
        "positive": ["cpu.lightning.samples_per_s", "cpu.bare.samples_per_s", "cpu.bare_premade.samples_per_s"],
    },
    "bench_load.py": {
        "top": {"benchmark", "df_bytes", "read_pickle", "load_table", "parquet_write", "parquet_read",
                "load_table_time_ratio", "load_table_rss_ratio", "goals"},
        "goals": {"load_table_time", "load_table_peak_rss"},
        "optional_gpu": None,
        "positive": ["df_bytes", "read_pickle.seconds", "load_table.seconds", "load_table.peak_rss",
                     "parquet_write.seconds", "parquet_read.seconds"],
    },
    "bench_transfer.py": {
        "top": {"benchmark", "source", "zero_shot_accuracy", "recipe", "test_rows", "table", "runs", "goals"},
        "goals": {"ahead_at_every_size", "gain_at_smallest"},
        "optional_gpu": None,
        "positive": ["zero_shot_accuracy", "test_rows", "source.seconds"],
    },
}


def _run_quick(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    # reason: TMPDIR and the working folder keep every file the scripts write under tmp_path.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), "--quick"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def _last_json(stdout: str) -> dict:
    lines = stdout.strip().splitlines()
    assert lines, "the script printed nothing on stdout"
    result = json.loads(lines[-1])
    assert isinstance(result, dict)
    return result


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_quick_run_ends_on_one_json_object(script, tmp_path):
    done = _run_quick(script, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = _last_json(done.stdout)
    expected = EXPECTED[script]
    assert expected["top"] <= set(result), f"missing keys {expected['top'] - set(result)}"
    assert result["quick"] is True
    assert set(result["goals"]) == expected["goals"]
    for name, goal in result["goals"].items():
        assert {"goal", "value", "met"} <= set(goal), name
    if expected["optional_gpu"] and not torch.cuda.is_available():
        assert result[expected["optional_gpu"]] is None
    for figure in expected["positive"]:
        value = result
        for key in figure.split("."):
            value = value[int(key)] if isinstance(value, list) else value[key]
        assert value > 0, figure

