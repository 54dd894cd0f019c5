"""--groups: replicate scans of one sample stay in one fold, in the test folds and in the inner CV."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectratorch.data.datamodule import SpectralDataModule
from spectratorch.data.splits import check_groups, fold_assignment, suspected_groups
from spectratorch.errors import ConfigError, SplitError

ROOT = Path(__file__).resolve().parents[2]


def replicate_frame(n_samples: int = 30, scans: int = 3, seed: int = 0) -> pd.DataFrame:
    """``n_samples`` samples of ``scans`` scans each; a strong signature per sample and a class drawn at random per
    sample, so the class has no signal in the spectrum: only a model that saw a sample's other scans gets it right."""
    rng = np.random.default_rng(seed)
    axis = np.arange(900, 1300, 4.0)
    signature = rng.normal(0, 1, (n_samples, len(axis)))
    classes = rng.permutation(np.resize(["a", "b", "c"], n_samples))
    sample = np.repeat(np.arange(n_samples), scans)
    spectra = signature[sample] + 0.05 * rng.normal(0, 1, (len(sample), len(axis)))
    frame = pd.DataFrame(spectra, columns=[f"{x:g}" for x in axis])
    frame.insert(0, "label", classes[sample])
    frame.insert(0, "Probe", [f"P{k:02d}" for k in sample])
    return frame


def test_a_group_lands_in_one_fold_and_the_folds_stay_stratified():
    rng = np.random.default_rng(1)
    sample = np.repeat(np.arange(60), rng.integers(1, 5, 60))
    y = (sample % 3).astype(np.int64)
    groups = np.array([f"s{k}" for k in sample])
    folds = fold_assignment(y, y.astype(str), 5, seed=3, groups=groups)
    assert all(len(set(folds[groups == g])) == 1 for g in np.unique(groups))
    for k in range(3):
        assert (np.bincount(folds[y == k], minlength=5) > 0).all()
    assert (fold_assignment(y, y.astype(str), 5, seed=3, groups=groups) == folds).all()  # seeded
    # without groups a sample's rows spread over the folds
    plain = fold_assignment(y, y.astype(str), 5, seed=3)
    assert any(len(set(plain[groups == g])) > 1 for g in np.unique(groups))


def test_groups_that_cannot_fill_the_folds_or_a_class_of_one_group_are_one_line():
    y = np.array([0, 0, 0, 1, 1, 1])
    with pytest.raises(SplitError, match=r"^2 groups \(--groups\) cannot fill 3 folds; use fewer"):
        check_groups(y, np.array(list("aaabbb")), 3, "folds")
    with pytest.raises(SplitError, match=r"^class 'x' has all its 3 rows in one group \('a'\)"):
        check_groups(y, np.array(list("aaabcd")), 2, "folds", labels=["x", "y"])


def test_replicates_are_flagged_without_groups_and_kept_together_with_them(caplog, tmp_path):
    frame = replicate_frame()
    assert suspected_groups(frame[["Probe", "label"]], np.zeros(len(frame), int), 5, exclude=("label",)) == ["Probe"]
    # an operator (few values on many rows) or a column mixing classes within a value is no sample name
    mixed = frame.assign(Probe=np.resize(["u", "v"], len(frame)))
    assert suspected_groups(mixed[["Probe"]], (np.arange(len(frame)) // 3) % 3, 5) == []
    path = tmp_path / "replicates.csv"
    frame.to_csv(path, index=False)
    dm = SpectralDataModule(data=str(path))
    with caplog.at_level(logging.WARNING, logger="spectratorch"):
        dm.prepare()
    assert ("column 'Probe' holds 30 values of 3 rows each, each value of one class: if they name samples scanned "
            "more than once") in caplog.text and "--groups Probe keeps each sample in one fold" in caplog.text
    probe = frame["Probe"].to_numpy()
    assert set(probe[dm.split.train]) & set(probe[dm.split.test])  # the leak the warning is about
    caplog.clear()
    dm = SpectralDataModule(data=str(path), groups="Probe")
    with caplog.at_level(logging.WARNING, logger="spectratorch"):
        dm.prepare()
    assert "--groups" not in caplog.text and dm.config.targets == ("AVA", "label")
    train, val, test = (set(probe[index]) for index in (dm.split.train, dm.split.val, dm.split.test))
    assert not (train & test) and not (train & val) and not (val & test)
    with pytest.raises(ConfigError, match=r"^--groups 'Sample': the data has no such column; its columns besides "
                                          r"the spectra: \['Probe', 'label'\]\.$"):
        SpectralDataModule(data=str(path), groups="Sample").prepare()


@pytest.mark.slow
def test_cv_with_groups_scores_replicates_as_new_samples(tmp_path):
    """A planted leak: the class is a random draw per sample, so only a sample's own scans predict it. Without
    --groups a test scan's twins train the model (and the inner CV's choice); with it the estimate falls to chance."""
    path = tmp_path / "replicates.csv"
    replicate_frame().to_csv(path, index=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    accuracy = {}
    for name, extra in (("leaky", []), ("grouped", ["--groups", "Probe"])):
        out = tmp_path / name
        result = subprocess.run([sys.executable, "-m", "spectratorch.cli", "cv", "--data", str(path), "--arch", "LDA",
                                 "--n-splits", "3", "--fold-workers", "1", "--output-dir", str(out), *extra], cwd=ROOT,
                                capture_output=True, text=True, timeout=600, env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        summary = json.loads(next(out.glob("* cv-3 *.json")).read_text())
        folds = summary["folds"]
        accuracy[name] = np.mean([fold["metrics"]["test"]["accuracy"] for fold in folds])
        inner = np.mean([fold["metrics"]["val"]["accuracy"] for fold in folds])
        assert result.stderr.count("--groups Probe keeps each sample in one fold") == (name == "leaky")
        assert result.stderr.count("INFO split 0:") == 1  # said by its fold, not by the defaults read before
        if name == "grouped":
            assert summary["config"]["data"]["groups"] == "Probe" and inner < 0.7
    assert accuracy["leaky"] > 0.9 and accuracy["grouped"] < 0.7


def test_groups_naming_the_label_column_is_one_line(tmp_path):
    path = tmp_path / "replicates.csv"
    replicate_frame().to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"^--groups 'label' is the column that holds the labels; --groups names"):
        SpectralDataModule(data=str(path), groups="label").prepare()
    with pytest.raises(ConfigError, match=r"^--groups 'label' is the label column; --groups names the column of"):
        SpectralDataModule(data=str(path), groups="label", targets=("AVA", "label")).prepare()
