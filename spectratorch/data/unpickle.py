"""A restricted unpickler for DataFrame pickles from strangers.

Unpickling calls whatever a pickle names. This unpickler admits an exact list of ``(module, name)`` pairs (no
prefix rules; nothing is imported on a pickle's say-so: each admitted name maps to an object this module resolves
itself), and each reconstructor the list admits is a shim that checks its arguments before pandas', numpy's or
pyarrow's compiled code sees them: block placements within the frame, pyarrow offsets within their buffers, every
size bounded by the file's length. ``BUILD`` (set an object's state) is allowed only on instances of the classes
below, each with its state checked; never on a class. What the load returns is checked once more as a whole frame.

Every failure, whatever its kind, comes out as one :class:`DataFormatError` line that names the file and what was
wrong, never the bytes in play. numpy/pandas only: no torch.
"""

from __future__ import annotations

import datetime
import functools
import math
import mmap
import pickle
import re
import struct
import zoneinfo
from typing import Callable

import numpy as np
import pandas as pd

from spectratorch.errors import DataFormatError, UnsafePickleError

__all__ = ["ALLOWED_GLOBALS", "load_frame_pickle"]


class _Refused(Exception):
    """A check of this module failed; the message is ours (no file content beyond short names)."""


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise _Refused(what)


def _int(value, low: int, high: int, what: str) -> int:
    _require(type(value) is int and low <= value <= high, f"{what} out of range")
    return value


def _shape(shape, budget: int, what: str = "array shape") -> tuple[int, ...]:
    _require(type(shape) is tuple and len(shape) <= 2, f"{what} is not a tuple of at most 2 sizes")
    for size in shape:
        _int(size, 0, budget, what)
    _require(math.prod(shape) <= budget, f"{what} larger than the file")
    return shape


# ---- the names a DataFrame pickle may ask for ----------------------------------------------------------------------
# reason: the pairs that DataFrame pickles of pandas 1.5 to 3.x (numpy 1.x/2.x, pyarrow strings) name, collected by
# pickling frames of every column kind the schema reads (floats, ints, strings, categories, dates with and without
# a zone, nullable and pyarrow arrays) and the lab's pandas 1.5.3 files. Each maps to a name of ``_OBJECTS``.
_ALIASES = {
    "DataFrame": [("pandas", "DataFrame"), ("pandas.core.frame", "DataFrame")],
    "BlockManager": [("pandas.core.internals.managers", "BlockManager")],
    "_unpickle_block": [("pandas._libs.internals", "_unpickle_block")],
    "_new_Index": [("pandas.core.indexes.base", "_new_Index")],
    "Index": [("pandas", "Index"), ("pandas.core.indexes.base", "Index")],
    "RangeIndex": [("pandas", "RangeIndex"), ("pandas.core.indexes.range", "RangeIndex")],
    "MultiIndex": [("pandas", "MultiIndex"), ("pandas.core.indexes.multi", "MultiIndex")],
    "DatetimeIndex": [("pandas", "DatetimeIndex"), ("pandas.core.indexes.datetimes", "DatetimeIndex")],
    "CategoricalIndex": [("pandas", "CategoricalIndex"), ("pandas.core.indexes.category", "CategoricalIndex")],
    "__pyx_unpickle_NDArrayBacked": [("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked")],
    "Categorical": [("pandas", "Categorical"), ("pandas.core.arrays.categorical", "Categorical")],
    "DatetimeArray": [("pandas.arrays", "DatetimeArray"), ("pandas.core.arrays.datetimes", "DatetimeArray")],
    "TimedeltaArray": [("pandas.arrays", "TimedeltaArray"), ("pandas.core.arrays.timedeltas", "TimedeltaArray")],
    "PeriodArray": [("pandas.arrays", "PeriodArray"), ("pandas.core.arrays.period", "PeriodArray")],
    "StringArray": [("pandas.arrays", "StringArray"), ("pandas.core.arrays.string_", "StringArray")],
    "ArrowStringArray": [("pandas.arrays", "ArrowStringArray"),
                         ("pandas.core.arrays.string_arrow", "ArrowStringArray")],
    "ArrowExtensionArray": [("pandas.arrays", "ArrowExtensionArray"),
                            ("pandas.core.arrays.arrow.array", "ArrowExtensionArray")],
    "IntegerArray": [("pandas.arrays", "IntegerArray"), ("pandas.core.arrays.integer", "IntegerArray")],
    "FloatingArray": [("pandas.arrays", "FloatingArray"), ("pandas.core.arrays.floating", "FloatingArray")],
    "BooleanArray": [("pandas.arrays", "BooleanArray"), ("pandas.core.arrays.boolean", "BooleanArray")],
    "CategoricalDtype": [("pandas", "CategoricalDtype"), ("pandas.core.dtypes.dtypes", "CategoricalDtype")],
    "DatetimeTZDtype": [("pandas", "DatetimeTZDtype"), ("pandas.core.dtypes.dtypes", "DatetimeTZDtype")],
    "PeriodDtype": [("pandas", "PeriodDtype"), ("pandas.core.dtypes.dtypes", "PeriodDtype")],
    "StringDtype": [("pandas", "StringDtype"), ("pandas.core.arrays.string_", "StringDtype")],
    "ArrowDtype": [("pandas", "ArrowDtype"), ("pandas.core.dtypes.dtypes", "ArrowDtype")],
    "NA": [("pandas", "NA"), ("pandas._libs.missing", "NA")],
    "__nat_unpickle": [("pandas._libs.tslibs.nattype", "__nat_unpickle")],
    "_unpickle_timestamp": [("pandas._libs.tslibs.timestamps", "_unpickle_timestamp")],
    "_timedelta_unpickle": [("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle")],
    **{f"{kind}{bits}Dtype": [("pandas", f"{kind}{bits}Dtype"),
                              (f"pandas.core.arrays.{'integer' if 'Int' in kind else 'floating'}",
                               f"{kind}{bits}Dtype")]
       for kind, sizes in (("Int", (8, 16, 32, 64)), ("UInt", (8, 16, 32, 64)), ("Float", (32, 64)))
       for bits in sizes},
    "BooleanDtype": [("pandas", "BooleanDtype"), ("pandas.core.arrays.boolean", "BooleanDtype")],
    "ndarray": [("numpy", "ndarray")],
    "dtype": [("numpy", "dtype")],
    "_reconstruct": [("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")],
    "_frombuffer": [("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer")],
    "scalar": [("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")],
    "_restore_array": [("pyarrow.lib", "_restore_array")],
    "py_buffer": [("pyarrow.lib", "py_buffer")],
    "type_for_alias": [("pyarrow.lib", "type_for_alias")],
    "chunked_array": [("pyarrow.lib", "chunked_array")],
    "bytearray": [("builtins", "bytearray"), ("__builtin__", "bytearray")],
    "slice": [("builtins", "slice"), ("__builtin__", "slice")],
    "set": [("builtins", "set"), ("__builtin__", "set")],
    "frozenset": [("builtins", "frozenset"), ("__builtin__", "frozenset")],
    "complex": [("builtins", "complex"), ("__builtin__", "complex")],
    "getattr": [("builtins", "getattr"), ("__builtin__", "getattr")],
    "encode": [("_codecs", "encode")],
    "OrderedDict": [("collections", "OrderedDict")],
    "date": [("datetime", "date")],
    "datetime": [("datetime", "datetime")],
    "time": [("datetime", "time")],
    "timedelta": [("datetime", "timedelta")],
    "timezone": [("datetime", "timezone")],
    "ZoneInfo": [("zoneinfo", "ZoneInfo")],
}
ALLOWED_GLOBALS: dict[tuple[str, str], str] = {pair: key for key, pairs in _ALIASES.items() for pair in pairs}


