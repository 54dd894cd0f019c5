"""The result sheet: one PNG a scientist reads to judge a model.

Panels: calibration (before and after the temperature), score distribution, confusion matrix without and with the
cutoff, one-vs-all ROC and precision-recall curves, precision, recall and F1 per class, the best cutoffs with the
fraction of samples kept, the top error contributions by full truth (without and with the cutoff), and which
wavelengths drive each class (mean |gradient × input| per channel and wavelength over the evaluated rows, drawn over
the mean spectra), and, for a model with an outlier model, the T²/Q plot of the rows (Hotelling's T² against the
Q residual on log axes, the two limits as lines, the flagged rows marked). The title names the model and the split
the sheet shows.

The sheet is one A4 landscape page at :data:`DPI` dots per inch whose smallest text is :data:`MIN_FONT_PT` points,
so it reads on paper as well as on a screen.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from spectratorch.export.calibration import expected_calibration_error, softmax
from spectratorch.models.batched import predict_logits
from spectratorch.report.metrics import (
    UNCLASSIFIED,
    apply_cutoff,
    auto_cutoff,
    calibration_bins,
    confusion,
    cutoff_table,
    error_contributions,
    named_cutoffs,
    per_class_scores,
)
from spectratorch.report.occlusion import default_window, occluded_copies, window_average

__all__ = ["A4_LANDSCAPE", "DPI", "MIN_FONT_PT", "SheetData", "collect", "gradient_x_input", "axis_label",
           "split_name", "plot_result_sheet", "write_result_sheet", "sheet_style", "make_result_sheet", "outlier_data",
           "baseline_accuracies"]

_logger = logging.getLogger(__name__)
_MAX_SALIENCY_ROWS = 2048
# reason: the sheet is printed for the lab's meetings; an A4 page (297 x 210 mm) at 200 dpi keeps 8 pt text and thin
# curves sharp on paper (80 dpi on a 22-inch canvas printed 6-7 pt text at 40 %).
A4_LANDSCAPE = (297 / 25.4, 210 / 25.4)
DPI = 200
MIN_FONT_PT = 8
_FONTS = {"font.size": MIN_FONT_PT, "axes.titlesize": 9, "axes.labelsize": MIN_FONT_PT, "xtick.labelsize": MIN_FONT_PT,
          "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT, "legend.title_fontsize": MIN_FONT_PT,
          "figure.titlesize": 10}
# reason: matplotlib's own DejaVu Sans has no Chinese, Japanese or Korean; a class name in them is drawn glyph by glyph
# with the first of these fonts the system has (Linux's Noto and WenQuanYi, Windows', macOS').
_FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK KR", "Source Han Sans", "WenQuanYi Zen Hei",
                   "Droid Sans Fallback", "Microsoft YaHei", "Yu Gothic", "Malgun Gothic", "SimHei", "MS Gothic",
                   "Hiragino Sans", "PingFang SC", "Apple SD Gothic Neo", "Arial Unicode MS")
_MISSING_GLYPH = re.compile(r"Glyph (\d+) .*missing from")
# reason: the lab's channels are excitation wavelengths whose columns hold the emission spectrum in nm.
_NM_CHANNELS = frozenset({"277", "380", "425", "lspr"})
# reason: at 8 pt a quarter of the A4 page is about 60 characters wide; a class name longer than this took the width
# of the panels beside it (30 classes named like "Staphylococcus species 12" pushed tables off the page).
_LABEL_CHARS = 14
# reason: at 8 pt a third of the page's height holds about 15 tick labels or 16 table rows.
_MAX_TICKS = 15
_MAX_TABLE_ROWS = 10


def _width(text: str) -> int:
    """How many narrow characters' width ``text`` takes (East Asian wide and full-width characters count twice).

    Example:
        >>> _width("OK"), _width("纯品")
        (2, 4)
    """
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _short(label) -> str:
    """A class name as the sheet shows it: at most ``_LABEL_CHARS`` characters, its middle cut out and marked by an
    ellipsis (names that differ by their end, a number or a strain, stay apart).

    Example:
        >>> _short("Staphylococcus species 12"), _short("Staphylococcus species 13"), _short("OK")
        ('Staphyl…ies 12', 'Staphyl…ies 13', 'OK')
    """
    text = str(label)
    if len(text) <= _LABEL_CHARS:
        return text
    head = _LABEL_CHARS // 2
    return text[:head] + "…" + text[len(text) - (_LABEL_CHARS - head - 1):]


@dataclass
class SheetData:
    """What the sheet shows, computed once.

    Attributes:
        logits: ``[N, K]`` of the evaluated rows.
        y: int ``[N]``.
        full_truth: str ``[N]``.
        labels: class labels.
        channels: channel names.
        axis: ``[L]``.
        mean_spectra: ``[K, C, L]`` mean raw spectrum per true class.
        saliency: ``[K, C, L]`` mean |gradient × input| of each class's probability over its rows.
        temperature: the calibration temperature (1 = none).
        title: the model name.
        baseline: optional ``{name: accuracy}`` of linear baselines on the same rows.
        saliency_kind: what ``saliency`` is (``|gradient × input|`` or ``|occlusion drop|``), for the axis label.
        split: which rows the sheet shows, named in its title (e.g. ``test split: fold 1 of 5``).
        x_label: the spectral axis' name with its unit; empty = from the channels (:func:`axis_label`).
        outliers: ``{"t2", "q"}`` ``[N]`` of the evaluated rows under the outlier model the export stores, with its
            ``t2_limit``, ``q_limit`` and ``confidence`` (:func:`outlier_data`); ``None``: no T²/Q panel.
        cutoffs_from: where the cutoffs were chosen (``on validation``, ``out of fold``), for the table's title.
    """

    logits: np.ndarray
    y: np.ndarray
    full_truth: np.ndarray
    labels: tuple[str, ...]
    channels: tuple[str, ...]
    axis: np.ndarray
    mean_spectra: np.ndarray
    saliency: np.ndarray
    temperature: float = 1.0
    title: str = ""
    baseline: dict = field(default_factory=dict)
    saliency_kind: str = "|gradient × input|"
    split: str = "test split"
    x_label: str = ""
    outliers: dict | None = None
    cutoffs_from: str = "on validation"

    def probabilities(self, calibrated: bool = True) -> np.ndarray:
        return softmax(self.logits, self.temperature if calibrated else 1.0)


def gradient_x_input(model: torch.nn.Module, spectra: torch.Tensor, tabular: torch.Tensor, y: torch.Tensor,
                     n_classes: int, batch_size: int = 256) -> np.ndarray:
    """Mean |∂p_k/∂x · x| over the rows of true class k: ``[K, C, L]`` (raw spectra in, so in raw units).

    Args:
        model: logits from raw ``spectra [N, C, L]`` and ``tabular [N, T]``.
        spectra: raw spectra.
        tabular: tabular values.
        y: int ``[N]`` true classes.
        n_classes: ``K``.
        batch_size: rows per backward pass.

    Returns:
        float ``[K, C, L]`` (zeros for a class without rows).
    """
    model.eval()
    device = next(model.parameters()).device
    total = torch.zeros(n_classes, *spectra.shape[1:], dtype=torch.float64)
    counts = torch.bincount(y, minlength=n_classes).clamp_min(1)
    for start in range(0, len(y), batch_size):
        x = spectra[start : start + batch_size].to(device).requires_grad_(True)
        t, cls = tabular[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
        probabilities = model(x, t).float().softmax(dim=1)
        # reason: one backward gives each row's gradient of its own true class's probability.
        (gradient,) = torch.autograd.grad(probabilities.gather(1, cls[:, None]).sum(), x)
        contribution = (gradient * x).abs().detach().double().cpu()
        total.index_add_(0, cls.cpu(), contribution)
    return (total / counts.view(-1, 1, 1)).numpy()


def saliency(model: torch.nn.Module, spectra: torch.Tensor, tabular: torch.Tensor, y: torch.Tensor,
             n_classes: int) -> tuple[np.ndarray, str]:
    """What drives each class, ``[K, C, L]``, and what it is: :func:`gradient_x_input`, or
    :func:`occlusion_sensitivity` for a model whose output has no gradient in the spectra (MiniRocket's counts)."""
    model.eval()
    if _differentiable(model, spectra[:2], tabular[:2]):
        return gradient_x_input(model, spectra, tabular, y, n_classes), "|gradient × input|"
    return occlusion_sensitivity(model, spectra, tabular, y, n_classes), "|occlusion drop|"


def _differentiable(model, spectra: torch.Tensor, tabular: torch.Tensor) -> bool:
    device = next(model.parameters()).device
    x = spectra.to(device).requires_grad_(True)
    out = model(x, tabular.to(device))
    if not out.requires_grad:
        return False
    (gradient,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
    return gradient is not None


@torch.no_grad()
def occlusion_sensitivity(model: torch.nn.Module, spectra: torch.Tensor, tabular: torch.Tensor, y: torch.Tensor,
                          n_classes: int, max_rows: int = 16) -> np.ndarray:
    """Mean |drop of the true class's probability| when a window of a channel is occluded: ``[K, C, L]``.

    The occluded copies are the page's (:func:`spectratorch.report.occlusion.occluded_copies`); the copies of all
    rows go through the model in batches, and each window's drop is spread over its points, so the result reads
    like :func:`gradient_x_input`'s.

    Args:
        model: logits from raw ``spectra [N, C, L]`` and ``tabular [N, T]``.
        spectra: raw spectra.
        tabular: tabular values.
        y: int ``[N]`` true classes.
        n_classes: ``K``.
        max_rows: rows used at most (the first ones).

    Returns:
        float ``[K, C, L]`` (zeros for a class without rows).
    """
    spectra, tabular, y = spectra[:max_rows], tabular[:max_rows], y[:max_rows]
    n, n_channels, length = spectra.shape
    window, stride = default_window(length)
    copies, starts, stops = zip(*(occluded_copies(row, window, stride) for row in spectra.numpy()))
    per_row = n_channels * len(starts[0])
    batch = torch.from_numpy(np.concatenate([c.reshape(per_row, n_channels, length) for c in copies]))
    probabilities = softmax(predict_logits(model, batch, tabular.repeat_interleave(per_row, dim=0)), 1.0)
    base = softmax(predict_logits(model, spectra, tabular), 1.0)[np.arange(n), y.numpy()]
    occluded = probabilities.reshape(n, per_row, -1)[np.arange(n), :, y.numpy()]  # [N, C * W]
    drops = np.abs(base[:, None] - occluded).reshape(n, n_channels, -1)
    per_point = window_average(drops, starts[0], stops[0], length)  # [N, C, L]
    total = np.zeros((n_classes, n_channels, length))
    np.add.at(total, y.numpy(), per_point)
    return total / np.maximum(np.bincount(y.numpy(), minlength=n_classes), 1)[:, None, None]


def axis_label(channels) -> str:
    """The spectral axis' name with its unit where the channels say it.

    Example:
        >>> axis_label(("277", "380")), axis_label(("nir",))
        ('emission wavelength (nm)', 'x (spectral axis, as in the column names)')
    """
    if channels and set(map(str, channels)) <= _NM_CHANNELS:
        return "emission wavelength (nm)"
    return "x (spectral axis, as in the column names)"


def split_name(config, stage: str, out_of_fold: bool = False) -> str:
    """Which rows ``stage`` is under a data configuration, in words, for the sheet's title.

    Args:
        config: a :class:`~spectratorch.config.DataConfig` (``n_splits``, ``current_split``, ``test_source``).
        stage: ``"val"`` or ``"test"``.
        out_of_fold: the model trained on the validation fold too (the small-set protocol), which is then not named.

    Example:
        >>> from types import SimpleNamespace
        >>> split_name(SimpleNamespace(n_splits=5, current_split=0, test_source="like-val"), "test")
        'test split: fold 1 of 0..4 (validation: fold 0)'
        >>> split_name(SimpleNamespace(n_splits=5, current_split=0, test_source="like-val"), "test", out_of_fold=True)
        'test split: fold 1 of 0..4 (every other fold trained the model)'
    """
    n, current, source = config.n_splits, config.current_split, str(config.test_source)
    if stage == "val":
        return f"validation split: fold {current} of 0..{n - 1}"
    if source == "like-val":
        held = "every other fold trained the model" if out_of_fold else f"validation: fold {current}"
        return f"test split: fold {(current + 1) % n} of 0..{n - 1} ({held})"
    if source == "is-val":
        return f"test split = the validation fold {current} of 0..{n - 1}"
    return f"test split: the file {Path(source).name}"


def collect(module, dm, stage: str = "test", temperature: float = 1.0, title: str = "",
            out_of_fold: bool = False, logits: np.ndarray | None = None) -> SheetData:
    """Compute the sheet's data for ``stage``'s rows of a datamodule with a trained module (``out_of_fold``: its
    outlier model as :func:`outlier_data`'s; ``logits``: the module's logits ``[N, K]`` of those rows when the
    caller has them already)."""
    rows = dm.stage_arrays(stage)
    spectra, tabular, y = rows.spectra, rows.tabular, rows.y
    n_classes = len(dm.labels)
    if logits is None:
        logits = predict_logits(module, spectra, tabular)
    elif logits.shape != (len(y), n_classes):
        raise ValueError(f"collect: logits of shape {logits.shape} for {len(y)} rows of {n_classes} classes")
    sub = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:_MAX_SALIENCY_ROWS]
    saliency_map, saliency_kind = saliency(module, spectra[sub], tabular[sub], y[sub], n_classes)
    sums = torch.zeros(n_classes, *spectra.shape[1:], dtype=torch.float64).index_add_(0, y, spectra.double())
    mean_spectra = (sums / torch.bincount(y, minlength=n_classes).clamp_min(1).view(-1, 1, 1)).numpy()
    outliers = outlier_data(module.model, dm, spectra.cpu().numpy(), tabular.cpu().numpy(), out_of_fold)
    return SheetData(logits=logits, y=y.numpy(), full_truth=rows.full_truth.astype(str),
                     labels=tuple(dm.labels), channels=tuple(dm.table.channels), axis=np.asarray(dm.table.axis),
                     mean_spectra=mean_spectra, saliency=saliency_map, temperature=temperature, title=title,
                     saliency_kind=saliency_kind, split=split_name(dm.config, stage, out_of_fold), outliers=outliers,
                     cutoffs_from="out of fold" if out_of_fold else "on validation")


def baseline_accuracies(metrics: dict) -> dict[str, float]:
    """``{name: test accuracy}`` of a run's linear baselines (its JSON's ``metrics["baseline"]``), for the sheet's
    title; empty when they have no test score (no test rows, or no baselines).

    Example:
        >>> baseline_accuracies({"baseline": {"pls_da": {"test": {"accuracy": 0.9}}, "lr": {"val": {}}}})
        {'pls_da': 0.9}
    """
    return {name: result["test"]["accuracy"] for name, result in (metrics.get("baseline") or {}).items()
            if isinstance(result, dict) and "accuracy" in (result.get("test") or {})}


def outlier_data(model: torch.nn.Module, dm, spectra: np.ndarray, tabular: np.ndarray,
                 out_of_fold: bool = False) -> dict | None:
    """T² and Q of raw rows under the outlier model the export fits on ``dm`` (training rows, limits on the
    validation rows: :func:`spectratorch.export.ood.fit_model_ood`), or ``None`` when it cannot be fitted.

    Args:
        model: the :class:`~spectratorch.models.classifier.SpectralClassifier`.
        dm: its data module (prepared).
        spectra: ``[N, C, L]`` raw rows to score.
        tabular: ``[N, T]``.
        out_of_fold: the model trained on the validation rows too (the small-set protocol): the PCA sees the
            training and validation rows and its limits are their out-of-fold scores', as the export fits it then.

    Returns:
        ``{"t2" [N], "q" [N], "t2_limit", "q_limit", "confidence"}`` or ``None``.
    """
    from spectratorch.errors import ConfigError
    from spectratorch.export.ood import fit_model_ood, ood_scores, preprocessed_inputs

    train, val = dm.stage_arrays("train"), dm.stage_arrays("val")
    try:
        record = fit_model_ood(model, (train.spectra.numpy(), train.tabular.numpy()),
                               (val.spectra.numpy(), val.tabular.numpy()), log=False, out_of_fold=out_of_fold,
                               groups=dm.fit_groups())
    except ConfigError as err:
        _logger.info("the result sheet has no T²/Q panel: %s", err)
        return None
    t2, q = ood_scores(record, preprocessed_inputs(model, spectra, tabular))
    return {"t2": t2, "q": q, **{k: record[k] for k in ("t2_limit", "q_limit", "confidence")}}


def _plot_outliers(ax, outliers: dict) -> None:
    from matplotlib.ticker import NullFormatter

    t2, q = np.asarray(outliers["t2"]), np.asarray(outliers["q"])
    flagged = (t2 > outliers["t2_limit"]) | (q > outliers["q_limit"])
    # reason: log axes; a Q of exactly 0 (every component kept) is drawn at the smallest positive value.
    floor = min([v for v in (*t2[t2 > 0], *q[q > 0], outliers["t2_limit"], outliers["q_limit"]) if v > 0] or [1.0])
    ax.scatter(np.maximum(t2[~flagged], floor), np.maximum(q[~flagged], floor), s=4, color="tab:blue", alpha=0.5,
               lw=0, label=f"inside ({(~flagged).sum()})")
    ax.scatter(np.maximum(t2[flagged], floor), np.maximum(q[flagged], floor), s=12, color="tab:red", marker="x",
               lw=1, label=f"outlier ({flagged.sum()})")
    ax.axvline(max(outliers["t2_limit"], floor), color="k", ls="--", lw=1)
    ax.axhline(max(outliers["q_limit"], floor), color="k", ls=":", lw=1)
    ax.set(xscale="log", yscale="log", xlabel="Hotelling's T²", ylabel="Q residual",
           title=f"Outliers: T² vs Q (limits at {outliers['confidence']:.0%})")
    # reason: over a decade or more the powers of ten are named; matplotlib also names some ticks between them, and
    # those ran into each other in the panel's width.
    for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if high >= 10 * low:
            axis.set_minor_formatter(NullFormatter())
    # reason: points may lie in any corner (a high Q at a low T² is a spectrum off the model's plane); a legend
    # inside the axes covered some, so it sits under them.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)


def _plot_calibration(ax, data: SheetData) -> None:
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
    for calibrated, name in ((False, "raw"), (True, f"T = {data.temperature:.2f}")):
        p = data.probabilities(calibrated)
        bins = calibration_bins(p, data.y)
        ece = expected_calibration_error(p, data.y)
        ax.plot(bins["confidence"], bins["accuracy"], marker="o", ms=3, label=f"{name}: ECE {ece:.3f}")
    ax.set(xlabel="top probability", ylabel="accuracy", title="Calibration", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="upper left")


def _plot_scores(ax, data: SheetData, cutoff: float | None) -> None:
    p = data.probabilities()
    top, correct = p.max(axis=1), p.argmax(axis=1) == data.y
    edges = np.linspace(1 / len(data.labels), 1, 21)
    ax.hist([top[correct], top[~correct]], bins=edges, stacked=True, label=["correct", "wrong"],
            color=["tab:green", "tab:red"])
    if cutoff is not None:
        ax.axvline(cutoff, color="k", ls="--", lw=1, label=f"cutoff {cutoff:.2f}")
    ax.set(xlabel="top probability", ylabel="samples", title="Score distribution")
    ax.legend()


def _plot_confusion(ax, table: pd.DataFrame, title: str, truth_named: bool = True, upright: bool = True) -> None:
    shares = table.div(table.sum(axis=1).clip(lower=1), axis=0).to_numpy(dtype=float)
    n_classes = len(table)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    # reason: at 8 pt a quarter of an A4 page holds count and share for up to 5 classes, counts alone up to 12;
    # the colour still gives the share of the row.
    if n_classes <= 12:
        counts = table.to_numpy()
        for (i, j), share in np.ndenumerate(shares):
            text = str(counts[i, j]) + (f"\n{100 * share:.1f}%" if n_classes <= 5 else "")
            # reason: dark text on the light cells, white on the dark ones (the colour map passes mid-blue at 0.6).
            ax.text(j, i, text, ha="center", va="center", fontsize=MIN_FONT_PT, color="white" if share > 0.6 else "k")
    # reason: beyond _MAX_TICKS classes every step-th class is named (the diagonal still shows every class).
    step = -(-n_classes // _MAX_TICKS)
    columns = range(0, table.shape[1], step) if step > 1 else range(table.shape[1])
    if step > 1 and table.shape[1] > n_classes:
        columns = [*columns, table.shape[1] - 1]  # reason: "unclassified" is always named
    ax.set_xticks(columns, [_short(table.columns[j]) for j in columns], rotation=0 if upright else 90)
    # reason: the second matrix stands beside the first, on the same rows; naming them again took its panel's width.
    rows = range(0, n_classes, step) if truth_named else []
    ax.set_yticks(rows, [_short(table.index[i]) for i in rows])
    if step > 1 and truth_named:
        title += f" ({n_classes} classes, every {step}{'nd' if step == 2 else 'rd' if step == 3 else 'th'} named)"
    ax.tick_params(length=0)
    ax.set(xlabel="predicted", ylabel="truth" if truth_named else "truth (rows as on the left)")
    ax.set_title(title, wrap=True)


def _plot_curves(ax_roc, ax_pr, data: SheetData) -> None:
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    p = data.probabilities()
    classes = range(1, 2) if len(data.labels) == 2 else range(len(data.labels))
    aucs, aps = [], []
    for k in classes:
        hit = data.y == k
        if hit.all() or not hit.any():
            continue
        fpr, tpr, _ = roc_curve(hit, p[:, k])
        aucs.append(auc(fpr, tpr))
        ax_roc.plot(fpr, tpr, lw=1, label=f"{_short(data.labels[k])} ({aucs[-1]:.3f})")
        precision, recall, _ = precision_recall_curve(hit, p[:, k])
        aps.append(average_precision_score(hit, p[:, k]))
        ax_pr.plot(recall, precision, lw=1,
                   label=f"{_short(data.labels[k])} ({aps[-1]:.3f} AP, {hit.mean():.2f} base)")
    ax_roc.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, one vs all (AUC)")
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall, one vs all (AP)", ylim=(0, 1.02))
    _class_legend(ax_roc, "lower right", aucs, "AUC")
    _class_legend(ax_pr, "lower left", aps, "AP")


# reason: at 8 pt on A4 a legend of more entries covers its panel and the next (15 classes covered three panels).
_MAX_LEGEND = 8
_HARDEST = 5


def _class_legend(ax, loc: str, scores: list[float] | None = None, score: str = "") -> None:
    """One entry per class up to ``_MAX_LEGEND`` classes; beyond, the ``_HARDEST`` with the lowest ``scores`` (one per
    line, in the order drawn), or none without scores (the panel's title says how many classes)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if len(handles) <= _MAX_LEGEND:
        ax.legend(loc=loc)
        return
    if scores is not None:
        order = np.argsort(scores, kind="stable")[:_HARDEST]
        ax.legend([handles[i] for i in order], [labels[i] for i in order], loc=loc,
                  title=f"lowest {score}, {_HARDEST} of {len(handles)} classes")


def _plot_table(ax, frame: pd.DataFrame, title: str) -> None:
    ax.axis("off")
    ax.set_title(title, wrap=True)
    if frame.empty:
        ax.text(0.5, 0.5, "none", ha="center", va="center")
        return
    shown = frame.copy()
    for column in shown.columns:
        if pd.api.types.is_float_dtype(shown[column]):
            shown[column] = shown[column].map(lambda v: f"{v:.3f}")
    table = ax.table(cellText=shown.to_numpy(), colLabels=list(shown.columns), loc="upper center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(MIN_FONT_PT)
    table.auto_set_column_width(range(len(shown.columns)))
    table.scale(1, 1.15)


def _plot_per_class(ax, scores: pd.DataFrame) -> None:
    """The per-class table; beyond ``_MAX_TABLE_ROWS`` classes, the ones with the lowest F1 (the run's JSON has
    every class's counts)."""
    title = "Per class, no cutoff"
    if len(scores) > _MAX_TABLE_ROWS:
        title += f": lowest F1, {_MAX_TABLE_ROWS} of {len(scores)} classes"
        scores = scores.sort_values("F1", kind="stable").head(_MAX_TABLE_ROWS)
    _plot_table(ax, scores.assign(**{"class": scores["class"].map(_short)}), title)


def _plot_saliency(axes, data: SheetData) -> None:
    for c, ax in enumerate(axes):
        if c >= len(data.channels):
            ax.axis("off")
            continue
        twin = ax.twinx()
        for k, label in enumerate(data.labels):
            line, = ax.plot(data.axis, data.mean_spectra[k, c], lw=1, label=_short(label))
            # reason: display only: a 5-point running mean, the per-point values follow the measurement noise.
            # reason: np.convolve's "same" is as long as the longer input; a spectrum shorter than the window
            # keeps its own length with a window no longer than it.
            window = max(1, min(5, data.saliency.shape[-1]))
            smooth = np.convolve(data.saliency[k, c], np.ones(window) / window, mode="same")
            twin.fill_between(data.axis, smooth, color=line.get_color(), alpha=0.25, lw=0)
        # reason: at 8 pt on A4, three or four panels share one row: the long words go on the outer panels only.
        shown = min(len(axes), len(data.channels))
        ax.set(xlabel=data.x_label or axis_label(data.channels), ylabel="mean spectrum" if c == 0 else "",
               title=f"channel {data.channels[c]}" + (": what drives each class" if shown <= 2 else ""))
        if c == shown - 1:
            twin.set_ylabel(f"{data.saliency_kind} (shaded)")
        if c == 0:
            _class_legend(ax, "best")
            if len(data.labels) > _MAX_LEGEND:
                ax.set_title(f"{ax.get_title()} ({len(data.labels)} classes)")


def plot_result_sheet(data: SheetData, cutoff: float | str | None = "auto", cutoffs: pd.DataFrame | None = None):
    """Draw the sheet.

    Args:
        data: from :func:`collect`.
        cutoff: the cutoff on the top probability; ``"auto"`` = the lowest reaching 95 % accuracy in ``cutoffs``.
        cutoffs: the cutoff table (chosen on the validation split); ``None`` = computed on ``data``'s own rows.

    Returns:
        ``(fig, cutoffs)``: the figure and the cutoff table.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    with sheet_style():
        return _draw(plt, data, cutoff, cutoffs)


@contextmanager
def sheet_style():
    """The sheet's fonts, for drawing it and for saving it (matplotlib makes a panel's ticks as it saves, in the
    style of that moment: saved outside it, they were 10 pt and laid out anew).

    The sizes are :data:`_FONTS`; the family DejaVu Sans, then the first installed of :data:`_FALLBACK_FONTS` for
    the characters it lacks. matplotlib's font warnings are off: a fallback font without a "normal" weight
    (WenQuanYi's) is taken at its own, with a warning that says nothing to the user.
    """
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    families = ["DejaVu Sans", *(name for name in _FALLBACK_FONTS if name in installed)]
    fonts = logging.getLogger("matplotlib.font_manager")
    level = fonts.level
    fonts.setLevel(logging.ERROR)
    try:
        with plt.rc_context({**_FONTS, "font.family": families}):
            yield
    finally:
        fonts.setLevel(level)


def _draw(plt, data: SheetData, cutoff, cutoffs):
    p = data.probabilities()
    cutoffs = cutoff_table(p, data.y) if cutoffs is None else cutoffs
    if cutoff == "auto":
        cutoff = auto_cutoff(cutoffs)
    predicted, kept = apply_cutoff(p, cutoff)
    n_channels = max(1, min(4, len(data.channels)))
    fig = plt.figure(figsize=A4_LANDSCAPE, layout="constrained")
    grid = fig.add_gridspec(3, 4)
    _plot_calibration(fig.add_subplot(grid[0, 0]), data)
    _plot_scores(fig.add_subplot(grid[0, 1]), data, cutoff)
    # reason: upright names share a quarter of the page's width, about 26 characters of 8 pt (a wide character,
    # Chinese or Japanese, counts twice); both matrices turn them alike (one upright beside one turned misplaced the
    # page's left edge).
    upright = len(data.labels) <= 5 and sum(_width(_short(label)) for label in [*data.labels, UNCLASSIFIED]) <= 26
    _plot_confusion(fig.add_subplot(grid[0, 2]), confusion(data.y, predicted, data.labels), "Confusion matrix",
                    upright=upright)
    kept_note = f"cutoff {cutoff:.2f}, {kept.mean():.1%} kept" if cutoff is not None else "no cutoff reaches 95 %"
    _plot_confusion(fig.add_subplot(grid[0, 3]), confusion(data.y, predicted, data.labels, kept),
                    f"With the cutoff ({kept_note})", truth_named=len(data.labels) <= _MAX_TICKS, upright=upright)
    _plot_curves(fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1]), data)
    _plot_per_class(fig.add_subplot(grid[1, 2]), per_class_scores(data.y, predicted, data.labels))
    _plot_table(fig.add_subplot(grid[1, 3]),
                cutoffs.rename(columns={"target": "goal"}), f"Best cutoffs (chosen {data.cutoffs_from})")
    # reason: the T²/Q panel takes the last quarter of the saliency row; a model without it keeps the old layout.
    saliency_grid = grid[2, : 3 if data.outliers is None else 2].subgridspec(1, n_channels)
    if data.outliers is not None:
        _plot_outliers(fig.add_subplot(grid[2, 2]), data.outliers)
    _plot_saliency([fig.add_subplot(saliency_grid[c]) for c in range(n_channels)], data)
    errors = grid[2, 3].subgridspec(2, 1)
    for ax, rows, title in ((fig.add_subplot(errors[0]), None, "Top errors by full truth"),
                            (fig.add_subplot(errors[1]), kept, "... with the cutoff")):
        table = error_contributions(data.y, predicted, data.full_truth, rows, top=3)
        table = table.assign(full_truth=table["full_truth"].map(_short))
        _plot_table(ax, table.rename(columns={"full_truth": "full truth", "share_of_errors": "share",
                                              "error_rate": "rate"}), title)
    accuracy = float((predicted == data.y).mean())
    subtitle = f"{data.split}: {len(data.y)} samples, accuracy {accuracy:.4f}"
    if data.baseline:
        subtitle += "; baselines: " + ", ".join(f"{k} {v:.4f}" for k, v in data.baseline.items())
    fig.suptitle(f"{data.title}\n{subtitle}")
    return fig, cutoffs


def write_result_sheet(data: SheetData, path: str | Path, cutoff: float | str | None = "auto",
                       cutoffs: pd.DataFrame | None = None):
    """Draw the sheet and write it atomically as a PNG; returns ``(fig, cutoffs)`` (close the figure after use)."""
    from spectratorch.data.io import atomic_path

    fig, cutoffs = plot_result_sheet(data, cutoff, cutoffs)
    with atomic_path(path) as tmp, warnings.catch_warnings(record=True) as caught, sheet_style():
        warnings.simplefilter("always")
        fig.savefig(tmp, format="png", dpi=DPI)
    _said_missing_glyphs(caught, path)
    _logger.info("wrote %s", path)
    return fig, cutoffs


def _said_missing_glyphs(caught: list, path) -> None:
    """One warning for the characters no font here has (matplotlib says one per character, with its source line);
    any other warning as it was."""
    missing = []
    for record in caught:
        found = _MISSING_GLYPH.search(str(record.message))
        if found is None:
            warnings.warn_explicit(record.message, record.category, record.filename, record.lineno)
        elif chr(int(found.group(1))) not in missing:
            missing.append(chr(int(found.group(1))))
    if missing:
        _logger.warning("%s shows %d characters of the class names as boxes (%s): no font on this computer has them; "
                        "install one that does (Noto Sans CJK: `apt install fonts-noto-cjk`, or Windows' and macOS' "
                        "own), then `spectratorch report CHECKPOINT` draws the sheet again", Path(path).name,
                        len(missing), " ".join(missing[:8]))


def make_result_sheet(module, dm, path: str | Path, title: str = "", tensorboard=None,
                      baseline: dict | None = None, temperature: float | None = None,
                      out_of_fold: tuple[np.ndarray, np.ndarray] | None = None,
                      test_logits: np.ndarray | None = None) -> dict:
    """Choose the cutoffs on the calibrated validation split and draw the sheet of the test split.

    Args:
        module: the trained :class:`~spectratorch.training.module.SpectralModule`.
        dm: its data module (prepared).
        path: the PNG to write (``<stem> result sheet.png``).
        title: the model name.
        tensorboard: a TensorBoard ``SummaryWriter`` to add the figure to, or ``None``.
        baseline: ``{name: test accuracy}`` of the linear baselines, shown beside the network's accuracy.
        temperature: the run's temperature, fitted once on the validation split
            (:func:`~spectratorch.export.calibration.calibration_report`), the one the ONNX file stores; default:
            fitted here the same way (:func:`~spectratorch.export.calibration.fit_temperature`).
        out_of_fold: ``(logits [N, K], y [N])``, the out-of-fold predictions of the training rows of a model that
            trained on its validation rows too (the small-set protocol; its checkpoint carries them): the cutoffs
            come from them, the temperature is 1 (already folded into the model), and the T²/Q panel has the
            export's out-of-fold limits.
        test_logits: the module's logits ``[N, K]`` of the test rows, when the caller has computed them already.

    Returns:
        ``{"result_sheet", "temperature", "ece_before", "ece_after", "cutoffs", "cutoff_table"}``; ``cutoffs`` maps
        ``default`` (95 % accuracy on validation, ``None`` when unreachable) and ``accuracy_0.90`` ... to probabilities.
    """
    import matplotlib.pyplot as plt

    from spectratorch.export.calibration import fit_temperature

    if out_of_fold is not None:
        val, temperature = {"logits": np.asarray(out_of_fold[0]), "y": np.asarray(out_of_fold[1])}, 1.0
    else:
        val = collect_logits(module, dm, "val")
    if temperature is None:
        temperature = fit_temperature(val["logits"], val["y"])
    cutoffs = cutoff_table(softmax(val["logits"], temperature), val["y"])
    data = collect(module, dm, "test", temperature=temperature, title=title, out_of_fold=out_of_fold is not None,
                   logits=test_logits)
    data.baseline = dict(baseline or {})
    fig, cutoffs = write_result_sheet(data, path, "auto", cutoffs)
    if tensorboard is not None:
        with sheet_style():
            tensorboard.add_figure("result_sheet", fig)
    plt.close(fig)
    return {
        "result_sheet": str(path),
        "temperature": float(temperature),
        "ece_before": expected_calibration_error(data.probabilities(False), data.y),
        "ece_after": expected_calibration_error(data.probabilities(True), data.y),
        "cutoffs": named_cutoffs(cutoffs),
        "cutoff_table": cutoffs.to_dict("records"),
    }


def collect_logits(module, dm, stage: str) -> dict:
    """Logits ``[N, K]`` and classes ``[N]`` of ``stage``'s rows."""
    rows = dm.stage_arrays(stage)
    return {"logits": predict_logits(module, rows.spectra, rows.tabular), "y": rows.y.numpy()}
