"""How a command reports on the console: one ``LEVEL message`` line each, a warning said once per run.

A run may span several processes (``cv``'s fold processes): each starts its console with the warnings the process
that started it has already said, so a warning about the data comes once, not once per process.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

__all__ = ["console_handler", "report_to_console", "warnings_said"]

_FORMAT = "%(levelname)s %(message)s"


class _WarnOnce(logging.Filter):
    """Passes a warning's words once: the same words from a second part of a run (calibration, then export; the
    next fold) add nothing. Lines below WARNING always pass."""

    def __init__(self, said: Iterable[str] = ()):
        super().__init__()
        self.said: set[str] = set(said)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if message in self.said:
            return False
        self.said.add(message)
        return True


def console_handler(level: int = logging.INFO, said: Iterable[str] = ()) -> logging.Handler:
    """A handler writing ``level`` and above to standard error as ``LEVEL message``, each warning once, ``said``
    counting as already said."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_WarnOnce(said))
    return handler


_QUIET_LIBRARIES = ("matplotlib", "PIL", "fsspec", "urllib3", "numba", "h5py", "git")


def report_to_console(level: int = logging.INFO, said: Iterable[str] = ()) -> None:
    """Log ``level`` and above to standard error, each warning once, ``said`` counting as already said.

    Does nothing when the root logger has handlers already (an application or a test runner that set up its own
    logging keeps it as it is).
    """
    root = logging.getLogger()
    if root.handlers:
        return
    root.addHandler(console_handler(level, said))
    root.setLevel(level)
    # reason: -v is for spectratorch's own details; matplotlib's and Pillow's debug lines (font scores, 276 lines a
    # run) said nothing to the user.
    for name in _QUIET_LIBRARIES:
        library = logging.getLogger(name)
        if library.level == logging.NOTSET:
            library.setLevel(max(level, logging.INFO))


def warnings_said() -> frozenset[str]:
    """The warnings this process's console has said (to start another process's console with them)."""
    return frozenset(message for handler in logging.getLogger().handlers for f in handler.filters
                     if isinstance(f, _WarnOnce) for message in f.said)