# ---- shims: each checks its arguments, then calls the real reconstructor ---------------------------------------------
def _check_array(values, what: str) -> None:
    _require(type(values) is np.ndarray or isinstance(values, pd.api.extensions.ExtensionArray),
             f"{what} is not an array")


class _Shims:
    """The checked reconstructors of one load; ``budget`` is the file's length in bytes."""

    def __init__(self, budget: int):
        self.budget = budget
        self.zone_unpickle = self.zoneinfo_unpickle  # reason: one object, so REDUCE can recognise it

    # numpy
    def reconstruct(self, subtype, shape, typecode):
        _require(subtype is np.ndarray, "numpy reconstruct of another type than ndarray")
        _require(shape == (0,) and typecode in (b"b", "b"), "numpy reconstruct with unexpected arguments")
        return np.ndarray.__new__(np.ndarray, (0,), "b")

    def frombuffer(self, buffer, dtype, shape, order):
        _require(isinstance(buffer, (bytes, bytearray, memoryview, pickle.PickleBuffer)), "numpy buffer not bytes")
        _require(isinstance(dtype, np.dtype) and not dtype.hasobject, "numpy buffer of objects")
        _shape(shape, self.budget)
        _require(order in ("C", "F"), "numpy buffer order")
        size = memoryview(buffer).nbytes
        _require(math.prod(shape) * dtype.itemsize == size, "numpy buffer size does not match its shape")
        return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)

    def dtype(self, spec, align=False, copy=True):
        _require(type(spec) is str and re.fullmatch(r"[<>|=]?[bBiufcOMmUSV]\d{0,9}(\[\w{1,6}\])?", spec) is not None,
                 "numpy dtype")
        dtype = np.dtype(spec, align=bool(align), copy=bool(copy))
        _require(dtype.itemsize <= self.budget and dtype.fields is None and dtype.subdtype is None, "numpy dtype")
        return dtype

    def scalar(self, dtype, data=None):
        _require(isinstance(dtype, np.dtype) and dtype.kind in "biufcmM" and isinstance(data, bytes)
                 and len(data) == dtype.itemsize, "numpy scalar")
        return np.frombuffer(data, dtype)[0].copy()

    # builtins
    def bytearray(self, data=b"", *rest):
        _require(not rest and isinstance(data, (bytes, bytearray)), "bytearray of something other than bytes")
        return bytearray(data)

    def set(self, items=()):
        _require(isinstance(items, (list, tuple)) and len(items) <= self.budget, "set of something other than a list")
        return set(items)

    def frozenset(self, items=()):
        return frozenset(self.set(items))

    def slice(self, *args):
        _require(1 <= len(args) <= 3 and all(a is None or type(a) is int for a in args), "slice")
        return slice(*args)

    def complex(self, real=0.0, imag=0.0):
        _require(all(type(v) in (int, float) for v in (real, imag)), "complex")
        return complex(real, imag)

    def encode(self, text, encoding="utf-8"):
        _require(type(text) is str and encoding in ("latin1", "latin-1"), "codecs.encode")
        return text.encode("latin1")

    def getattr(self, obj, name, *default):
        # reason: zoneinfo pickles as getattr(ZoneInfo, "_unpickle"); nothing else needs getattr.
        _require(obj == self.zone and name == "_unpickle" and not default, "getattr")
        return self.zone_unpickle

    def zone(self, key):
        _require(type(key) is str and key in _zone_names(), "an unknown time zone")
        return zoneinfo.ZoneInfo(key)

    def zoneinfo_unpickle(self, key, from_cache=1):
        return self.zone(key)

    def tz(self, tz):
        """A time zone: a tzinfo object already checked, or the name of one (never a path: dateutil names open
        files)."""
        if tz is None or isinstance(tz, datetime.tzinfo):
            return tz
        _require(type(tz) is str, "a time zone that is not a name")
        if tz == "UTC" or re.fullmatch(r"[+-]\d{2}:\d{2}", tz):
            return tz
        self.zone(tz)
        return tz

    def timezone(self, offset, name=None):
        _require(isinstance(offset, datetime.timedelta) and (name is None or type(name) is str), "timezone")
        return datetime.timezone(offset, *([] if name is None else [name]))

    def datetime_(self, *args):
        _require(all(type(a) in (int, bytes) or isinstance(a, datetime.tzinfo) for a in args), "datetime")
        return datetime.datetime(*args)

    def date(self, *args):
        _require(all(type(a) in (int, bytes) for a in args), "date")
        return datetime.date(*args)

    def time(self, *args):
        _require(all(type(a) in (int, bytes) or isinstance(a, datetime.tzinfo) for a in args), "time")
        return datetime.time(*args)

    def timedelta(self, *args):
        _require(all(type(a) in (int, float) for a in args), "timedelta")
        return datetime.timedelta(*args)

    # pyarrow
    def restore_array(self, data):
        from pyarrow.lib import _restore_array

        self._check_array_data(data, depth=0)
        array = _restore_array(data)
        # reason: offsets and lengths are checked against the buffers here, before anything reads them.
        array.validate(full=True)
        return array

    def _check_array_data(self, data, depth: int) -> None:
        import pyarrow as pa

        _require(type(data) is tuple and len(data) == 7 and depth < 8, "pyarrow array data")
        dtype, length, null_count, offset, buffers, children, dictionary = data
        _require(isinstance(dtype, pa.DataType) and not pa.types.is_dictionary(dtype), "pyarrow array type")
        _int(length, 0, 8 * self.budget, "pyarrow array length")
        _int(null_count, -1, length, "pyarrow null count")
        _int(offset, 0, 8 * self.budget, "pyarrow array offset")
        _require(type(buffers) is list and len(buffers) <= 4
                 and all(b is None or isinstance(b, pa.Buffer) for b in buffers), "pyarrow buffers")
        _require(type(children) is list and dictionary is None, "pyarrow children")
        _require(len(children) == dtype.num_fields, "pyarrow child count")
        for child in children:
            self._check_array_data(child, depth + 1)

    def py_buffer(self, data):
        import pyarrow as pa

        _require(isinstance(data, (bytes, bytearray, memoryview)), "pyarrow buffer")
        return pa.py_buffer(data)

    def type_for_alias(self, alias):
        import pyarrow as pa

        _require(type(alias) is str and len(alias) < 64, "pyarrow type alias")
        return pa.type_for_alias(alias)

    def chunked_array(self, arrays, type=None):
        import pyarrow as pa

        _require(isinstance(arrays, list) and all(isinstance(a, pa.Array) for a in arrays)
                 and (type is None or isinstance(type, pa.DataType)), "pyarrow chunked array")
        return pa.chunked_array(arrays, type=type)

    # pandas
    def unpickle_block(self, values, placement, ndim):
        from pandas._libs.internals import _unpickle_block

        _check_array(values, "a block's values")
        _int(ndim, 2, 2, "a block's ndim")
        locs = self._placement(placement)
        _require(values.ndim in (1, 2), "a block's values have more than 2 dimensions")
        _require((values.shape[0] if values.ndim == 2 else 1) == len(locs), "a block's placement and values differ")
        return _unpickle_block(values, placement, ndim)

    def _placement(self, placement) -> np.ndarray:
        if isinstance(placement, slice):
            start, stop, step = placement.start, placement.stop, placement.step
            _int(start if start is not None else 0, 0, self.budget, "a block placement")
            _int(stop, 0, self.budget, "a block placement")
            _int(step if step is not None else 1, 1, self.budget, "a block placement")
            return np.arange(start or 0, stop, step or 1)
        _require(type(placement) is np.ndarray and placement.ndim == 1 and placement.dtype.kind in "iu",
                 "a block placement is not integers")
        _require(placement.size == 0 or (placement.min() >= 0 and placement.max() <= self.budget),
                 "a block placement out of range")
        return placement

    def block_manager(self, blocks, axes, verify_integrity=True):
        from pandas.core.internals.managers import BlockManager

        _require(isinstance(blocks, (tuple, list)) and isinstance(axes, list) and len(axes) == 2
                 and all(isinstance(a, pd.Index) for a in axes), "block manager arguments")
        _check_blocks([(b.values, b.mgr_locs.as_array) for b in blocks], axes)
        return BlockManager(tuple(blocks), axes, verify_integrity=True)

    def new_index(self, cls, state):
        _require(cls in _index_classes() and type(state) is dict and all(type(k) is str for k in state),
                 "index arguments")
        state = dict(state)
        _require(set(state) <= {"data", "name", "names", "dtype", "freq", "tz", "start", "stop", "step", "levels",
                                "codes", "labels", "sortorder", "closed", "ordered", "categories"}, "index fields")
        if "data" in state:
            _check_array(state["data"], "index data")
        if "tz" in state:
            state["tz"] = self.tz(state["tz"])
        for key in ("start", "stop", "step"):
            if key in state:
                _int(state[key], -(2**62), 2**62, "range index bound")
        if cls is pd.MultiIndex:
            codes = state.pop("codes", state.pop("labels", None))
            # reason: pandas trusts a pickle's codes; out-of-range codes are read past their level's end.
            return pd.MultiIndex(levels=state.get("levels"), codes=codes, names=state.get("names"),
                                 sortorder=state.get("sortorder"), verify_integrity=True)
        from pandas.core.indexes.base import _new_Index

        return _new_Index(cls, state)

    def ndarray_backed(self, cls, checksum, state=None):
        from pandas._libs import arrays

        _require(cls in _ndarray_backed_kinds() and type(checksum) is int, "array arguments")
        if state is not None:
            _check_ndarray_backed(cls, state)
        # reason: a name starting with two underscores, read with getattr (inside a class it would be mangled).
        return getattr(arrays, "__pyx_unpickle_NDArrayBacked")(cls, checksum, state)

    def datetime_tz_dtype(self, unit="ns", tz=None):
        _require(type(unit) is str and unit in ("s", "ms", "us", "ns"), "datetime unit")
        return pd.DatetimeTZDtype(unit, self.tz(tz))

    def string_dtype(self, storage=None, na_value=pd.NA):
        _require(storage in (None, "python", "pyarrow") and (na_value is pd.NA or (type(na_value) is float
                                                                                 and math.isnan(na_value))),
                 "string dtype")
        return pd.StringDtype(storage, na_value)

    def period_dtype(self, freq):
        _require(type(freq) is str and len(freq) < 16, "period dtype")
        return pd.PeriodDtype(freq)

    def arrow_dtype(self, pa_type):
        import pyarrow as pa

        _require(isinstance(pa_type, pa.DataType), "arrow dtype")
        return pd.ArrowDtype(pa_type)

    def categorical_dtype(self, categories=None, ordered=False):
        _require(categories is None or isinstance(categories, pd.Index), "categorical dtype")
        return pd.CategoricalDtype(categories, ordered)

    def unpickle_timestamp(self, value, freq, tz, reso=None):
        from pandas._libs.tslibs.timestamps import _unpickle_timestamp

        _require(type(value) is int and freq is None and (reso is None or type(reso) is int), "timestamp")
        return _unpickle_timestamp(value, freq, self.tz(tz), *([] if reso is None else [reso]))

    def unpickle_timedelta(self, value, reso):
        from pandas._libs.tslibs.timedeltas import _timedelta_unpickle

        _require(type(value) is int and type(reso) is int, "timedelta")
        return _timedelta_unpickle(value, reso)


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


