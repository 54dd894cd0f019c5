"""MiniRocket and Hydra against the reference implementation (aeon): same features given the same parameters.

Two sources of the reference: ``reference/rocket_reference.npz`` (inputs, aeon's fitted parameters and features,
written by ``reference/make_rocket_reference.py``), always; and aeon itself when it is installed (slow: numba
compiles on first use). aeon is not in the ``test`` extra: its pins (``pandas<3.1``, ``numba<0.64``) would change
the environment's numpy and pandas.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from spectratorch.models.hydra import HydraNet, hydra_dilations
from spectratorch.models.minirocket import MiniRocketNet, _base_kernels, minirocket_dilations

REFERENCE = Path(__file__).parent / "reference" / "rocket_reference.npz"


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as data:
        return {key: data[key] for key in data}


def _load_minirocket(net: MiniRocketNet, channels_per_combination, channel_indices, biases=None) -> None:
    """Write aeon's channel subsets (and biases) into ``net``: combination ``i * 84 + k`` is kernel ``k`` at the
    ``i``-th dilation; aeon's univariate path ignores the channel draws."""
    n_channels = net.weight_0.shape[1]
    start = feature = 0
    for i, count in enumerate(net.features_per_kernel):
        mask = torch.zeros(84, n_channels)
        for k in range(84):
            if n_channels == 1:
                mask[k, 0] = 1
                continue
            n = int(channels_per_combination[i * 84 + k])
            mask[k, channel_indices[start : start + n]] = 1
            start += n
        getattr(net, f"weight_{i}").copy_(_base_kernels()[:, None, :] * mask[:, :, None])
        if biases is not None:
            getattr(net, f"bias_{i}").copy_(torch.from_numpy(biases[feature : feature + 84 * count]).view(84, count))
            feature += 84 * count


def _minirocket_with(parameters: dict, prefix: str = "") -> MiniRocketNet:
    x = parameters["x"]
    net = MiniRocketNet(x.shape[1], x.shape[2], 0, 2, n_features=len(parameters["biases"]))
    assert net.dilations == parameters["dilations"].tolist()
    assert net.features_per_kernel == parameters["features_per_dilation"].tolist()
    _load_minirocket(net, parameters[f"{prefix}channels_per_combination"], parameters[f"{prefix}channel_indices"],
                     None if prefix else parameters["biases"])
    return net


def _positions(net: MiniRocketNet, length: int) -> np.ndarray:
    """Positions each feature pools over: ``L`` for a padded kernel/dilation, ``L - 8 d`` for the others."""
    return np.concatenate([np.repeat([length if (i + k) % 2 == 0 else length - 8 * d for k in range(84)], count)
                           for i, (d, count) in enumerate(zip(net.dilations, net.features_per_kernel, strict=True))])


def _assert_same_ppv(net: MiniRocketNet, got: np.ndarray, expected: np.ndarray, length: int) -> None:
    # reason: the reference sums the kernel taps in another order (and with fastmath), so a response within float
    # rounding of its bias may fall on the other side: at most one feature in a thousand, by one position.
    assert got.shape == expected.shape
    differ = np.abs(got - expected) * _positions(net, length)
    assert (differ > 1e-3).mean() <= 1e-3
    assert differ.max() <= 1 + 1e-3


def _case(reference: dict, prefix: str) -> dict:
    return {key[len(prefix) :]: value for key, value in reference.items() if key.startswith(prefix)}


def test_minirocket_dilations_equal_the_reference(reference):
    for row in reference["dilations_table"]:
        length, n_features, n = (int(v) for v in row[:3])
        assert minirocket_dilations(length, n_features) == (row[3 : 3 + n].tolist(), row[3 + n : 3 + 2 * n].tolist())


@pytest.mark.parametrize("case", ["uni", "multi"])
def test_minirocket_features_equal_the_reference_given_its_parameters(reference, case):
    parameters = _case(reference, f"minirocket_{case}_")
    net = _minirocket_with(parameters)
    got = net.transform(torch.from_numpy(parameters["x"])).numpy()
    _assert_same_ppv(net, got, parameters["features"], parameters["x"].shape[2])
    # the padded/unpadded alternation matters: pooling every convolution over the padded length differs
    everywhere_padded = torch.cat([(net._convolve(torch.from_numpy(parameters["x"]), i)[:, :, :, None]
                                    > getattr(net, f"bias_{i}")[None, :, None, :]).float().mean(2).flatten(1)
                                   for i in range(len(net.dilations))], dim=1).numpy()
    assert (np.abs(everywhere_padded - parameters["features"]) > 0).mean() > 0.2


