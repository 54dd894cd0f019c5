import mmap
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectratorch.data.io import read_dataset, read_dataset_mapped, safe_load_pickle, write_dataset
from spectratorch.errors import DataFormatError, UnsafePickleError
from tests.conftest import make_frame

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("suffix", [".pkl", ".parquet", ".csv"])
def test_round_trip(tmp_path, suffix):
    df = make_frame(20)
    path = tmp_path / f"d{suffix}"
    write_dataset(df, path)
    back = read_dataset(path)
    assert list(back.index) == list(df.index)
    np.testing.assert_allclose(back["277_300"].to_numpy(), df["277_300"].to_numpy(), rtol=1e-6)
    assert list(back["greffon_defaut_severite"]) == list(df["greffon_defaut_severite"])
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_old_pandas_pickle_loads():
    # written by pandas 1.5.3 / numpy 1.26, as the lab's existing pickles are
    df = read_dataset(FIXTURES / "pandas153_lab.pkl")
    assert df.shape == (12, 13)
    assert df["instrument_id"].dtype.name == "category"
    assert str(df["mesure_date"].dtype).startswith("datetime64")


class _WritesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _RunsAShell:
    def __reduce__(self):
        return (os.system, ("touch /tmp/spectratorch-pwned",))


def test_malicious_pickle_refused_and_file_not_created(tmp_path):
    target = tmp_path / "created-by-pickle.txt"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"df": make_frame(3), "x": _WritesAFile(str(target))}))
    with pytest.raises(UnsafePickleError, match="builtins.open|io.open"):
        read_dataset(path)
    assert not target.exists()
    # the unrestricted unpickler would have created it: the test payload is real
    pickle.loads(path.read_bytes())
    assert target.exists()


@pytest.mark.parametrize("payload", [_RunsAShell(), np.memmap])
def test_other_payloads_refused(tmp_path, payload):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafePickleError, match="refused"):
        safe_load_pickle(path)


def test_dotted_method_refused(tmp_path):
    # protocol 4 lets a pickle name `DataFrame.to_csv`: a method that writes files
    class _Evil:
        def __reduce__(self):
            return (pd.DataFrame.to_csv, (make_frame(2), str(tmp_path / "x.csv")))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(), protocol=4))
    with pytest.raises(UnsafePickleError):
        read_dataset(path)
    assert not (tmp_path / "x.csv").exists()


def test_truncated_pickle(tmp_path):
    path = tmp_path / "d.pkl"
    write_dataset(make_frame(30), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="truncated"):
        read_dataset(path)


def test_truncated_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    write_dataset(make_frame(30), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataFormatError, match="parquet"):
        read_dataset(path)


@pytest.mark.parametrize("name,match", [("d.xls", "unsupported"), ("missing.pkl", "no such"), ("empty.csv", "empty")])
def test_bad_files(tmp_path, name, match):
    if name.startswith("empty"):
        (tmp_path / name).write_text("")
    with pytest.raises(DataFormatError, match=match):
        read_dataset(tmp_path / name)


def test_not_a_dataframe(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataFormatError, match="expected a pandas DataFrame, found a list"):
        read_dataset(path)


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "d.pkl"
    write_dataset(make_frame(5), path)
    before = path.read_bytes()

    class _Broken(pd.DataFrame):
        def to_pickle(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError):
        write_dataset(_Broken(make_frame(5)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.pkl"]


# ---- large pickles: buffers viewed through a mapping of the file (read_dataset_mapped) ------------------------------
def test_mapped_read_equals_the_copying_read_and_survives_release(tmp_path):
    df = make_frame(3000)
    path = tmp_path / "d.pkl"
    write_dataset(df, path)
    # the spectral block (480 kB) is mapped; pickle writes buffers under 64 kB inside its frames, which are copied
    mapped, release = read_dataset_mapped(path, map_from=1024)
    assert isinstance(_memory_owner(mapped["277_300"].to_numpy()), mmap.mmap)
    assert not isinstance(_memory_owner(read_dataset(path)["277_300"].to_numpy()), mmap.mmap)
    release()  # pages handed back; the views stay valid and read the file again
    pd.testing.assert_frame_equal(mapped, read_dataset(path))
    pd.testing.assert_frame_equal(mapped, df)


def _memory_owner(array: np.ndarray) -> object:
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


def test_mapped_read_of_an_old_pandas_pickle():
    mapped, _ = read_dataset_mapped(FIXTURES / "pandas153_lab.pkl", map_from=0)
    pd.testing.assert_frame_equal(mapped, read_dataset(FIXTURES / "pandas153_lab.pkl"))


def test_mapped_read_refuses_what_the_copying_read_refuses(tmp_path):
    target = tmp_path / "created-by-pickle.txt"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"df": make_frame(3), "x": _WritesAFile(str(target))}, protocol=5))
    with pytest.raises(UnsafePickleError, match="builtins.open|io.open"):
        read_dataset_mapped(path, map_from=0)
    assert not target.exists()
    path.write_bytes(pickle.dumps(_RunsAShell(), protocol=5))
    with pytest.raises(UnsafePickleError, match="refused"):
        read_dataset_mapped(path, map_from=0)


def test_mapped_read_of_a_truncated_pickle(tmp_path):
    path = tmp_path / "d.pkl"
    write_dataset(make_frame(3000), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut inside the spectral block
    with pytest.raises(DataFormatError, match="truncated"):
        read_dataset_mapped(path, map_from=1024)
