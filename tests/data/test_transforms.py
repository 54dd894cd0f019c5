import torch

from spectratorch.data.transforms import DataAugment, Mixup, one_hot


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
