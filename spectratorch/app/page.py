"""The inspectors' page, a Streamlit script: choose a model, drop a file of spectra, read and download the answer.

Served by ``spectratorch app`` (see :mod:`spectratorch.app.launch`), which passes the models folder and the upload
limit in the environment. Sections: the models of the folder (what their names and metadata say), the upload, the
cutoff and coverage sliders, the predictions table (with each spectrum's conformal label set and its outlier flag,
when the model carries them) and the class counts, the download (the bytes ``spectratorch predict`` writes
for the same model, data and cutoff), the accuracy and the confusion matrix when the file has the labels of the
model's target, and one sample's spectra beside its class's mean spectrum with the wavelengths that drove its
prediction.

Every error the user can cause is shown as a message on the page, never as a traceback. An upload is read and
predicted in a child process with a memory and a time limit (:mod:`spectratorch.app.isolate`), so a file that
crashes a reader or exhausts it costs that upload one line; a model whose metadata cannot be used is listed with the
reason, and the others stay usable. No torch here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from spectratorch.app.catalog import ModelEntry, find_models, model_details, model_row, open_model
from spectratorch.app.isolate import DEFAULT_SECONDS, Prediction, default_memory_mb, predict_upload
from spectratorch.app.launch import ENV_MAX_UPLOAD_MB, ENV_MODELS, ENV_READER_MEMORY_MB, ENV_READER_SECONDS
from spectratorch.app.occlusion import Occlusion, occlusion_sensitivity
from spectratorch.app.upload import DEFAULT_LIMIT_MB, check_upload
from spectratorch.contract import OOD_CONFIDENCE
from spectratorch.errors import SpectratorchError
from spectratorch.inference import (
    DEFAULT_CUTOFF_KEY,
    OUTPUT_PROBABILITIES,
    UNCLASSIFIED,
    Predictor,
    prediction_frame,
    predictions_csv,
    scores_against_labels,
    trust_columns,
    truth_indices,
    with_truth,
)
from spectratorch.report.metrics import confusion

__all__ = ["main"]

_logger = logging.getLogger(__name__)

_DEFAULT_MODELS = "checkpoints"
_TOP_K = 2
# reason: a slider in steps of 0.01 plus the model's own named cutoffs, so the default is exactly the model's.
_GRID = [round(i / 100, 2) for i in range(101)]
# reason: the models table shares the page's width with nothing else; at 1280 px these columns fit without a
# horizontal scroll. Everything else the metadata says is in the "What this model is" panel.
MODEL_COLUMNS = ("model", "architecture", "classes", "channels", "val accuracy", "problem")
# reason: the coverages an inspector is likely to ask for; those the model's calibration rows support are offered.
_COVERAGES = (0.8, 0.9, 0.95, 0.99)
_DEFAULT_COVERAGE = 0.9


# ---- settings and cached work -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Limits:
    upload_mb: float
    memory_mb: int
    seconds: float


def _number(key: str, default: float) -> float:
    try:
        value = float(os.environ.get(key) or default)
    except ValueError:
        return default
    return value if value > 0 else default


def _settings() -> tuple[Path, _Limits]:
    folder = Path(os.environ.get(ENV_MODELS) or _DEFAULT_MODELS)
    upload = _number(ENV_MAX_UPLOAD_MB, DEFAULT_LIMIT_MB)
    return folder, _Limits(upload, int(_number(ENV_READER_MEMORY_MB, default_memory_mb(upload))),
                           _number(ENV_READER_SECONDS, DEFAULT_SECONDS))


@st.cache_resource(max_entries=32, show_spinner=False)
def _model(path: str, folder: str, mtime: float) -> ModelEntry:
    # reason: mtime is part of the key, so a model exported again under the same name is read again.
    return open_model(path, folder)


@st.cache_resource(max_entries=2, show_spinner="Reading the file and predicting...")
def _predict(model_path: str, mtime: float, upload_key: tuple, _data: bytes, limits: _Limits) -> Prediction:
    # reason: read in a child process with limits (spectratorch.app.isolate): a file that crashes a reader, or
    # takes all the memory or all the time, costs this upload only, never the server that other users share.
    return predict_upload(model_path, upload_key[0], _data, limits.upload_mb, limits.memory_mb, limits.seconds)


@st.cache_data(max_entries=64, show_spinner=False)
def _occlusion(model_path: str, mtime: float, upload_key: tuple, row: int, class_index: int,
               _predictor: Predictor, _spectra: np.ndarray, _tabular: np.ndarray) -> Occlusion:
    return occlusion_sensitivity(_predictor, _spectra, _tabular, class_index)


# ---- sections ------------------------------------------------------------------------------------------------------
def _choose_model(folder: Path) -> ModelEntry:
    st.subheader("1. Model")
    try:
        paths = find_models(folder)
    except SpectratorchError as err:
        _stop(err)
    if not paths:
        st.warning(f"No .onnx model in `{folder}`. Export one with `spectratorch export CKPT`, or start the page "
                   "with `spectratorch app --models FOLDER`.")
        st.stop()
    entries = [_model(str(p), str(folder), p.stat().st_mtime) for p in paths]
    rows = pd.DataFrame([model_row(e) for e in entries])
    st.dataframe(rows[list(MODEL_COLUMNS)], hide_index=True, width="stretch",
                 column_config={"val accuracy": st.column_config.NumberColumn(format="%.3f")})
    labels = [e.label for e in entries]
    usable = [i for i, e in enumerate(entries) if e.predictor is not None]
    chosen = st.selectbox("Model used", range(len(entries)), index=usable[0] if usable else 0,
                          format_func=lambda i: labels[i], key="model")
    entry = entries[chosen]
    if entry.predictor is None:
        st.error(f"{entry.label} cannot be used: {entry.error}")
        st.stop()
    with st.expander("What this model is"):
        st.table(pd.DataFrame(list(model_details(entry).items()), columns=["", "value"]).set_index(""))
    return entry


def _upload(entry: ModelEntry, limits: _Limits):
    st.subheader("2. Data")
    predictor = entry.predictor
    uploaded = st.file_uploader(
        f"A dataset file (.parquet, .csv, .tsv, .txt, .xlsx, .pkl) or a .zip of the instrument's exports, with "
        f"channels {', '.join(predictor.channels)}" + (f" and {', '.join(predictor.tabular_columns)}"
                                              if predictor.tabular_columns else ""),
        # reason: no `type=` filter: Streamlit would answer another type with its own exception; check_upload
        # answers with a message that says what to upload.
        key="upload")
    if uploaded is None:
        st.info("Drop a file above to see its predictions.")
        st.stop()
    try:
        check_upload(uploaded.name, uploaded.size, limits.upload_mb)
        upload_key = (uploaded.name, uploaded.size, uploaded.file_id)
        prediction = _predict(str(entry.path), entry.path.stat().st_mtime, upload_key, uploaded.getvalue(), limits)
    except SpectratorchError as err:
        _stop(err)
    return uploaded.name, upload_key, prediction


def _choose_cutoff(predictor: Predictor) -> float:
    named = {float(v): name for name, v in predictor.cutoffs.items()}
    default = predictor.cutoffs.get(DEFAULT_CUTOFF_KEY)
    options = sorted(set(_GRID) | set(named))

    def _label(value: float) -> str:
        if value == 0:
            return "none"
        if value in named:
            return f"{value:.3f} ({'model default' if value == default else named[value]})"
        return f"{value:.2f}"

    return st.select_slider(
        "Cutoff: under this top probability a sample is 'unclassified'", options=options,
        value=float(default) if default is not None else 0.0, format_func=_label, key="cutoff",
        help="The model's default cutoff keeps the samples it classifies with 95 % accuracy on validation.")


def _choose_coverage(predictor: Predictor) -> float | None:
    record = predictor.conformal
    if record is None:
        return None
    options = [c for c in _COVERAGES if record["min_coverage"] <= c <= record["max_coverage"]]
    if not options:
        return None
    labels = {0.0: "no sets", **{c: f"{c:.0%}" for c in options}}
    return st.select_slider(
        "Label sets: the classes that hold the true class with this probability", options=[0.0, *options],
        value=_DEFAULT_COVERAGE if _DEFAULT_COVERAGE in options else options[-1], format_func=labels.get,
        key="coverage", help=f"Conformal sets calibrated on {record['n']} {record['source']} rows of the model; a "
        "set of one class is a confident answer, a larger set says which classes remain possible.") or None


def _class_counts(frame: pd.DataFrame, labels) -> pd.DataFrame:
    order = list(labels) + [UNCLASSIFIED]
    counts = frame["label"].value_counts().reindex(order, fill_value=0)
    counts = counts[(counts > 0) | (counts.index != UNCLASSIFIED)]
    return pd.DataFrame({"class": counts.index, "samples": counts.to_numpy(),
                         "share": [f"{100 * n / max(1, len(frame)):.1f} %" for n in counts.to_numpy()]})


def _show_predictions(entry: ModelEntry, name: str, table: Prediction, outputs: dict,
                      cutoff: float, coverage: float | None) -> pd.DataFrame:
    predictor = entry.predictor
    frame = prediction_frame(outputs[OUTPUT_PROBABILITIES], table.ids, predictor.labels,
                             min(_TOP_K, len(predictor.labels)), cutoff if cutoff > 0 else None)
    frame = with_truth(trust_columns(frame, predictor, outputs, coverage), table.true_labels)
    skipped = {rule: n for rule, n in table.report.items() if n}
    st.markdown(f"**{len(frame)}** samples predicted from `{name}`"
                + (f"; rows skipped: {', '.join(f'{k} {v}' for k, v in skipped.items())}" if skipped else "."))
    if "outlier" in frame:
        flagged = int(frame["outlier"].sum())
        ood = predictor.metadata.get("ood") or {}
        (st.warning if flagged else st.success)(
            f"**{flagged}** of {len(frame)} spectra are unlike the model's training spectra (outlier: Hotelling's "
            f"T² or Q residual over its {ood.get('confidence', OOD_CONFIDENCE):.0%} limit); check the sample, the "
            "cuvette and the instrument before trusting their labels.")
    for note in predictor.trust_notes():
        st.caption(note + ".")
    left, right = st.columns([3, 1])
    with left:
        st.dataframe(frame, hide_index=True, width="stretch", height=320,
                     column_config={c: st.column_config.NumberColumn(format="%.3f")
                                    for c in frame.columns if c.endswith("_prob") or c.startswith("p_")})
    with right:
        st.markdown("**Class counts**")
        st.table(_class_counts(frame, predictor.labels).set_index("class"))
    stem = Path(name).stem
    # reason: the download is predict's CSV, which puts the skipped rows back in their places; the frame shown
    # keeps no attrs (streamlit would try to serialise them).
    download = frame.copy(deep=False)
    download.attrs["skipped_rows"] = table.skipped
    st.download_button("Download the predictions (CSV)", data=predictions_csv(download),
                       file_name=f"{stem} predictions.csv", mime="text/csv", on_click="ignore", key="download")
    cli_cutoff = "auto" if cutoff == predictor.cutoffs.get(DEFAULT_CUTOFF_KEY) else (repr(cutoff) if cutoff else "none")
    cli_coverage = f" --coverage {coverage:g}" if coverage else ""
    # reason: the model's path under the page's models folder (the folder itself is not shown on the page).
    st.caption(f"The same file as `spectratorch predict \"{entry.label}\" \"{name}\" -o predictions.csv "
               f"--cutoff {cli_cutoff}{cli_coverage}`, run in the page's models folder.")
    return frame


def _samples(n: int) -> str:
    return f"{n} sample{'s' if n != 1 else ''}"


def _show_scores(predictor: Predictor, probabilities: np.ndarray, frame: pd.DataFrame, truth: np.ndarray,
                 cutoff: float) -> None:
    known = truth >= 0
    y, predicted = truth[known], probabilities[known].argmax(axis=1)
    kept = (frame["label"] != UNCLASSIFIED).to_numpy()
    scores = scores_against_labels(probabilities.argmax(axis=1), truth, kept)
    kept = kept[known]
    st.markdown("**Against the file's labels**")
    text = f"Accuracy **{scores['accuracy']:.3f}** on {scores['labelled']} labelled samples"
    if cutoff > 0 and scores["kept"]:
        text += (f"; with the cutoff {cutoff:.3f}: **{scores['right_kept'] / scores['kept']:.3f}** on the "
                 f"{scores['kept'] / scores['labelled']:.1%} kept")
    if scores["unknown"]:
        text += f"; {_samples(scores['unknown'])} of classes the model does not know left out"
    if scores["unlabelled"]:
        text += f"; {_samples(scores['unlabelled'])} without a label left out"
    st.markdown(text + ".")
    matrix = confusion(y, predicted, predictor.labels, kept if cutoff > 0 else None)
    st.table(matrix.rename_axis("truth \\ predicted"))


def _chart(axis: np.ndarray, sample: np.ndarray, mean: np.ndarray, mean_name: str, drop: np.ndarray,
           channel: str):
    import altair as alt

    lines = pd.DataFrame({"x": np.concatenate([axis, axis]), "intensity": np.concatenate([sample, mean]),
                          "spectrum": ["this sample"] * len(axis) + [mean_name] * len(axis)})
    visible = (sample != 0) | (mean != 0)
    lines = lines[np.concatenate([visible, visible])]
    x = alt.X("x:Q", title=f"channel {channel}: x", scale=alt.Scale(zero=False))
    spectra = alt.Chart(lines).mark_line().encode(x, alt.Y("intensity:Q"), alt.Color("spectrum:N",
                                                  legend=alt.Legend(orient="top", title=None, labelLimit=400)))
    bars = pd.DataFrame({"x": axis, "probability drop": drop, "sign": np.where(drop >= 0, "for", "against")})[visible]
    sensitivity = alt.Chart(bars).mark_bar(opacity=0.8).encode(
        x, alt.Y("probability drop:Q"), alt.Color("sign:N", scale=alt.Scale(domain=["for", "against"],
                                                                            range=["#d62728", "#1f77b4"]),
                                                   legend=alt.Legend(orient="top", title="evidence")))
    return alt.vconcat(spectra.properties(height=220), sensitivity.properties(height=110)).resolve_scale(
        color="independent")


def _show_sample(entry: ModelEntry, upload_key: tuple, table: Prediction, frame: pd.DataFrame) -> None:
    st.subheader("3. One sample")
    predictor = entry.predictor
    ids = [str(i) for i in frame["id"]]
    row = st.selectbox("Sample", range(len(ids)), format_func=lambda i: ids[i], key="sample")
    top1 = str(frame["top1_label"].iloc[row])
    class_index = predictor.labels.index(top1)
    ranked = ", ".join(f"{frame[f'top{k}_label'].iloc[row]} {frame[f'top{k}_prob'].iloc[row]:.3f}"
                       for k in range(1, min(_TOP_K, len(predictor.labels)) + 1))
    st.markdown(f"Sample **{ids[row]}**: **{frame['label'].iloc[row]}** (top classes: {ranked})")
    members = (frame["top1_label"] == top1).to_numpy()
    mean = table.spectra[members].mean(axis=0)
    occlusion = _occlusion(str(entry.path), entry.path.stat().st_mtime, upload_key, row, class_index, predictor,
                           table.spectra[row], table.tabular[row])
    mean_name = f"mean of {top1} ({int(members.sum())} samples)"
    columns = st.columns(len(predictor.channels))
    for c, (column, channel) in enumerate(zip(columns, predictor.channels)):
        with column:
            st.altair_chart(_chart(predictor.axis, table.spectra[row, c], mean[c], mean_name,
                                   occlusion.per_point[c], channel), width="stretch")
    top = occlusion.top(predictor.axis, predictor.channels)
    st.markdown(f"**What drove it**: the probability of {top1} ({occlusion.probability:.3f}) drops most when these "
                "stretches lose their shape (each replaced by a straight line):")
    if top:
        st.table(pd.DataFrame([{"channel": ch, "from x": f"{lo:g}", "to x": f"{hi:g}", "probability drop": f"{d:.3f}"}
                               for ch, lo, hi, d in top]))
    else:
        st.markdown("no stretch on its own lowers it: the evidence is spread over the whole spectrum.")


def _stop(err: Exception) -> None:
    st.error(str(err))
    st.stop()


def main() -> None:
    """Render the page (Streamlit runs this script top to bottom on every interaction)."""
    st.set_page_config(page_title="spectratorch: predictions", layout="wide")
    st.title("Spectra: predictions")
    folder, limits = _settings()
    # reason: the folder as the user knows it: relative to where `spectratorch app` was started, when inside it.
    shown = folder.relative_to(Path.cwd()) if folder.is_absolute() and folder.is_relative_to(Path.cwd()) else folder
    st.caption(f"Models from `{shown}` · uploads up to {limits.upload_mb:g} MB · runs on this PC, nothing is sent "
               "away.")
    try:
        entry = _choose_model(folder)
        name, upload_key, prediction = _upload(entry, limits)
        cutoff = _choose_cutoff(entry.predictor)
        coverage = _choose_coverage(entry.predictor)
        frame = _show_predictions(entry, name, prediction, prediction.outputs, cutoff, coverage)
        truth = truth_indices(prediction.true_labels, entry.predictor.labels)
        if truth is not None and (truth >= 0).any():
            _show_scores(entry.predictor, prediction.probabilities, frame, truth, cutoff)
        _show_sample(entry, upload_key, prediction, frame)
    # reason: whatever else goes wrong, the inspector gets one readable line; the traceback goes to the log.
    except Exception as err:  # noqa: BLE001
        _logger.exception("the page failed")
        st.error(f"Something went wrong ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
                 "Check the file and the model; the details are in the terminal that runs `spectratorch app`.")


if __name__ == "__main__":
    main()
