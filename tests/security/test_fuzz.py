"""A property-based fuzz of the unpickler: opcode streams over the admitted globals, and mutated real pickles.

Each example is read in a forked child (a crash or hang fails the example, not the run). What must come out: a
DataFrame, or a one-line DataFormatError.
"""

import os
import pickle
import resource
import signal

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spectratorch.data.io import read_dataset
from spectratorch.data.unpickle import ALLOWED_GLOBALS
from spectratorch.errors import DataFormatError
from tests.security.payloads import _frame, _global, _long, _str

# reason: opcodes of DataFrame pickles (and a few that are not), one byte each.
_BARE = [b"(", b"t", b")", b"}", b"]", b"R", b"b", b"\x81", b"\x92", b"N", b"\x85", b"\x86", b"\x87", b"s", b"u",
         b"e", b"a", b"\x94", b"\x88", b"\x89", b"0", b"2", b"1"]
_OPS = st.one_of(
    st.sampled_from(sorted(ALLOWED_GLOBALS)).map(lambda pair: _global(*pair)),
    st.integers(-(2**70), 2**70).map(_long),
    st.sampled_from(["ns", "UTC", "f8", "O8", "M8", "b", "large_string", "pyarrow", "dataframe", "_mgr", "0.14.1",
                     "axes", "blocks", "values", "mgr_locs", "data", "Europe/Paris", "dateutil//etc/passwd"]).map(_str),
    st.text(max_size=12).map(_str),
    st.binary(max_size=48).map(lambda b: b"C" + bytes([len(b)]) + b),
    st.sampled_from(_BARE),
    st.integers(0, 40).map(lambda i: b"h" + bytes([i])),
)


def _read_in_child(path) -> int:
    """0: a frame or a one-line DataFormatError; 1: anything else; a signal: the child crashed or hung."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.alarm(20)
            resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, resource.RLIM_INFINITY))
            read_dataset(path)
            code = 0
        except DataFormatError as err:
            code = 0 if "\n" not in str(err) else 1
        except BaseException:  # noqa: BLE001  reported as exit status 1
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


_SETTINGS = settings(max_examples=int(os.environ.get("SPECTRATORCH_FUZZ_EXAMPLES", "200")), deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.slow
@_SETTINGS
@given(ops=st.lists(_OPS, max_size=40))
def test_opcode_streams(tmp_path, ops):
    path = tmp_path / "fuzz.pkl"
    path.write_bytes(b"\x80\x04" + b"".join(ops) + b".")
    assert _read_in_child(path) == 0


_VALID = pickle.dumps(_frame(), protocol=5)


@pytest.mark.slow
@_SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_real_pickles(tmp_path, edits):
    data = bytearray(_VALID)
    for position, value in edits:
        data[position] = value
    path = tmp_path / "mutated.pkl"
    path.write_bytes(bytes(data))
    assert _read_in_child(path) == 0


def test_the_unmutated_pickle_is_a_frame(tmp_path):
    path = tmp_path / "valid.pkl"
    path.write_bytes(_VALID)
    assert isinstance(read_dataset(path), pd.DataFrame)
