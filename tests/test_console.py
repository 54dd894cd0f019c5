"""A quiet console: a real `spectratorch train` prints each message once, no advertisements, no idle warnings."""

import collections
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.test_plain_tables import plain_frame

ROOT = Path(__file__).resolve().parents[1]
# reason: a progress bar redraws itself; its frames are not messages.
_BAR = re.compile(r"it/s\]|s/it\]|\d+%\||^$")


def _messages(text: str) -> list[str]:
    parts = (re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", p).strip() for p in re.split(r"[\r\n]", text))
    return [p for p in parts if not _BAR.search(p)]


@pytest.mark.slow
def test_train_prints_each_message_once(tmp_path):
    data = tmp_path / "x.csv"
    plain_frame(80, seed=1).to_csv(data, index=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "spectratorch.cli", "train", "--data", str(data), "--arch", "TinyVGG",
               "--max-epochs", "2", "--to-onnx", "--output-dir", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = _messages(result.stderr) + _messages(result.stdout)
    repeated = {line: n for line, n in collections.Counter(lines).items() if n > 1}
    assert not repeated, repeated
    text = result.stderr + result.stdout
    assert "GPU available" in text and "`Trainer.fit` stopped" in text  # Lightning's own lines still come, once
    for noise in ("Tip:", "litlogger", "litmodels", "TPU available", "exists and is not empty", "LeafSpec",
                  "logging interval"):
        assert noise not in text, noise


def test_verbose_shows_the_package_details_not_matplotlib_s(tmp_path):
    script = """
import logging
from spectratorch.logs import report_to_console
report_to_console(logging.DEBUG)
logging.getLogger("spectratorch.training").debug("a detail of ours")
logging.getLogger("matplotlib.font_manager").debug("findfont: score(FontEntry(...)) = 10.05")
logging.getLogger("matplotlib.font_manager").warning("a warning of matplotlib's")
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "a detail of ours" in result.stderr and "a warning of matplotlib's" in result.stderr
    assert "findfont" not in result.stderr
