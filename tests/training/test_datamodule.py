from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from spectratorch import SpectralDataModule
from spectratorch.data import datamodule as datamodule_module
from spectratorch.data.datamodule import IndexBatchSampler, _GatherDataset
from spectratorch.data.splits import make_split
from spectratorch.errors import SchemaError


@pytest.fixture
def dm(demo_file):
    dm = SpectralDataModule(data=str(demo_file), targets=("AVA", "IN"), channels=("277", "380"), batch_size=64,
                            transforms=("da", "mixup"))
    dm.prepare()
    return dm


def test_layout_and_split(dm):
    assert (dm.n_channels, dm.length, dm.n_tabular) == (2, 446, 1)
    assert dm.labels == ("OK", "VR", "NC", "CROCHET")
    reference = make_split(dm.target.y, dm.target.full_truth, 5, 0, 42, "like-val")
    assert np.array_equal(dm.split.val, reference.val) and np.array_equal(dm.split.test, reference.test)
    counts = dm.class_counts()
    assert sum(counts["train"].values()) == len(dm.split.train)


def test_batches_are_gathered_not_collated(dm, monkeypatch):
    calls = []
    original = _GatherDataset.__getitem__

    def spy(self, index):
        calls.append(index)
        return original(self, index)

    monkeypatch.setattr(_GatherDataset, "__getitem__", spy)
    batches = list(dm.train_dataloader())
    assert all(isinstance(i, torch.Tensor) and i.dtype == torch.int64 for i in calls)
    assert len(calls) == len(batches)  # one call per batch, not per sample
    first = batches[0]
    assert first["spectra"].shape == (64, 2, 446) and first["tabular"].shape == (64, 1)
    seen = torch.cat([b["y"] for b in batches])
    assert len(seen) == len(dm.split.train) // 64 * 64  # drop_last on the training split


def test_train_transforms_make_soft_targets(dm):
    torch.manual_seed(0)
    batch = next(iter(dm.train_dataloader()))
    out = dm.train_transform(batch)
    assert out["target"].shape == (64, 4)
    torch.testing.assert_close(out["target"].sum(1), torch.ones(64))
    assert not torch.equal(out["spectra"], batch["spectra"])
    # val batches pass untouched outside training
    val = next(iter(dm.val_dataloader()))
    assert dm.on_after_batch_transfer(val, 0) is val


def test_sampler_shards_and_reshuffles():
    rows = np.arange(100)
    a = IndexBatchSampler(rows, 10, True, seed=1, rank=0, world_size=2)
    b = IndexBatchSampler(rows, 10, True, seed=1, rank=1, world_size=2)
    ia, ib = torch.cat(list(a)), torch.cat(list(b))
    assert len(ia) == len(ib) == 50 and not set(ia.tolist()) & set(ib.tolist())
    first = torch.cat(list(a))
    a.set_epoch(1)
    assert not torch.equal(first, torch.cat(list(a)))
    assert len(a) == 5


def test_sampler_moves_an_epochs_indices_to_its_device_in_one_piece():
    rows = np.arange(100)
    host = list(IndexBatchSampler(rows, 32, True, seed=1))
    placed = list(IndexBatchSampler(rows, 32, True, seed=1, device=torch.device("meta")))
    assert [b.device.type for b in placed] == ["meta"] * 4
    assert [len(b) for b in placed] == [len(b) for b in host] == [32, 32, 32, 4]


def test_the_table_goes_to_a_cuda_trainer_only_where_it_fits(dm, monkeypatch):
    """The loader's decision, without a GPU: a CUDA trainer gets the table on its device when it takes at most a
    quarter of the free memory; a CPU trainer, or too little room, keeps it on the host."""
    source, _ = dm._stage_rows("train")
    nbytes = source.dataset.nbytes
    assert nbytes == sum(t.nelement() * t.element_size() for t in (source.dataset.spectra, source.dataset.tabular,
                                                                   source.dataset.y))
    cuda = torch.device("cuda", 0)
    free = {"bytes": 4 * nbytes}
    monkeypatch.setattr(datamodule_module.torch.cuda, "mem_get_info", lambda device: (free["bytes"], 10 * nbytes))
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=cuda))
    assert dm._table_device(source) == cuda
    free["bytes"] = 4 * nbytes - 1
    assert dm._table_device(source) is None
    dm.trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device("cpu")))
    assert dm._table_device(source) is None


def test_a_placed_table_is_copied_once_and_holds_the_same_rows(dm):
    source, rows = dm._stage_rows("train")
    placed = source.on(torch.device("cpu"))
    assert source.on(torch.device("cpu")) is placed and placed is not source.dataset
    index = torch.as_tensor(rows[:50])
    for name, value in placed[index].items():
        assert torch.equal(value, source.dataset[index][name]), name


def test_external_test_file(demo_file, tmp_path):
    dm = SpectralDataModule(data=str(demo_file), channels=("277",), test_source=str(demo_file))
    dm.prepare()
    test = dm.stage_arrays("test")
    assert len(test) == len(dm.table)
    assert len(dm.split.train) + len(dm.split.val) == len(dm.table)


def test_external_test_file_with_a_shorter_channel_is_refused(demo_file, tmp_path):
    """380 stops at 700 nm in the test file, 277 still reaches 740: the union axis is the training one, but 380's
    last points would be read as zeros."""
    frame = pd.read_pickle(demo_file)
    short = tmp_path / "short380.pkl"
    frame.drop(columns=[c for c in frame.columns if c.startswith("380_") and float(c[4:]) > 700]).to_pickle(short)
    dm = SpectralDataModule(data=str(demo_file), channels=("277", "380"), test_source=str(short))
    with pytest.raises(SchemaError, match=r"channel '380' of the data covers 295\.\.700, the model's 295\.\.740"):
        dm.prepare()


def test_unknown_channel(demo_file):
    dm = SpectralDataModule(data=str(demo_file), channels=("277", "999"))
    with pytest.raises(SchemaError, match=r"'999'.*the data has channels \['277', '380', '425', 'lspr'\]"):
        dm.prepare()
