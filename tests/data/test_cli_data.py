"""make-dataset and convert through the real command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from spectratorch.cli import main
from spectratorch.data.io import read_dataset

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "spectratorch.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_make_dataset_then_convert_round_trip(tmp_path):
    made = _cli("make-dataset", "--samples", "400", "--seed", "1", "-o", str(tmp_path / "demo.pkl"),
                "--raw-dir", str(tmp_path / "raw"))
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout.strip().splitlines()[-1])
    assert report["rows"] + sum(report["removed"].values()) == 400
    names = sorted(p.name for p in (tmp_path / "raw").iterdir())
    assert {"EX_277_demo_I.txt", "EX_380_demo_I.txt", "EX_425_demo_I.txt", "Y_demo.txt"} <= set(names)
    converted = _cli("convert", str(tmp_path / "raw"), "-o", str(tmp_path / "converted.parquet"))
    assert converted.returncode == 0, converted.stderr
    for rule in ("oob", "saturation", "integral"):
        assert f"{rule}: {report['removed'][rule]} rows removed" in converted.stdout
    a, b = read_dataset(tmp_path / "demo.pkl"), read_dataset(tmp_path / "converted.parquet")
    assert list(a.index) == list(b.index)
    spectral = [c for c in a.columns if c.split("_")[0] in ("277", "380", "425", "lspr")]
    np.testing.assert_allclose(a[spectral].to_numpy(), b[spectral].to_numpy(), rtol=1e-5, atol=1e-3)
    assert (a["greffon_defaut_severite"] == b["greffon_defaut_severite"]).all()


def test_same_seed_same_file(tmp_path, capsys):
    # reason: one file from a process of its own, one from this process: a draw that depended on the process (hash
    # seed, import order) would differ.
    made = _cli("make-dataset", "--samples", "200", "--seed", "7", "-o", str(tmp_path / "a.pkl"))
    assert made.returncode == 0
    assert main(["make-dataset", "--samples", "200", "--seed", "7", "-o", str(tmp_path / "b.pkl")]) == 0
    pd.testing.assert_frame_equal(read_dataset(tmp_path / "a.pkl"), read_dataset(tmp_path / "b.pkl"))


def test_convert_bad_input_one_line_no_output(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    result = _cli("convert", str(tmp_path / "empty"), "-o", str(tmp_path / "out.pkl"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "error" in result.stderr
    assert not (tmp_path / "out.pkl").exists()
    capsys.readouterr()
    assert main(["make-dataset", "--samples", "50", "-o", str(tmp_path / "out.xls")]) == 2
    assert "unsupported dataset file type" in capsys.readouterr().err
    assert not (tmp_path / "out.xls").exists()


def test_convert_refuses_a_threshold_for_a_channel_it_does_not_have(tmp_path, capsys):
    # a typo of 277 would otherwise leave the default threshold in place without a word
    assert main(["convert", str(tmp_path), "-o", str(tmp_path / "out.pkl"), "--saturation", "227=5000"]) == 2
    assert capsys.readouterr().err.strip() == ("spectratorch convert: error: --saturation 227=5000: no channel '227'; "
                                               "the thresholds are per excitation channel, 277, 380, 425.")
    assert not (tmp_path / "out.pkl").exists()


def test_make_dataset_flags_are_checked_as_flags(tmp_path, capsys):
    out = str(tmp_path / "d.pkl")
    assert main(["make-dataset", "--samples", "0", "-o", out]) == 2
    assert capsys.readouterr().err.strip() == "spectratorch make-dataset: error: --samples must be at least 1; got 0."
    assert main(["make-dataset", "--samples", "20", "--instrument", "b", "-o", out]) == 0  # either case
    assert len(read_dataset(out)) > 0
    assert main(["export", str(tmp_path / "m.ckpt"), "--n-check", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("error: --n-check must be at least 1; got 0.")
