"""The solved heads end to end (train, ONNX, predict without torch), and ``--arch auto`` on a small set."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectratorch.data.generic import make_generic_frame
from tests.export.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]
GENERIC = ["--targets", "AVA", "label", "--channels", "nir", "--tabular"]


def _train(args, timeout=600):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "spectratorch.cli", "train", *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def generic_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("generic") / "generic.pkl"
    make_generic_frame(240, seed=1).to_pickle(path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["Linear", "PLSDA", "MiniRocket"])
def test_small_data_arch_is_solved_exports_and_predicts_without_torch(arch, generic_file, tmp_path):
    out = tmp_path / "out"
    extra = ["--n-features", "840"] if arch == "MiniRocket" else []
    result = _train(["--data", generic_file, *GENERIC, "--arch", arch, *extra, "--to-onnx", "--output-dir", out])
    stem = f"{arch} y=['AVA', 'label'] c=('nir',) t=None 0-5 s=42 eps=0.1"
    assert f"model: {stem}" in result.stdout
    summary = json.loads((out / f"{stem}.json").read_text())
    assert summary["config"]["model"]["arch"] == arch
    selection = summary["arch_selection"]
    assert selection["protocol"] == "inner-cv" and list(selection["candidates"]) == [arch]
    assert selection["training_rows"] == 240 - sum(summary["class_counts"]["test"].values())
    assert summary["metrics"]["test"]["accuracy"] > 0.8
    predictions = tmp_path / "predictions.csv"
    ran = run_cli(["predict", out / f"{stem}.onnx", generic_file, "--output", predictions])
    assert ran.returncode == 0, ran.stderr[-2000:]
    frame = pd.read_csv(predictions)
    truth = make_generic_frame(240, seed=1)["label"].to_numpy()
    assert len(frame) == 240
    assert (frame["label"].to_numpy() == truth).mean() > 0.8


@pytest.mark.slow
def test_arch_auto_chooses_by_inner_cv_and_says_how(generic_file, tmp_path):
    out = tmp_path / "out"
    result = _train(["--data", generic_file, *GENERIC, "--n-features", "840", "--output-dir", out])
    summary_path = next(p for p in out.glob("*.json"))
    summary = json.loads(summary_path.read_text())
    selection = summary["arch_selection"]
    assert set(selection["candidates"]) == {"Linear", "PLSDA", "MiniRocket", "KernelRidge", "LDA", "Linear[snv]",
                                            "Linear[sg1]", "LDA[snv]", "LDA[sg1]"}
    scores = {name: c["inner_cv"]["f1"] for name, c in selection["candidates"].items()}
    chosen = selection["chosen"]
    if chosen == "Ensemble":
        assert selection["ensembles"]["+".join(selection["members"])]["f1"] >= max(scores.values())
    else:
        # within two training rows' worth of the best inner-CV F1 (a tie, broken by the lower log-loss)
        assert scores[selection["members"][0]] >= max(scores.values()) - 2 / selection["training_rows"] - 1e-12
        assert selection["candidates"][selection["members"][0]]["arch"] == chosen
    assert summary["name"].startswith(f"{chosen} y=") and summary["config"]["model"]["arch"] == chosen
    assert f"model: {summary['name']}" in result.stdout
    assert "--arch auto: 192 training rows, inner 5-fold CV on them only" in result.stderr
    # the split line counts a validation fold; the next line says the protocol trains on it
    assert "small-set protocol: the train and val folds are its 192 training rows, no validation fold; 48 test rows" \
        in result.stderr
    # the line says how ties rank (two training rows' worth: 2 / 192), then the choice
    assert "(f1; scores within 0.010 are ties, ranked by out-of-fold log-loss) -> " in result.stderr
    # the line ends with the choice: each member with its chosen value (an ensemble: 'Ensemble of ...')
    choice = result.stderr.split("inner 5-fold CV on them only")[1].splitlines()[0].split(" -> ")[1]
    members = [f"{m} ({selection['candidates'][m]['parameter']}=" for m in selection["members"]]
    assert choice.startswith("Ensemble of " + members[0] if chosen == "Ensemble" else members[0]), choice
    assert all(m in choice for m in members), choice
    # the JSON's validation metrics are the final model's inner-CV (out-of-fold) metrics on the training rows
    assert summary["metrics"]["val"]["f1"] <= 1.0 and summary["metrics"]["test"]["accuracy"] > 0.8
    assert Path(summary["files"]["checkpoint"]).parent == out
    assert (out / f"{summary['name']} result sheet.png").is_file()
    assert summary["calibration"]["source"].startswith("out-of-fold")
    assert 0 <= summary["calibration"]["test_ece_after"] <= 1 and "ece_after" not in summary["calibration"]


def test_arch_rejects_an_unknown_name(generic_file, tmp_path, capsys):
    # reason: the command's own `main` in this process; tests/training/test_train_cli.py runs a real train process.
    from spectratorch.cli import main

    assert main(["train", "--data", str(generic_file), *GENERIC, "--arch", "Ridge", "--output-dir", str(tmp_path)]) == 2
    stderr = capsys.readouterr().err
    assert "unknown --arch 'Ridge'" in stderr and "auto" in stderr
    assert not any(tmp_path.glob("*.ckpt"))


def test_linear_rejects_a_width(generic_file, tmp_path, capsys):
    from spectratorch.cli import main

    assert main(["train", "--data", str(generic_file), *GENERIC, "--arch", "Linear", "--width", "0.5",
                 "--output-dir", str(tmp_path)]) == 2
    assert "Linear does not take ['width']" in capsys.readouterr().err
    assert np.all([not p.suffix == ".ckpt" for p in tmp_path.iterdir()])