@functools.cache
def _stateless_dtypes() -> tuple[type, ...]:
    return tuple(getattr(pd, f"{k}{b}Dtype") for k, sizes in
                 (("Int", (8, 16, 32, 64)), ("UInt", (8, 16, 32, 64)), ("Float", (32, 64))) for b in sizes) + (
        pd.BooleanDtype,)


@functools.cache
def _index_classes() -> tuple[type, ...]:
    return (pd.Index, pd.RangeIndex, pd.MultiIndex, pd.DatetimeIndex, pd.CategoricalIndex)


@functools.cache
def _ndarray_backed_kinds() -> dict[type, str]:
    return {pd.Categorical: "iu", pd.arrays.DatetimeArray: "M", pd.arrays.TimedeltaArray: "m",
            pd.arrays.PeriodArray: "i", pd.arrays.StringArray: "O"}


def _check_ndarray_backed(cls, state) -> None:
    """The state of a Categorical, DatetimeArray, ...: ``(dtype, values[, fields])``, values of the class's kind."""
    _require(type(state) is tuple and len(state) in (2, 3) and (len(state) == 2 or type(state[2]) is dict),
             "array state")
    dtype, values = state[:2]
    _require(type(values) is np.ndarray and values.dtype.kind in _ndarray_backed_kinds()[cls] and values.ndim in (1, 2),
             "array values of an unexpected kind")
    _require(len(state) == 2 or set(state[2]) <= {"_freq", "_cache", "_readonly"}, "array fields")
    if cls is pd.Categorical:
        _require(isinstance(dtype, pd.CategoricalDtype), "categorical dtype")
        _check_codes(values, dtype)
    elif cls is pd.arrays.DatetimeArray:
        _require(isinstance(dtype, (np.dtype, pd.DatetimeTZDtype)), "datetime dtype")
    elif cls is pd.arrays.PeriodArray:
        _require(isinstance(dtype, pd.PeriodDtype), "period dtype")
    else:
        _require(isinstance(dtype, (np.dtype, pd.StringDtype)), "array dtype")


