"""The page against hostile files: a reader that crashes, hangs or runs out of memory, hostile pickles, tampered
models. Each costs its own upload (or model) one line; the next upload, and the other users, carry on."""

from __future__ import annotations

import json
import re
import shutil

from streamlit.testing.v1 import AppTest

from spectratorch.app import isolate
from spectratorch.app.launch import ENV_MODELS, ENV_READER_MEMORY_MB, ENV_READER_SECONDS
from tests.security.payloads import arrow_offsets, block_placement, hostile_pickles

from .conftest import EXAMPLE, PAGE, linear_model


def _page(monkeypatch, models) -> AppTest:
    monkeypatch.setenv(ENV_MODELS, str(models))
    return AppTest.from_file(str(PAGE), default_timeout=120).run()


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="upload").upload(name, data)
    return at.run()


def _one_error(at: AppTest) -> str:
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1, errors
    assert "\n" not in errors[0] and "Traceback" not in errors[0] and "Something went wrong" not in errors[0]
    return errors[0]


def _works(at: AppTest, demo_data) -> None:
    at = _upload(at, "batch.parquet", demo_data["parquet"].read_bytes())
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.markdown[0].value.startswith("**")  # "**N** samples predicted from ..."


# reason: one session meets the three in turn, so each refusal after the first also shows that the session outlived
# the reader before it; then a real read works in that session and in another user's.
_DYING_READERS = [
    ("crash.csv", None, r"^crash.csv: reading it crashed the reader \(SIGSEGV\); the file is damaged"),
    ("hang.parquet", None, r"^hang.parquet: reading it took longer than the page allows \(3 s\)"),
    ("bomb.pkl", 3000, r"^bomb.pkl: reading it needs more memory than the page allows \(3000 MB\)"),
]


def test_a_reader_that_dies_costs_that_upload_only(monkeypatch, models_dir, demo_data):
    monkeypatch.setattr(isolate, "_CHILD_MODULE", "tests.app.hostile_reader")
    monkeypatch.setenv(ENV_READER_SECONDS, "3")
    at = _page(monkeypatch, models_dir)
    for name, memory_mb, pattern in _DYING_READERS:
        if memory_mb:
            monkeypatch.setenv(ENV_READER_MEMORY_MB, str(memory_mb))
        else:
            monkeypatch.delenv(ENV_READER_MEMORY_MB, raising=False)
        at = _upload(at, name, demo_data["parquet"].read_bytes())
        assert re.search(pattern, _one_error(at)), (name, _one_error(at))
    # reason: a real read takes a few seconds here (a fresh interpreter on a shared machine): the default limits.
    monkeypatch.delenv(ENV_READER_SECONDS)
    monkeypatch.delenv(ENV_READER_MEMORY_MB, raising=False)
    _works(at, demo_data)  # the same session goes on: the server did not die with the readers
    _works(_page(monkeypatch, models_dir), demo_data)  # and so does another user's


def test_hostile_pickles_cost_their_upload_only(monkeypatch, models_dir, demo_data):
    payloads = dict(hostile_pickles())
    at = _page(monkeypatch, models_dir)
    for key, data in [("placement-2**40", block_placement(slice(2**40, 2**40 + 6, 1))), ("arrow", arrow_offsets()),
                      ("index-build", payloads["index-build"]), ("os-system", payloads["os-system"])]:
        at = _upload(at, "hostile.pkl", data)
        assert _one_error(at).startswith("hostile.pkl: "), key
    # reason: the index-build payload would set attributes on pandas.Index for the whole process; read in the child,
    # it changes nothing here.
    import pandas as pd

    assert "_typ" not in vars(pd.Index) or pd.Index._typ == "index"
    _works(at, demo_data)


def _tampered(path, **fields):
    import onnx

    model = onnx.load(path)
    for prop in model.metadata_props:
        if prop.key in fields:
            prop.value = json.dumps(fields[prop.key])
    onnx.save(model, path)
    return path


def test_tampered_models_are_listed_as_broken_and_the_rest_works(monkeypatch, demo_data, tmp_path):
    shutil.copy(EXAMPLE, tmp_path / EXAMPLE.name)
    _tampered(linear_model(tmp_path / "axis null.onnx"), axis=None)
    _tampered(linear_model(tmp_path / "labels text.onnx"), labels="flat,bump")
    _tampered(linear_model(tmp_path / "odd fields.onnx"), metrics=[1, 2], arch={"a": 1}, transforms=5,
              cutoffs={"default": "high"})
    at = _page(monkeypatch, tmp_path)
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value.set_index("model")
    assert table.loc["axis null.onnx", "problem"].startswith(
        "metadata 'axis' must be a list of increasing finite numbers; found null.")
    assert table.loc["labels text.onnx", "problem"].startswith(
        "metadata 'labels' must be a list of at least 2 distinct class names; found \"flat,bump\".")
    assert "its metadata cannot be read (TypeError)" in table.loc["odd fields.onnx", "problem"]
    assert table.loc[EXAMPLE.name, "problem"] == ""
    _works(at, demo_data)
    at = at.selectbox(key="model").set_value(list(table.index).index("axis null.onnx")).run()
    assert _one_error(at).startswith("axis null.onnx cannot be used: metadata 'axis' must be")
