"""The documentation site builds with ``mkdocs build --strict``: a broken link or anchor, a page missing from the
navigation, or an API reference to a module or parameter the code no longer has fails this test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    problems = [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0 and not problems, "\n".join(problems) or result.stderr[-3000:]
    return out


@pytest.mark.slow  # reason: a whole `mkdocs build` of the site and its API reference
def test_the_site_builds_strict_with_every_page(site):
    pages = {p.stem for p in (ROOT / "doc").glob("*.md")}
    built = {p.parent.name if p.parent != site else "index" for p in site.rglob("index.html")}
    assert {page for page in pages if page != "index"} <= built


@pytest.mark.slow  # reason: a whole `mkdocs build` of the site and its API reference
def test_the_api_reference_is_generated_from_the_docstrings(site):
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    # a class, a function and a doctest of the torch-free predicting module, rendered from their docstrings
    assert 'id="spectratorch.inference.Predictor"' in html
    assert 'id="spectratorch.report.metrics.per_class_scores"' in html
    assert "encode_metadata" in html and "highlight" in html


def test_the_readme_says_how_to_build_the_site():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "mkdocs serve" in readme and "mkdocs build --strict" in readme


def test_docs_speak_of_the_product_only():
    diary = re.compile(r"\bsessions? \d|\bsession-\d|an hour earlier|this VM\b|development machine|no GPU was lent|"
                       r"/work/|\bissue \d+\)", re.IGNORECASE)
    texts = [ROOT / "README.md", *(ROOT / "doc").glob("*.md"), *(ROOT / "benchmarks").glob("*"),
             *(ROOT / "checkpoints" / "example").glob("*.md"), *(ROOT / "spectratorch").rglob("*.py")]
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in texts if path.is_file()
             for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if diary.search(line)]
    assert found == []