def _check_codes(codes: np.ndarray, dtype) -> None:
    n = len(dtype.categories) if dtype.categories is not None else 0
    _require(codes.size == 0 or (int(codes.min()) >= -1 and int(codes.max()) < n), "category codes out of range")


def _check_blocks(blocks: list[tuple[object, np.ndarray]], axes: list[pd.Index]) -> None:
    """Placements of the blocks cover each column of the frame exactly once; shapes match the axes."""
    n_items, n_rows = len(axes[0]), len(axes[1])
    seen = np.zeros(n_items, dtype=np.int64)
    for values, locs in blocks:
        _check_array(values, "a block's values")
        locs = np.asarray(locs)
        _require(locs.ndim == 1 and locs.dtype.kind in "iu", "a block placement is not integers")
        _require(locs.size == 0 or (locs.min() >= 0 and locs.max() < n_items),
                 f"a block placement outside the frame's {n_items} columns")
        width = values.shape[0] if values.ndim == 2 else 1
        _require(width == len(locs) and values.shape[-1] == n_rows, "a block's shape does not match the frame")
        np.add.at(seen, locs, 1)
    _require(bool((seen == 1).all()), "blocks do not cover each column exactly once")


def _setstate_checks(shims: _Shims) -> dict[type, Callable[[object, object], None]]:
    """For each class a pickle may ``BUILD``: the check of the state before its own ``__setstate__`` runs."""
    from pandas.core.internals.managers import BlockManager

    def frame(inst, state) -> None:
        _require(type(state) is dict and all(type(k) is str for k in state), "frame state")
        _require(set(state) <= {"_mgr", "_data", "_typ", "_metadata", "attrs", "_attrs", "_flags", "_item_cache",
                                "_subtyp", "name"}, "frame state fields")
        _require(isinstance(state.get("_mgr", state.get("_data")), BlockManager), "frame without a block manager")
        _require(state.get("_typ") == "dataframe", "frame type")
        _require(type(state.get("_metadata", [])) is list and type(state.get("attrs", {})) is dict, "frame metadata")
        flags = state.get("_flags", {})
        _require(type(flags) is dict and set(flags) <= {"allows_duplicate_labels"}
                 and all(type(v) is bool for v in flags.values()), "frame flags")

    def manager(inst, state) -> None:
        _require(type(state) is tuple and len(state) >= 4 and type(state[3]) is dict and "0.14.1" in state[3],
                 "block manager state")
        inner = state[3]["0.14.1"]
        _require(type(inner) is dict and type(inner.get("axes")) is list and len(inner["axes"]) == 2
                 and all(isinstance(a, pd.Index) for a in inner["axes"]), "block manager axes")
        _require(type(inner.get("blocks")) in (list, tuple) and all(type(b) is dict for b in inner["blocks"]),
                 "block manager blocks")
        _check_blocks([(b.get("values"), shims._placement(b.get("mgr_locs"))) for b in inner["blocks"]],
                      inner["axes"])

    def ndarray(inst, state) -> None:
        _require(type(state) is tuple and len(state) == 5 and state[0] == 1, "numpy array state")
        _, shape, dtype, fortran, data = state
        _shape(shape, shims.budget)
        _require(isinstance(dtype, np.dtype) and type(fortran) is bool, "numpy array state")
        if dtype.hasobject:
            _require(dtype.kind == "O" and type(data) is list and len(data) == math.prod(shape), "numpy object array")
        else:
            _require(isinstance(data, (bytes, bytearray)) and len(data) == math.prod(shape) * dtype.itemsize,
                     "numpy array data does not match its shape")

    def dtype(inst, state) -> None:
        _require(type(state) is tuple and len(state) in (8, 9) and state[0] in (3, 4)
                 and state[1] in ("<", ">", "|", "=") and state[2:5] == (None, None, None)
                 and type(state[5]) is int and -1 <= state[5] <= shims.budget
                 and state[6] in (-1, 1, 2, 4, 8, 16) and type(state[7]) is int and 0 <= state[7] < 256,
                 "numpy dtype state")
        if len(state) == 9:
            # reason: datetime units travel as (metadata, (unit, count, num, den)); a unit is a short name.
            meta = state[8]
            _require(type(meta) is tuple and len(meta) == 2 and meta[0] in (None, {}) and type(meta[1]) is tuple
                     and len(meta[1]) == 4 and type(meta[1][0]) is bytes and len(meta[1][0]) <= 8
                     and all(type(v) is int and 0 <= v < 2**31 for v in meta[1][1:]), "numpy dtype metadata")

    def arrow_array(inst, state) -> None:
        import pyarrow as pa

        _require(type(state) is dict and set(state) <= {"_pa_array", "_data", "_dtype", "_cache", "_storage",
                                                        "_na_value", "_readonly"}, "arrow array state")
        data = state.get("_pa_array", state.get("_data"))
        _require(isinstance(data, (pa.Array, pa.ChunkedArray)), "arrow array data")
        _require(isinstance(state.get("_dtype", pd.StringDtype()), (pd.StringDtype, pd.ArrowDtype)), "arrow dtype")

    def masked(inst, state) -> None:
        _require(type(state) is dict and set(state) <= {"_data", "_mask", "_cache", "_dtype", "_readonly"},
                 "masked array state")
        _require(isinstance(state.get("_dtype", pd.BooleanDtype()), pd.api.extensions.ExtensionDtype),
                 "masked array dtype")
        values, mask = state.get("_data"), state.get("_mask")
        _require(type(values) is np.ndarray and type(mask) is np.ndarray and mask.dtype == bool
                 and values.shape == mask.shape and values.ndim == 1 and values.dtype.kind in "biuf",
                 "masked array data")

    def categorical(inst, state) -> None:
        _require(type(state) is dict and set(state) <= {"_codes", "_dtype", "_ndarray", "_cache", "_ordered",
                                                        "_categories", "_readonly"}, "categorical state")
        codes = state.get("_ndarray", state.get("_codes"))
        _require(type(codes) is np.ndarray and codes.ndim == 1 and codes.dtype.kind in "iu", "categorical codes")
        dtype = state.get("_dtype")
        _require(isinstance(dtype, pd.CategoricalDtype), "categorical dtype")
        _check_codes(codes, dtype)

    def categorical_dtype(inst, state) -> None:
        _require(type(state) is dict and set(state) <= {"categories", "ordered", "_categories", "_ordered",
                                                        "_ordered_from_sentinel"}, "categorical dtype state")
        categories = state.get("categories", state.get("_categories"))
        _require(categories is None or isinstance(categories, pd.Index), "categorical dtype categories")
        _require(state.get("ordered", state.get("_ordered")) in (None, True, False), "categorical dtype order")

    def datetime_tz_dtype(inst, state) -> None:
        _require(type(state) is dict and set(state) <= {"unit", "tz", "_unit", "_tz"}, "datetime dtype state")
        _require(state.get("unit", state.get("_unit", "ns")) in ("s", "ms", "us", "ns"), "datetime dtype unit")
        shims.tz(state.get("tz", state.get("_tz")))

    def arrow_dtype(inst, state) -> None:
        import pyarrow as pa

        _require(type(state) is dict and set(state) <= {"_storage", "pyarrow_dtype"}
                 and state.get("_storage", "pyarrow") == "pyarrow"
                 and isinstance(state.get("pyarrow_dtype"), pa.DataType), "arrow dtype state")

    def nothing_extra(inst, state) -> None:
        _require(state is None or (type(state) is dict and not state), "unexpected state")

    checks = {pd.DataFrame: frame, BlockManager: manager, np.ndarray: ndarray, np.dtype: dtype,
              pd.arrays.ArrowStringArray: arrow_array, pd.arrays.ArrowExtensionArray: arrow_array,
              pd.arrays.IntegerArray: masked, pd.arrays.FloatingArray: masked, pd.arrays.BooleanArray: masked,
              pd.CategoricalDtype: categorical_dtype, pd.DatetimeTZDtype: datetime_tz_dtype,
              pd.ArrowDtype: arrow_dtype}
    for cls in _ndarray_backed_kinds():
        checks[cls] = _check_ndarray_backed_state(cls, categorical if cls is pd.Categorical else None)
    return checks


