"""The page's logic through Streamlit's AppTest: real models, real uploads, compared with `spectratorch predict`."""

from __future__ import annotations

import io
import re
import subprocess
import zipfile

import numpy as np
import pandas as pd
import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from spectratorch.app import isolate
from spectratorch.app.launch import ENV_MAX_UPLOAD_MB, ENV_MODELS
from spectratorch.app.page import MODEL_COLUMNS
from spectratorch.cli import main
from spectratorch.data.io import read_dataset, write_dataset
from spectratorch.inference import UNCLASSIFIED, Predictor

from .conftest import EXAMPLE, PAGE, linear_model


@pytest.fixture(autouse=True)
def reader_in_this_process(monkeypatch):
    """The upload's reader (``python -m spectratorch.app.isolate WORK``) run by its own ``main`` in this process,
    without the process limits: these tests check what the page shows of a read, and the same files go back and forth
    through WORK; tests/app/test_hostile.py runs the real child process with its limits."""

    class _Subprocess:
        TimeoutExpired, DEVNULL = subprocess.TimeoutExpired, subprocess.DEVNULL

        @staticmethod
        def run(command, **kwargs):
            assert command[1:3] == ["-m", isolate._CHILD_MODULE], command
            with monkeypatch.context() as scope:
                scope.setattr(isolate, "apply_limits", lambda memory_mb: None)
                code = isolate.main([command[3]])
            return subprocess.CompletedProcess(command, code, b"", b"")

    monkeypatch.setattr(isolate, "subprocess", _Subprocess)


