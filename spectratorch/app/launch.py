"""The ``streamlit run`` command behind ``spectratorch app``, and the settings the page reads back.

The CLI passes the models folder and the upload limit to the page through environment variables (the page is a
script Streamlit runs, so it parses no arguments), and the upload limit to Streamlit itself as
``server.maxUploadSize`` so the browser refuses bigger files before sending them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

from spectratorch.errors import ConfigError

__all__ = ["ENV_MODELS", "ENV_MAX_UPLOAD_MB", "ENV_READER_MEMORY_MB", "ENV_READER_SECONDS", "PAGE", "streamlit_command",
           "launch"]

_logger = logging.getLogger(__name__)

ENV_MODELS = "SPECTRATORCH_APP_MODELS"
ENV_MAX_UPLOAD_MB = "SPECTRATORCH_APP_MAX_UPLOAD_MB"
ENV_READER_MEMORY_MB = "SPECTRATORCH_APP_READER_MEMORY_MB"
"""The address-space limit of the process that reads an upload (default: see ``isolate.default_memory_mb``)."""
ENV_READER_SECONDS = "SPECTRATORCH_APP_READER_SECONDS"
"""The time limit of the process that reads an upload (default: ``isolate.DEFAULT_SECONDS``)."""
PAGE = Path(__file__).with_name("page.py")


def streamlit_command(port: int = 8501, address: str = "localhost", max_upload_mb: int = 200,
                      headless: bool = True) -> list[str]:
    """The command line that serves the page.

    Args:
        port: the TCP port.
        address: the interface to listen on (``localhost``: this PC only).
        max_upload_mb: Streamlit's ``server.maxUploadSize``.
        headless: do not open a browser.

    Returns:
        ``[python, -m, streamlit, run, page.py, --option value, ...]``.

    Example:
        >>> streamlit_command(8600)[2:4]
        ['streamlit', 'run']
    """
    options = {
        "server.port": port,
        "server.address": address,
        "server.headless": str(headless).lower(),
        "server.maxUploadSize": max_upload_mb,
        "server.fileWatcherType": "none",
        "server.runOnSave": "false",
        "browser.gatherUsageStats": "false",
        # reason: an unexpected error shows its message only; the page catches the expected ones itself.
        "client.showErrorDetails": "none",
        "client.toolbarMode": "minimal",
        "theme.base": "light",
    }
    command = [sys.executable, "-m", "streamlit", "run", str(PAGE)]
    for key, value in options.items():
        command += [f"--{key}", str(value)]
    return command


def _check_address(address: str, port: int) -> None:
    """Refuse an address this machine cannot listen on (unknown name, or not one of its own), before the server
    starts (its error is a traceback from the child process)."""
    import socket

    try:
        family, kind, proto, _, where = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise ConfigError(f"--address {address!r} is not a host name or IP address this machine knows; use "
                          "localhost, 0.0.0.0 (every interface) or one of its own addresses.") from None
    with socket.socket(family, kind, proto) as probe:
        try:
            probe.bind((where[0], 0))
        except OSError:
            raise ConfigError(f"--address {address!r} is not an address of this machine; use localhost, 0.0.0.0 "
                              "(every interface) or one of its own addresses.") from None


def _check(models: Path, port: int, max_upload_mb: int) -> None:
    if importlib.util.find_spec("streamlit") is None:
        raise ConfigError("the page needs streamlit, which is not installed: `pip install \"spectratorch[app]\"` "
                          "(or `pip install streamlit`).")
    if not models.is_dir():
        raise ConfigError(f"--models must be a folder of .onnx models; {str(models)!r} is not a folder.")
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be in 1..65535; got {port}.")
    if max_upload_mb < 1:
        raise ConfigError(f"--max-upload-mb must be at least 1; got {max_upload_mb}.")


def launch(models: str | os.PathLike, port: int = 8501, address: str = "localhost", max_upload_mb: int = 200,
           headless: bool = True) -> int:
    """Serve the page until Ctrl-C (or the server stops).

    Args:
        models: the folder searched (recursively) for ``.onnx`` models.
        port, address, max_upload_mb, headless: see :func:`streamlit_command`.

    Returns:
        Streamlit's exit status.

    Raises:
        ConfigError: streamlit is missing, ``models`` is not a folder, or a setting is out of range.
    """
    models = Path(models).resolve()
    _check(models, port, max_upload_mb)
    _check_address(address, port)
    # reason: the child must import this very spectratorch, installed or not.
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, ENV_MODELS: str(models), ENV_MAX_UPLOAD_MB: str(max_upload_mb),
           "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    _logger.info("serving the page on http://%s:%d with the models of %s (Ctrl-C stops it)", address, port, models)
    return subprocess.call(streamlit_command(port, address, max_upload_mb, headless), env=env)