def _check_ndarray_backed_state(cls, dict_check):
    def check(inst, state) -> None:
        if type(state) is dict and dict_check is not None:
            dict_check(inst, state)  # reason: pandas before 1.3 pickled a Categorical's state as a dict
        else:
            _check_ndarray_backed(cls, state)

    return check


def _objects(shims: _Shims) -> dict[str, object]:
    """The object each admitted name stands for: a shim, a class, or a constant."""
    from pandas.core.internals.managers import BlockManager

    nullable = {f"{k}{b}Dtype": getattr(pd, f"{k}{b}Dtype") for k, sizes in
                (("Int", (8, 16, 32, 64)), ("UInt", (8, 16, 32, 64)), ("Float", (32, 64))) for b in sizes}
    return {
        "DataFrame": pd.DataFrame, "BlockManager": BlockManager, "_unpickle_block": shims.unpickle_block,
        "_new_Index": shims.new_index, "Index": pd.Index, "RangeIndex": pd.RangeIndex, "MultiIndex": pd.MultiIndex,
        "DatetimeIndex": pd.DatetimeIndex, "CategoricalIndex": pd.CategoricalIndex,
        "__pyx_unpickle_NDArrayBacked": shims.ndarray_backed, "Categorical": pd.Categorical,
        "DatetimeArray": pd.arrays.DatetimeArray, "TimedeltaArray": pd.arrays.TimedeltaArray,
        "PeriodArray": pd.arrays.PeriodArray, "StringArray": pd.arrays.StringArray,
        "ArrowStringArray": pd.arrays.ArrowStringArray, "ArrowExtensionArray": pd.arrays.ArrowExtensionArray,
        "IntegerArray": pd.arrays.IntegerArray, "FloatingArray": pd.arrays.FloatingArray,
        "BooleanArray": pd.arrays.BooleanArray, "CategoricalDtype": pd.CategoricalDtype,
        "DatetimeTZDtype": pd.DatetimeTZDtype, "PeriodDtype": pd.PeriodDtype,
        "StringDtype": pd.StringDtype, "ArrowDtype": pd.ArrowDtype, "NA": pd.NA,
        "__nat_unpickle": _nat, "_unpickle_timestamp": shims.unpickle_timestamp,
        "_timedelta_unpickle": shims.unpickle_timedelta, **nullable, "BooleanDtype": pd.BooleanDtype,
        "ndarray": np.ndarray, "dtype": shims.dtype, "_reconstruct": shims.reconstruct,
        "_frombuffer": shims.frombuffer, "scalar": shims.scalar, "_restore_array": shims.restore_array,
        "py_buffer": shims.py_buffer, "type_for_alias": shims.type_for_alias, "chunked_array": shims.chunked_array,
        "bytearray": shims.bytearray, "slice": shims.slice, "set": shims.set, "frozenset": shims.frozenset,
        "complex": shims.complex, "getattr": shims.getattr, "encode": shims.encode, "OrderedDict": _ordered_dict,
        "date": shims.date, "datetime": shims.datetime_, "time": shims.time, "timedelta": shims.timedelta,
        "timezone": shims.timezone, "ZoneInfo": shims.zone,
        "(ZoneInfo._unpickle)": shims.zone_unpickle,  # reason: reached only through the getattr shim
    }


