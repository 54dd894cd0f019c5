import numpy as np
import pytest
import torch
from scipy.signal import savgol_filter

from spectratorch.errors import ConfigError
from spectratorch.models import INFERENCE_TRANSFORMS, SIMULATE_POINTS, Preprocess


def _make_inputs(n=12, n_channels=3, length=200, n_tabular=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    spectra = torch.rand(n, n_channels, length, generator=generator) * 1000.0
    tabular = torch.randn(n, n_tabular, generator=generator) * 5.0
    return spectra, tabular


def test_inference_transforms_constant():
    assert INFERENCE_TRANSFORMS == ("simulate", "snv", "sg1", "sg2", "msc", "emsc", "als")


def test_scaling_maps_training_min_max_to_minus_one_and_one():
    spectra, tabular = _make_inputs()
    pre = Preprocess(["a", "b", "c"], 200, 2).fit(spectra, tabular, chunk_size=5)
    out, tab = pre(spectra, tabular)
    torch.testing.assert_close(out.amin(dim=0), torch.full((3, 200), -1.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(out.amax(dim=0), torch.full((3, 200), 1.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(tab.amin(dim=0), torch.full((2,), -1.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(tab.amax(dim=0), torch.full((2,), 1.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(pre.spectra_min, spectra.amin(dim=0))
    torch.testing.assert_close(pre.tabular_max, tabular.amax(dim=0))
    assert bool(pre.fitted)


def test_chunked_fit_equals_one_chunk():
    spectra, tabular = _make_inputs(n=23)
    whole = Preprocess(["a", "b", "c"], 200, 2, transforms=["snv", "sg1"]).fit(spectra, tabular)
    chunked = Preprocess(["a", "b", "c"], 200, 2, transforms=["snv", "sg1"]).fit(spectra, tabular, chunk_size=4)
    torch.testing.assert_close(whole.spectra_min, chunked.spectra_min)
    torch.testing.assert_close(whole.spectra_max, chunked.spectra_max)


def test_values_outside_training_range_are_not_clipped():
    spectra, tabular = _make_inputs()
    pre = Preprocess(["a", "b", "c"], 200, 2).fit(spectra, tabular)
    out, tab = pre(spectra * 3.0 + 1.0, tabular.abs() * 10.0 + 100.0)
    assert out.max() > 1.5 and tab.min() > 1.5


def test_constant_features_map_to_zero():
    spectra, tabular = _make_inputs()
    spectra[:, 1, 10:20] = 7.0
    tabular[:, 0] = -3.0
    pre = Preprocess(["a", "b", "c"], 200, 2).fit(spectra, tabular)
    out, tab = pre(spectra, tabular)
    assert torch.isfinite(out).all() and torch.isfinite(tab).all()
    assert torch.equal(out[:, 1, 10:20], torch.zeros(12, 10))
    assert torch.equal(tab[:, 0], torch.zeros(12))
    shifted, _ = pre(spectra + 1.0, tabular)
    assert torch.equal(shifted[:, 1, 10:20], torch.zeros(12, 10))


def test_rounding_noise_counts_as_constant():
    spectra, _ = _make_inputs(n_channels=1, n_tabular=0)
    # reason: the derivative of the zeroed, then snv-shifted region is 0 up to float rounding in every sample.
    pre = Preprocess(["277"], 200, 0, transforms=["simulate", "snv", "sg1"]).fit(spectra)
    out, _ = pre(spectra * 1.3)
    hidden = SIMULATE_POINTS["277"] - 5
    assert torch.equal(out[:, 0, :hidden], torch.zeros(12, hidden))
    assert (out[:, 0, 60:].abs() > 0).all()


def test_simulate_zeroes_exactly_the_table_points_per_channel():
    spectra, _ = _make_inputs(n=4, n_channels=4, length=300, n_tabular=0)
    spectra += 1.0  # reason: no zero in the raw data, so every zero below comes from the mask
    channels = ["380", "999", "277", "425"]
    pre = Preprocess(channels, 300, 0, transforms=["simulate"], simulate_points={"999": 7})
    out = pre.apply_transforms(spectra)
    for index, name in enumerate(channels):
        points = {**SIMULATE_POINTS, "999": 7}[name]
        assert torch.equal(out[:, index, :points], torch.zeros(4, points)), name
        assert torch.equal(out[:, index, points:], spectra[:, index, points:]), name


def test_simulate_leaves_unknown_channels_untouched():
    spectra, _ = _make_inputs(n=2, n_channels=2, length=50, n_tabular=0)
    pre = Preprocess(["500", "600"], 50, 0, transforms=["simulate"])
    assert torch.equal(pre.apply_transforms(spectra), spectra)


def test_simulate_longer_than_axis_zeroes_the_channel():
    spectra, _ = _make_inputs(n=2, n_channels=1, length=100, n_tabular=0)
    pre = Preprocess(["425"], 100, 0, transforms=["simulate"])
    assert torch.equal(pre.apply_transforms(spectra), torch.zeros(2, 1, 100))


def test_snv_gives_zero_mean_unit_std():
    spectra, _ = _make_inputs(n=6, n_channels=2, length=120, n_tabular=0)
    out = Preprocess(["a", "b"], 120, 0, transforms=["snv"]).apply_transforms(spectra)
    torch.testing.assert_close(out.mean(dim=-1), torch.zeros(6, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=-1, unbiased=False), torch.ones(6, 2), atol=1e-5, rtol=0)
    # whatever the unit (spectra of 1e-9 to 1e-6), and a spectrum with no spread at all is zero
    small = Preprocess(["a", "b"], 120, 0, transforms=["snv"]).apply_transforms(spectra * 1e-9)
    torch.testing.assert_close(small, out, atol=1e-4, rtol=0)
    flat = Preprocess(["a", "b"], 120, 0, transforms=["snv"]).apply_transforms(torch.zeros(1, 2, 120))
    assert torch.equal(flat, torch.zeros(1, 2, 120))


def test_sg1_of_a_ramp_is_its_slope_and_sg2_of_a_quadratic_is_constant():
    axis = torch.arange(80, dtype=torch.float32)
    spectra = torch.stack([3.0 * axis - 5.0, 0.5 * axis**2 - axis]).reshape(1, 2, 80)
    window = 11
    interior = slice(window // 2, 80 - window // 2)
    sg1 = Preprocess(["a", "b"], 80, 0, transforms=["sg1"], sg_window=window).apply_transforms(spectra)
    torch.testing.assert_close(sg1[0, 0, interior], torch.full((70,), 3.0), atol=1e-4, rtol=0)
    sg2 = Preprocess(["a", "b"], 80, 0, transforms=["sg2"], sg_window=window).apply_transforms(spectra)
    torch.testing.assert_close(sg2[0, 1, interior], torch.full((70,), 1.0), atol=1e-3, rtol=0)
    assert sg1.shape == sg2.shape == spectra.shape


def test_sg_matches_scipy_savgol_filter_with_edge_padding():
    spectra, _ = _make_inputs(n=2, n_channels=2, length=60, n_tabular=0)
    pre = Preprocess(["a", "b"], 60, 0, transforms=["sg1"], sg_window=7, sg_order=3)
    padded = np.pad(spectra.double().numpy(), ((0, 0), (0, 0), (3, 3)), mode="edge")
    expected = savgol_filter(padded, 7, 3, deriv=1, axis=-1, mode="interp")[..., 3:-3]
    np.testing.assert_allclose(pre.apply_transforms(spectra).numpy(), expected, atol=1e-3)


def test_transforms_apply_in_the_order_given():
    spectra, _ = _make_inputs(n=3, n_channels=1, length=64, n_tabular=0)
    snv_first = Preprocess(["a"], 64, 0, transforms=["snv", "sg1"]).apply_transforms(spectra)
    sg1_first = Preprocess(["a"], 64, 0, transforms=["sg1", "snv"]).apply_transforms(spectra)
    torch.testing.assert_close(sg1_first.mean(dim=-1), torch.zeros(3, 1), atol=1e-5, rtol=0)
    assert not torch.allclose(snv_first, sg1_first)


def test_autocast_keeps_the_pipeline_in_float32():
    spectra, tabular = _make_inputs()
    pre = Preprocess(["a", "b", "c"], 200, 2, transforms=["snv", "sg1"]).fit(spectra, tabular)
    expected, _ = pre(spectra, tabular)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = pre(spectra, tabular)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


def test_train_only_transforms_are_ignored():
    pre = Preprocess(["a"], 64, 0, transforms=["da", "snv", "mixup"])
    assert pre.transforms == ("snv",)


def test_state_dict_round_trip_reproduces_outputs():
    spectra, tabular = _make_inputs()
    kwargs = {"transforms": ["simulate", "snv", "sg2"], "sg_window": 9}
    pre = Preprocess(["277", "380", "x"], 200, 2, **kwargs).fit(spectra, tabular)
    other = Preprocess(["277", "380", "x"], 200, 2, **kwargs)
    other.load_state_dict(pre.state_dict())
    for got, expected in zip(other(spectra[:3], tabular[:3]), pre(spectra[:3], tabular[:3]), strict=True):
        assert torch.equal(got, expected)
    assert {"simulate_mask", "sg2_weight", "spectra_min", "tabular_max", "fitted"} <= set(pre.state_dict())


def test_forward_before_fit_raises():
    spectra, tabular = _make_inputs()
    with pytest.raises(ConfigError, match="not fitted"):
        Preprocess(["a", "b", "c"], 200, 2)(spectra, tabular)


def test_no_tabular_passes_none_or_empty_through():
    spectra, _ = _make_inputs(n_tabular=0)
    pre = Preprocess(["a", "b", "c"], 200, 0).fit(spectra)
    assert pre(spectra, None)[1] is None
    assert pre(spectra, torch.zeros(12, 0))[1].shape == (12, 0)


@pytest.mark.parametrize(
    ("spectra_shape", "tabular_shape", "match"),
    [
        ((4, 2, 200), (4, 2), r"spectra of shape \[N, 3, 200\]"),
        ((4, 3, 199), (4, 2), r"spectra of shape \[N, 3, 200\]"),
        ((4, 3, 200), (4, 1), r"tabular of shape \[4, 2\]"),
        ((4, 3, 200), None, "expects 2 tabular features"),
    ],
)
def test_shape_mismatch_raises(spectra_shape, tabular_shape, match):
    pre = Preprocess(["a", "b", "c"], 200, 2)
    tabular = None if tabular_shape is None else torch.zeros(tabular_shape)
    with pytest.raises(ConfigError, match=match):
        pre.fit(torch.zeros(spectra_shape), tabular)


def test_fit_refuses_nan():
    spectra, tabular = _make_inputs()
    spectra[3, 0, 5] = float("nan")
    with pytest.raises(ConfigError, match="NaN or infinite spectra"):
        Preprocess(["a", "b", "c"], 200, 2).fit(spectra, tabular)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": "277"}, "'channels'"),
        ({"channels": ["a", "a"]}, "repeated"),
        ({"transforms": "snv"}, "'transforms'"),
        ({"transforms": ["sg1"], "sg_window": 10}, "'sg_window'"),
        ({"transforms": ["sg1"], "sg_window": 301}, "'sg_window'"),
        ({"transforms": ["sg2"], "sg_order": 1, "sg_window": 5}, "'sg_order'"),
        ({"transforms": ["simulate"], "simulate_points": {"a": -1}}, "simulate_points"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, match):
    arguments = {"channels": ["a"], "length": 300, "n_tabular": 0, **kwargs}
    with pytest.raises(ConfigError, match=match):
        Preprocess(**arguments)


# ---- scatter and baseline corrections -------------------------------------------------------------------------
def _scattered_spectra(n=30, length=120, seed=0):
    """Two bands under a random gain, offset, tilt and curvature, plus noise: what MSC/EMSC/ALS should undo."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, length)
    bands = np.exp(-(((x - 0.4) / 0.1) ** 2)) + 0.5 * np.exp(-(((x - 0.7) / 0.05) ** 2))
    gain, offset = rng.uniform(0.5, 2.0, (n, 1)), rng.uniform(-0.3, 0.3, (n, 1))
    tilt, curve = rng.uniform(-0.5, 0.5, (n, 1)), rng.uniform(-0.3, 0.3, (n, 1))
    return gain * bands + offset + tilt * x + curve * x**2 + rng.normal(0.0, 0.01, (n, length))


@pytest.mark.parametrize("name", ["msc", "emsc"])
def test_scatter_corrections_match_chemotools(name):
    scatter = pytest.importorskip("chemotools.scatter")
    spectra = _scattered_spectra()
    reference = {"msc": scatter.MultiplicativeScatterCorrection(),
                 "emsc": scatter.ExtendedMultiplicativeScatterCorrection(order=3)}[name]
    expected = reference.fit(spectra).transform(spectra)
    inputs = torch.tensor(spectra[:, None, :], dtype=torch.float32)
    pre = Preprocess(["a"], spectra.shape[1], 0, transforms=[name], emsc_order=3).fit(inputs, chunk_size=7)
    got = pre.apply_transforms(inputs)[:, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(getattr(pre, f"{name}_reference")[0], inputs[:, 0].mean(dim=0))


def test_emsc_removes_the_polynomial_and_the_gain():
    spectra = _scattered_spectra()
    inputs = torch.tensor(spectra[:, None, :], dtype=torch.float32)
    out = Preprocess(["a"], spectra.shape[1], 0, transforms=["emsc"]).fit(inputs).apply_transforms(inputs)
    # reason: every spectrum is gain * bands + a quadratic + noise, so after EMSC all look alike up to the noise.
    assert float((out - out.mean(dim=0)).abs().max()) < 0.1
    assert float((inputs - inputs.mean(dim=0)).abs().max()) > 1.0


def test_msc_reference_is_the_mean_of_its_own_input():
    spectra, _ = _make_inputs(n=9, n_channels=2, length=50, n_tabular=0)
    pre = Preprocess(["a", "b"], 50, 0, transforms=["snv", "msc"]).fit(spectra, chunk_size=4)
    snv = Preprocess(["a", "b"], 50, 0, transforms=["snv"]).apply_transforms(spectra)
    torch.testing.assert_close(pre.msc_reference, snv.mean(dim=0))


@pytest.mark.parametrize(("length", "lam", "p"), [(64, 1e2, 0.05), (101, 1e4, 0.01), (300, 1e6, 0.01)])
def test_als_matches_pybaselines(length, lam, p):
    pybaselines = pytest.importorskip("pybaselines")
    from spectratorch.models.preprocess import ALS_SOLVES

    spectra = _scattered_spectra(n=6, length=length, seed=1)
    # reason: pybaselines solves max_iter + 1 times; tol < 0 never stops early, so both run ALS_SOLVES solves.
    baselines = [pybaselines.Baseline().asls(row, lam=lam, p=p, max_iter=ALS_SOLVES - 1, tol=-1.0)[0]
                 for row in spectra]
    expected = spectra - np.stack(baselines)
    inputs = torch.tensor(spectra[:, None, :], dtype=torch.float64)
    pre = Preprocess(["a"], length, 0, transforms=["als"], als_lambda=lam, als_p=p)
    got = pre.apply_transforms(inputs.float())[:, 0].double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_als_removes_a_smooth_baseline_under_peaks():
    x = torch.linspace(0.0, 1.0, 200)
    peaks = torch.exp(-(((x - 0.3) / 0.02) ** 2)) + torch.exp(-(((x - 0.7) / 0.02) ** 2))
    spectra = (peaks + 2.0 + 3.0 * x - 2.0 * x**2).reshape(1, 1, 200)
    out = Preprocess(["a"], 200, 0, transforms=["als"], als_lambda=1e3, als_p=0.001).apply_transforms(spectra)
    assert float((out[0, 0] - peaks).abs().max()) < 0.02


# reason: the whole ALS is 10 unrolled solves, about 20,000 ONNX nodes (a minute to export and load on one core):
# slow. The fast case exports the same solve and reweighting, twice.
@pytest.mark.parametrize("transforms, als_solves", [
    (["msc"], None), (["snv", "emsc"], None), (["als", "msc"], 2),
    pytest.param(["als", "msc"], None, marks=pytest.mark.slow)])
def test_scatter_corrections_onnx_parity(transforms, als_solves, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    if als_solves is not None:
        from spectratorch.models import preprocess

        monkeypatch.setattr(preprocess, "ALS_SOLVES", als_solves)
    import onnxruntime

    spectra, tabular = _make_inputs(n=16, n_channels=2, length=90, n_tabular=1)
    spectra = spectra + torch.linspace(0.0, 500.0, 90)
    pre = Preprocess(["a", "b"], 90, 1, transforms=transforms).fit(spectra, tabular).eval()
    if "als" in transforms:
        assert pre.als.n_solves == (als_solves or 10)
    path = tmp_path / "pre.onnx"
    torch.onnx.export(pre, (spectra[:2], tabular[:2]), str(path), input_names=["s", "t"], output_names=["o", "u"],
                      dynamic_axes={"s": {0: "n"}, "t": {0: "n"}, "o": {0: "n"}}, opset_version=17, dynamo=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["o"], {"s": spectra.numpy(), "t": tabular.numpy()})[0]
    expected = pre(spectra, tabular)[0].detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_new_transforms_round_trip_through_the_state_dict():
    spectra, _ = _make_inputs(n=10, n_channels=2, length=60, n_tabular=0)
    kwargs = {"transforms": ["msc", "emsc", "als"], "emsc_order": 1, "als_lambda": 1e3}
    pre = Preprocess(["a", "b"], 60, 0, **kwargs).fit(spectra)
    other = Preprocess(["a", "b"], 60, 0, **kwargs)
    other.load_state_dict(pre.state_dict())
    assert torch.equal(other(spectra)[0], pre(spectra)[0])
    assert {"msc_reference", "emsc_reference"} <= set(pre.state_dict())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"transforms": ["emsc"], "emsc_order": -1}, "emsc_order"), ({"transforms": ["emsc"], "emsc_order": 299},
     "emsc_order"), ({"transforms": ["als"], "als_lambda": 0.0}, "als_lambda"),
     ({"transforms": ["als"], "als_p": 1.0}, "als_p")],
)
def test_bad_correction_options_raise(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Preprocess(["a"], 300, 0, **kwargs)


def test_a_few_points_of_another_scale_leave_the_others_scaled():
    spectra, _ = _make_inputs(n_channels=1, n_tabular=0)
    # reason: a laser line or one mistyped cell of 1e6: its points span a million times the others'
    spiked = spectra.clone()
    spiked[:, 0, :3] *= 1e6
    spiked[0, 0, 120] = 1e9
    plain, _ = Preprocess(["nir"], 200, 0).fit(spectra)(spectra)
    out, _ = Preprocess(["nir"], 200, 0).fit(spiked)(spiked)
    others = [p for p in range(200) if p not in (0, 1, 2, 120)]
    assert torch.allclose(out[:, 0, others], plain[:, 0, others], atol=1e-5)
    assert out[:, 0, :3].abs().amax() == pytest.approx(1.0)