@pytest.fixture
def downloads(monkeypatch):
    """Every file the page hands to Streamlit's media storage (what a download button serves), by mimetype."""
    served: list[tuple[str, bytes]] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def _record(self, path_or_data, mimetype, kind, filename=None):
        served.append((mimetype, bytes(path_or_data)))
        return original(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", _record)
    return served


def _page(monkeypatch, models, limit_mb=None) -> AppTest:
    monkeypatch.setenv(ENV_MODELS, str(models))
    if limit_mb is not None:
        monkeypatch.setenv(ENV_MAX_UPLOAD_MB, str(limit_mb))
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    return at.run()


def _upload(at: AppTest, path, name=None) -> AppTest:
    at.file_uploader(key="upload").upload(name or path.name, path.read_bytes())
    return at.run()


def _predict_cli(model, data, out, *options) -> bytes:
    assert main(["predict", str(model), str(data), "-o", str(out), *options]) == 0
    return out.read_bytes()


def _errors(at: AppTest) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


def test_the_models_table_says_what_names_and_metadata_say(monkeypatch, mixed_models_dir):
    at = _page(monkeypatch, mixed_models_dir)
    assert _errors(at) == []
    table = at.dataframe[0].value
    assert list(table.columns) == list(MODEL_COLUMNS)  # a few columns, so the table fits the page's width
    table = table.set_index("model")
    assert list(table.index) == ["VGG11 y=['OVA', 'OK'] c=('277', '380') t=('da',) 0-5 s=42 eps=0.1.onnx",
                                 "a foreign.onnx", "b truncated.onnx", "nir/linear.onnx"]
    meta = Predictor(EXAMPLE).metadata
    example = table.iloc[0]
    assert (example["architecture"], example["channels"]) == ("VGG11", "277, 380")
    assert example["classes"] == "The rest, OK"
    assert example["val accuracy"] == pytest.approx(meta["metrics"]["val"]["accuracy"])
    assert example["problem"] == ""
    assert "no spectratorch metadata" in table.loc["a foreign.onnx", "problem"]
    assert "not a readable ONNX model" in table.loc["b truncated.onnx", "problem"]
    assert table.loc["nir/linear.onnx", "architecture"] == "Linear"
    # the details panel: the rest of what the metadata says about the chosen (first usable) model
    details = at.table[0].value
    assert details.loc["target", "value"] == "OVA OK"
    assert details.loc["tabular columns", "value"] == "greffon_transmittance"
    assert details.loc["axis", "value"] == f"{len(meta['axis'])} points, {meta['axis'][0]:g} to {meta['axis'][-1]:g}"
    assert f"temperature {meta['temperature']:.3f}" in details.loc["calibration", "value"]
    assert f"accuracy {meta['metrics']['val']['accuracy']:.3f}" in details.loc["validation metrics", "value"]


def test_a_labelled_file_shows_accuracy_and_confusion(monkeypatch, models_dir, demo_data, tmp_path):
    from spectratorch.data.targets import resolve_target

    at = _upload(_page(monkeypatch, models_dir), demo_data["parquet"])
    assert _errors(at) == []
    predictor = Predictor(EXAMPLE)
    truth = resolve_target(predictor.load(demo_data["parquet"]).meta, ("OVA", "OK"))
    assert truth.labels == predictor.labels
    reference = pd.read_csv(io.BytesIO(_predict_cli(EXAMPLE, demo_data["parquet"], tmp_path / "p.csv")))
    predicted = reference["top1_label"].map(predictor.labels.index).to_numpy()
    kept = (reference["label"] != UNCLASSIFIED).to_numpy()
    text = next(m.value for m in at.markdown if m.value.startswith("Accuracy "))
    assert text.startswith(f"Accuracy **{(predicted == truth.y).mean():.3f}** on {len(predicted)} labelled samples")
    command = next(c.value for c in at.caption if c.value.startswith("The same file as"))
    assert f'`spectratorch predict "{EXAMPLE.name}" "{demo_data["parquet"].name}" -o predictions.csv' in command
    assert command.endswith("run in the page's models folder.")
    assert f"**{(predicted[kept] == truth.y[kept]).mean():.3f}** on the {kept.mean():.1%} kept" in text
    matrix = at.table[2].value.astype(int)
    assert list(matrix.columns) == [*predictor.labels, UNCLASSIFIED]
    for k, label in enumerate(predictor.labels):
        assert matrix.loc[label, label] == ((truth.y == k) & (predicted == k) & kept).sum()
        assert matrix.loc[label, UNCLASSIFIED] == ((truth.y == k) & ~kept).sum()
    assert matrix.to_numpy().sum() == len(predicted)


def test_a_file_without_labels_shows_no_accuracy(monkeypatch, models_dir, demo_data, tmp_path):
    df = read_dataset(demo_data["parquet"])
    keep = [c for c in df.columns if c.startswith(("277_", "380_")) or c == "greffon_transmittance"]
    write_dataset(df[keep], tmp_path / "unlabelled.parquet")
    at = _upload(_page(monkeypatch, models_dir), tmp_path / "unlabelled.parquet")
    assert _errors(at) == []
    assert not [m for m in at.markdown if m.value.startswith("Accuracy ")]
    assert len(at.dataframe) == 2  # the models and the predictions


def _coverage_options(at: AppTest) -> list[str]:
    """The CLI options of the page's label-set slider (the example model has a conformal calibration)."""
    coverage = at.select_slider(key="coverage").value
    return ["--coverage", f"{coverage:g}"] if coverage else []


@pytest.mark.parametrize("kind", ["parquet", "csv", "pkl", "zip", "csv with skipped rows"])
def test_upload_shows_and_serves_what_predict_writes(monkeypatch, models_dir, demo_data, downloads, tmp_path, kind):
    if kind == "csv with skipped rows":
        frame = read_dataset(demo_data["csv"])
        frame.iloc[[2, 9], frame.columns.get_loc("277_300")] = np.nan
        frame.iloc[5, frame.columns.get_loc("integration_oob")] = 1
        write_dataset(frame, tmp_path / "skipped.csv")
        demo_data = {**demo_data, kind: tmp_path / "skipped.csv"}
    at = _upload(_page(monkeypatch, models_dir), demo_data[kind])
    assert _errors(at) == []
    source = demo_data["raw"] if kind == "zip" else demo_data[kind]
    expected = _predict_cli(EXAMPLE, source, tmp_path / "p.csv", *_coverage_options(at))
    reference = pd.read_csv(io.BytesIO(expected), dtype={"id": str})
    if kind == "csv with skipped rows":  # the download holds every row of the file, the skipped ones in place
        assert reference["skipped"].notna().tolist() == [i in (2, 5, 9) for i in range(len(frame))]
        reference = reference[reference["skipped"].isna()].reset_index(drop=True)
    shown = at.dataframe[1].value
    assert shown["id"].astype(str).tolist() == reference["id"].tolist()
    assert shown["label"].tolist() == reference["label"].tolist()
    np.testing.assert_allclose(shown["top1_prob"], reference["top1_prob"], atol=5e-6)
    assert [data for mime, data in downloads if mime == "text/csv"][-1] == expected
    counts = at.table[1].value["samples"]
    assert counts.to_dict() == {k: v for k, v in reference["label"].value_counts().items()}
    assert f"**{len(reference)}** samples predicted" in at.markdown[0].value


def test_the_cutoff_slider_gives_predicts_cutoff(monkeypatch, models_dir, demo_data, downloads, tmp_path):
    at = _upload(_page(monkeypatch, models_dir), demo_data["parquet"])
    slider = at.select_slider(key="cutoff")
    assert slider.value == Predictor(EXAMPLE).cutoffs["default"]
    at = slider.set_value(0.99).run()
    expected = _predict_cli(EXAMPLE, demo_data["parquet"], tmp_path / "p.csv", "--cutoff", "0.99",
                            *_coverage_options(at))
    assert downloads[-1][1] == expected
    labels = pd.read_csv(io.BytesIO(expected))["label"]
    assert (labels == UNCLASSIFIED).sum() == at.table[1].value.loc[UNCLASSIFIED, "samples"] > 0
    at = at.select_slider(key="cutoff").set_value(0.0).run()
    assert downloads[-1][1] == _predict_cli(EXAMPLE, demo_data["parquet"], tmp_path / "p.csv", "--cutoff", "none",
                                            *_coverage_options(at))
    assert UNCLASSIFIED not in at.table[1].value.index


def test_one_sample_its_class_mean_and_what_drove_it(monkeypatch, models_dir, demo_data, tmp_path):
    at = _upload(_page(monkeypatch, models_dir), demo_data["parquet"])
    reference = pd.read_csv(io.BytesIO(_predict_cli(EXAMPLE, demo_data["parquet"], tmp_path / "p.csv")),
                            dtype={"id": str})
    at = at.selectbox(key="sample").set_value(7).run()
    row = reference.iloc[7]
    text = next(m.value for m in at.markdown if m.value.startswith("Sample "))
    assert text.startswith(f"Sample **{row['id']}**: **{row['label']}** (top classes: {row['top1_label']} "
                           f"{row['top1_prob']:.3f}")
    assert len(at.get("vega_lite_chart")) == 2  # one chart per channel of the model
    drivers = at.table[-1].value
    assert set(drivers["channel"]) <= {"277", "380"} and len(drivers) >= 1
    assert (drivers["probability drop"].astype(float) > 0).all()


def test_wrong_files_give_a_message_not_a_traceback(monkeypatch, models_dir, demo_data, tmp_path):
    df = read_dataset(demo_data["parquet"])
    write_dataset(df.drop(columns=[c for c in df.columns if c.startswith("380_")]), tmp_path / "no380.parquet")
    (tmp_path / "empty.csv").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "notes.docx").write_text("hello")
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    with zipfile.ZipFile(tmp_path / "no380.zip", "w") as archive:
        for path in demo_data["raw"].iterdir():
            if not path.name.startswith("EX_380"):
                archive.write(path, path.name)
    cases = {
        "no380.parquet": r"no380.parquet: unknown channel\(s\) \['380'\]",
        "empty.csv": "empty.csv: the file is empty",
        "notes.txt": "^notes.txt: no spectral column",  # a .txt is read as a table, as predict reads it
        "notes.docx": "are not read here",
        "broken.zip": "not a readable zip archive",
        "no380.zip": r"^no380.zip: unknown channel\(s\) \['380'\]",
    }
    for name, pattern in cases.items():
        at = _upload(_page(monkeypatch, models_dir), tmp_path / name)
        errors = _errors(at)
        assert len(errors) == 1
        assert re.search(pattern, errors[0]), (name, errors)
        assert str(tmp_path) not in errors[0] and "Traceback" not in errors[0]