def _calls(shims: _Shims, objects: dict[str, object]) -> dict[int, Callable]:
    """What a ``REDUCE`` of each admitted object runs (by identity): the shims themselves, and for the classes that
    pickles call, a checked constructor."""
    from pandas.core.internals.managers import BlockManager

    def no_arguments(cls):
        def make(*args):
            _require(not args, f"{cls.__name__} with arguments")
            return cls()

        return make

    calls = {id(v): v for v in objects.values() if callable(v) and not isinstance(v, type)}
    calls.update({id(BlockManager): shims.block_manager, id(pd.DatetimeTZDtype): shims.datetime_tz_dtype,
                  id(pd.PeriodDtype): shims.period_dtype, id(pd.StringDtype): shims.string_dtype,
                  id(pd.ArrowDtype): shims.arrow_dtype, id(pd.CategoricalDtype): shims.categorical_dtype})
    calls.update({id(v): no_arguments(v) for k, v in objects.items() if k.endswith("Dtype") and isinstance(v, type)
                  and id(v) not in calls})
    return calls


def _nat(*args):
    _require(not args, "NaT arguments")
    return pd.NaT


def _ordered_dict(items=()):
    _require(isinstance(items, (list, tuple)), "OrderedDict of something other than a list")
    from collections import OrderedDict

    return OrderedDict(items)


