"""Shared test factories: small, seeded frames in the lab's schema."""

import numpy as np
import pandas as pd
import pytest

# reason: these fixtures train a model (tests/export/helpers.py runs, the fine-tune parent); a test that takes one
# trains, so it is slow whatever its own body does, and `-m "not slow"` skips it.
TRAINING_FIXTURES = frozenset({"run", "spectra_only", "predictor", "parent"})


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

INTENSITIES = ["OK", "OK - Inspecteur", "VR", "NC", "CROCHET", "OK - SpectrAcer"]


def make_frame(n: int = 60, seed: int = 0, channels=("277", "380"), xs=range(300, 320), lspr=False) -> pd.DataFrame:
    """A small frame: channels on ``xs``, optional lspr on a sub-range, the lab's label columns."""
    rng = np.random.default_rng(seed)
    columns = {f"{c}_{x}": rng.random(n).astype(np.float32) for c in channels for x in xs}
    if lspr:
        columns.update({f"lspr_{x}": rng.random(n).astype(np.float32) for x in list(xs)[5:10]})
    df = pd.DataFrame(columns, index=pd.Index([f"S{i:04d}" for i in range(n)], name="id"))
    intensity = np.array(INTENSITIES)[np.arange(n) % len(INTENSITIES)]
    df["greffon_defaut_severite"] = intensity
    df["greffon_defaut_type"] = np.where(np.isin(intensity, ["VR", "NC"]), np.where(np.arange(n) % 4 < 2, 11, 2), 0)
    df["greffon_transmittance"] = np.linspace(10, 90, n).astype(np.float32)
    df["integration_oob"] = np.int8(0)
    df["mesure_date"] = pd.date_range("2024-01-01", periods=n, freq="D")
    return df


def spectral_column_names(df: pd.DataFrame) -> dict[str, list[str]]:
    """Spectral column names per channel, via the schema's grouping (sorted by x)."""
    from spectratorch.data.schema import spectral_columns

    return {channel: [name for _, name in items] for channel, items in spectral_columns(df.columns).items()}


@pytest.fixture
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="session")
def demo_file(tmp_path_factory):
    """A small cleaned demo dataset on disk (shared by the training, report and export tests)."""
    from spectratorch.data.demo import write_demo_dataset

    path = tmp_path_factory.mktemp("data") / "demo.pkl"
    write_demo_dataset(path, n_samples=900, seed=3)
    return path


@pytest.fixture
def one_thread():
    """One torch thread for the test: on tiny tensors intra-op threads cost more than they save, and on a busy
    2-core machine they spin against each other (seconds per step instead of milliseconds)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def spectra_like(n: int, n_features: int, n_classes: int = 3, seed: int = 0, bump=lambda y: 0.5 * y):
    """Smooth random curves ``x [n, n_features]`` whose points 40..59 rise by ``bump(y)``, their classes ``y``, and 25
    new curves without a class: a small separable set for the closed-form heads."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = rng.normal(size=(n, n_features)).cumsum(1) * 0.1
    x[:, 40:60] += bump(y)[:, None]
    return x, y, rng.normal(size=(25, n_features)).cumsum(1) * 0.1
