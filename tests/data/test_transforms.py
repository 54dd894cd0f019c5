import math

import torch

from spectratorch.data.transforms import DataAugment, Mixup, one_hot, relative_noise


def test_da_statistics():
    torch.manual_seed(0)
    spectra = torch.ones(4000, 2, 50)
    tabular = torch.ones(4000, 3)
    out, tab = DataAugment(0.1, 0.05, 0.0)(spectra, tabular)
    factor = out.mean(dim=2)  # per-spectrum factor, noise averaged out
    assert abs(float(factor.std()) - 0.1) < 0.01 and abs(float(factor.mean()) - 1) < 0.01
    assert abs(float(tab.std()) - 0.05) < 0.005
    assert out.shape == spectra.shape and tab.shape == tabular.shape


def test_da_shift_is_integer_zero_filled_laplace():
    torch.manual_seed(0)
    n, length = 5000, 64
    ramp = torch.arange(1, length + 1, dtype=torch.float32).repeat(n, 1, 1)
    out, _ = DataAugment(0.0, 0.0, 1.5)(ramp, torch.zeros(n, 0))
    middle = out[:, 0, 20]
    shift = 21 - middle  # ramp value at index 20 is 21; a shift s moves value 21 - s there
    assert torch.equal(shift, shift.round())
    # Laplace(1.5), rounded: mean |s| about 1.5, and symmetric
    assert abs(float(shift.abs().mean()) - 1.5) < 0.15 and abs(float(shift.mean())) < 0.1
    right = out[shift > 0]
    assert (right[:, 0, 0] == 0).all()  # zero-filled where the spectrum came from outside


def test_da_shift_moves_every_value_and_fills_both_ends_with_zeros():
    torch.manual_seed(3)
    n, channels, length = 400, 2, 32
    ramp = torch.arange(1, length + 1, dtype=torch.float32).repeat(n, channels, 1)
    out, _ = DataAugment(0.0, 0.0, 4.0)(ramp, torch.zeros(n, 0))
    expected = torch.zeros_like(out)
    for row in range(n):
        for channel in range(channels):
            # any value that is not zero tells the shift; a shift beyond the spectrum leaves only zeros
            values = out[row, channel]
            if not values.any():
                continue
            j = int(values.nonzero()[0])
            shift = j + 1 - int(values[j])
            for j in range(length):
                if 0 <= j - shift < length:
                    expected[row, channel, j] = j - shift + 1
    assert torch.equal(out, expected)
    first, last = out[:, :, 0], out[:, :, -1]
    assert (first == 0).any() and (last == 0).any()  # shifts both ways occurred, zero-filled at both ends


def test_da_is_seeded_and_leaves_its_input_alone():
    spectra, tabular = torch.rand(64, 3, 40), torch.rand(64, 2)
    before = spectra.clone(), tabular.clone()
    torch.manual_seed(7)
    first = DataAugment()(spectra, tabular)
    torch.manual_seed(7)
    second = DataAugment()(spectra, tabular)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert torch.equal(spectra, before[0]) and torch.equal(tabular, before[1])
    assert not torch.equal(DataAugment()(spectra, tabular)[0], first[0])  # the next draw differs


def test_relative_noise_on_the_cpu_is_a_normal_quantised_to_16_bits():
    torch.manual_seed(0)
    scale = 0.05
    noise = relative_noise((1000, 1000), scale, torch.device("cpu"))
    assert noise.shape == (1000, 1000) and noise.dtype == torch.float32
    z = ((noise.double() - 1) / scale).flatten()
    assert abs(float(z.mean())) < 0.005 and abs(float(z.std()) - 1) < 0.005
    assert float(z.abs().max()) < 4.34 and len(torch.unique(noise)) <= 65536
    # Kolmogorov–Smirnov distance to N(0, 1): 1e6 draws of a true normal give about 0.001
    ordered = z.sort().values
    normal_cdf = 0.5 * (1 + torch.erf(ordered / math.sqrt(2)))
    rank = torch.arange(1, len(ordered) + 1, dtype=torch.float64) / len(ordered)
    assert float((rank - normal_cdf).abs().max()) < 0.003
    # odd sizes and other dtypes
    assert relative_noise((3, 5), 0.1, "cpu", torch.float64).dtype == torch.float64
    assert relative_noise((7,), 0.1, "cpu").shape == (7,)


def test_da_identity_with_zero_scales():
    x = torch.rand(3, 2, 10)
    out, _ = DataAugment(0, 0, 0)(x, torch.zeros(3, 0))
    assert torch.equal(out, x)


def test_mixup_mixes_inputs_and_targets_alike():
    torch.manual_seed(1)
    y = torch.tensor([0, 1] * 50)
    spectra = y.float().view(-1, 1, 1).repeat(1, 2, 8)  # spectrum value = class
    tabular = y.float().view(-1, 1)
    target = one_hot(y, 2)
    out, tab, soft = Mixup(0.4)(spectra, tabular, target)
    torch.testing.assert_close(out[:, 0, 0], soft[:, 1])  # value = weight of class 1
    torch.testing.assert_close(tab[:, 0], soft[:, 1])
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(100))
    assert ((soft[:, 1] > 0.01) & (soft[:, 1] < 0.99)).any()  # real mixtures of the two classes
