"""Read each file given with ``read_dataset`` in a forked child; print one JSON line per file.

``{"file", "status", "message"}``: status ``refused`` (a DataFormatError, its message), ``loaded``, ``error`` (any
other exception: its type) or ``signal`` (the child died of a signal: a crash in compiled code).
"""

import json
import os
import sys

from spectratorch.data.io import read_dataset
from spectratorch.errors import DataFormatError


def _child(path: str, out: int) -> None:
    try:
        read_dataset(path)
        result = {"status": "loaded", "message": ""}
    except DataFormatError as err:
        result = {"status": "refused", "message": str(err)}
    except BaseException as err:  # noqa: BLE001  reported to the parent, which fails the test
        result = {"status": "error", "message": type(err).__name__}
    os.write(out, json.dumps(result).encode())
    os._exit(0)


def main(paths: list[str]) -> None:
    for path in paths:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _child(path, write_end)
        os.close(write_end)
        data = b""
        while chunk := os.read(read_end, 65536):
            data += chunk
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            result = {"status": "signal", "message": str(os.WTERMSIG(status))}
        else:
            result = json.loads(data or b'{"status": "error", "message": "no result"}')
        print(json.dumps({"file": path, **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
