"""A stand-in for the page's reader process (``python -m spectratorch.app.isolate``) that misbehaves as a damaged
file could make a reader misbehave, chosen by the upload's name: ``crash.*`` dies of SIGSEGV, ``hang.*`` never
finishes, ``bomb.*`` asks for as much memory as the limit allows; any other name is read by the real reader."""

import ctypes
import json
import sys
import time
from pathlib import Path

from spectratorch.app import isolate


def _bomb(work, request):
    # reason: the whole allowance in one block: refused under the reader's address-space limit, which the process
    # already uses in part; without the limit it would be granted (untouched pages cost nothing).
    import numpy as np

    return {"size": len(np.zeros(request["memory_mb"] * 2**20, dtype=np.uint8))}


def main() -> int:
    work = Path(sys.argv[1])
    request = json.loads((work / "request.json").read_text())
    kind = Path(request["name"]).stem
    if kind == "crash":
        isolate.apply_limits(request["memory_mb"])
        ctypes.string_at(0)
    if kind == "hang":
        time.sleep(3600)
    if kind == "bomb":
        isolate._work = _bomb
    return isolate.main([str(work)])


if __name__ == "__main__":
    sys.exit(main())
