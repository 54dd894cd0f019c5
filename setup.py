"""spectratorch: deep-learning classifiers for spectral and tabular data."""

from pathlib import Path

from setuptools import find_packages, setup

_HERE = Path(__file__).parent
_VERSION = {}
exec((_HERE / "spectratorch" / "_version.py").read_text(), _VERSION)

# reason: the inference-only set is also a requirements file (requirements-inference.txt), so a PC without torch
# installs it with `pip install -r requirements-inference.txt && pip install --no-deps .`.
INFERENCE = [
    "numpy>=1.24",
    "pandas>=2.0",
    "onnxruntime>=1.16",
    "pyarrow>=12",
    "tqdm>=4.60",
    # reason: reads .xlsx datasets; pure Python (with et-xmlfile), about 0.3 MB.
    "openpyxl>=3.1",
]
TRAINING = [
    "torch>=2.1,<3",
    "lightning>=2.1,<3",
    "torchmetrics>=1.0",
    "onnx>=1.14",
    "onnxscript>=0.1",
    "scipy>=1.10",
    "scikit-learn>=1.3",
    "tensorboard>=2.12",
    "matplotlib>=3.6",
]
# reason: tests/test_notebook.py runs notebooks/exploratory_analysis.ipynb top to bottom in a kernel.
NOTEBOOK_RUN = ["nbformat>=5.1", "nbclient>=0.6", "ipykernel>=6"]
# reason: the inspectors' page (`spectratorch app`); it runs on the inference set above plus streamlit, no torch.
# 1.67 is the release tested (its AppTest uploads files).
APP = ["streamlit>=1.67,<2"]
# optional: hyperparameter search (`spectratorch tune`) and MLflow tracking (`--logger mlflow`)
TUNE = ["optuna>=4.0", "optuna-integration>=4.0", "pyyaml>=6"]
TRACKING = ["mlflow>=2.10"]
# reason: the docs site (mkdocs.yml); tests/test_docs.py builds it with --strict. None of these pulls torch, numpy,
# pandas or scikit-learn.
DOCS = ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"]
# reason: playwright drives the system's chromium in the page's end-to-end test; it never downloads a browser.
# reason: hypothesis drives the unpickler fuzz in tests/security/test_fuzz.py; chemotools and pybaselines are the
# reference implementations the msc/emsc/als layers are compared against (tests only; no torch pulled).
REFERENCES = ["chemotools>=0.5", "pybaselines>=1.1"]
# reason: ruff is the lint tests/test_lint.py runs (ruff.toml).
TEST = ["pytest>=7", "pytest-timeout>=2", "hypothesis>=6", "ruff>=0.6", "playwright>=1.40", *NOTEBOOK_RUN, *TUNE,
        *TRACKING, *DOCS, *REFERENCES]

setup(
    name="spectratorch",
    version=_VERSION["__version__"],
    description="Train and ship deep-learning classifiers for spectral and tabular data.",
    long_description=(_HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["spectratorch", "spectratorch.*"]),
    install_requires=INFERENCE + TRAINING,
    extras_require={"test": TEST, "app": APP, "tune": TUNE, "tracking": TRACKING, "docs": DOCS,
                    "notebook": [*NOTEBOOK_RUN, "jupyterlab>=4"]},
    entry_points={"console_scripts": ["spectratorch = spectratorch.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
        "Topic :: Scientific/Engineering :: Chemistry",
    ],
)
