"""Every script of ``benchmarks/`` runs end to end at a tiny size (``--quick``, or small arguments for the one
without it) and ends on one JSON object.

These check that the scripts work and report what they promise, including what each figure is compared with;
they time nothing.
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
        "positive": ["rows.0.samples", "rows.0.default_recipe", "rows.0.pls_da", "rows.0.minirocket_ridge",
                     "rows.0.paired_with_best.p_mcnemar", "rows.0.classical_by_inner_cv.accuracy",
                     "rows.0.classical_by_inner_cv.paired.p_mcnemar"],
    },
    "bench_data.py": {
        "top": {"benchmark", "torch", "batch_shape", "per_sample", "batched_cpu", "batched_cpu_normal", "ratio",
                "ratio_normal", "compared_with", "cuda", "goals"},
        "goals": {"batched_cpu_vs_per_sample", "cuda_vs_per_sample"},
        "optional_gpu": "cuda",
        "positive": ["per_sample.batches_per_s", "batched_cpu.batches_per_s", "batched_cpu_normal.batches_per_s",
                     "ratio", "ratio_normal"],
    },
    "bench_train.py": {
        "top": {"benchmark", "torch", "lightning", "cpu", "gpu", "goals"},
        "goals": {"lightning_overhead", "gpu_data_wait"},
        "optional_gpu": "gpu",
        "positive": ["cpu.lightning.samples_per_s", "cpu.bare.samples_per_s", "cpu.bare_premade.samples_per_s",
                     "goals.lightning_overhead.rounds"],
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
        "top": {"benchmark", "source", "zero_shot_accuracy", "recipe", "compared_with", "test_rows", "table", "runs",
                "goals"},
        "goals": {"ahead_at_every_size", "gain_at_smallest"},
        "optional_gpu": None,
        "positive": ["zero_shot_accuracy", "test_rows", "source.seconds"],
    },
    "bench_infer.py": {
        "top": {"benchmark", "compared_with", "speedup_ort_vs_torch_folded", "speedup_ort_vs_torch_unfolded",
                "cold_start_s", "goals"},
        "goals": {"ort_vs_torch_batch_1", "ort_vs_torch_batch_256", "cold_start"},
        "optional_gpu": None,
        "positive": ["speedup_ort_vs_torch_folded.batch_1", "speedup_ort_vs_torch_unfolded.batch_256",
                     "batch_1.torch_conv2d_ms", "cold_start_s"],
    },
}
# reason: these report figures without goals; they run at small sizes and must end on their JSON.
CHECKS = {
    # reason: generic-60 is generated, so the coverage path runs without the wheels the public sets come from.
    "bench_trust.py": (["--quick", "--coverage-sets", "generic-60"],
                       {"samples", "folds", "target_coverage", "mean_auroc"}),
    "bench_rocket.py": (["--quick"], {"benchmark", "shape", "ours", "aeon", "goals"}),
    "bench_ridge.py": (["--quick"], {"benchmark", "shape", "ours_s", "sklearn_s", "same_alpha"}),
    "check_small_data.py": (["--quick"], {"benchmark", "rows"}),
    "check_calibration.py": (["--quick"], {"benchmark", "rows"}),
    "check_rare_inner_folds.py": (["--quick"], {"benchmark", "rows", "summary"}),
    "check_selection.py": (["--quick"], {"benchmark", "rows", "summary"}),
    "check_synthetic_difficulty.py": (["--n-samples", "600", "--epochs", "1", "--targets", "OVA OK"],
                                      {"n_samples", "OVA OK"}),
}


def _run_quick(script: str, tmp_path: Path, args=("--quick",)) -> subprocess.CompletedProcess:
    # reason: TMPDIR and the working folder keep every file the scripts write under tmp_path.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def test_every_script_is_covered():
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(EXPECTED) | set(CHECKS), "a benchmark script is neither smoke-run nor listed"


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



@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(CHECKS))
def test_checks_run_small_and_end_on_one_json_object(script, tmp_path):
    args, keys = CHECKS[script]
    done = _run_quick(script, tmp_path, args)
    assert done.returncode == 0, done.stderr[-3000:]
    result = _last_json(done.stdout)
    assert keys <= set(result), f"missing keys {keys - set(result)}"
