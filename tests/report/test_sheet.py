import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from spectratorch.data.datamodule import SpectralDataModule
from spectratorch.report.metrics import per_class_scores
from spectratorch.report.sheet import (
    A4_LANDSCAPE,
    SheetData,
    _short,
    collect,
    gradient_x_input,
    make_result_sheet,
    plot_result_sheet,
    saliency,
    sheet_style,
    split_name,
    write_result_sheet,
)


class _OnePoint(torch.nn.Module):
    """Logit of class 1 = spectrum value at point 3 of channel 0: only that point drives it."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, spectra, tabular):
        v = spectra[:, 0, 3] * self.w
        return torch.stack([torch.zeros_like(v), v], dim=1)


def test_gradient_x_input_finds_the_driving_wavelength():
    spectra = torch.rand(64, 2, 10) + 0.5
    y = torch.randint(0, 2, (64,))
    saliency = gradient_x_input(_OnePoint(), spectra, torch.zeros(64, 0), y, 2)
    assert saliency.shape == (2, 2, 10)
    assert (saliency[:, 0, 3] > 0).all()
    assert np.count_nonzero(saliency) == 2


class _Spike(torch.nn.Module):
    """Class 1 when point 13 of channel 0 is above 1: a comparison, so no input gradient."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(10.0))

    def forward(self, spectra, tabular=None):
        spike = (spectra[:, 0, 13] > 1.0).float() * self.scale
        return torch.stack([torch.zeros_like(spike), spike], dim=1)


def test_saliency_falls_back_to_occlusion_without_gradients():
    spectra = torch.full((8, 2, 40), 0.5)
    y = torch.tensor([0, 1] * 4)
    spectra[y == 1, 0, 13] = 2.0
    drivers, kind = saliency(_Spike(), spectra, torch.zeros(8, 0), y, 2)
    assert kind == "|occlusion drop|" and drivers.shape == (2, 2, 40)
    # softmax([0, 10]) -> softmax([0, 0]): the class-1 rows lose ~0.5 where point 13 is occluded, nothing elsewhere
    assert drivers[1, 0].argmax() == 13 and drivers[1, 0, 13] == pytest.approx(0.5, abs=1e-3)
    assert np.count_nonzero(drivers[1, 0]) == 3  # the windows [12, 13] and [13, 14] cover points 12 to 14
    assert np.count_nonzero(drivers[0]) == 0 and np.count_nonzero(drivers[1, 1]) == 0
    _, kind = saliency(_OnePoint(), spectra, torch.zeros(8, 0), y, 2)
    assert kind == "|gradient × input|"


