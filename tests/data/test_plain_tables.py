"""Plain tables: bare-number spectral columns read as one channel, and the defaults that follow the data."""

import logging

import numpy as np
import pandas as pd
import pytest

from spectratorch.config import DataConfig
from spectratorch.data.generic import make_generic_frame
from spectratorch.data.io import csv_dialect, read_dataset, write_dataset
from spectratorch.data.resolve import default_targets, label_candidates
from spectratorch.data.schema import PLAIN_CHANNEL, is_plain_layout, load_table, spectral_columns
from spectratorch.errors import DataFormatError, SchemaError, TargetError
from tests.conftest import make_frame


def plain_frame(n=40, seed=0, descending=False, with_id=False) -> pd.DataFrame:
    """A generic frame with bare-number headers (``"900"``, ``"904.02"`` ...), label first, no id column."""
    df = make_generic_frame(n, seed=seed, length=60)
    spectra = df.drop(columns="label").rename(columns=lambda c: c.removeprefix("nir_"))
    if descending:
        spectra = spectra[spectra.columns[::-1]]
    out = pd.concat([df[["label"]], spectra], axis=1).reset_index(drop=not with_id)
    return out


def test_bare_numbers_are_one_channel_sorted_by_x():
    groups = spectral_columns(["label", "1100.5", "1100", 1099, "-3e1"])
    assert list(groups) == [PLAIN_CHANNEL]
    assert [x for x, _ in groups[PLAIN_CHANNEL]] == [-30.0, 1099.0, 1100.0, 1100.5]
    # reason: a frame with <channel>_<x> columns is the lab's layout; its other columns are never spectra.
    assert list(spectral_columns(["nir_1", "2", "3"])) == ["nir"]
    assert is_plain_layout(["a", "1"]) and not is_plain_layout(["nir_1", "1"]) and not is_plain_layout(["a", "b"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xlsx"])
@pytest.mark.parametrize("descending", [False, True])
def test_plain_files_read_as_one_channel(tmp_path, suffix, descending, caplog):
    df = plain_frame(descending=descending)
    path = tmp_path / f"plain{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".xlsx":
        df.to_excel(path, index=False)
    else:
        df.to_parquet(path)
    with caplog.at_level(logging.INFO, logger="spectratorch"):
        table = load_table(path, channels="default")
    assert table.channels == (PLAIN_CHANNEL,) and table.tabular_columns == ()
    axis = np.array(sorted(float(c) for c in df.columns[1:]))
    np.testing.assert_allclose(table.axis, axis)
    ordered = df[sorted(df.columns[1:], key=float)].to_numpy(np.float32)
    np.testing.assert_allclose(table.spectra[:, 0], ordered, rtol=1e-6)
    assert table.meta.columns.tolist() == ["label"] and table.ids.tolist() == list(range(len(df)))
    assert "read as one channel 'spectrum'" in caplog.text


@pytest.mark.parametrize("separator, decimal", [(";", ","), ("\t", ","), (";", "."), ("\t", ".")])
def test_semicolon_and_tab_files_with_decimal_commas_read_as_the_comma_file(tmp_path, separator, decimal, caplog):
    df = plain_frame(with_id=True)
    df.to_csv(tmp_path / "plain.csv", index=False)
    if decimal == ",":
        # reason: a spreadsheet in a European locale writes the wavelengths of the header with a comma too.
        df = df.rename(columns=lambda c: c.replace(".", ","))
    df.to_csv(tmp_path / "local.csv", index=False, sep=separator, decimal=decimal)
    with caplog.at_level(logging.INFO, logger="spectratorch"):
        local = read_dataset(tmp_path / "local.csv")
    pd.testing.assert_frame_equal(local, read_dataset(tmp_path / "plain.csv"))
    name = {";": "semicolon", "\t": "tab"}[separator]
    assert f"read as {name}-separated values with decimal {'commas' if decimal == ',' else 'points'}" in caplog.text


@pytest.mark.parametrize("separator, decimal", [(",", "."), (";", ",")])
def test_a_spectrum_of_thousands_of_points_reads(tmp_path, separator, decimal):
    """One line of 8,000 points is over 131,072 characters: one field to the csv module when it tries another
    separator, which stopped the reading with a traceback past its default field size limit."""
    import csv

    rng = np.random.default_rng(0)
    axis = np.linspace(4000, 400, 8000)
    df = pd.DataFrame(rng.random((6, 8000)), columns=[f"{x:.4f}" for x in axis])
    df.insert(0, "label", ["a", "b"] * 3)
    assert len(df.iloc[0].to_csv(sep=separator)) > 131_072
    limit = csv.field_size_limit()
    df.to_csv(tmp_path / "wide.csv", index=False, sep=separator, decimal=decimal)
    table = load_table(read_dataset(tmp_path / "wide.csv"))
    assert table.spectra.shape == (6, 1, 8000) and csv.field_size_limit() == limit
    np.testing.assert_allclose(table.spectra[:, 0, :], df.drop(columns="label").to_numpy()[:, ::-1], rtol=1e-6)


@pytest.mark.parametrize("header", ["X{}", "{} nm", "{}nm", "{} cm-1"])
def test_axis_headers_as_r_and_instruments_write_them_read_as_bare_numbers(tmp_path, header):
    """R's read.csv writes X900.5 for 900.5; some exports add the unit."""
    df = plain_frame(with_id=True)
    df.to_csv(tmp_path / "plain.csv", index=False)
    named = df.rename(columns=lambda c: header.format(c) if c not in ("index", "label") else c)
    assert "label" in named.columns and named.columns[-1] != df.columns[-1]
    named.to_csv(tmp_path / "named.csv", index=False)
    table, plain = load_table(read_dataset(tmp_path / "named.csv")), load_table(read_dataset(tmp_path / "plain.csv"))
    assert table.channels == plain.channels == (PLAIN_CHANNEL,)
    np.testing.assert_array_equal(table.axis, plain.axis)
    np.testing.assert_array_equal(table.spectra, plain.spectra)


def test_decimal_commas_under_a_header_of_points(tmp_path):
    # reason: as many commas as semicolons on every data row; the header (points) has none.
    df = plain_frame(with_id=True)
    df.to_csv(tmp_path / "plain.csv", index=False)
    df.to_csv(tmp_path / "local.csv", index=False, sep=";", decimal=",")
    assert (tmp_path / "local.csv").read_text().splitlines()[1].count(",") >= 60
    pd.testing.assert_frame_equal(read_dataset(tmp_path / "local.csv"), read_dataset(tmp_path / "plain.csv"))


def test_a_comma_file_whose_labels_hold_a_semicolon_stays_a_comma_file(tmp_path):
    df = plain_frame(with_id=True)
    df["label"] = df["label"] + ";lot 1"
    df.to_csv(tmp_path / "plain.csv", index=False)
    assert csv_dialect(tmp_path / "plain.csv") == (",", ".", 0)
    assert read_dataset(tmp_path / "plain.csv")["label"].tolist() == df["label"].tolist()


@pytest.mark.parametrize("encoding", ["utf-8-sig", "cp1252"])
def test_accented_labels_in_a_windows_or_bom_file_and_a_trailing_separator(tmp_path, encoding):
    df = plain_frame(with_id=True)
    df["label"] = df["label"].map(dict(zip(sorted(df["label"].unique()), ["crème", "érable", "sirop"])))
    df.to_csv(tmp_path / "plain.csv", index=False)
    (tmp_path / "other.csv").write_bytes(
        "".join(line + ",\n" for line in (tmp_path / "plain.csv").read_text().splitlines()).encode(encoding))
    other = read_dataset(tmp_path / "other.csv")
    pd.testing.assert_frame_equal(other, read_dataset(tmp_path / "plain.csv"))
    assert set(other["label"]) == {"crème", "érable", "sirop"} and other.index.name == "id"


def test_notes_before_the_header_are_skipped_and_a_damaged_header_is_refused(tmp_path, caplog):
    df = plain_frame(with_id=True)
    df.to_csv(tmp_path / "plain.csv", index=False)
    table = (tmp_path / "plain.csv").read_text()
    (tmp_path / "notes.csv").write_text("Instrument: NIR-1\nDate;2024-05-01\n\n" + table.replace(",", ";"))
    with caplog.at_level(logging.INFO, logger="spectratorch"):
        notes = read_dataset(tmp_path / "notes.csv")
    pd.testing.assert_frame_equal(notes, read_dataset(tmp_path / "plain.csv"))
    assert "the 3 line(s) before the table's header skipped ('Instrument: NIR-1'" in caplog.text
    # reason: a header that lost fields is not notes: the line that does not fit it is named, nothing is guessed.
    header, rest = table.split("\n", 1)
    (tmp_path / "damaged.csv").write_text(",".join(header.split(",")[:3]) + "\n" + rest)
    with pytest.raises(DataFormatError, match="line 2 has 62 fields, the header 3"):
        read_dataset(tmp_path / "damaged.csv")


def test_a_semicolon_file_of_whole_numbers_and_a_short_row(tmp_path):
    (tmp_path / "whole.csv").write_text("id;label;900;901\na;x;1;2\nb;y;3;4\n")
    assert read_dataset(tmp_path / "whole.csv").to_dict("list") == {"label": ["x", "y"], "900": [1, 3], "901": [2, 4]}
    (tmp_path / "short.csv").write_text("id;label;900;901\na;x;0,5;0,25\nb;y;0,5\n")
    with pytest.raises(DataFormatError, match="line 3 has 3 fields, the header 4"):
        read_dataset(tmp_path / "short.csv")


def test_an_id_column_becomes_the_index_and_a_label_column_does_not(tmp_path):
    with_id = plain_frame(with_id=True)
    with_id.to_csv(tmp_path / "id.csv", index=False)
    assert read_dataset(tmp_path / "id.csv").index.tolist() == with_id["id"].tolist()
    plain_frame().to_csv(tmp_path / "label_first.csv", index=False)
    df = read_dataset(tmp_path / "label_first.csv")
    assert df.index.tolist() == list(range(40)) and df.columns[0] == "label"
    unnamed = plain_frame().set_index(pd.Index([f"s{i}" for i in range(40)]))
    unnamed.to_csv(tmp_path / "unnamed.csv")
    assert read_dataset(tmp_path / "unnamed.csv").index.tolist() == unnamed.index.tolist()


def test_the_lab_layout_reads_as_before(tmp_path, frame):
    write_dataset(frame, tmp_path / "lab.csv")
    back = read_dataset(tmp_path / "lab.csv")
    assert back.index.tolist() == frame.index.tolist() and back.index.name == "id"
    assert load_table(tmp_path / "lab.csv", channels="default").channels == ("277", "380")
    three = make_frame(10, channels=("277", "380", "425", "lspr"))
    assert load_table(three, channels="default").channels == ("277", "380", "425")


@pytest.mark.parametrize("suffix", [".csv", ".xlsx"])
def test_the_lab_layout_without_its_ids_keeps_its_first_wavelength(tmp_path, suffix):
    # `make_generic_frame(...).to_csv(path, index=False)`: the first column is nir_900.00, a spectrum's first point
    frame = make_generic_frame(12, length=20)
    path = tmp_path / f"no_ids{suffix}"
    frame.to_csv(path, index=False) if suffix == ".csv" else frame.to_excel(path, index=False)
    back = read_dataset(path)
    assert back.columns.tolist() == frame.columns.tolist() and back.index.tolist() == list(range(12))
    assert load_table(back, channels="default").spectra.shape == (12, 1, 20)
    # an id column before the spectra is still the index
    with_ids = frame.reset_index(names="id")
    with_ids.to_csv(tmp_path / "ids.csv", index=False)
    assert read_dataset(tmp_path / "ids.csv").columns.tolist() == frame.columns.tolist()


def test_xlsx_round_trip(tmp_path):
    df = make_generic_frame(12, length=20)
    write_dataset(df, tmp_path / "d.xlsx")
    back = read_dataset(tmp_path / "d.xlsx")
    assert back.index.tolist() == df.index.tolist()
    np.testing.assert_allclose(back.drop(columns="label").to_numpy(), df.drop(columns="label").to_numpy(), rtol=1e-6)


def test_a_header_of_neither_layout_is_one_line_naming_the_columns_and_both_layouts():
    # twelve rows numbered from 0 (pandas' default index) are no spectral axis down the first column
    df = pd.DataFrame({"wl1100": [1.0] * 12, "wl1102": [2.0] * 12, "label": ["a"] * 12})
    with pytest.raises(SchemaError) as err:
        load_table(df)
    message = str(err.value)
    assert "\n" not in message
    assert "'wl1100', 'wl1102', 'label'" in message
    assert "numbers" in message and "<channel>_<x>" in message
    assert "transpose" not in message


def test_one_spectrum_per_column_is_told_to_transpose(tmp_path):
    """An export of several samples side by side: the axis down the first column, one column per sample."""
    df = plain_frame(12, seed=2)
    df.index = [f"s{i}" for i in range(len(df))]
    side_by_side = df.drop(columns="label").T
    side_by_side.index = side_by_side.index.astype(float)
    side_by_side.index.name = "wavenumber"
    side_by_side.to_csv(tmp_path / "columns.csv")
    with pytest.raises(SchemaError) as err:
        load_table(read_dataset(tmp_path / "columns.csv"))
    message = str(err.value)
    assert "\n" not in message and "the first columns are 's0', 's1', 's2', 's3', 's4', ... Its" in message
    assert f"runs from {side_by_side.index[0]:g} to {side_by_side.index[-1]:g} over 60 rows" in message
    assert "transpose the table (one spectrum per row)" in message


def test_default_target_is_the_one_text_column():
    meta = pd.DataFrame({"label": ["a", "b", "a"], "batch": [1, 2, 3], "integration_oob": [0, 0, 0],
                         "mesure_date": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"])})
    assert label_candidates(meta) == (["label"], ["label", "batch"])
    assert default_targets(meta)[0] == ("AVA", "label")
    assert default_targets(pd.DataFrame({"class": [1, 2]}))[0] == ("AVA", "class")


def test_class_codes_beside_one_text_column_of_sample_names_are_the_target():
    """A text column with a value of its own in every row names samples; the class codes beside it are the label,
    where before the sample names were taken as 120 classes of one row."""
    rows = {"No.": np.arange(1, 13), "Sample name": [f"syrup {k}" for k in range(12)], "Grade": [1, 2, 3] * 4,
            "Temp": [21.7, 22.3] * 6}
    code, reason = default_targets(pd.DataFrame(rows))
    assert code == ("AVA", "Grade")
    assert reason == ("the one column whose values repeat as classes do; 'No.', 'Sample name' name rows, 'Temp' "
                      "holds measurements")
    # two columns of codes stay a question, a measurement is never offered as the label
    rows["Batch"] = [1, 1, 2, 2] * 3
    with pytest.raises(TargetError, match=r"has 2 label columns \['Grade', 'Batch'\] \('Grade': 3 values, 1, 2, "
                                          r"\.\.\.; .*`--targets AVA Grade` or `--targets AVA Batch`"):
        default_targets(pd.DataFrame(rows))
    assert default_targets(make_frame(6, xs=[300]))[0] == ("OVA", "OK")


def test_one_text_column_beside_class_codes_under_other_names_is_a_question():
    # integer class codes in `variety` beside `operator`: taking the text one modelled who measured, at chance
    rows = {"operator": ["Anne", "Bob"] * 6, "variety": [1, 2, 3] * 4,
            "temperature_C": [21.5 + i / 10 for i in range(12)]}
    with pytest.raises(TargetError) as err:
        default_targets(pd.DataFrame(rows))
    message = str(err.value)
    assert "\n" not in message and "['operator', 'variety']" in message
    assert "`--targets AVA operator` or `--targets AVA variety`" in message
    # a running number or a measurement is no class code; a column named as labels needs no question
    assert default_targets(pd.DataFrame({"operator": ["Anne", "Bob"] * 6, "run": range(12)}))[0] == ("AVA", "operator")
    assert default_targets(pd.DataFrame({"label": ["a", "b"] * 6, "batch": [1, 2, 3] * 4}))[0] == ("AVA", "label")


def test_two_text_columns_and_no_target_is_one_line_listing_them():
    with pytest.raises(TargetError) as err:
        default_targets(pd.DataFrame({"variety": ["a"], "origin": ["b"], "batch": [1]}))
    message = str(err.value)
    assert "\n" not in message and "['variety', 'origin']" in message and "--targets AVA variety" in message


def test_of_several_text_columns_the_one_named_as_labels_or_the_one_whose_values_repeat_is_the_target():
    rows = {"sample": ["s1", "s2", "s3", "s4"], "operator": ["ann", "bob", "ann", "ann"], "Label ": list("abab")}
    code, reason = default_targets(pd.DataFrame(rows))
    assert code == ("AVA", "Label ") and reason == "the text column named 'Label '; the others: 'sample', 'operator'"
    # no column named as labels: the one whose values repeat (sample names and times name rows, not classes)
    rows = {"sample": ["s1", "s2", "s3", "s4"], "measured": ["9:01", "9:02", "9:03", "9:04"], "variety": list("abab")}
    code, reason = default_targets(pd.DataFrame(rows))
    assert code == ("AVA", "variety") and "in 'sample', 'measured' every row has a value of its own" in reason
    # class codes beside numeric measurements: the name says which is the label
    code, reason = default_targets(pd.DataFrame({"batch": [1, 2, 1, 2], "class": [0, 1, 1, 0], "temp": [20.1] * 4}))
    assert code == ("AVA", "class") and reason == "the column named 'class'; the other numeric ones: 'batch', 'temp'"
    # a column named as labels whose every value differs is no label; two repeating columns stay a question, and the
    # example names a repeating one
    rows = {"label": ["s1", "s2", "s3", "s4"], "origin": list("aabb"), "variety": list("abab")}
    with pytest.raises(TargetError, match=r"\['origin', 'variety', 'label'\] \(.*\); .*`--targets AVA origin` or "):
        default_targets(pd.DataFrame(rows))


def test_the_data_module_follows_a_plain_table(caplog):
    from spectratorch.data.datamodule import SpectralDataModule

    assert DataConfig().targets is None and DataConfig().channels is None
    dm = SpectralDataModule(data=plain_frame(60))
    with caplog.at_level(logging.INFO, logger="spectratorch"):
        dm.prepare()
    assert dm.config.targets == ("AVA", "label") and dm.config.channels == (PLAIN_CHANNEL,)
    assert dm.labels == ("pure", "rich", "shifted") and dm.n_tabular == 0
    assert "defaults from the data: target AVA label (the one text column); channels spectrum" in caplog.text
    assert "tabular columns: none" in caplog.text and "numeric columns not used" not in caplog.text


def test_rows_without_a_label_are_left_out_with_a_warning_here_and_in_a_test_file(tmp_path, caplog):
    from spectratorch.data.datamodule import SpectralDataModule

    # samples not labelled yet (an empty label cell) are left out, as rows with NaN spectra are, never guessed
    frame = plain_frame(60)
    frame.loc[[3, 17], "label"] = None
    frame.to_csv(tmp_path / "test.csv", index=False)
    dm = SpectralDataModule(data=frame)
    dm.prepare()
    assert dm.table.ids.tolist() == [i for i in range(60) if i not in (3, 17)]
    assert "2 rows have no value in the label column 'label'; they are left out (e.g. ids [3, 17])" in caplog.text
    dm = SpectralDataModule(data=frame, test_source=str(tmp_path / "test.csv"))
    dm.prepare()
    assert len(dm.stage_arrays("test").y) == 58
    assert "2 rows of the test file have no value in the label column 'label'" in caplog.text


def test_numeric_columns_left_out_are_named_with_how_to_use_one(caplog):
    from spectratorch.data.datamodule import SpectralDataModule

    frame = plain_frame(60)
    frame.insert(0, "Fat %", np.arange(60.0))
    frame.insert(0, "Sample No.", np.arange(1, 61))
    frame["Unnamed: 202"] = np.nan  # a trailing delimiter's empty column holds nothing to suggest
    dm = SpectralDataModule(data=frame)
    with caplog.at_level(logging.INFO, logger="spectratorch"):
        dm.prepare()
    assert dm.n_tabular == 0  # never used unasked: such a column may be the value the classes were cut from
    assert ("tabular columns: none (numeric columns not used: 'Sample No.', 'Fat %'; --tabular 'Sample No.' would "
            "add one as a feature)") in caplog.text


def test_the_data_module_keeps_the_lab_defaults_on_lab_data():
    from spectratorch.data.datamodule import SpectralDataModule

    dm = SpectralDataModule(data=make_frame(60, channels=("277", "380", "425", "lspr")))
    dm.prepare()
    assert dm.config.targets == ("OVA", "OK") and dm.config.channels == ("277", "380", "425")
    assert dm.table.tabular_columns == ("greffon_transmittance",)


def _coded_csv(path, **columns) -> None:
    """A plain table as a European export writes it (semicolons, decimal commas): ``Class`` 1/2/3 and ``columns``."""
    frame = plain_frame(60)
    frame.insert(0, "Class", frame.pop("label").map({"pure": 1, "rich": 2, "shifted": 3}))
    for i, (name, values) in enumerate(columns.items()):
        frame.insert(i, name, values)
    frame.insert(0, "Sample ID", [f"S{i:03d}" for i in range(60)])
    frame.to_csv(path, sep=";", decimal=",", index=False)


def test_a_column_named_class_is_the_label_whatever_its_dtype_and_never_suggested_as_a_feature(tmp_path, caplog):
    from spectratorch.data.datamodule import SpectralDataModule

    # class codes 1/2/3 beside a text column: the name says which is the label, not the dtype
    _coded_csv(tmp_path / "class_op.csv", Operator=np.random.default_rng(0).choice(["Anna", "Bob"], 60))
    dm = SpectralDataModule(data=tmp_path / "class_op.csv")
    with caplog.at_level(logging.INFO, logger="spectratorch"):
        dm.prepare()
    assert dm.config.targets == ("AVA", "Class") and dm.labels == ("1", "2", "3")
    assert "target AVA Class (the column named 'Class'; the others: 'Operator')" in caplog.text
    # a measured value named as labels (`y`, every value its own) is no label, and never suggested as a feature
    frame = plain_frame(60)
    frame.insert(1, "y", np.linspace(0.5, 9.5, 60))
    frame.insert(1, "Fat %", np.arange(60.0))
    frame.to_csv(tmp_path / "y.csv", index=False)
    caplog.clear()
    dm = SpectralDataModule(data=tmp_path / "y.csv")
    with caplog.at_level(logging.INFO, logger="spectratorch"):
        dm.prepare()
    assert dm.config.targets == ("AVA", "label")
    assert "(numeric columns not used: 'Fat %'; --tabular 'Fat %' would add one as a feature)" in caplog.text


@pytest.mark.parametrize("fmt", ["%d.%m.%Y", "%Y-%m-%d", "%d/%m/%Y %H:%M", "%m/%d/%Y", "%Y-%m-%dT%H:%M:%S"])
def test_a_text_column_of_dates_is_never_the_label_nor_the_one_suggested(tmp_path, fmt):
    from spectratorch.data.datamodule import SpectralDataModule

    dates = np.repeat(pd.date_range("2024-01-01 09:30", periods=30).strftime(fmt), 2)
    _coded_csv(tmp_path / "class_date.csv", Date=dates)
    dm = SpectralDataModule(data=tmp_path / "class_date.csv")
    dm.prepare()
    assert dm.config.targets == ("AVA", "Class")
    # beside one text label the date is no second choice; beside two, the question never suggests the date
    frame = plain_frame(60).rename(columns={"label": "variety"})
    frame.insert(0, "date", dates)
    frame.to_csv(tmp_path / "variety.csv", index=False)
    dm = SpectralDataModule(data=tmp_path / "variety.csv")
    dm.prepare()
    assert dm.config.targets == ("AVA", "variety")
    frame.insert(2, "origin", ["north", "south", "east"] * 20)
    frame.to_csv(tmp_path / "origin.csv", index=False)
    with pytest.raises(TargetError) as err:
        SpectralDataModule(data=tmp_path / "origin.csv").prepare()
    assert str(err.value) == ("the data has 2 text columns ['variety', 'origin'] ('variety': 3 values, 'pure', "
                              "'rich', ...; 'origin': 3 values, 'east', 'north', ...); say which one holds the "
                              "classes: `--targets AVA variety` or `--targets AVA origin` (targets=['AVA', 'variety'] "
                              "in Python).")
