"""Tests of the instrument text exports: writing, reading, cleaning and conversion."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectratorch.data.raw import (
    MIN_INTEGRALS,
    SATURATION_THRESHOLDS,
    channel_integrals,
    channel_peaks,
    clean,
    cleaning_masks,
    convert,
    oob_mask,
    read_raw_exports,
    saturated_mask,
    weak_mask,
    write_raw_exports,
)
from spectratorch.data.synthetic import make_dataset, make_demo_dataset
from spectratorch.errors import DataFormatError, SchemaError
from tests.conftest import spectral_column_names

N_SAMPLES = 400
SEED = 5
FILES = ["EX_277_demo_I.txt", "EX_380_demo_I.txt", "EX_425_demo_I.txt", "LSPR_demo_I.txt", "Y_demo.txt"]


@pytest.fixture(scope="module")
def df():
    return make_dataset(N_SAMPLES, seed=SEED)


@pytest.fixture(scope="module")
def pristine_raw_dir(df, tmp_path_factory):
    """The raw exports of ``df``, written once; tests get a copy through ``raw_dir``."""
    folder = tmp_path_factory.mktemp("pristine") / "raw"
    write_raw_exports(df, folder)
    return folder


@pytest.fixture
def raw_dir(pristine_raw_dir, tmp_path):
    return Path(shutil.copytree(pristine_raw_dir, tmp_path / "raw"))


def _lines(path):
    return path.read_text().splitlines(keepends=True)


def _write_lines(path, lines):
    path.write_text("".join(lines))


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------------------------------------------------
# Round trip
# ---------------------------------------------------------------------------------------------------------------
def test_write_names_and_no_temporaries(df, tmp_path):
    paths = write_raw_exports(df, tmp_path / "raw")
    assert [p.name for p in paths] == FILES
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(FILES)


def test_export_layout(raw_dir):
    header = _lines(raw_dir / "EX_277_demo_I.txt")[0].rstrip("\n").split("\t")
    assert header[0] == "sequence" and header[1] == "295" and header[-1] == "740" and len(header) == 447
    lspr_header = _lines(raw_dir / "LSPR_demo_I.txt")[0].rstrip("\n").split("\t")
    assert lspr_header[1] == "450" and lspr_header[-1] == "700"
    y_header = _lines(raw_dir / "Y_demo.txt")[0].rstrip("\n").split("\t")
    assert y_header[0] == "sequence" and y_header[-1] == "id"
    assert "greffon_defaut_severite" in y_header and "mesure_date" in y_header
    first = _lines(raw_dir / "Y_demo.txt")[1].split("\t")
    assert "T" in first[y_header.index("mesure_date")]


def test_round_trip(df, raw_dir):
    back = read_raw_exports(raw_dir)
    pd.testing.assert_frame_equal(back, df, check_exact=False, rtol=1e-6)
    groups = spectral_column_names(df)
    spectral = sum(groups.values(), [])
    np.testing.assert_array_equal(back[spectral].to_numpy(), df[spectral].to_numpy())


def test_round_trip_without_lspr(df, tmp_path):
    no_lspr = df.drop(columns=spectral_column_names(df)["lspr"])
    paths = write_raw_exports(no_lspr, tmp_path / "raw", name="batch_2024")
    assert [p.name for p in paths] == ["EX_277_batch_2024_I.txt", "EX_380_batch_2024_I.txt",
                                       "EX_425_batch_2024_I.txt", "Y_batch_2024.txt"]  # fmt: skip
    pd.testing.assert_frame_equal(read_raw_exports(tmp_path / "raw"), no_lspr, check_exact=False, rtol=1e-6)


def test_read_without_id_uses_sequence(df, tmp_path):
    write_raw_exports(df.iloc[:20], tmp_path)
    y = pd.read_csv(tmp_path / "Y_demo.txt", sep="\t", index_col=0).drop(columns="id")
    y.to_csv(tmp_path / "Y_demo.txt", sep="\t")
    back = read_raw_exports(tmp_path)
    assert back.index.name == "id"
    assert list(back.index) == [str(s) for s in df["sequence"].iloc[:20]]


def test_write_needs_sequence(df, tmp_path):
    with pytest.raises(SchemaError, match="'sequence' column"):
        write_raw_exports(df.drop(columns="sequence"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_rejects_unknown_channel(df, tmp_path):
    odd = df.iloc[:5].assign(abs_500=1.0)
    with pytest.raises(SchemaError, match="'abs' has no raw export format"):
        write_raw_exports(odd, tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# Bad inputs: each raises DataFormatError naming the problem and leaves no output file
# ---------------------------------------------------------------------------------------------------------------
def _convert_fails(raw_dir, tmp_path, match):
    out = tmp_path / "out" / "dataset.pkl"
    with pytest.raises(DataFormatError, match=match):
        convert(raw_dir, out)
    assert not out.exists()
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_missing_folder(tmp_path):
    _convert_fails(tmp_path / "nowhere", tmp_path, "does not exist")


def test_empty_folder(tmp_path):
    (tmp_path / "raw").mkdir()
    _convert_fails(tmp_path / "raw", tmp_path, "Found no raw export.*an empty folder")


def test_missing_label_file(raw_dir, tmp_path):
    (raw_dir / "Y_demo.txt").unlink()
    _convert_fails(raw_dir, tmp_path, r"Label file Y_demo\.txt is missing.*EX_277_demo_I\.txt")


def test_missing_excitation_files(raw_dir, tmp_path):
    for name in FILES[:3]:
        (raw_dir / name).unlink()
    _convert_fails(raw_dir, tmp_path, r"No excitation export EX_<nm>_demo_I\.txt.*'lspr'")


def test_several_datasets(raw_dir, df, tmp_path):
    write_raw_exports(df.iloc[:10], raw_dir, name="other")
    _convert_fails(raw_dir, tmp_path, r"several datasets \['demo', 'other'\]")


def test_sequences_do_not_match(raw_dir, tmp_path):
    path = raw_dir / "EX_380_demo_I.txt"
    lines = _lines(path)
    dropped = [line.split("\t")[0] for line in lines[1:4]]
    _write_lines(path, lines[:1] + lines[4:])
    _convert_fails(raw_dir, tmp_path, rf"EX_380_demo_I\.txt.*do not match.*3 label sequences.*{dropped[0]}")


def test_extra_sequence(raw_dir, tmp_path):
    path = raw_dir / "EX_425_demo_I.txt"
    lines = _lines(path)
    _write_lines(path, lines + ["999\t" + lines[1].split("\t", 1)[1]])
    _convert_fails(raw_dir, tmp_path, r"1 spectra have no label \(e\.g\. 999\)")


def test_ragged_long_row(raw_dir, tmp_path):
    path = raw_dir / "EX_277_demo_I.txt"
    lines = _lines(path)
    lines[5] = lines[5].rstrip("\n") + "\t1.0\t2.0\n"
    _write_lines(path, lines)
    _convert_fails(raw_dir, tmp_path, r"EX_277_demo_I\.txt' is ragged.*Expected 447 fields")


def test_ragged_short_row(raw_dir, tmp_path):
    path = raw_dir / "EX_277_demo_I.txt"
    lines = _lines(path)
    sequence = lines[7].split("\t")[0]
    lines[7] = "\t".join(lines[7].split("\t")[:300]) + "\n"
    _write_lines(path, lines)
    _convert_fails(raw_dir, tmp_path, rf"EX_277_demo_I\.txt.*1 rows are short.*{sequence}.*expected 446 values")


def test_non_numeric_value(raw_dir, tmp_path):
    path = raw_dir / "EX_380_demo_I.txt"
    lines = _lines(path)
    fields = lines[3].split("\t")
    fields[10] = "n/a"
    lines[3] = "\t".join(fields)
    _write_lines(path, lines)
    _convert_fails(raw_dir, tmp_path, rf"EX_380_demo_I\.txt.*1 non-numeric.*'n/a' at sequence {fields[0]} "
                                      r"wavelength 304")  # fmt: skip


def test_bad_wavelength_header(raw_dir, tmp_path):
    path = raw_dir / "EX_380_demo_I.txt"
    lines = _lines(path)
    lines[0] = lines[0].replace("\t300\t", "\tthree hundred\t")
    _write_lines(path, lines)
    _convert_fails(raw_dir, tmp_path, r"headers must be wavelengths.*'three hundred'")


def test_duplicated_sequences(raw_dir, tmp_path):
    path = raw_dir / "EX_277_demo_I.txt"
    lines = _lines(path)
    _write_lines(path, lines + [lines[2]])
    _convert_fails(raw_dir, tmp_path, rf"EX_277_demo_I\.txt' has 1 duplicated sequence ids.*{lines[2].split()[0]}")


def test_duplicated_sequences_in_labels(raw_dir, tmp_path):
    path = raw_dir / "Y_demo.txt"
    lines = _lines(path)
    _write_lines(path, lines + [lines[1]])
    _convert_fails(raw_dir, tmp_path, r"Y_demo\.txt' has 1 duplicated sequence ids")


def test_empty_file(raw_dir, tmp_path):
    (raw_dir / "EX_425_demo_I.txt").write_text("")
    _convert_fails(raw_dir, tmp_path, r"EX_425_demo_I\.txt' is empty")


def test_header_only_file(raw_dir, tmp_path):
    path = raw_dir / "Y_demo.txt"
    _write_lines(path, _lines(path)[:1])
    _convert_fails(raw_dir, tmp_path, r"Y_demo\.txt' has a header but no sample row")


def test_label_row_without_id(raw_dir, tmp_path):
    path = raw_dir / "Y_demo.txt"
    lines = _lines(path)
    lines[4] = "\t".join(lines[4].split("\t")[:-1]) + "\n"
    _write_lines(path, lines)
    _convert_fails(raw_dir, tmp_path, r"1 rows have no 'id'")


def test_bad_label_value(raw_dir, tmp_path):
    path = raw_dir / "Y_demo.txt"
    lines = _lines(path)
    header = lines[0].rstrip("\n").split("\t")
    fields = lines[2].split("\t")
    fields[header.index("greffon_defaut_type")] = "twelve"
    lines[2] = "\t".join(fields)
    _write_lines(path, lines)
    _convert_fails(raw_dir, tmp_path, r"column 'greffon_defaut_type' must convert to int64")


def test_bad_output_suffix(raw_dir, tmp_path):
    out = tmp_path / "dataset.xlsx"
    with pytest.raises(DataFormatError, match=r"suffix '\.xlsx'.*\['\.pkl', '\.parquet', '\.csv'\]"):
        convert(raw_dir, out)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# Cleaning
# ---------------------------------------------------------------------------------------------------------------
def _toy():
    """Five rows of 50-point spectra: clean, saturated in 380, weak in 277, oob and saturated in 277, weak in 425."""
    levels = {"277": [3500.0, 3500.0, 100.0, 3500.0, 3500.0], "380": [5000.0] * 5,
              "425": [8000.0, 8000.0, 8000.0, 8000.0, 1000.0]}  # fmt: skip
    columns = {}
    for channel, level in levels.items():
        for x in range(400, 450):
            columns[f"{channel}_{x}"] = np.array(level, dtype=np.float32)
    columns["380_420"] = columns["380_420"].copy()
    columns["380_420"][1] = 7000.5
    columns["277_420"] = columns["277_420"].copy()
    columns["277_420"][3] = 9000.0
    toy = pd.DataFrame(columns, index=pd.Index(list("abcde"), name="id"))
    toy["integration_oob"] = np.array([0, 0, 0, 1, 0], dtype=np.int8)
    return toy


def test_masks():
    toy = _toy()
    assert saturated_mask(toy).tolist() == [False, True, False, True, False]
    assert weak_mask(toy).tolist() == [False, False, True, False, True]
    assert oob_mask(toy).tolist() == [False, False, False, True, False]
    assert saturated_mask(toy).index.equals(toy.index)


def test_channel_peaks_and_integrals():
    toy = _toy()
    peaks, integrals = channel_peaks(toy), channel_integrals(toy)
    assert list(peaks.columns) == ["277", "380", "425"] and peaks.index.equals(toy.index)
    assert peaks["380"].tolist() == [5000.0, 7000.5, 5000.0, 5000.0, 5000.0]
    assert peaks["277"].tolist() == [3500.0, 3500.0, 100.0, 9000.0, 3500.0]
    assert integrals["425"].tolist() == [400000.0, 400000.0, 400000.0, 400000.0, 50000.0]
    assert integrals.loc["b", "380"] == 49 * 5000.0 + 7000.5
    assert list(channel_peaks(toy, ["425", "999"]).columns) == ["425"]


def test_masks_read_the_peaks_and_integrals_on_generated_data(df):
    peaks, integrals = channel_peaks(df), channel_integrals(df)
    assert list(peaks.columns) == ["277", "380", "425", "lspr"]
    spectral = spectral_column_names(df)
    np.testing.assert_array_equal(peaks["380"].to_numpy(), df[spectral["380"]].to_numpy().max(axis=1))
    np.testing.assert_allclose(integrals["277"].to_numpy(), df[spectral["277"]].to_numpy().sum(axis=1), rtol=1e-5)
    expected_saturated = (peaks[list(SATURATION_THRESHOLDS)] > pd.Series(SATURATION_THRESHOLDS)).any(axis=1)
    expected_weak = (integrals[list(MIN_INTEGRALS)] < pd.Series(MIN_INTEGRALS)).any(axis=1)
    assert expected_saturated.sum() > 0 and expected_weak.sum() > 0
    assert saturated_mask(df).tolist() == expected_saturated.tolist()
    assert weak_mask(df).tolist() == expected_weak.tolist()


def test_cleaning_masks_are_independent_and_clean_follows_them():
    toy = _toy()
    masks = cleaning_masks(toy)
    assert list(masks.columns) == ["oob", "saturation", "integral"] and masks.index.equals(toy.index)
    assert masks.sum().to_dict() == {"oob": 1, "saturation": 2, "integral": 2}
    assert masks.loc["d"].tolist() == [True, True, False]
    kept, _ = clean(toy)
    assert list(kept.index) == list(toy.index[~masks.any(axis=1)])
    off = cleaning_masks(toy, saturation=None, min_integral={}, drop_oob=False)
    assert not off.to_numpy().any()
    assert cleaning_masks(toy, saturation={277: 8000.0}).sum().to_dict() == {"oob": 1, "saturation": 1,
                                                                             "integral": 2}


def test_thresholds_are_the_lab_values():
    assert SATURATION_THRESHOLDS == {"277": 6500.0, "380": 7000.0, "425": 10000.0}
    assert MIN_INTEGRALS == {"277": 150000.0, "380": 220000.0, "425": 300000.0}


def test_clean_counts_each_row_once_in_rule_order():
    kept, removed = clean(_toy())
    assert list(kept.index) == ["a"]
    assert removed == {"oob": 1, "saturation": 1, "integral": 2}
    assert list(removed) == ["oob", "saturation", "integral"]


def test_clean_rules_can_be_switched_off():
    kept, removed = clean(_toy(), saturation=None, min_integral={}, drop_oob=False)
    assert len(kept) == 5 and removed == {"oob": 0, "saturation": 0, "integral": 0}
    kept, removed = clean(_toy(), drop_oob=False)
    assert removed == {"oob": 0, "saturation": 2, "integral": 2}


def test_missing_channels_are_skipped():
    toy = _toy().drop(columns=[c for c in _toy().columns if c.startswith("380_")] + ["integration_oob"])
    assert saturated_mask(toy, {"380": 1.0, "277": 6500.0}).tolist() == [False, False, False, True, False]
    assert weak_mask(toy, {"999": 1e9}).tolist() == [False] * 5
    assert oob_mask(toy).tolist() == [False] * 5


def test_custom_thresholds():
    kept, removed = clean(_toy(), saturation={"277": 10000.0}, min_integral={"277": 10000.0})
    assert removed == {"oob": 1, "saturation": 0, "integral": 1}


# ---------------------------------------------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------------------------------------------
def test_convert_pickle_equals_demo_dataset(raw_dir, tmp_path):
    removed = convert(raw_dir, tmp_path / "demo.pkl")
    expected, expected_removed = make_demo_dataset(N_SAMPLES, seed=SEED)
    assert removed == expected_removed
    assert sum(removed.values()) > 0
    pd.testing.assert_frame_equal(pd.read_pickle(tmp_path / "demo.pkl"), expected, check_exact=False, rtol=1e-6)


def test_convert_parquet(raw_dir, tmp_path):
    convert(raw_dir, tmp_path / "demo.parquet")
    expected, _ = make_demo_dataset(N_SAMPLES, seed=SEED)
    back = pd.read_parquet(tmp_path / "demo.parquet")
    pd.testing.assert_frame_equal(back, expected, check_exact=False, rtol=1e-6)


def test_convert_csv(raw_dir, tmp_path):
    removed = convert(raw_dir, tmp_path / "sub" / "demo.csv", drop_oob=False)
    expected, expected_removed = clean(make_dataset(N_SAMPLES, seed=SEED), drop_oob=False)
    assert removed == expected_removed and removed["oob"] == 0
    back = pd.read_csv(tmp_path / "sub" / "demo.csv", index_col="id")
    assert list(back.columns) == list(expected.columns)
    assert list(back.index) == list(expected.index)
    np.testing.assert_allclose(back["380_450"].to_numpy(), expected["380_450"].to_numpy(), rtol=1e-6)
    assert _leftovers(tmp_path / "sub") == []