@pytest.mark.parametrize("case", ["uni", "multi"])
def test_minirocket_biases_equal_the_reference_on_one_training_spectrum(reference, case):
    # reason: with one training spectrum both draw it for every kernel, so the quantile biases must agree.
    parameters = _case(reference, f"minirocket_{case}_")
    net = _minirocket_with(parameters, prefix="single_")
    net.fit_data(torch.from_numpy(parameters["x"][:1]))
    got = torch.cat([getattr(net, f"bias_{i}").flatten() for i in range(len(net.dilations))]).numpy()
    np.testing.assert_allclose(got, parameters["single_biases"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["uni", "multi"])
def test_hydra_seed_draws_the_reference_kernels(reference, case):
    parameters = _case(reference, f"hydra_{case}_")
    x = parameters["x"]
    n_groups = 2 * parameters["weight"].shape[2] // 8
    net = HydraNet(x.shape[1], x.shape[2], 0, 2, n_groups=n_groups, seed=5)
    assert len(net.dilations) == parameters["weight"].shape[0] == len(hydra_dilations(x.shape[2]))
    np.testing.assert_array_equal(net.weight.numpy(), parameters["weight"])
    if x.shape[1] > 1:
        np.testing.assert_array_equal(net.channels.numpy(), parameters["channels"])


@pytest.mark.parametrize("case", ["uni", "multi"])
def test_hydra_features_equal_the_reference_given_its_kernels(reference, case):
    parameters = _case(reference, f"hydra_{case}_")
    x = parameters["x"]
    net = HydraNet(x.shape[1], x.shape[2], 0, 2, n_groups=2 * parameters["weight"].shape[2] // 8, seed=99)
    net.weight.copy_(torch.from_numpy(parameters["weight"]))
    net.channels.copy_(torch.from_numpy(parameters["channels"]))
    got = net.transform(torch.from_numpy(x), batch_size=5).numpy()
    np.testing.assert_allclose(got, parameters["features"], rtol=1e-5, atol=1e-5)
    # each group's smallest responses count every position once: L on the spectrum, L - 1 on its difference
    wins = got.reshape(len(x), len(net.dilations), 2, 2, -1, 8)[:, :, :, 1].sum(-1)
    np.testing.assert_array_equal(wins[:, :, 0], x.shape[2])
    np.testing.assert_array_equal(wins[:, :, 1], x.shape[2] - 1)


@pytest.fixture
def aeon_transforms():
    pytest.importorskip("aeon")
    from aeon.transformations.collection.convolution_based import HydraTransformer, MiniRocket

    threads = torch.get_num_threads()
    yield MiniRocket, HydraTransformer
    torch.set_num_threads(threads)  # reason: aeon's Hydra sets torch's thread count to its n_jobs


@pytest.mark.slow
@pytest.mark.parametrize(("channels", "length"), [(1, 300), (4, 211)])
def test_both_equal_aeon_on_fresh_data(aeon_transforms, channels, length):
    MiniRocket, HydraTransformer = aeon_transforms
    rng = np.random.default_rng(channels)
    x = (rng.standard_normal((30, channels, length)).cumsum(-1) / 5).astype(np.float32)
    x[::3, :, : length // 4] = 0
    minirocket = MiniRocket(n_kernels=2000, random_state=7).fit(x)
    counts, indices, dilations, per_dilation, biases = minirocket.parameters
    parameters = {"x": x, "channels_per_combination": counts, "channel_indices": indices, "dilations": dilations,
                  "features_per_dilation": per_dilation, "biases": biases}
    net = _minirocket_with(parameters)
    _assert_same_ppv(net, net.transform(torch.from_numpy(x), batch_size=7).numpy(), minirocket.transform(x), length)
    hydra = HydraTransformer(random_state=7, output_type="numpy").fit(x)
    net = HydraNet(channels, length, 0, 2, seed=7)
    np.testing.assert_allclose(net.transform(torch.from_numpy(x)).numpy(), hydra.transform(x), rtol=1e-5, atol=1e-5)
