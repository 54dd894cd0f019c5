"""Run several ``spectratorch`` command lines, each in a forked child of one process that imported the CLI once.

Input: a JSON list of argument lists on stdin. Output: one JSON line per command, ``{"rc", "signal", "stderr"}``;
a child that dies of a signal (a crash in compiled code) is reported, not fatal to the others.
"""

import contextlib
import importlib
import io
import json
import os
import sys

import torch  # noqa: F401  reason: imported once before forking, so each child starts at once

from spectratorch import cli

# reason: the verbs import these when they run; imported once here, a child does not spend its first 3 s on them
# (40 commands of test_verbs.py took 151 s with each child importing them itself).
for _module in ("lightning.pytorch", "matplotlib.pyplot", "pyarrow", "scipy.optimize", "sklearn.model_selection",
                "onnxruntime", "spectratorch.pipelines.run", "spectratorch.pipelines.cv", "spectratorch.export.onnx",
                "spectratorch.report.sheet", "spectratorch.inference"):
    importlib.import_module(_module)


def _child(argv: list[str], out: int) -> None:
    stderr = io.StringIO()
    rc = 1
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(argv)
    except SystemExit as err:
        rc = err.code if isinstance(err.code, int) else 1
    except BaseException:  # noqa: BLE001  an escaping exception is what the tests look for
        import traceback

        stderr.write(traceback.format_exc())
        rc = 1
    os.write(out, json.dumps({"rc": rc, "signal": 0, "stderr": stderr.getvalue()}).encode())
    os._exit(0)


def main() -> None:
    for argv in json.load(sys.stdin):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _child(argv, write_end)
        os.close(write_end)
        data = b""
        while chunk := os.read(read_end, 1 << 16):
            data += chunk
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            print(json.dumps({"rc": -1, "signal": os.WTERMSIG(status), "stderr": ""}), flush=True)
        else:
            print(data.decode(), flush=True)


if __name__ == "__main__":
    main()