# ---- the unpickler -------------------------------------------------------------------------------------------------
def _printable(text: str) -> str:
    return ascii(text[:80])[1:-1]


# reason: pickle's pure-Python unpickler is the one whose opcodes can be checked one by one; a DataFrame pickle holds
# a few hundred opcodes (pandas 3) to a few per row (object columns of older pandas), its bulk is in the buffers.
class _SafeUnpickler(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, source: str, size: int, mapping: mmap.mmap | None = None, map_from: int | None = None):
        super().__init__(file)
        self._source, self._file, self._size = source, file, size
        self._view = memoryview(mapping) if mapping is not None else None
        self._map_from = map_from
        self._shims = _Shims(budget=max(size, 1))
        self._objects = _objects(self._shims)
        self._checks = _setstate_checks(self._shims)
        self._calls = _calls(self._shims, self._objects)
        self._pending: dict[int, object] = {}
        # reason: the classes a pickle may instantiate empty (NEWOBJ) and then fill through a checked BUILD.
        self._new_classes = (set(self._checks) - {np.ndarray, np.dtype}) | set(_stateless_dtypes())
        read = file.read

        def bounded_read(n: int = -1) -> bytes:
            # reason: a length field is read before its bytes; a huge one must not allocate before it meets the end.
            _require(0 <= n <= self._size - file.tell(), "a length past the end of the file")
            return read(n)

        self._file_read = bounded_read

    def find_class(self, module, name):
        key = ALLOWED_GLOBALS.get((module, name)) if type(module) is str and type(name) is str else None
        if key is None:
            raise UnsafePickleError(
                f"{self._source}: the pickle asks for {_printable(str(module))}.{_printable(str(name))}, which a "
                "pandas DataFrame does not need; refused because unpickling it could run code. Load it only if you "
                "trust its origin, then save it as .parquet."
            )
        return self._objects[key]

    def load_reduce(self):
        args = self.stack.pop()
        func = self.stack[-1]
        call = self._calls.get(id(func)) if any(func is v for v in self._objects.values()) else None
        _require(call is not None and type(args) is tuple, "a call the pickle is not allowed to make")
        self._check_built(args)
        result = call(*args)
        if call == self._shims.ndarray_backed and (len(args) < 3 or args[2] is None):
            self._pending[id(result)] = result
        self.stack[-1] = result

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_newobj(self):
        args = self.stack.pop()
        cls = self.stack.pop()
        self._new(cls, args, {})

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self):
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self._new(cls, args, kwargs)

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    def _new(self, cls, args, kwargs) -> None:
        _require(isinstance(cls, type) and cls in self._new_classes and args == () and not kwargs,
                 "an object the pickle is not allowed to create")
        inst = cls.__new__(cls)
        if cls not in _stateless_dtypes():
            self._pending[id(inst)] = inst
        self.append(inst)

    def _check_built(self, value, depth: int = 0) -> None:
        """An object created empty is used only once its state is set (compiled code would read unset fields)."""
        if not self._pending or depth > 3:
            return
        _require(id(value) not in self._pending or self._pending[id(value)] is not value,
                 "an object used before its state was set")
        if type(value) in (tuple, list) and len(value) <= 64:
            for item in value:
                self._check_built(item, depth + 1)
        elif type(value) is dict and len(value) <= 64:
            for item in value.values():
                self._check_built(item, depth + 1)

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        _require(not isinstance(inst, type), "a pickle setting attributes of a class")
        if not isinstance(inst, np.ndarray):
            self._check_built(state)
        check = self._checks.get(np.dtype if isinstance(inst, np.dtype) else type(inst))
        _require(check is not None, f"a pickle setting the state of a {_printable(type(inst).__name__)}")
        check(inst, state)
        inst.__setstate__(state) if hasattr(type(inst), "__setstate__") else inst.__dict__.update(state)
        self._pending.pop(id(inst), None)

    dispatch[pickle.BUILD[0]] = load_build

    def _refuse(self):
        raise _Refused("an opcode DataFrame pickles never use")

    for _code in (pickle.INST, pickle.OBJ, pickle.EXT1, pickle.EXT2, pickle.EXT4, pickle.PERSID, pickle.BINPERSID):
        dispatch[_code[0]] = _refuse
    del _code

    def load_bytearray8(self) -> None:
        (size,) = struct.unpack("<Q", self.read(8))
        _require(size <= self._size, "a buffer longer than the file")
        frame = self._unframer.current_frame
        if (self._view is None or size < self._map_from
                or (frame is not None and frame.tell() < len(frame.getbuffer()))):
            buffer = bytearray(size)
            self.readinto(buffer)
            self.append(buffer)
            return
        # reason: a pickler writes large buffers outside any frame, so the payload starts at the file's position.
        self._unframer.current_frame = None
        start = self._file.tell()
        _require(start + size <= len(self._view), "the file ends before the end of a buffer (truncated)")
        self._file.seek(start + size)
        self.append(self._view[start : start + size])

    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8


