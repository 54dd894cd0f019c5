import numpy as np
import pytest
import torch

from spectratorch.errors import ConfigError
from spectratorch.export.ood import OutlierScores, fit_ood


def _spectra(rng, n, length=80):
    """Two bands of random heights plus noise: a low-rank family like a product's spectra."""
    x = np.linspace(0.0, 1.0, length)
    bands = np.stack([np.exp(-(((x - 0.3) / 0.05) ** 2)), np.exp(-(((x - 0.6) / 0.08) ** 2))])
    return rng.uniform(0.5, 1.5, (n, 2)) @ bands + rng.normal(0.0, 0.01, (n, length))


def test_foreign_spectra_are_flagged_and_own_spectra_rarely():
    rng = np.random.default_rng(0)
    record = fit_ood(_spectra(rng, 400), _spectra(rng, 400))
    scores = OutlierScores(record)
    own = scores(torch.tensor(_spectra(rng, 2000), dtype=torch.float32))[2].numpy()
    x = np.linspace(0.0, 1.0, 80)
    foreign = _spectra(rng, 50) + 0.3 * np.exp(-(((x - 0.8) / 0.03) ** 2))  # reason: a band the product lacks
    tilted = _spectra(rng, 50) + 0.2 * x  # reason: a baseline tilt (drifted lamp)
    assert own.mean() <= (1 - record["confidence"]) + 0.02
    assert scores(torch.tensor(foreign, dtype=torch.float32))[2].all()
    assert scores(torch.tensor(tilted, dtype=torch.float32))[2].all()


def test_scores_match_the_definitions():
    rng = np.random.default_rng(1)
    train = _spectra(rng, 100, length=20)
    record = fit_ood(train, _spectra(rng, 30, length=20))
    new = _spectra(rng, 5, length=20)
    t2, q, _ = OutlierScores(record)(torch.tensor(new, dtype=torch.float32))
    components, mean = np.asarray(record["components"]), np.asarray(record["mean"])
    t = (new - mean) @ components
    np.testing.assert_allclose(t2.numpy(), (t**2 / record["variances"]).sum(1), rtol=1e-3)
    np.testing.assert_allclose(q.numpy(), ((new - mean - t @ components.T) ** 2).sum(1), rtol=1e-3, atol=1e-6)
    assert record["n_components"] == 2  # reason: two bands; the noise is left to q


def test_bad_arguments_raise():
    with pytest.raises(ConfigError, match="confidence"):
        fit_ood(np.zeros((10, 3)), np.zeros((2, 3)), confidence=1.0)
    with pytest.raises(ConfigError, match="held-out"):
        fit_ood(np.zeros((10, 3)), np.zeros((2, 4)))


def test_the_model_fit_preprocesses_only_the_rows_the_svd_sees(monkeypatch):
    """fit_model_ood subsamples before preprocessing and still equals fit_ood on every row's preprocessed inputs."""
    from spectratorch.export import ood
    from spectratorch.models.classifier import build_classifier

    rng = np.random.default_rng(2)
    raw = _spectra(rng, 300, length=32).astype(np.float32)[:, None, :]
    model = build_classifier("Linear", ["x"], length=32, n_tabular=0, n_classes=2, transforms=("snv",))
    model.preprocess.fit(torch.from_numpy(raw))
    monkeypatch.setattr(ood, "_MAX_ROWS", 120)
    seen = []
    original = ood.preprocessed_inputs
    monkeypatch.setattr(ood, "preprocessed_inputs", lambda m, x, t: seen.append(len(x)) or original(m, x, t))
    record = ood.fit_model_ood(model, (raw[:250], None), (raw[250:], None))
    assert seen == [120, 50] and record["n_train"] == 120
    expected = ood.fit_ood(original(model, raw[:250], None), original(model, raw[250:], None))
    for key in ("mean", "components", "variances", "t2_limit", "q_limit"):
        np.testing.assert_allclose(np.abs(record[key]), np.abs(expected[key]), rtol=1e-9, atol=1e-12)
    t2, q = ood.ood_scores(record, original(model, raw[250:], None))
    assert float(((t2 > record["t2_limit"]) | (q > record["q_limit"])).mean()) == record["held_out_flagged"]
