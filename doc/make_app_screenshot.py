"""Redraw doc/app.png: the inspectors' page on the example model, with a freshly generated demo file uploaded.

Needs the app extra, playwright and Debian's chromium (as the page's browser test does):
``python doc/make_app_screenshot.py [--chromium /usr/bin/chromium]``. Writes a 256-colour PNG under 300 KB.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# reason: run from a clone, the script draws this tree's page even where another spectratorch is installed.
sys.path.insert(0, str(ROOT))


def _serve(models: Path, port: int, log) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # reason: run from the repository root with a relative models folder, so the page's caption shows
    # `checkpoints/example` as a user of a clone sees it, not this machine's path.
    process = subprocess.Popen([sys.executable, "-m", "spectratorch.cli", "app", "--models",
                                str(models.relative_to(ROOT)), "--port", str(port)], env=env, cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(180):
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the page was not served in 90 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("-o", "--output", default=str(ROOT / "doc" / "app.png"))
    args = parser.parse_args()
    from PIL import Image
    from playwright.sync_api import expect, sync_playwright

    from spectratorch.data.demo import write_demo_dataset

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "batch 2026-11-23.parquet"
        write_demo_dataset(data, n_samples=800, seed=2026)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        with open(Path(tmp) / "app.log", "wb") as log:
            process = _serve(ROOT / "checkpoints" / "example", port, log)
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.set_default_timeout(120_000)
                page.goto(f"http://localhost:{port}")
                page.locator("input[type=file]").set_input_files(data)
                expect(page.get_by_text("samples predicted from")).to_be_visible()
                expect(page.locator('[data-testid="stVegaLiteChart"]')).to_have_count(2)
                height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
                page.set_viewport_size({"width": 1280, "height": int(height) + 20})
                page.wait_for_timeout(1500)
                raw = Path(tmp) / "raw.png"
                page.screenshot(path=str(raw), full_page=True)
                browser.close()
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        Image.open(raw).convert("RGB").quantize(colors=256).save(args.output, optimize=True)
    print(f"wrote {args.output} ({Path(args.output).stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