@pytest.mark.slow
def test_result_sheet_from_a_trained_run(demo_file, tmp_path):
    from spectratorch.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spectratorch.pipelines.run import train

    data = DataConfig(data=str(demo_file), channels=("277", "380"), targets=("AVA", "IN"))
    summary = train(RunConfig(data, ModelConfig(arch="TinyVGG"), TrainConfig(max_epochs=2, output_dir=str(tmp_path))))
    sheet = summary["files"]["result_sheet"]
    assert sheet.endswith(" result sheet.png") and open(sheet, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    calibration = json.loads(open(summary["files"]["json"]).read())["calibration"]
    assert calibration["temperature"] > 0 and "default" in calibration["cutoffs"]
    assert plt.get_fignums() == []  # figures are closed
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(summary["files"]["logs"])
    events.Reload()
    assert "result_sheet" in events.Tags()["images"]
    # the sheet's data: probabilities sum to 1, saliency per class/channel/wavelength
    from spectratorch.training.restore import load_module

    module = load_module(summary["files"]["checkpoint"])
    dm = SpectralDataModule(data)
    dm.prepare()
    sheet_data = collect(module, dm, "test", temperature=2.0)
    np.testing.assert_allclose(sheet_data.probabilities().sum(1), 1, rtol=1e-5)
    assert sheet_data.saliency.shape == (4, 2, 446)
    # logits the caller has already are the sheet's, not computed again; logits of other rows are refused
    given = np.roll(sheet_data.logits, 1, axis=1)
    assert collect(module, dm, "test", logits=given).logits is given
    with pytest.raises(ValueError, match="logits of shape"):
        collect(module, dm, "test", logits=given[1:])
    result = make_result_sheet(module, dm, tmp_path / "again.png", "t")
    assert (tmp_path / "again.png").is_file() and result["temperature"] > 0


def _sheet_data(n_classes: int, n_channels: int, seed: int = 0, labels: tuple[str, ...] | None = None) -> SheetData:
    rng = np.random.default_rng(seed)
    n, length = 300, 120
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += 1.5
    labels = labels or tuple(f"class {k}" for k in range(n_classes))
    return SheetData(logits=logits, y=y, full_truth=np.array([labels[k] for k in y]), labels=labels,
                     channels=("277", "380", "425", "lspr")[:n_channels], axis=np.linspace(300, 700, length),
                     mean_spectra=rng.random((n_classes, n_channels, length)),
                     saliency=rng.random((n_classes, n_channels, length)), temperature=1.2, title="VGG11 test model",
                     baseline={"logistic regression": 0.5}, split="test split: fold 1 of 0..4 (validation: fold 0)",
                     outliers=_outliers(rng, n))


def _outliers(rng, n: int) -> dict:
    """T² and Q of ``n`` rows with known outliers: 5 rows over the T² limit, 3 over the Q limit, one Q of 0."""
    t2, q = rng.uniform(0.5, 8.0, n), rng.uniform(1e-3, 0.09, n)
    t2[:5], q[5:8], q[8] = 50.0, 1.0, 0.0
    return {"t2": t2, "q": q, "t2_limit": 10.0, "q_limit": 0.1, "confidence": 0.99}


def _outlier_axes(fig):
    return [ax for ax in fig.axes if ax.get_xlabel() == "Hotelling's T²"]


def _table_frame(table) -> list[list[str]]:
    cells = table.get_celld()
    n_rows, n_cols = max(r for r, _ in cells) + 1, max(c for _, c in cells) + 1
    return [[cells[r, c].get_text().get_text() for c in range(n_cols)] for r in range(n_rows)]


@pytest.mark.parametrize("n_classes, n_channels", [(2, 1), (4, 3), (8, 4)])
def test_the_sheet_reads_on_a4_paper(tmp_path, n_classes, n_channels):
    from matplotlib.text import Text
    from PIL import Image
    from sklearn.metrics import precision_recall_fscore_support

    data = _sheet_data(n_classes, n_channels)
    path = tmp_path / "sheet.png"
    fig, _ = write_result_sheet(data, path)
    try:
        # one A4 landscape page, at least 150 dpi
        np.testing.assert_allclose(fig.get_size_inches(), A4_LANDSCAPE, rtol=1e-3)
        with Image.open(path) as image:
            assert min(image.info["dpi"]) >= 150
            assert image.size[0] >= 150 * 11.69 - 1 and image.size[1] >= 150 * 8.27 - 1
        # every piece of text drawn is at least 8 pt
        texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        assert len(texts) > 50
        too_small = sorted({(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < 8})
        assert too_small == []
        # the title names the split; the spectral axis has its unit
        assert "test split: fold 1 of 0..4" in fig._suptitle.get_text()
        assert "emission wavelength (nm)" in {ax.get_xlabel() for ax in fig.axes}
        # the per-class table says what scikit-learn says
        tables = {_table_frame(t)[0][0]: _table_frame(t) for ax in fig.axes for t in ax.tables}
        per_class = tables["class"]
        assert per_class[0] == ["class", "n", "precision", "recall", "F1"]
        predicted = data.probabilities().argmax(axis=1)
        precision, recall, f1, support = precision_recall_fscore_support(data.y, predicted, zero_division=0,
                                                                         labels=range(n_classes))
        for k, row in enumerate(per_class[1:]):
            assert row[0] == data.labels[k] and int(row[1]) == support[k]
            assert [float(v) for v in row[2:]] == pytest.approx([precision[k], recall[k], f1[k]], abs=5e-4)
    finally:
        plt.close(fig)


@pytest.mark.slow
def test_report_command_end_to_end(tmp_path_factory, tmp_path):
    """`spectratorch report CKPT`: the sheet beside the checkpoint, the cutoffs into the ONNX beside it, one JSON."""
    from spectratorch.export.onnx import read_metadata, update_metadata
    from tests.export.helpers import cutoff_run, run_cli

    run = cutoff_run(tmp_path_factory)
    checkpoint, onnx_file = tmp_path / run.checkpoint.name, tmp_path / run.onnx.name
    checkpoint.write_bytes(run.checkpoint.read_bytes())
    onnx_file.write_bytes(run.onnx.read_bytes())
    update_metadata(onnx_file, cutoffs={})  # as exported before any report
    result = run_cli(["report", checkpoint], block_torch=False, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    sheet = tmp_path / f"{run.stem} result sheet.png"
    assert printed["result_sheet"] == str(sheet) and sheet.stat().st_size > 50_000
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same checkpoint and data as the training run: the same temperature and cutoffs
    expected = run.summary["calibration"]
    assert printed["temperature"] == pytest.approx(expected["temperature"], rel=1e-6)
    assert printed["cutoffs"] == pytest.approx(expected["cutoffs"], rel=1e-6)
    assert read_metadata(onnx_file)["cutoffs"] == {k: v for k, v in printed["cutoffs"].items() if v is not None}
    assert printed["cutoffs"]["default"] is not None
    # a sheet of other data leaves the model's cutoffs as they are
    update_metadata(onnx_file, cutoffs={"default": 0.5})
    result = run_cli(["report", checkpoint, "--data", run.data, "--output", tmp_path / "other.png"], block_torch=False,
                     timeout=600)
    assert result.returncode == 0 and read_metadata(onnx_file)["cutoffs"] == {"default": 0.5}, result.stderr[-2000:]
    # the title carries the run's baselines, read from the JSON beside the checkpoint (none here), as the training
    # run drew it (this run was trained without them: the JSON is given some)
    assert printed["baselines"] == {}
    baselines = {"logistic_regression": 0.75, "pls_da": 0.5}
    metrics = {**run.summary["metrics"], "baseline": {k: {"test": {"accuracy": v}} for k, v in baselines.items()}}
    (tmp_path / f"{run.stem}.json").write_text(json.dumps({**run.summary, "metrics": metrics}))
    result = run_cli(["report", checkpoint], block_torch=False, timeout=600)
    assert json.loads(result.stdout.strip().splitlines()[-1])["baselines"] == baselines
    # a renamed checkpoint is named by the run it holds, as `export` names it
    renamed = tmp_path / "renamed.ckpt"
    renamed.write_bytes(checkpoint.read_bytes())
    result = run_cli(["report", renamed, "-o", tmp_path / "renamed.png"], block_torch=False, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["baselines"] == baselines  # its run's JSON was found


def test_the_sheet_draws_the_t2_q_plot_of_its_rows():
    data = _sheet_data(3, 3)
    fig, _ = plot_result_sheet(data)
    try:
        (ax,) = _outlier_axes(fig)
        assert ax.get_ylabel() == "Q residual" and ax.get_xscale() == ax.get_yscale() == "log"
        assert "T² vs Q" in ax.get_title() and "99%" in ax.get_title()
        # the two limits as lines
        assert [line.get_xdata()[0] for line in ax.lines if line.get_xdata()[0] == line.get_xdata()[1]] == [10.0]
        assert [line.get_ydata()[0] for line in ax.lines if line.get_ydata()[0] == line.get_ydata()[1]] == [0.1]
        # every row drawn; the 8 over a limit marked apart, the Q of 0 still on the log axis
        inside, flagged = (c.get_offsets() for c in ax.collections)
        assert len(inside) == len(data.y) - 8 and len(flagged) == 8
        assert np.all(np.asarray(inside) > 0) and sorted(np.asarray(flagged)[:, 0])[-5:] == [50.0] * 5
        assert ax.get_legend_handles_labels()[1] == [f"inside ({len(data.y) - 8})", "outlier (8)"]
        # the legend covers no point, wherever the points are
        fig.canvas.draw()
        box = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
        points = np.concatenate([c.get_transform().transform(c.get_offsets()) for c in ax.collections])
        inside_box = (points[:, 0] >= box.x0) & (points[:, 0] <= box.x1) & (points[:, 1] >= box.y0) & (
            points[:, 1] <= box.y1)
        assert not inside_box.any()
    finally:
        plt.close(fig)
    data.outliers = None  # a model without an outlier model: no panel
    fig, _ = plot_result_sheet(data)
    try:
        assert _outlier_axes(fig) == []
    finally:
        plt.close(fig)


@pytest.mark.slow
def test_the_sheet_shows_the_exported_outlier_model(tmp_path_factory):
    """The T²/Q panel of a trained run is the ONNX file's outlier model on the test rows: same limits, same scores."""
    from spectratorch.inference import Predictor
    from spectratorch.training.restore import datamodule_from_hparams, load_module
    from tests.export.helpers import cutoff_run

    run = cutoff_run(tmp_path_factory)
    module = load_module(run.checkpoint)
    dm = datamodule_from_hparams(dict(module.hparams), str(run.data))
    dm.prepare()
    data = collect(module, dm, "test")
    predictor = Predictor(run.onnx)
    ood = predictor.metadata["ood"]
    assert data.outliers["t2_limit"] == pytest.approx(ood["t2_limit"], rel=1e-6)
    assert data.outliers["q_limit"] == pytest.approx(ood["q_limit"], rel=1e-6)
    rows = dm.stage_arrays("test")
    outputs = predictor.predict_outputs(rows.spectra.numpy(), rows.tabular.numpy())
    np.testing.assert_allclose(data.outliers["t2"], outputs["t2"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(data.outliers["q"], outputs["q"], rtol=1e-3, atol=1e-6)
    fig, _ = plot_result_sheet(data)
    try:
        (ax,) = _outlier_axes(fig)
        assert sum(len(c.get_offsets()) for c in ax.collections) == len(rows)
    finally:
        plt.close(fig)


def test_many_classes_keep_every_legend_inside_its_panel(tmp_path):
    """15 classes (a Raman set of strains, say): a legend of every class covered its panel and the next ones."""
    from sklearn.metrics import roc_auc_score

    data = _sheet_data(15, 1)
    fig, _ = write_result_sheet(data, tmp_path / "sheet.png")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        legends = [(ax, ax.get_legend()) for ax in fig.axes if ax.get_legend() is not None]
        assert legends
        for ax, legend in legends:
            box, frame = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            if ax.get_title().startswith("Outliers"):  # under its panel, clear of every panel
                assert not any(box.overlaps(other.get_window_extent(renderer)) for other in fig.axes)
                continue
            assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1
            assert frame.y0 - 1 <= box.y0 and box.y1 <= frame.y1 + 1
        roc = next(legend for ax, legend in legends if ax.get_title().startswith("ROC"))
        p = data.probabilities()
        aucs = [roc_auc_score(data.y == k, p[:, k]) for k in range(15)]
        hardest = [data.labels[k] for k in np.argsort(aucs, kind="stable")[:5]]
        assert [t.get_text().rsplit(" (", 1)[0] for t in roc.get_texts()] == hardest
        assert roc.get_title().get_text() == "lowest AUC, 5 of 15 classes"
    finally:
        plt.close(fig)


def test_a_small_set_sheet_names_where_its_cutoffs_come_from():
    config = SimpleNamespace(n_splits=5, current_split=2, test_source="like-val")
    assert split_name(config, "test", out_of_fold=True) == ("test split: fold 3 of 0..4 "
                                                           "(every other fold trained the model)")
    data = _sheet_data(3, 1)
    data.cutoffs_from = "out of fold"
    fig, _ = plot_result_sheet(data)
    try:
        assert "Best cutoffs (chosen out of fold)" in {ax.get_title() for ax in fig.axes}
    finally:
        plt.close(fig)


def _outside_the_page(fig) -> list[str]:
    """The texts and tables of the saved sheet that reach past the page's edges by more than 1.5 mm (laid out as it
    is saved; matplotlib's layout of ticks and tables is that close)."""
    from matplotlib.text import Text

    from spectratorch.report.sheet import DPI

    with sheet_style():
        fig.set_dpi(DPI)
        fig.canvas.draw()
        renderer, page = fig.canvas.get_renderer(), fig.bbox
        pieces = [(t.get_text(), t) for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
        pieces += [(f"table {ax.get_title()!r}", table) for ax in fig.axes for table in ax.tables]
        boxes = [(name, piece.get_window_extent(renderer)) for name, piece in pieces]
    slack = 1.5 / 25.4 * DPI
    return [name for name, box in boxes if box.x0 < page.x0 - slack or box.x1 > page.x1 + slack
            or box.y0 < page.y0 - slack or box.y1 > page.y1 + slack]


def test_thirty_classes_with_long_names_stay_on_the_page_and_name_the_hardest(tmp_path):
    """30 strains named like "Staphylococcus species 12": the tables went off the page and the matrices' names
    overlapped."""
    labels = tuple(f"Staphylococcus species {k}" for k in range(30))
    data = _sheet_data(30, 1, labels=labels)
    fig, _ = write_result_sheet(data, tmp_path / "sheet.png")
    try:
        assert _outside_the_page(fig) == []
        tables = {ax.get_title(): _table_frame(ax.tables[0]) for ax in fig.axes if ax.tables}
        per_class = tables["Per class, no cutoff: lowest F1, 10 of 30 classes"]
        predicted = data.probabilities().argmax(axis=1)
        f1 = per_class_scores(data.y, predicted, labels)["F1"].to_numpy()
        hardest = np.argsort(f1, kind="stable")[:10]
        # the middle of a long name is cut, so that "... 12" and "... 13" stay apart
        assert [row[0] for row in per_class[1:]] == [_short(labels[k]) for k in hardest]
        assert len({_short(label) for label in labels}) == 30
        matrix = next(ax for ax in fig.axes if ax.get_title().startswith("Confusion matrix"))
        assert "30 classes, every 2nd named" in matrix.get_title()
        assert [t.get_text() for t in matrix.get_yticklabels()] == [_short(labels[k]) for k in range(0, 30, 2)]
        beside = next(ax for ax in fig.axes if ax.get_title().startswith("With the cutoff"))
        assert beside.get_yticklabels() == [] and beside.get_xticklabels()[-1].get_text() == "unclassified"
    finally:
        plt.close(fig)


def test_class_names_no_font_has_are_one_warning_and_the_sheet_stays_on_the_page(tmp_path, monkeypatch, caplog):
    import warnings

    import spectratorch.report.sheet as sheet

    # reason: as on a computer without a font for Chinese or Japanese
    monkeypatch.setattr(sheet, "_FALLBACK_FONTS", ())
    data = _sheet_data(3, 1, labels=("shifted", "富集 サンプル", "纯品"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's warning per character would fail here
        with caplog.at_level("WARNING", logger="spectratorch"):
            fig, _ = write_result_sheet(data, tmp_path / "sheet.png")
    try:
        said = [r.getMessage() for r in caplog.records if "boxes" in r.getMessage()]
        assert len(said) == 1 and said[0].startswith("sheet.png shows 8 characters of the class names as boxes (富 "
                                                     "集 サ ン プ ル 纯 品): no font on this computer has them")
        assert "fonts-noto-cjk" in said[0] and "spectratorch report CHECKPOINT" in said[0]
        assert _outside_the_page(fig) == []
    finally:
        plt.close(fig)
