"""Writes examples/python_route.ipynb (without outputs) from the cells below.

Run `python examples/_build_python_route.py` after changing a cell.
"""

from pathlib import Path

import nbformat

CELLS = [
    ("markdown", """# Your own spectra from Python

The Python route end to end: a CSV as instruments export it (wavelengths as column headers, one label column), a
scikit-learn estimator trained with the recipe of `spectratorch train`, cross-validated, saved, exported to ONNX,
and the exported model predicting a DataFrame without torch. A small generated set and the fastest architecture
(`Linear`) keep it to a few minutes on a laptop CPU; drop `arch="Linear"` for the recipe's own choice."""),
    ("code", """from pathlib import Path

import pandas as pd
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline

import spectratorch
from spectratorch import Predictor, SpectraClassifier
from spectratorch.data.generic import make_generic_frame

N_SAMPLES = 150
FAST = dict(arch="Linear", max_epochs=3)"""),
    ("markdown", """## A CSV with bare-number headers
Three classes of NIR-like spectra on 900–1700 nm: the first column is the label, every other header a wavelength."""),
    ("code", """generic = make_generic_frame(N_SAMPLES, seed=0, length=100)
export = generic.drop(columns="label").rename(columns=lambda name: name.removeprefix("nir_"))
export.insert(0, "label", generic["label"].to_numpy())
export.to_csv("my_spectra.csv", index=False)
print(open("my_spectra.csv").readline()[:60], "...")"""),
    ("code", """table = pd.read_csv("my_spectra.csv")
X, y = table.drop(columns="label"), table["label"]
print(f"{X.shape[0]} spectra of {X.shape[1]} points, classes {sorted(y.unique())}")"""),
    ("markdown", """## Cross-validation, as scikit-learn does it
`SpectraClassifier` is a scikit-learn classifier: it goes into a `Pipeline`, `cross_val_score` and `GridSearchCV`."""),
    ("code", """scores = cross_val_score(make_pipeline(SpectraClassifier(**FAST)), X, y, cv=3)
print(f"cross-validated accuracy: {scores.mean():.3f} (folds {', '.join(f'{s:.3f}' for s in scores)})")"""),
    ("markdown", """## Fit on every row, save, export
`save` writes one ONNX file that `SpectraClassifier.load` reads back (no torch needed); `to_onnx` writes the plain
model that `spectratorch predict`, `Predictor` and `spectratorch app` take."""),
    ("code", """clf = SpectraClassifier(**FAST).fit(X, y)
print(f"classes {list(clf.classes_)}, training accuracy {clf.score(X, y):.3f}")
clf.save("my_classifier.onnx")
clf.to_onnx("my_model.onnx")
again = SpectraClassifier.load("my_classifier.onnx")
print("loaded estimator predicts the same:", bool((again.predict(X) == clf.predict(X)).all()))"""),
    ("markdown", """## Predict a DataFrame with the exported model
`Predictor` takes a file path, a DataFrame in the same layout or an array of spectra."""),
    ("code", """predictor = Predictor("my_model.onnx")
predictions = predictor.predict(X)
print(f"Predictor agrees with the true label on {(predictions['label'] == y).mean():.3f} of the rows")
predictions.head()"""),
    ("markdown", """## The same run as the command line
`spectratorch.train` takes the flags of `spectratorch train` as keywords; here it writes the run's files under
`runs/` and returns its summary."""),
    ("code", """summary = spectratorch.train(data="my_spectra.csv", output_dir="runs", to_onnx=True, **FAST)
print(summary["name"])
print("test accuracy", round(summary["metrics"]["test"]["accuracy"], 3), "->", Path(summary["files"]["onnx"]).name)"""),
]


def build() -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    make = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    notebook.cells = [make[kind](source) for kind, source in CELLS]
    return notebook


if __name__ == "__main__":
    nbformat.write(build(), Path(__file__).with_name("python_route.ipynb"))
