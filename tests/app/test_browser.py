"""End to end in a real headless Chromium: `spectratorch app` serves the page with torch unimportable, a generated
file is uploaded, and what the page shows and downloads is compared with `spectratorch predict`.

Debian's chromium (`apt-get install chromium`) is driven by Playwright through its executable path; nothing here
downloads a browser. Without chromium the test fails: `.ci/run` installs it.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from tests.export.helpers import TORCH_BLOCKER, run_cli

from .conftest import EXAMPLE, ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_served(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"`spectratorch app` exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the page was not served within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def served_page(models_dir, tmp_path):
    """`spectratorch app` in a subprocess (torch blocked in it and in the Streamlit process it starts)."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    # reason: sitecustomize runs at the start of every Python process that has this folder on its path.
    (blocker / "sitecustomize.py").write_text(TORCH_BLOCKER)
    port = _free_port()
    log = tmp_path / "app.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)])}
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "spectratorch.cli", "app", "--models", str(models_dir),
                                    "--port", str(port)], cwd=tmp_path, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://localhost:{port}"
    try:
        _wait_until_served(url, process, log)
        yield url, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_page_in_chromium_matches_predict(served_page, demo_data, tmp_path):
    assert Path(CHROMIUM).is_file(), (
        f"no chromium at {CHROMIUM}: install Debian's (`apt-get install -y chromium chromium-driver`); "
        ".ci/run does it before the tests.")
    from playwright.sync_api import expect, sync_playwright

    url, log = served_page
    data = demo_data["parquet"]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100}, accept_downloads=True)
            page.set_default_timeout(90_000)
            page.goto(url)
            page.locator("input[type=file]").set_input_files(data)
            # the command the page says gives the same file (its cutoff and label-set sliders as it shows them)
            caption = page.get_by_text("The same file as").inner_text()
            options = re.search(r"-o predictions\.csv (.*?)`?,? run in", caption).group(1).split()
            result = run_cli(["predict", EXAMPLE, data, "-o", tmp_path / "predict.csv", *options])
            assert result.returncode == 0, result.stderr
            expected = (tmp_path / "predict.csv").read_bytes()
            reference = pd.read_csv(io.BytesIO(expected), dtype={"id": str})
            expect(page.get_by_text("samples predicted from")).to_contain_text(f"{len(reference)} samples")

            expected_counts = reference["label"].value_counts().to_dict()
            counts = page.locator('[data-testid="stTable"] table').filter(
                has=page.locator("th", has_text=re.compile(r"^samples$"))).first
            # reason: Streamlit sends the elements one by one; wait until the whole table is there before reading it.
            expect(counts.locator("tbody tr")).to_have_count(len(expected_counts))
            rows = [[cell.inner_text().strip() for cell in row.locator("th, td").all()]
                    for row in counts.locator("tbody tr").all()]
            assert {r[0]: int(r[1]) for r in rows} == expected_counts
            first = reference.iloc[0]
            expect(page.get_by_text("top classes:")).to_contain_text(
                f"Sample {first['id']}: {first['label']} (top classes: {first['top1_label']} {first['top1_prob']:.3f}")

            with page.expect_download() as download:
                page.get_by_text("Download the predictions (CSV)").click()
            saved = tmp_path / "downloaded.csv"
            download.value.save_as(saved)
            assert download.value.suggested_filename == f"{data.stem} predictions.csv"
            assert saved.read_bytes() == expected

            expect(page.locator('[data-testid="stVegaLiteChart"]')).to_have_count(2)
            # reason: the page scrolls inside its main block, so a full-page picture needs a viewport that tall.
            height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
            page.set_viewport_size({"width": 1500, "height": int(height) + 40})
            page.wait_for_timeout(1000)  # reason: let the charts finish drawing before the picture
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "page.png").stat().st_size > 20_000
    assert "Traceback" not in log.read_text()
