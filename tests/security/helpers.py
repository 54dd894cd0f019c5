"""Shared by the hostile-input tests: run command lines in forked children and check the one-line refusals."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli_many(commands: list[list[str]], cwd, timeout: int = 600) -> list[dict]:
    """Each command's ``{"rc", "signal", "stderr"}``; one interpreter, one fork per command."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "tests.security.run_cli"], input=json.dumps(commands),
                         capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    results = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(commands), out.stdout[-2000:]
    return results


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr that are not log records."""
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(("INFO", "WARNING", "DEBUG"))]


def assert_one_line_refusal(result: dict, what: str, match: str = "") -> None:
    lines = error_lines(result["stderr"])
    assert result["signal"] == 0, (what, f"killed by signal {result['signal']}")
    assert result["rc"] == 2, (what, result["stderr"][-2000:])
    assert len(lines) == 1 and "Traceback" not in result["stderr"], (what, lines)
    assert match in lines[0], (what, lines[0])
