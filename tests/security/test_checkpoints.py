"""Checkpoints are read with torch's weights-only unpickler: a hostile .ckpt is refused in one line, runs nothing."""

import os
from pathlib import Path

import pytest
import torch

from spectratorch.errors import CheckpointError
from spectratorch.training.restore import load_module, read_checkpoint
from tests.security.helpers import assert_one_line_refusal, run_cli_many


class _RunsAShell:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _hostile_checkpoint(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "ran"
    path = tmp_path / "TinyVGG y=['OVA', 'OK'] c=('277', '380') t=None 0-5 s=42 eps=0.1.ckpt"
    torch.save({"hyper_parameters": {"arch": "TinyVGG", "note": _RunsAShell(marker)}, "state_dict": {}}, path)
    return path, marker


def test_hostile_checkpoint_refused_in_process(tmp_path):
    path, marker = _hostile_checkpoint(tmp_path)
    for load in (read_checkpoint, load_module):
        with pytest.raises(CheckpointError, match=r"refused: it asks for posix.system") as err:
            load(path)
        assert "\n" not in str(err.value)
    assert not marker.exists()
    # the payload is real: the unrestricted unpickler would have run it
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.ckpt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a spectratorch checkpoint"):
        read_checkpoint(path)


def test_a_dataset_given_as_checkpoint_is_one_refusal_and_no_torch_warning(tmp_path):
    import warnings

    import pandas as pd

    path = tmp_path / "data.pkl"
    pd.DataFrame({"277_300": [1.0, 2.0]}).to_pickle(path, protocol=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "Detected pickle protocol 5" warning would fail here
        with pytest.raises(CheckpointError, match="not a spectratorch checkpoint"):
            read_checkpoint(path)


@pytest.mark.slow
def test_every_verb_refuses_a_hostile_checkpoint(tmp_path, demo_file):
    path, marker = _hostile_checkpoint(tmp_path)
    out = tmp_path / "out"
    verbs = {
        "export": ["export", str(path), "--data", str(demo_file), "-o", str(tmp_path / "m.onnx")],
        "report": ["report", str(path), "--data", str(demo_file)],
        "load-this": ["train", "--data", str(demo_file), "--load-this", str(path), "--no-fit", "--output-dir",
                      str(out)],
        "finetune": ["train", "--data", str(demo_file), "--load-this", str(path), "--finetune", "--max-epochs", "1",
                     "--output-dir", str(out)],
        "auto": ["train", "--data", str(demo_file), "--arch", "auto", "--load-this", str(path), "--output-dir",
                 str(out)],
    }
    for name, result in zip(verbs, run_cli_many(list(verbs.values()), cwd=tmp_path)):
        assert_one_line_refusal(result, name, "refused: it asks for posix.system")
        assert not marker.exists(), name
