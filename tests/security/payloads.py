"""Hostile and malformed pickles, rebuilt from scratch: real pickles with one field changed, or opcode streams."""

from __future__ import annotations

import io
import pickle
import struct

import numpy as np
import pandas as pd


def _frame(n: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({f"277_{x}": rng.random(n).astype(np.float32) for x in range(300, 306)},
                      index=pd.Index([f"S{i}" for i in range(n)], name="id"))
    df["greffon_defaut_severite"] = ["OK", "VR"] * (n // 2)
    return df


def _dumps_with(reducer, df: pd.DataFrame | None = None, protocol: int = 5) -> bytes:
    """Pickle a real frame; ``reducer(obj)`` replaces the reduction of chosen objects (``NotImplemented`` keeps it)."""

    class _Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            return reducer(obj)

    buffer = io.BytesIO()
    _Pickler(buffer, protocol=protocol).dump(_frame() if df is None else df)
    return buffer.getvalue()


def block_placement(placement) -> bytes:
    """A frame whose first block claims the given placement (pandas' ``_unpickle_block(values, placement, ndim)``)."""
    from pandas._libs.internals import _unpickle_block
    from pandas.core.internals.blocks import Block

    done = []

    def reducer(obj):
        if isinstance(obj, Block) and not done:
            done.append(obj)
            return _unpickle_block, (obj.values, placement, obj.ndim)
        return NotImplemented

    return _dumps_with(reducer)


def arrow_offsets(end: int = 10**6) -> bytes:
    """A frame whose string column's pyarrow offsets point ``end`` bytes into a 2-byte buffer."""
    import pyarrow as pa
    from pyarrow.lib import _restore_array

    def reducer(obj):
        if isinstance(obj, pa.Array) and pa.types.is_large_string(obj.type):
            offsets = pa.py_buffer(np.array([0] + [end] * len(obj), dtype=np.int64).tobytes())
            return _restore_array, ((obj.type, len(obj), 0, 0, [None, offsets, pa.py_buffer(b"xy")], [], None),)
        return NotImplemented

    return _dumps_with(reducer)


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _long(value: int) -> bytes:
    data = value.to_bytes((value.bit_length() + 8) // 8 or 1, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def _str(text: str) -> bytes:
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


def call(module: str, name: str, *args: bytes) -> bytes:
    """``module.name(*args)`` as an opcode stream; each argument is an opcode stream pushing one value."""
    return b"\x80\x04" + _global(module, name) + b"(" + b"".join(args) + b"tR."


# reason: each entry is (name, bytes); the names appear in test ids.
def hostile_pickles() -> list[tuple[str, bytes]]:
    import os

    class _RunsAShell:
        def __reduce__(self):
            return os.system, ("touch /tmp/spectratorch-pwned",)

    return [
        ("placement-2**40", block_placement(slice(2**40, 2**40 + 6, 1))),
        ("placement-5000", block_placement(np.array([5000] * 6))),
        ("placement--65536", block_placement(np.array([-65536] * 6))),
        ("placement-overlap", block_placement(np.array([0, 0, 1, 2, 3, 4]))),
        ("arrow-offsets", arrow_offsets()),
        ("index-build", b"\x80\x04" + _global("pandas", "Index") + b"N}" + _str("_typ") + _str("x") + b"s\x86b."),
        ("bytearray-6e9", call("builtins", "bytearray", _long(6 * 10**9))),
        ("ndarray-1e13", call("numpy._core.multiarray", "_reconstruct", _global("numpy", "ndarray"),
                              _long(10**13) + b"\x85", b"C\x01b")),
        ("set-range", call("builtins", "set", call("builtins", "range", _long(10**10))[2:-1])),
        ("timedelta-1e17", call("datetime", "timedelta", _long(10**17))),
        ("zoneinfo-nowhere", call("zoneinfo", "ZoneInfo", _str("Nowhere"))),
        ("reconstructor", call("copyreg", "_reconstructor", _global("pandas", "DataFrame"),
                               _global("builtins", "object"), b"N")),
        ("pandas-tests", call("pandas.tests.frame.test_api", "TestDataFrameMisc")),
        ("pyarrow-tests", call("pyarrow.tests.read_record_batch", "main")),
        ("tz-passwd", call("pandas", "DatetimeTZDtype", _str("ns"), _str("dateutil//etc/passwd"))),
        ("tz-missing", call("pandas", "DatetimeTZDtype", _str("ns"), _str("dateutil//etc/nothing-here"))),
        ("os-system", pickle.dumps(_RunsAShell(), protocol=4)),
        ("binbytes8-1e12", b"\x80\x05\x8e" + struct.pack("<Q", 10**12) + b"."),
        ("bytearray8-1e12", b"\x80\x05\x96" + struct.pack("<Q", 10**12) + b"."),
        ("truncated", pickle.dumps(_frame(60), protocol=5)[:-300]),
        ("not-a-pickle", b"hello, world\n"),
    ]
