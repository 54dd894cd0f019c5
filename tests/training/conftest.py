import pytest

from spectratorch.data.demo import write_demo_dataset


@pytest.fixture(scope="session")
def demo_file(tmp_path_factory):
    """A small cleaned demo dataset on disk (shared by the training tests)."""
    path = tmp_path_factory.mktemp("data") / "demo.pkl"
    write_demo_dataset(path, n_samples=900, seed=3)
    return path
