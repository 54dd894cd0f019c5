"""Build ``exploratory_analysis.ipynb`` from the cells below, without outputs.

Edit the cells here, then run ``python notebooks/_build_notebook.py``: the notebook is regenerated (cell ids are
fixed, so an unchanged cell gives an unchanged file) and ``tests/test_notebook.py`` checks that the committed
notebook has exactly these cells and no outputs.
"""

import sys
from pathlib import Path

import nbformat

from spectratorch.data.io import atomic_path

NOTEBOOK = Path(__file__).resolve().with_name("exploratory_analysis.ipynb")

CELLS = [
    (
        "markdown",
        """# Exploring a new instrument export

This notebook is where a new fluorimeter export meets spectratorch. It reads the instrument's text exports
(`EX_<nm>_<name>_I.txt`, `LSPR_<name>_I.txt`, `Y_<name>.txt`) with the package's own reader, looks at the spectra
and their intensities, checks the three cleaning rules the lab applies (integration out of bounds, saturated,
too weak) against the data, looks at the tabular values and the classes, and ends by writing the training dataset
with the package's own conversion function, the same one as `spectratorch convert`.

Every cleaning decision below comes from `spectratorch.data.raw` (`cleaning_masks`, `saturated_mask`,
`weak_mask`, `clean`, `convert`): the notebook only plots what those functions decide, so what you see here is what
`convert` and `predict` do.

**Parameters** (environment variables, or edit the next cell):
- `SPECTRATORCH_RAW_DIR`: the folder of the exports. Unset, a small demo export is generated in
  `datasets/raw_notebook/` (what `spectratorch make-dataset --raw-dir DIR` writes) the first time.
- `SPECTRATORCH_DATASET`: the training dataset to write (`.pkl`, `.parquet` or `.csv`; default
  `datasets/notebook.pkl`).

Run it top to bottom, e.g.
`SPECTRATORCH_RAW_DIR=/data/export_2024 jupyter lab notebooks/exploratory_analysis.ipynb`.""",
    ),
    (
        "code",
        """import os
from pathlib import Path

# reason: paths resolve from the repository root whether Jupyter was started there or in notebooks/.
ROOT = Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()
RAW_DIR = Path(os.environ.get("SPECTRATORCH_RAW_DIR", ROOT / "datasets" / "raw_notebook"))
DATASET = Path(os.environ.get("SPECTRATORCH_DATASET", ROOT / "datasets" / "notebook.pkl"))
DEMO_SAMPLES = 3000  # size of the demo export generated when SPECTRATORCH_RAW_DIR is unset and the folder missing
DEMO_SEED = 0""",
    ),
    (
        "code",
        """%matplotlib inline
import shlex

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter
import pandas as pd

from spectratorch.data.raw import (
    MIN_INTEGRALS,
    SATURATION_THRESHOLDS,
    channel_integrals,
    channel_peaks,
    clean,
    cleaning_masks,
    convert,
    oob_mask,
    read_raw_exports,
    saturated_mask,
    weak_mask,
    write_raw_exports,
)
from spectratorch.data.schema import load_table, spectral_columns
from spectratorch.data.targets import LabLabels

INTENSITY, TYPE, TRANSMITTANCE = "greffon_defaut_severite", "greffon_defaut_type", "greffon_transmittance"


def intensity_classes(frame):
    \"\"\"The defect intensity as training reads it (`LabLabels`): the inspectors' other spellings of OK
    (`OK - Inspecteur`, `OK - SpectrAcer`) are OK.\"\"\"
    return pd.Series(LabLabels.from_meta(frame).intensity, index=frame.index, name=INTENSITY)



def log_axis(ax, which="x"):
    \"\"\"A log scale without labels on the minor ticks (they pile up when the range is under a decade).\"\"\"
    getattr(ax, f"set_{which}scale")("log")
    getattr(ax, f"{which}axis").set_minor_formatter(NullFormatter())


if "SPECTRATORCH_RAW_DIR" not in os.environ and not RAW_DIR.exists():
    from spectratorch.data.synthetic import make_dataset

    write_raw_exports(make_dataset(DEMO_SAMPLES, seed=DEMO_SEED), RAW_DIR)
    print(f"generated a demo export of {DEMO_SAMPLES} samples in {RAW_DIR}")""",
    ),
    (
        "markdown",
        """## The thresholds to judge

We start from the lab's values, the defaults of `spectratorch convert`. If a plot below shows that a threshold does
not fit this instrument, change it here and run the notebook again: every plot, the share of rows removed and the
written dataset follow.""",
    ),
    (
        "code",
        """SATURATION = dict(SATURATION_THRESHOLDS)  # largest count a usable spectrum may reach, per channel
MIN_INTEGRAL = dict(MIN_INTEGRALS)  # smallest sum over the points of a usable spectrum, per channel
pd.DataFrame({"saturation (counts)": SATURATION, "minimum integral": MIN_INTEGRAL})""",
    ),
    (
        "markdown",
        """## Load the exports

`read_raw_exports` joins the files on the instrument's `sequence` id into the dataset schema: one row per sample,
the label columns, then one column per wavelength and channel (`277_295` ...). It refuses files that do not match
(missing sequences, ragged rows, non-numeric values) with a message naming the file and the row, so a problem in the
export stops here rather than in training.""",
    ),
    (
        "code",
        """raw = read_raw_exports(RAW_DIR)
groups = spectral_columns(raw.columns)
CHANNELS = list(groups)
AXES = {c: np.array([x for x, _ in groups[c]]) for c in CHANNELS}
SPECTRA = {c: raw[[name for _, name in groups[c]]].to_numpy() for c in CHANNELS}  # [N, L] per channel
FLUORESCENCE = [c for c in CHANNELS if c in SATURATION or c in MIN_INTEGRAL]
print(f"{len(raw)} samples from {RAW_DIR}")
for c in CHANNELS:
    print(f"  channel {c}: {len(AXES[c])} points, {AXES[c][0]:g} to {AXES[c][-1]:g}")
labels = raw.drop(columns=[name for c in CHANNELS for _, name in groups[c]])
labels.head()""",
    ),
    (
        "markdown",
        """## Example spectra per channel and per class

Left: a few individual spectra of each defect intensity. Right: the median spectrum of each intensity with the band
between its 10th and 90th percentiles, which shows where the classes differ and how much they overlap. The vertical
scale stops at the 99th percentile of the peaks so that saturated plateaus (looked at below) do not flatten the
rest. Here and below the intensities are the classes training reads: the inspectors' spellings `OK - Inspecteur` and
`OK - SpectrAcer` count as `OK` (`spectratorch.data.targets.LabLabels`, as training reads them).""",
    ),
    (
        "code",
        """classes = sorted(intensity_classes(raw).unique())
colors = dict(zip(classes, plt.cm.tab10.colors))
rng = np.random.default_rng(0)
fig, axes = plt.subplots(len(CHANNELS), 2, figsize=(12, 2.8 * len(CHANNELS)), squeeze=False)
for row, c in enumerate(CHANNELS):
    top = np.quantile(SPECTRA[c].max(axis=1), 0.99) * 1.1
    for label in classes:
        rows = np.flatnonzero(intensity_classes(raw).to_numpy() == label)
        shown = rng.choice(rows, size=min(3, len(rows)), replace=False)
        axes[row, 0].plot(AXES[c], SPECTRA[c][shown].T, color=colors[label], lw=0.7, alpha=0.8)
        low, median, high = np.quantile(SPECTRA[c][rows], [0.1, 0.5, 0.9], axis=0)
        axes[row, 1].plot(AXES[c], median, color=colors[label], label=label)
        axes[row, 1].fill_between(AXES[c], low, high, color=colors[label], alpha=0.15)
    for ax in axes[row]:
        ax.set(ylim=(min(0.0, SPECTRA[c].min()), top), xlabel="wavelength (nm)", ylabel=f"{c}")
axes[0, 0].set_title("examples (3 per intensity)")
axes[0, 1].set_title("median and 10-90 % band per intensity")
axes[0, 1].legend(fontsize=8)
fig.tight_layout()
plt.show()""",
    ),
    (
        "markdown",
        """## Peak intensity and integral per channel

The two numbers the cleaning rules read: the **peak** (largest count of a spectrum, `channel_peaks`) decides
saturation, the **integral** (sum over its points, `channel_integrals`) decides whether a spectrum is too weak.
The channels with a threshold are drawn on a log scale: a detector plateau or a near-empty cuvette shows up as a
separate cluster far from the bulk. The dashed lines are the thresholds above; the rows the instrument flagged as
integration out of bounds are drawn apart, since they are removed whatever their spectra look like.""",
    ),
    (
        "code",
        """peaks, integrals = channel_peaks(raw), channel_integrals(raw)
oob = oob_mask(raw).to_numpy()
fig, axes = plt.subplots(2, len(CHANNELS), figsize=(3.6 * len(CHANNELS), 6), squeeze=False)
for col, c in enumerate(CHANNELS):
    for row, (values, thresholds, name) in enumerate(
        [(peaks[c], SATURATION, "peak"), (integrals[c], MIN_INTEGRAL, "integral")]
    ):
        ax = axes[row, col]
        bins = 60
        if c in thresholds and (values > 0).all():
            # reason: counts span decades (a plateau, an empty cuvette); the range also covers the threshold.
            bins = np.geomspace(min(values.min(), thresholds[c]) / 1.2, max(values.max(), thresholds[c]) * 1.2, 60)
            log_axis(ax, "x")
        ax.hist([values[~oob], values[oob]], bins=bins, stacked=True, histtype="stepfilled",
                label=["not oob", "oob"])
        log_axis(ax, "y")
        ax.set(xlabel=f"{name} {c}", ylabel="rows" if col == 0 else None)
        if c in thresholds:
            ax.axvline(thresholds[c], color="k", ls="--", lw=1)
axes[0, 0].legend(fontsize=8)
fig.tight_layout()
plt.show()
pd.concat({"peak": peaks.describe().T, "integral": integrals.describe().T}).round(1)""",
    ),
    (
        "markdown",
        """## Rows out of integration bounds

The instrument sets `integration_oob = 1` when it could not keep the integration time within bounds; such a
spectrum is scaled by an unknown factor, so the rule removes the row whatever its shape. This rule comes first in
`clean`, and the next two rules are judged on the rows it leaves.""",
    ),
    (
        "code",
        """print(f"integration out of bounds: {oob.sum()} rows ({oob.mean():.1%})")
after_oob = raw.loc[~oob]""",
    ),
    (
        "markdown",
        """## Saturated spectra

A saturated detector clips at its full scale: the spectrum shows a flat plateau (often at a scatter peak) far
above any real emission. Below, left: the spectra `saturated_mask` flags in each channel, against the median of
the others. Right: the share of all exported rows that `saturated_mask` removes from the rows the oob rule leaves,
for thresholds from a quarter to twelve times the chosen one (dashed). A good threshold sits on a **flat stretch**
of that curve, between the largest normal peak and the smallest saturated one: moving it a little changes
nothing, so the choice is not a fine-tuning of this data. The table gives, per channel, the nearest kept and
removed peaks, the width of that gap as a multiple of the threshold (a wide gap: a robust threshold; a kept row
just under it: the threshold cuts through the bulk of the data) and the share of rows the threshold removes.""",
    ),
    (
        "code",
        """def removed_share(frame, mask, channel, values):
    \"\"\"Share of all exported rows that ``mask(frame, {channel: value})`` removes, for each value.\"\"\"
    return np.array([mask(frame, {channel: value}).sum() / len(raw) for value in values])


def rule_figure(frame, mask, thresholds, stat, unit):
    \"\"\"Flagged spectra (left) and the share removed against the threshold (right), one row per channel.\"\"\"
    channels = [c for c in FLUORESCENCE if c in thresholds]
    fig, axes = plt.subplots(len(channels), 2, figsize=(12, 2.8 * len(channels)), squeeze=False)
    summary = {}
    for row, c in enumerate(channels):
        flagged = mask(frame, {c: thresholds[c]}).to_numpy()
        spectra = frame[[name for _, name in groups[c]]].to_numpy()
        if (~flagged).any():
            axes[row, 0].plot(AXES[c], np.median(spectra[~flagged], axis=0), color="k", lw=2, label="median kept")
            axes[row, 0].legend(fontsize=8)
        if flagged.any():
            axes[row, 0].plot(AXES[c], spectra[flagged][:8].T, color="tab:red", lw=0.7, alpha=0.7)
        axes[row, 0].set(xlabel="wavelength (nm)", ylabel=c, title=f"{flagged.sum()} flagged spectra (up to 8 shown)")
        grid = thresholds[c] * np.geomspace(0.25, 12, 30)
        share = 100 * flagged.sum() / len(raw)
        axes[row, 1].plot(grid, 100 * removed_share(frame, mask, c, grid))
        axes[row, 1].axvline(thresholds[c], color="k", ls="--", lw=1)
        log_axis(axes[row, 1])
        # reason: zoomed on the chosen share, so a flat stretch (or its absence) around the threshold is visible.
        axes[row, 1].set(ylim=(0, max(10.0, 5 * share)), xlabel=f"threshold on the {stat} of {c} ({unit})",
                         ylabel="% of all rows removed")
        values = stat_of[stat](frame, [c])[c].to_numpy()
        kept_edge, removed_edge = (np.max, np.min) if stat == "peak" else (np.min, np.max)
        kept = kept_edge(values[~flagged]) if (~flagged).any() else np.nan
        nearest_removed = removed_edge(values[flagged]) if flagged.any() else np.nan
        summary[c] = {
            "threshold": thresholds[c],
            f"{kept_edge.__name__} {stat} kept": kept,
            f"{removed_edge.__name__} {stat} removed": nearest_removed,
            "gap / threshold": abs(nearest_removed - kept) / thresholds[c],
            "rows removed": int(flagged.sum()),
            "% of all rows": round(share, 2),
        }
    fig.tight_layout()
    plt.show()
    return pd.DataFrame(summary).T.astype({"rows removed": int}).round(2)


stat_of = {"peak": channel_peaks, "integral": channel_integrals}
rule_figure(after_oob, saturated_mask, SATURATION, "peak", "counts")""",
    ),
    (
        "markdown",
        """## Too-weak spectra

A spectrum whose integral is far below the others comes from a near-empty cuvette, a misplaced sample or a lamp
problem: its shape is mostly noise and baseline. `weak_mask` removes it. The same reading as for saturation: the
minimum integral should sit in a flat stretch of the curve, in the gap between the weakest normal spectra and the
too-weak cluster. Judged on the rows left by the two rules before it. A channel where the rule flags nothing has
no weak cluster in this export: there the threshold only guards against a failed measurement, and the curve
should stay at zero up to the dashed line and rise only after it (a threshold above the weakest normal spectra
would start removing good rows).""",
    ),
    (
        "code",
        """after_saturation = after_oob.loc[~saturated_mask(after_oob, SATURATION)]
rule_figure(after_saturation, weak_mask, MIN_INTEGRAL, "integral", "sum of counts")""",
    ),
    (
        "markdown",
        """## The three rules together

`cleaning_masks` gives each rule's decision independently (a row may be flagged by several); `clean` applies them
in order and counts each removed row once, under the first rule that removes it: these are the counts
`spectratorch convert` prints. The last table checks that cleaning does not hit one class much harder than the
others: if it did, the classifier could learn the artefact instead of the defect.""",
    ),
    (
        "code",
        """masks = cleaning_masks(raw, SATURATION, MIN_INTEGRAL)
cleaned, removed = clean(raw, SATURATION, MIN_INTEGRAL)
rules = pd.DataFrame(
    {
        "rows flagged": masks.sum(),
        "flagged by this rule only": (masks & (masks.sum(axis=1) == 1).to_numpy()[:, None]).sum(),
        "removed (first rule)": pd.Series(removed),
    }
)
rules["% of all rows removed"] = (100 * rules["removed (first rule)"] / len(raw)).round(2)
print(f"kept {len(cleaned)} of {len(raw)} rows ({len(cleaned) / len(raw):.1%})")
rules""",
    ),
    (
        "code",
        """removed_rows = masks.any(axis=1)
by_class = pd.crosstab(intensity_classes(raw), removed_rows.map({False: "kept", True: "removed"}).rename("cleaning"))
by_class["% removed"] = (100 * by_class.get("removed", 0) / by_class.sum(axis=1)).round(1)
by_class""",
    ),
    (
        "markdown",
        """## Correlations among the tabular values

On the cleaned rows: the transmittance (the one tabular value a model takes by default), the integral of each
channel, and for LSPR its integral and the wavelength of its maximum. Strongly correlated integrals mean the
channels share a common factor (concentration, turbidity); a strong link between transmittance and an integral
means the transmittance carries part of the same information, and a weak one that it adds something the spectra do
not. Spearman's rank correlation, so a few extreme rows do not dominate.""",
    ),
    (
        "code",
        """tabular = pd.DataFrame(index=cleaned.index)
if TRANSMITTANCE in cleaned.columns:
    tabular["transmittance"] = cleaned[TRANSMITTANCE]
for c, values in channel_integrals(cleaned).items():
    tabular[f"integral {c}"] = values
if "lspr" in CHANNELS:
    lspr = cleaned[[name for _, name in groups["lspr"]]].to_numpy()
    tabular["lspr peak (nm)"] = AXES["lspr"][lspr.argmax(axis=1)]
corr = tabular.corr(method="spearman")
fig, ax = plt.subplots(figsize=(1.1 * len(corr) + 2, 1.1 * len(corr) + 1))
image = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
ax.set_xticks(range(len(corr)), corr.columns, rotation=45, ha="right")
ax.set_yticks(range(len(corr)), corr.columns)
for (i, j), value in np.ndenumerate(corr.to_numpy()):
    ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
fig.colorbar(image, ax=ax, label="Spearman correlation")
fig.tight_layout()
plt.show()""",
    ),
    (
        "code",
        """if "transmittance" in tabular:
    others = [name for name in tabular.columns if name != "transmittance"]
    fig, axes = plt.subplots(1, len(others), figsize=(3.4 * len(others), 3), squeeze=False)
    for ax, name in zip(axes[0], others):
        for label in classes:
            rows = (intensity_classes(cleaned) == label).to_numpy()
            ax.scatter(tabular["transmittance"][rows], tabular[name][rows], s=4, alpha=0.5, color=colors[label],
                       label=label)
        ax.set(xlabel="transmittance (%)", ylabel=name)
    axes[0, 0].legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    plt.show()""",
    ),
    (
        "markdown",
        """## Class balance per intensity and type

The targets are built from these two columns (`--targets AVA IN` for the intensities, `--targets OVA OK` for
OK against the rest, `TY` for the types...). A class with a few dozen rows will be hard to learn and noisy to
evaluate: the split is stratified, but each validation fold holds only a fifth of it. Counts after cleaning.""",
    ),
    (
        "code",
        """balance = pd.crosstab(intensity_classes(cleaned), cleaned[TYPE], margins=True, margins_name="total")
fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
intensity_classes(cleaned).value_counts().plot.bar(ax=axes[0], title="rows per intensity", rot=30)
cleaned[TYPE].value_counts().sort_index().plot.bar(ax=axes[1], title="rows per defect type", rot=0)
fig.tight_layout()
plt.show()
balance""",
    ),
    (
        "markdown",
        """## Write the training dataset

`convert` reads the exports again, applies `clean` with the thresholds chosen above and writes the dataset
(atomically: an error leaves no file). Its counts must be the ones of the table above. `load_table` then reads the
file exactly as training will. The same file can be made without the notebook with the `spectratorch convert`
command printed below, and the last command trains on it.""",
    ),
    (
        "code",
        """written_removed = convert(RAW_DIR, DATASET, saturation=SATURATION, min_integral=MIN_INTEGRAL)
assert written_removed == removed, (written_removed, removed)
table = load_table(DATASET)
print(f"wrote {DATASET}: {len(table.ids)} rows, spectra {table.spectra.shape}, tabular {list(table.tabular_columns)}")


def _pairs(thresholds):
    return " ".join(f"{c}={value:g}" for c, value in thresholds.items())


print("\\nthe same file from the command line:")
print(f"spectratorch convert {shlex.quote(str(RAW_DIR))} -o {shlex.quote(str(DATASET))} "
      f"--saturation {_pairs(SATURATION)} --min-integral {_pairs(MIN_INTEGRAL)}")
print("\\ntrain on it:")
print(f"spectratorch train --data {shlex.quote(str(DATASET))} --targets OVA OK --channels 277 380")""",
    ),
]


def build() -> nbformat.NotebookNode:
    """The notebook, without outputs, with fixed cell ids."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    makers = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    for index, (kind, source) in enumerate(CELLS):
        notebook.cells.append(makers[kind](source, id=f"cell-{index:02d}"))
    nbformat.validate(notebook)
    return notebook


def render() -> str:
    """The notebook file's text."""
    return nbformat.writes(build()) + "\n"


def main(argv: list[str]) -> int:
    """Write the notebook to ``argv[0]`` (default: next to this script); ``-h`` prints the usage."""
    if argv and argv[0].startswith("-"):
        stream = sys.stdout if argv[0] in ("-h", "--help") else sys.stderr
        print("usage: python notebooks/_build_notebook.py [NOTEBOOK.ipynb]", file=stream)
        return 0 if stream is sys.stdout else 2
    if len(argv) > 1:
        print(f"expected at most one notebook path, found {len(argv)} arguments", file=sys.stderr)
        return 2
    path = Path(argv[0]) if argv else NOTEBOOK
    if path.suffix != ".ipynb":
        print(f"expected a .ipynb path, found {str(path)!r}", file=sys.stderr)
        return 2
    with atomic_path(path) as temporary:
        temporary.write_text(render(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
