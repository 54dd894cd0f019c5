"""The restricted unpickler against rebuilt hostile pickles, each read in a forked child so a crash fails a test."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectratorch.data.io import read_dataset, read_dataset_mapped
from spectratorch.data.unpickle import ALLOWED_GLOBALS
from spectratorch.errors import DataFormatError, UnsafePickleError
from tests.conftest import make_frame
from tests.security.payloads import block_placement, hostile_pickles

ROOT = Path(__file__).resolve().parents[2]


def _replay(paths) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "tests.security.replay", *map(str, paths)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_every_hostile_pickle_is_refused_with_one_line(tmp_path):
    files = {}
    for name, data in hostile_pickles():
        files[name] = tmp_path / f"{name}.pkl"
        files[name].write_bytes(data)
    results = {Path(r["file"]).stem: r for r in _replay(files.values())}
    assert set(results) == set(files)
    for name, result in results.items():
        assert result["status"] == "refused", (name, result)
        message = result["message"]
        assert "\n" not in message and len(message) < 600, (name, message)
        assert str(files[name]) in message
    # the message is the same whether the file a time zone names exists or not: nothing to probe with
    def reason(name):
        return results[name]["message"].replace(str(files[name]), "")

    assert reason("tz-passwd") == reason("tz-missing")
    assert not Path("/tmp/spectratorch-pwned").exists()


def test_crafted_heap_message_is_not_echoed(tmp_path):
    path = tmp_path / "arrow.pkl"
    path.write_bytes(dict(hostile_pickles())["arrow-offsets"])
    (result,) = _replay([path])
    assert result["status"] == "refused" and "ArrowInvalid" in result["message"]
    assert "xy" not in result["message"].replace(str(path), "")


def test_the_class_is_not_poisoned(tmp_path):
    path = tmp_path / "index.pkl"
    path.write_bytes(dict(hostile_pickles())["index-build"])
    with pytest.raises(DataFormatError, match="attributes of a class"):
        read_dataset(path)
    assert pd.Index._typ == "index" and "x" not in vars(pd.Index)


def test_names_are_checked_before_any_import(tmp_path):
    path = tmp_path / "tests.pkl"
    for name in ("pandas-tests", "pyarrow-tests"):
        path.write_bytes(dict(hostile_pickles())[name])
        with pytest.raises(UnsafePickleError, match="refused"):
            read_dataset(path)
    assert not [m for m in sys.modules if m.startswith(("pandas.tests", "pyarrow.tests"))]


def test_allow_list_is_exact_pairs():
    assert all(isinstance(m, str) and isinstance(n, str) and "." not in n for m, n in ALLOWED_GLOBALS)
    assert ("builtins", "getattr") in ALLOWED_GLOBALS  # reached only through a shim admitting ZoneInfo._unpickle
    assert not {("builtins", "eval"), ("builtins", "range"), ("copyreg", "_reconstructor")} & set(ALLOWED_GLOBALS)


def _frames():
    import datetime

    df = make_frame(30, lspr=True)
    yield "floats", df
    variants = {
        "category": lambda d: d["greffon_defaut_severite"].astype("category"),
        "tz-utc": lambda d: pd.date_range("2024", periods=len(d), tz="UTC"),
        "tz-zone": lambda d: pd.date_range("2024", periods=len(d), tz="Europe/Paris"),
        "tz-fixed": lambda d: pd.date_range("2024", periods=len(d),
                                             tz=datetime.timezone(datetime.timedelta(hours=2))),
        "string-python": lambda d: d["greffon_defaut_severite"].astype("string[python]"),
        "object": lambda d: d["greffon_defaut_severite"].astype(object),
        "nullable": lambda d: pd.array(range(len(d)), dtype="Int64"),
        "boolean": lambda d: pd.array([True] * len(d), dtype="boolean"),
        "timedelta": lambda d: pd.to_timedelta(range(len(d)), unit="s"),
        "period": lambda d: pd.period_range("2024", periods=len(d), freq="D"),
        "arrow-int": lambda d: pd.array(range(len(d)), dtype="int64[pyarrow]"),
        "dates": lambda d: [datetime.date(2024, 1, 1)] * len(d),
        "timestamps": lambda d: pd.Series([pd.Timestamp("2024")] * len(d), dtype=object, index=d.index),
    }
    for name, make in variants.items():
        d = df.copy()
        d["extra"] = make(d)
        yield name, d
    yield "after-drop", df.drop(columns=[c for c in df.columns if c.startswith("380_")])  # arrays carry _readonly
    d = df.copy()
    d.index = pd.MultiIndex.from_arrays([d.index, range(len(d))])
    yield "multiindex", d


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_every_column_kind_round_trips(tmp_path, protocol):
    for name, df in _frames():
        path = tmp_path / f"{name}.pkl"
        path.write_bytes(pickle.dumps(df, protocol=protocol))
        pd.testing.assert_frame_equal(read_dataset(path), df, obj=name)
        pd.testing.assert_frame_equal(read_dataset_mapped(path, map_from=64)[0], df, obj=name)


def test_a_layout_this_pandas_cannot_rebuild_names_the_versions(tmp_path, monkeypatch):
    # as pandas 2.0 meets pandas 3's strings: StringDtype takes no na_value there
    path = tmp_path / "newer.pkl"
    path.write_bytes(pickle.dumps(pd.DataFrame({"label": pd.array(["a", "b"], dtype="string"), "x": [1.0, 2.0]})))

    class OlderStringDtype(pd.StringDtype):
        def __init__(self, storage=None, *rest):
            if rest:
                raise TypeError("StringDtype.__init__() takes from 1 to 2 positional arguments but 3 were given")
            super().__init__(storage)

    monkeypatch.setattr(pd, "StringDtype", OlderStringDtype)
    with pytest.raises(DataFormatError) as err:
        read_dataset(path)
    message = str(err.value)
    assert message.startswith(f"{path}: cannot read it as a pickled DataFrame (TypeError)") and "\n" not in message
    assert f"written by a newer pandas or numpy than this one (pandas {pd.__version__}, numpy " in message
    assert "convert it to .parquet or .csv where it was written" in message


def test_placements_within_the_frame_still_load(tmp_path):
    # the payload builder itself is faithful: the real placement gives back the frame
    path = tmp_path / "ok.pkl"
    path.write_bytes(block_placement(np.arange(6)))
    assert read_dataset(path).shape == (6, 7)
