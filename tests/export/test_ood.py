import numpy as np
import pytest
import torch

from spectratorch.errors import ConfigError
from spectratorch.export.ood import OutlierScores, fit_ood, fit_ood_out_of_fold, ood_scores


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


def _noisy(rng, n, length=300):
    """Two bands under noise that dominates the variance (20 components explain well under 99 % of it)."""
    return _spectra(rng, n, length) + rng.normal(0.0, 0.3, (n, length))


def test_out_of_fold_limits_are_the_quantiles_of_scores_by_pcas_of_the_other_folds():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(3)
    train = _noisy(rng, 150)
    record = fit_ood_out_of_fold(train, seed=4)
    k = record["n_components"]
    t2, q = np.empty(len(train)), np.empty(len(train))
    folds = np.random.default_rng(4).permutation(len(train)) % 5
    for fold in range(5):
        held = folds == fold
        pca = PCA(k, svd_solver="full").fit(train[~held])  # reason: the reference PCA, not our SVD
        centred = train[held] - pca.mean_
        t = centred @ pca.components_.T
        t2[held] = (t**2 / pca.explained_variance_).sum(1)
        q[held] = ((centred - t @ pca.components_) ** 2).sum(1)
    assert record["t2_limit"] == pytest.approx(np.quantile(t2, 0.995, method="higher"), rel=1e-6)
    assert record["q_limit"] == pytest.approx(np.quantile(q, 0.995, method="higher"), rel=1e-6)
    # the model itself is the PCA of every row
    reference = PCA(k, svd_solver="full").fit(train)
    np.testing.assert_allclose(record["mean"], reference.mean_)
    np.testing.assert_allclose(record["variances"], reference.explained_variance_, rtol=1e-8)
    assert record["n_held_out"] == record["n_train"] == 150


def test_out_of_fold_limits_hold_their_rate_on_new_spectra_where_a_small_validation_fold_cannot():
    """60 training rows: limits on a validation fold of 12 are the largest of 12 scores, exceeded by about 2 / 13 of
    new spectra; the out-of-fold limits of all 60 rows stay near the stated 1 %."""
    oof, held_out = [], []
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        train, new = _spectra(rng, 60, 300), _spectra(rng, 2000, 300)
        fits = ((oof, fit_ood_out_of_fold(train, seed=seed)), (held_out, fit_ood(train[:48], train[48:])))
        for rates, record in fits:
            t2, q = ood_scores(record, new)
            rates.append(float(((t2 > record["t2_limit"]) | (q > record["q_limit"])).mean()))
    assert np.mean(oof) <= 0.035 and np.mean(held_out) >= 0.08, (oof, held_out)


def test_out_of_fold_limits_with_groups_hold_their_rate_on_new_samples_where_replicate_scans_would_not():
    """40 samples scanned 3 times: scored row by row, a scan's twins fit the PCA that scores it, so its residual is
    small and the limits too tight for a new sample; with the groups a sample's scans share their fold."""
    rates = {"rows": [], "groups": []}
    for seed in range(4):
        rng = np.random.default_rng(seed)
        samples = _spectra(rng, 40, 300)
        scans = np.repeat(samples, 3, axis=0) + rng.normal(0.0, 0.001, (120, 300))
        new = _spectra(rng, 2000, 300)
        for kind, groups in (("rows", None), ("groups", np.repeat([f"s{k}" for k in range(40)], 3))):
            record = fit_ood_out_of_fold(scans, seed=seed, groups=groups)
            t2, q = ood_scores(record, new)
            rates[kind].append(float(((t2 > record["t2_limit"]) | (q > record["q_limit"])).mean()))
    assert record["limits_from"] == "5-fold out-of-fold scores of the training rows, each sample's rows in one fold " \
                                    "(--groups)"
    assert np.mean(rates["groups"]) <= 0.035 and np.mean(rates["rows"]) >= 0.08, rates
    # as many folds as samples at most
    assert fit_ood_out_of_fold(scans[:9], groups=np.repeat(["a", "b", "c"], 3))["limits_from"].startswith("3-fold")


def test_out_of_fold_limits_on_the_fewest_rows_leave_one_out_and_need_three():
    rng = np.random.default_rng(6)
    record = fit_ood_out_of_fold(_spectra(rng, 4, length=20))
    assert record["n_held_out"] == 4 and record["limits_from"].startswith("4-fold")
    assert np.isfinite([record["t2_limit"], record["q_limit"]]).all()
    with pytest.raises(ConfigError, match="out-of-fold limits need >= 3 training rows"):
        fit_ood_out_of_fold(np.zeros((2, 3)))
