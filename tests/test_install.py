"""The install files agree with setup.py, and the top-level help lists every command."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from spectratorch.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = {"environment-cpu-only.yml": "pytorch-cpu", "environment-cuda.yml": "pytorch-gpu"}
# reason: the only packages whose conda-forge name differs from their pip name; `torch` is the metapackage that pins
# the CPU or the CUDA build, an extra becomes its own conda package.
_CONDA_NAME = {"torch": None, "mkdocstrings[python]": "mkdocstrings"}
_EXTRA_PACKAGES = {"mkdocstrings[python]": "mkdocstrings-python"}


def _setup_lists() -> dict[str, list[str]]:
    """The requirement lists assigned at the top of setup.py (``INFERENCE``, ``TRAINING``, ...), ``*`` expanded."""
    lists: dict[str, list[str]] = {}
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List) and len(node.targets) == 1:
            items: list[str] = []
            for element in node.value.elts:
                if isinstance(element, ast.Starred):
                    items += lists[element.value.id]
                else:
                    items.append(ast.literal_eval(element))
            lists[node.targets[0].id] = items
    return lists


def _split(requirement: str) -> tuple[str, str]:
    """``"numpy>=1.24"`` or ``"numpy >=1.24"`` -> ``("numpy", ">=1.24")``."""
    match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)\s*(.*)", requirement.strip())
    return match[1].lower(), match[2].replace(" ", "")


def _expected(conda_torch: str) -> dict[str, str]:
    lists = _setup_lists()
    expected = {}
    for requirement in lists["INFERENCE"] + lists["TRAINING"] + lists["APP"] + lists["TEST"]:
        name, spec = _split(requirement)
        expected[_CONDA_NAME.get(name, name) or conda_torch] = spec
        if name in _EXTRA_PACKAGES:
            expected[_EXTRA_PACKAGES[name]] = ""
    return expected


@pytest.mark.parametrize("file, conda_torch", ENVIRONMENTS.items())
def test_conda_environments_are_setup_py_from_conda_forge(file, conda_torch):
    environment = yaml.safe_load((ROOT / file).read_text())
    assert environment["channels"] == ["conda-forge", "nodefaults"]  # PyTorch's own channel is frozen at 2.5
    conda = [d for d in environment["dependencies"] if isinstance(d, str)]
    (pip,) = [d["pip"] for d in environment["dependencies"] if isinstance(d, dict)]
    assert pip == ["-e ."]  # spectratorch itself; its requirements are all above
    found = dict(_split(d) for d in conda if not d.startswith(("python=", "pip", "cuda-version")))
    assert found == _expected(conda_torch)
    assert "pytorch" not in found and "cpuonly" not in found and "pytorch-cuda" not in found
    if conda_torch == "pytorch-gpu":
        assert "cuda-version >=12" in conda


def test_setup_py_lists_are_what_setup_installs():
    lists = _setup_lists()
    source = (ROOT / "setup.py").read_text()
    assert "install_requires=INFERENCE + TRAINING" in source
    assert '"test": TEST' in source and '"app": APP' in source and '"docs": DOCS' in source
    assert set(lists["DOCS"]) <= set(lists["TEST"])
    assert (ROOT / "requirements-inference.txt").read_text().split() == lists["INFERENCE"]


def test_the_top_level_help_lists_every_command_on_one_line():
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a.choices, dict)).choices
    helps = {a.dest: a.help for a in next(a for a in parser._actions if isinstance(a.choices, dict))._choices_actions}
    text = parser.format_help()
    assert set(commands) >= {"train", "cv", "tune", "export", "predict", "report", "app", "make-dataset", "convert"}
    for command in commands:
        (line,) = [line for line in text.splitlines() if line.split()[:1] == [command]]
        assert line.split(None, 1)[1] == helps[command], line
    assert "COMMAND --help" in text and "spectratorch train --data my.csv" in text