def test_a_file_over_the_upload_limit_is_refused(monkeypatch, models_dir, demo_data):
    size_mb = demo_data["parquet"].stat().st_size / 1e6
    at = _upload(_page(monkeypatch, models_dir, limit_mb=size_mb / 2), demo_data["parquet"])
    (error,) = _errors(at)
    assert "over the page's upload limit" in error and "--max-upload-mb" in error
    assert not at.dataframe[1:]


def test_a_model_without_our_metadata_is_refused_on_the_page(monkeypatch, mixed_models_dir):
    at = _page(monkeypatch, mixed_models_dir)
    at = at.selectbox(key="model").set_value(1).run()
    (error,) = _errors(at)
    assert error.startswith("a foreign.onnx cannot be used:") and "no spectratorch metadata" in error
    assert not at.file_uploader


def test_an_empty_models_folder_says_how_to_get_one(monkeypatch, tmp_path):
    at = _page(monkeypatch, tmp_path)
    assert _errors(at) == [] and "No .onnx model" in at.warning[0].value


def test_a_partly_labelled_file_counts_its_unlabelled_and_unknown_rows_apart(monkeypatch, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    linear_model(folder / "linear.onnx", n_points=64)
    rng = np.random.default_rng(3)
    spectra = rng.random((12, 64))
    spectra[:6, 20:30] += 3  # reads as 'bump'
    spectra[6:, 20:30] -= 3  # reads as 'flat'
    frame = pd.DataFrame(spectra, columns=[f"nir_{1000 + k}" for k in range(64)])
    frame.insert(0, "bump", ["bump"] * 6 + ["flat"] * 6)
    frame.insert(0, "sample", [f"s{k}" for k in range(12)])
    frame.loc[[0, 7], "bump"] = None
    frame.loc[[8], "bump"] = "wavy"
    frame.to_csv(tmp_path / "partly labelled.csv", index=False)
    at = _upload(_page(monkeypatch, folder), tmp_path / "partly labelled.csv")
    assert _errors(at) == []
    text = next(m.value for m in at.markdown if m.value.startswith("Accuracy "))
    assert text.startswith("Accuracy **1.000** on 9 labelled samples")
    assert "; 1 sample of classes the model does not know left out" in text
    assert "; 2 samples without a label left out." in text