def _check_frame(df: pd.DataFrame) -> None:
    mgr = df._mgr
    _check_blocks([(b.values, b.mgr_locs.as_array) for b in mgr.blocks], list(mgr.axes))
    _require(len(df.columns) == mgr.shape[0] and len(df.index) == mgr.shape[1], "frame axes")


def load_frame_pickle(path, mapping: mmap.mmap | None = None, map_from: int | None = None) -> object:
    """Unpickle ``path`` with the restricted unpickler; a DataFrame result is checked as a whole.

    Args:
        path: the pickle file.
        mapping: a copy-on-write mapping of the file; buffers of ``map_from`` bytes or more become views of it.
        map_from: see ``mapping``.

    Returns:
        The unpickled object (the caller checks that it is a DataFrame).

    Raises:
        UnsafePickleError: the pickle names something outside the allowed list.
        DataFormatError: anything else went wrong (truncated, damaged or crafted file), in one line.
    """
    with open(path, "rb") as file:
        size = file.seek(0, 2)
        file.seek(0)
        try:
            unpickler = _SafeUnpickler(file, str(path), size, mapping, map_from)
            obj = unpickler.load()
            _require(not unpickler._pending, "an object whose state was never set")
            if isinstance(obj, pd.DataFrame):
                _check_frame(obj)
            return obj
        except UnsafePickleError:
            raise
        except _Refused as err:
            advice = (f"({err}); the file may be truncated, damaged or not a DataFrame pickle. Write it again, or "
                      "convert it to .parquet.")
        except (Exception, RecursionError, MemoryError) as err:  # noqa: BLE001  every failure becomes one line
            # reason: the message of a failing pandas/pyarrow call can quote memory; only its kind is shown. A pickle
            # holds pandas' internal layout, which an older pandas cannot always rebuild (pandas 3's strings and dates
            # under pandas 2), so the file may be sound: the versions here are named.
            advice = (f"({type(err).__name__}); the file may be truncated or damaged, or written by a newer pandas or "
                      f"numpy than this one (pandas {pd.__version__}, numpy {np.__version__}): convert it to .parquet "
                      "or .csv where it was written, which any version reads.")
        raise DataFormatError(f"{path}: cannot read it as a pickled DataFrame {advice}") from None
