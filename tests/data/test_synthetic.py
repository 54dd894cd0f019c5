"""Tests of the synthetic maple-syrup dataset generator."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from spectratorch.data import synthetic
from spectratorch.data.raw import LABEL_DTYPES, MIN_INTEGRALS, SATURATION_THRESHOLDS, clean
from spectratorch.data.synthetic import (
    AXIS_EMISSION,
    AXIS_LSPR,
    EXCITATIONS,
    INTENSITY_SHARES,
    TYPE_SHARES,
    make_dataset,
    make_demo_dataset,
)
from spectratorch.errors import ConfigError
from tests.conftest import spectral_column_names

N_SAMPLES = 2000


@pytest.fixture(scope="module")
def generated():
    """A dataset of 2000 samples and the artefact code of each row."""
    return synthetic._generate(N_SAMPLES, 0, "A")


@pytest.fixture(scope="module")
def df(generated):
    return generated[0]


def _intensity(df):
    return df["greffon_defaut_severite"].str.split(" - ").str[0]


def test_same_seed_gives_identical_frame():
    pd.testing.assert_frame_equal(make_dataset(300, seed=3), make_dataset(300, seed=3), check_exact=True)


def test_other_seed_gives_other_frame():
    a, b = make_dataset(300, seed=3), make_dataset(300, seed=4)
    assert not np.array_equal(a["380_450"].to_numpy(), b["380_450"].to_numpy())


def test_public_matches_generate(df):
    pd.testing.assert_frame_equal(make_dataset(N_SAMPLES, seed=0), df, check_exact=True)


def test_axes_and_channels():
    assert AXIS_EMISSION[0] == 295 and AXIS_EMISSION[-1] == 740 and len(AXIS_EMISSION) == 446
    assert AXIS_LSPR[0] == 450 and AXIS_LSPR[-1] == 700 and len(AXIS_LSPR) == 251
    assert EXCITATIONS == ("277", "380", "425")


def test_schema(df):
    assert df.index.name == "id"
    assert df.index.is_unique
    assert df.index[0] == "S0000001" and df.index.str.fullmatch(r"S\d{7}").all()
    labels = list(LABEL_DTYPES)
    assert list(df.columns[: len(labels)]) == labels
    for column, dtype in LABEL_DTYPES.items():
        assert str(df[column].dtype) == dtype, column
    groups = spectral_column_names(df)
    assert list(groups) == ["277", "380", "425", "lspr"]
    for channel in EXCITATIONS:
        assert groups[channel] == [f"{channel}_{x}" for x in range(295, 741)]
    assert groups["lspr"] == [f"lspr_{x}" for x in range(450, 701)]
    assert df.shape == (N_SAMPLES, len(labels) + 3 * 446 + 251)
    assert (df[sum(groups.values(), [])].dtypes == np.float32).all()
    assert df["sequence"].is_unique
    assert not df.isna().any().any()


def test_intensity_shares(df):
    shares = _intensity(df).value_counts(normalize=True)
    for intensity, share in INTENSITY_SHARES.items():
        assert shares[intensity] == pytest.approx(share, abs=2 / N_SAMPLES)


def test_ok_spellings(df):
    spelled = df["greffon_defaut_severite"][_intensity(df) == "OK"].value_counts(normalize=True)
    assert set(spelled.index) == {"OK", "OK - Inspecteur", "OK - SpectrAcer"}
    assert spelled["OK"] == pytest.approx(0.6, abs=0.01)


def test_type_codes_per_intensity(df):
    for intensity, types in TYPE_SHARES.items():
        codes = df.loc[_intensity(df) == intensity, "greffon_defaut_type"]
        assert set(codes) == set(types), intensity


def test_every_class_survives_five_fold_after_cleaning(df):
    cleaned, _ = clean(df)
    counts = cleaned.groupby([_intensity(cleaned), cleaned["greffon_defaut_type"]]).size()
    assert len(counts) == sum(len(t) for t in TYPE_SHARES.values())
    assert counts.min() >= 5


def test_artefacts_removed_with_exact_counts(generated):
    df, artefacts = generated
    codes = synthetic._ARTEFACT_CODES
    cleaned, removed = clean(df)
    expected = {
        "oob": int((artefacts == codes["oob"]).sum()),
        "saturation": int((artefacts == codes["saturated"]).sum()),
        "integral": int((artefacts == codes["weak_277"]).sum()),
    }
    assert removed == expected
    assert all(n > 0 for n in expected.values())
    assert list(cleaned.index) == list(df.index[artefacts == codes["none"]])


def test_artefact_shares(generated):
    _, artefacts = generated
    codes = synthetic._ARTEFACT_CODES
    assert 0.02 <= np.mean(artefacts == codes["saturated"]) <= 0.05
    assert 0.02 <= np.mean(artefacts == codes["weak_277"]) <= 0.05
    assert 0.01 <= np.mean(artefacts == codes["oob"]) <= 0.02


def test_saturated_spectra_reach_the_plateau(generated):
    df, artefacts = generated
    rows = df[artefacts == synthetic._ARTEFACT_CODES["saturated"]]
    groups = spectral_column_names(df)
    peak = np.max([rows[groups[ch]].to_numpy().max(axis=1) for ch in EXCITATIONS], axis=0)
    assert np.all(np.abs(peak - 62000) < 500)


def test_weak_spectra_are_weak_in_277(generated):
    df, artefacts = generated
    rows = df[artefacts == synthetic._ARTEFACT_CODES["weak_277"]]
    integral = rows[spectral_column_names(df)["277"]].to_numpy().sum(axis=1)
    assert np.all(integral < MIN_INTEGRALS["277"])


def test_normal_spectra_inside_thresholds(generated):
    df, artefacts = generated
    normal = df[artefacts == synthetic._ARTEFACT_CODES["none"]]
    groups = spectral_column_names(df)
    for channel in EXCITATIONS:
        values = normal[groups[channel]].to_numpy()
        assert values.max() < SATURATION_THRESHOLDS[channel]
        assert values.sum(axis=1).min() > MIN_INTEGRALS[channel]


def test_below_excitation_is_noise_around_zero(df):
    for channel in ("380", "425"):
        below = df[[f"{channel}_{x}" for x in range(295, int(channel) - 25)]].to_numpy()
        assert abs(np.median(below)) < 10
        assert (below < 0).mean() > 0.2


def test_scatter_peaks(df):
    cleaned, _ = clean(df)
    for channel in ("380", "425"):
        ex = int(channel)
        assert (cleaned[f"{channel}_{ex}"] > 5 * cleaned[f"{channel}_{ex - 20}"].abs()).mean() > 0.95
    assert (cleaned["277_554"] > cleaned["277_534"]).mean() > 0.95


def test_total_intensity_does_not_give_the_class(df):
    cleaned, _ = clean(df)
    total = np.log(cleaned[spectral_column_names(cleaned)["277"]].to_numpy().sum(axis=1))
    ok = (_intensity(cleaned) == "OK").to_numpy()
    difference = abs(total[ok].mean() - total[~ok].mean())
    assert difference < 0.5 * total.std()


def test_lspr_and_transmittance(df):
    cleaned, _ = clean(df)
    lspr = cleaned[spectral_column_names(cleaned)["lspr"]].to_numpy()
    position = AXIS_LSPR[lspr.argmax(axis=1)]
    transmittance = cleaned["greffon_transmittance"].to_numpy()
    assert transmittance.min() >= 0 and transmittance.max() <= 100
    assert np.corrcoef(position, transmittance)[0, 1] < -0.5
    assert 515 <= np.median(position) <= 565
    intensity = _intensity(cleaned).to_numpy()
    assert lspr.max(axis=1)[intensity == "VR"].mean() > 1.2 * lspr.max(axis=1)[intensity == "OK"].mean()


def test_metadata(df):
    span = df["mesure_date"].max() - df["mesure_date"].min()
    assert pd.Timedelta(days=600) < span < pd.Timedelta(days=740)
    assert 2 <= df["instrument_id"].nunique() <= 3
    assert set(df["integration_oob"].unique()) == {0, 1}
    order = df.sort_values("mesure_date", kind="stable")["sequence"].to_numpy()
    assert np.all(np.diff(order) > 0)


def test_make_demo_dataset_is_clean_of_make_dataset():
    expected, expected_removed = clean(make_dataset(500, seed=2))
    cleaned, removed = make_demo_dataset(500, seed=2)
    pd.testing.assert_frame_equal(cleaned, expected, check_exact=True)
    assert removed == expected_removed


def test_unknown_instrument():
    with pytest.raises(ConfigError, match=r"'instrument'.*\['A', 'B'\].*got 'Z'"):
        make_dataset(10, instrument="Z")


@pytest.mark.parametrize("n_samples", [0, -3, 2.5, True])
def test_bad_n_samples(n_samples):
    with pytest.raises(ConfigError, match="n_samples"):
        make_dataset(n_samples)


def test_instrument_spec_is_frozen():
    spec = synthetic.INSTRUMENTS["A"]
    with pytest.raises(AttributeError):
        spec.jitter_nm = 3.0


def test_data_modules_import_no_torch():
    code = (
        "import sys; import spectratorch.data.synthetic, spectratorch.data.raw; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
