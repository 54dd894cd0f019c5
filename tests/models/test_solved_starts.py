"""PLSDA's and LDA's own fit (the start of a large-set run, or a solved head outside the small-set protocol): the
value a 5-fold CV of the rows chooses, then scikit-learn's model of every row at that value, tabular values included."""

import numpy as np
import pytest
import torch

from spectratorch.models import create_model
from spectratorch.models.closed_form import LDA_SHRINKAGES
from tests.conftest import spectra_like


def _reference(arch: str, value, x_fit: np.ndarray, y_fit: np.ndarray):
    """scikit-learn's model at ``value`` on these rows: a function of new rows to its class scores."""
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.preprocessing import StandardScaler

    if arch == "PLSDA":
        return PLSRegression(n_components=value, scale=False).fit(x_fit, np.eye(3)[y_fit]).predict
    scaler = StandardScaler().fit(x_fit)
    model = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=value).fit(scaler.transform(x_fit), y_fit)
    return lambda x: model.decision_function(scaler.transform(x))


@pytest.mark.parametrize("arch", ["PLSDA", "LDA"])
def test_fit_data_solves_the_head_at_the_value_a_five_fold_cv_chooses(arch):
    from sklearn.model_selection import StratifiedKFold

    x, y, _ = spectra_like(90, 120, 3)
    tabular = np.random.default_rng(1).normal(size=(90, 2))
    inputs = np.hstack([x, tabular])
    grid = list(range(1, 21)) if arch == "PLSDA" else list(LDA_SHRINKAGES)
    hits = np.zeros(len(grid))
    for fit, held in StratifiedKFold(5, shuffle=True, random_state=0).split(inputs, y):
        for g, value in enumerate(grid):
            hits[g] += (_reference(arch, value, inputs[fit], y[fit])(inputs[held]).argmax(1) == y[held]).sum()
    chosen = grid[int(hits.argmax())]

    net = create_model(arch, n_channels=1, length=120, n_tabular=2, n_classes=3).double()
    net.fit_data(torch.from_numpy(x[:, None]), torch.from_numpy(tabular), torch.from_numpy(y))
    with torch.no_grad():
        ours = net(torch.from_numpy(x[:, None]), torch.from_numpy(tabular)).numpy()
    expected = _reference(arch, chosen, inputs, y)(inputs)
    if arch == "LDA":
        expected = expected - expected.mean(1, keepdims=True)  # reason: the head's scores are centred over classes
    np.testing.assert_allclose(ours, expected, atol=1e-6 * np.abs(expected).max())
