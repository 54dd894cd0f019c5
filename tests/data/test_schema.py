import numpy as np
import pandas as pd
import pytest

from spectratorch.data.schema import RowFilter, apply_filters, load_table, spectral_columns
from spectratorch.errors import SchemaError
from tests.conftest import make_frame


def test_channels_on_union_axis_zero_outside():
    df = make_frame(8, channels=("277",), xs=range(300, 320), lspr=True)
    table = load_table(df, channels=["lspr", "277"], tabular=None)
    assert table.channels == ("lspr", "277")
    assert table.spectra.shape == (8, 2, 20) and table.spectra.dtype == np.float32
    assert table.axis.tolist() == list(range(300, 320))
    lspr = table.spectra[:, 0]
    assert (lspr[:, :5] == 0).all() and (lspr[:, 10:] == 0).all()
    np.testing.assert_array_equal(lspr[:, 5:10], df[[f"lspr_{x}" for x in range(305, 310)]].to_numpy())
    np.testing.assert_array_equal(table.spectra[:, 1], df[[f"277_{x}" for x in range(300, 320)]].to_numpy())
    assert table.channel_ranges == {"lspr": (305.0, 309.0), "277": (300.0, 319.0)}


def test_columns_sorted_by_x_not_by_position():
    df = pd.DataFrame({"nir_10.5": [2.0], "nir_2": [1.0], "nir_100": [3.0]}, index=pd.Index(["a"], name="id"))
    table = load_table(df, tabular=None)
    assert table.axis.tolist() == [2.0, 10.5, 100.0]
    assert table.spectra[0, 0].tolist() == [1.0, 2.0, 3.0]


def test_spectral_column_names():
    groups = spectral_columns(["277_300", "greffon_transmittance", "integration_oob", "a_b_1", "ftir_-3.5e2"])
    assert list(groups) == ["277", "ftir"]
    assert groups["ftir"] == [(-350.0, "ftir_-3.5e2")]


def test_default_tabular_and_meta(frame):
    table = load_table(frame, channels=["277"])
    assert table.tabular_columns == ("greffon_transmittance",)
    assert table.tabular.shape == (len(frame), 1)
    assert "greffon_transmittance" not in table.meta and "greffon_defaut_severite" in table.meta
    assert not any(c.startswith("277_") or c.startswith("380_") for c in table.meta.columns)
    assert load_table(frame.drop(columns="greffon_transmittance")).tabular.shape == (len(frame), 0)


def test_unknown_channel_lists_available(frame):
    with pytest.raises(SchemaError, match=r"unknown channel\(s\) \['425'\]; the data has channels \['277', '380'\]"):
        load_table(frame, channels=["277", "425"])


def test_unknown_tabular(frame):
    with pytest.raises(SchemaError, match="unknown tabular column"):
        load_table(frame, tabular=["nope"])


def test_duplicated_ids(frame):
    frame.index = ["a"] * 2 + list(frame.index[2:])
    with pytest.raises(SchemaError, match="unique; 1 are repeated"):
        load_table(frame)


def test_nan_rows_reported_and_dropped(frame, caplog):
    frame.iloc[3, 0] = np.nan
    frame.loc[frame.index[7], "greffon_transmittance"] = np.inf
    table = load_table(frame)
    assert len(table) == len(frame) - 2
    assert table.report["non_finite"] == 2
    assert frame.index[3] not in table.ids and frame.index[7] not in table.ids
    assert "NaN or inf" in caplog.text
    assert f"most at {frame.columns[0].replace('_', ' ')} (1 row), greffon_transmittance (1 row)" in caplog.text
    # NaN in a channel that is not selected does not matter
    assert len(load_table(frame, channels=["380"], tabular=None)) == len(frame)


def test_rows_with_nan_only_at_the_edges_get_a_hint_to_trim_them(caplog):
    # a third of the spectra were measured over a shorter range: NaN in their first two or three points
    frame = make_frame(30, channels=("nir",), xs=range(900, 940))
    frame.iloc[:6, frame.columns.get_loc("nir_900")] = np.nan
    frame.iloc[6:10, [frame.columns.get_loc(f"nir_{x}") for x in (900, 901, 902)]] = np.nan
    table = load_table(frame, tabular=None)
    assert len(table) == 20
    assert ("10 rows have NaN or inf" in caplog.text and "; 10 of them have it only at the edge points 900..902: leave "
            "those points out of the file to keep them" in caplog.text)
    # nor on a model's points, which cannot be left out; nor for NaN in the middle of the spectra
    caplog.clear()
    load_table(frame, tabular=None, expected_axis=np.arange(900, 940))
    assert "10 rows have NaN or inf" in caplog.text and "edge points" not in caplog.text
    caplog.clear()
    frame = make_frame(30, channels=("nir",), xs=range(900, 940))
    frame.iloc[:10, frame.columns.get_loc("nir_920")] = np.nan
    load_table(frame, tabular=None)
    assert "10 rows have NaN or inf" in caplog.text and "edge points" not in caplog.text


def test_spectra_of_zeros_are_named_and_kept(caplog):
    frame = make_frame(12, channels=("nir",), xs=range(900, 920))
    spectral = [c for c in frame.columns if c.startswith("nir_")]
    frame.loc[frame.index[[2, 5]], spectral] = 0.0
    table = load_table(frame, tabular=None)
    assert len(table) == 12
    ids = [frame.index[2], frame.index[5]]
    assert (f"2 rows have a spectrum that is 0 at every point (channel nir; e.g. ids {ids}): failed measurements? they "
            "are kept" in caplog.text)
    caplog.clear()
    frame.loc[frame.index[[2, 5]], spectral] = 0.1
    load_table(frame, tabular=None)
    assert "0 at every point" not in caplog.text


def test_numbered_rows_with_nan_are_named_by_their_numbers(frame, caplog):
    # a plain table without an id column numbers its rows: the warning names them as numbers, not numpy reprs
    frame = frame.reset_index(drop=True)
    frame.iloc[3, 0] = np.nan
    frame.iloc[7, 1] = np.nan
    assert len(load_table(frame)) == len(frame) - 2
    assert "e.g. ids [3, 7];" in caplog.text and "np." not in caplog.text


def test_an_empty_column_is_named_when_no_row_is_left(frame):
    empty = [c for c in frame.columns if c.startswith("380_")][5]
    frame[empty] = np.nan
    expected = f"no rows left: .*most at 380 {empty[4:]} \\({len(frame)} rows\\)\\); drop or fill those columns"
    with pytest.raises(SchemaError, match=expected):
        load_table(frame, channels=["277", "380"])


def test_filters(frame):
    frame.loc[frame.index[:4], "integration_oob"] = 1
    kept, report = apply_filters(frame, RowFilter())
    assert report == {"integration_oob": 4} and len(kept) == len(frame) - 4
    kept, _ = apply_filters(frame, RowFilter(drop_oob=False))
    assert len(kept) == len(frame)
    kept, report = apply_filters(frame, RowFilter(transmittance_min=50, transmittance_max=80))
    t = kept["greffon_transmittance"]
    assert t.min() >= 50 and t.max() <= 80 and report["transmittance_min"] > 0
    kept, _ = apply_filters(frame, RowFilter(date_from="2024-01-10", date_to="2024-01-19"))
    assert len(kept) == 10 - int(frame.loc[kept.index, "integration_oob"].sum())
    assert kept["mesure_date"].min() == pd.Timestamp("2024-01-10")


def test_empty_after_filtering(frame):
    with pytest.raises(SchemaError, match="no rows left after filtering"):
        load_table(frame, filters=RowFilter(transmittance_min=1000))


def test_bad_date(frame):
    with pytest.raises(SchemaError, match="--date-from expects a date"):
        load_table(frame, filters=RowFilter(date_from="yesterday-ish"))


def test_non_numeric_spectrum(frame):
    frame["277_300"] = frame["277_300"].astype(object)
    frame.iloc[0, 0] = "oops"
    with pytest.raises(SchemaError, match="non-numeric"):
        load_table(frame)


def test_expected_axis(frame):
    # the data runs 300..319: the error names the model's points it lacks and its points the model lacks
    with pytest.raises(SchemaError, match=r"^the data's axis \(20 points 300..319\) differs from the model's \(21 "
                                          r"points 300..320\): the data lacks the model's point\(s\) 320\.$"):
        load_table(frame, expected_axis=np.arange(300, 321))
    with pytest.raises(SchemaError, match=r"the data lacks the model's point\(s\) 320; the model has no point 300\.$"):
        load_table(frame, expected_axis=np.arange(301, 321))
    # one point missing inside the range and one beyond it: both named, not the largest shift of a point
    expected = np.array([*range(300, 310), 309.5, *range(311, 320)], dtype=float)
    with pytest.raises(SchemaError, match=r"lacks the model's point\(s\) 309.5; the model has no point 310\.$"):
        load_table(frame, expected_axis=expected)
    many = np.arange(300, 330)
    with pytest.raises(SchemaError, match=r"point\(s\) 320, 321, 322, 323, 324 and 5 more\.$"):
        load_table(frame, expected_axis=many)


def _shifted(frame, by: float):
    """The frame with every spectral header's x moved by ``by`` (``277_300`` -> ``277_300.01``)."""
    def rename(column):
        channel, _, x = column.partition("_")
        return f"{channel}_{float(x) + by:.10g}" if channel in ("277", "380") and x.isdigit() else column

    return frame.rename(columns=rename)


def test_the_models_wavelengths_written_with_fewer_decimals_are_read_as_its_points(frame, caplog):
    # the data's headers run 300..319: a model of the same points written with 6 decimals takes them, one to one
    expected = np.arange(300, 320) + 0.004321
    with caplog.at_level("INFO", logger="spectratorch"):
        table = load_table(frame, expected_axis=expected)
    assert table.axis.tolist() == expected.tolist()
    assert table.channel_ranges == {"277": (expected[0], expected[-1]), "380": (expected[0], expected[-1])}
    np.testing.assert_array_equal(table.spectra, load_table(frame).spectra)
    assert ("the data's 20 axis values are the model's written with 0 decimals (e.g. 300 for 300.004321): read as "
            "the model's points") in caplog.text
    # and the other way round: the model's headers had 2 decimals, the data's have 6
    data = _shifted(frame, 0.004321)
    table = load_table(data, expected_axis=np.arange(300, 320).astype(float), expected_ranges={"277": (300, 319)})
    assert table.axis.tolist() == list(range(300, 320))
    np.testing.assert_array_equal(table.spectra, load_table(frame).spectra)


def test_a_small_shift_that_is_no_rounding_is_refused_and_called_so(frame):
    # 300.01 is not 300.004321 written with fewer decimals: another axis, refused with the hint
    expected = np.arange(300, 320) + 0.004321
    with pytest.raises(SchemaError, match=r"lacks the model's point\(s\) 300.004321, .* \(every point is within "
                                          r"0.0057 of one of the model's: the same wavelengths written with other "
                                          r"decimals\? write them as the model's, e.g. 300.004321, or resample onto "
                                          r"its axis\)\.$"):
        load_table(_shifted(frame, 0.01), expected_axis=expected)
    # a point truly missing is not called rounding
    with pytest.raises(SchemaError) as err:
        load_table(frame, expected_axis=np.arange(301, 321))
    assert "decimals" not in str(err.value)


def test_a_header_without_rows_is_named_so_not_a_filter(frame, tmp_path):
    path = tmp_path / "header only.csv"
    path.write_text("label,900,901,902\n")
    for source in (frame.iloc[:0], path):
        with pytest.raises(SchemaError, match=r"^the data has a header and no rows; expected one row per sample"):
            load_table(source)


def test_a_wider_axis_gives_the_model_its_own_points(frame, caplog):
    # the data runs 300..319; a model of every other point from 305 to 313 takes exactly those columns
    expected = np.arange(305, 315, 2)
    with caplog.at_level("INFO", logger="spectratorch"):
        table = load_table(frame, expected_axis=expected)
    assert table.axis.tolist() == expected.tolist()
    np.testing.assert_array_equal(table.spectra[:, 0], frame[[f"277_{x}" for x in expected]].to_numpy())
    np.testing.assert_array_equal(table.spectra[:, 1], frame[[f"380_{x}" for x in expected]].to_numpy())
    assert "the data's axis has 20 points (300..319); the model's 5 points (305..313) are taken from it" in caplog.text
    # a model point the data lacks: refused as before, nothing interpolated
    with pytest.raises(SchemaError, match=r"lacks the model's point\(s\) 305.5\.$"):
        load_table(frame, expected_axis=[305.0, 305.5, 306.0])


def test_subset_keeps_alignment(frame):
    table = load_table(frame)
    part = table.subset(np.array([5, 2]))
    assert list(part.ids) == [frame.index[5], frame.index[2]]
    assert list(part.meta.index) == list(part.ids)
    np.testing.assert_array_equal(part.spectra[0], table.spectra[5])


def test_a_mapped_pickle_gives_the_same_table_and_nothing_viewing_the_file(tmp_path, monkeypatch):
    import spectratorch.data.io as io

    df = make_frame(3000).copy()  # copy() consolidates: the tabular column joins the spectra's float32 block
    path = tmp_path / "d.pkl"
    io.write_dataset(df, path)
    monkeypatch.setattr(io, "MAP_BUFFERS_FROM", 1024)
    released = []
    real = io._load_mapped_pickle

    def counting(*args):
        obj, release = real(*args)
        return obj, lambda: (released.append(1), release())

    monkeypatch.setattr(io, "_load_mapped_pickle", counting)
    mapped = load_table(path)
    expected = load_table(df)
    assert released  # the mapped path ran, and handed pages back as it went
    np.testing.assert_array_equal(mapped.spectra, expected.spectra)
    np.testing.assert_array_equal(mapped.tabular, expected.tabular)
    assert list(mapped.ids) == list(expected.ids) and mapped.report == expected.report
    pd.testing.assert_frame_equal(mapped.meta, expected.meta)
    for array in [mapped.tabular, mapped.ids, *(mapped.meta[c].to_numpy() for c in mapped.meta.columns)]:
        while isinstance(array, np.ndarray) and array.base is not None:
            array = array.base
        assert not (isinstance(array, memoryview) and not isinstance(array.obj, (bytes, bytearray)))


def test_columns_empty_in_every_row_are_left_out_and_named(caplog):
    # an export's empty column (a trailing separator, a wavelength the instrument skipped) holds no value in any row:
    # the point is left out with a warning, and no row is lost
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(6, 5)), columns=["900", "902", "904", "906", "908"])
    df.insert(0, "label", list("abcabc"))
    df["904"] = np.nan
    df["910"] = np.nan
    table = load_table(df, tabular=None)
    assert len(table) == 6 and table.report["non_finite"] == 0
    assert table.axis.tolist() == [900.0, 902.0, 906.0, 908.0]
    np.testing.assert_array_equal(table.spectra[:, 0], df[["900", "902", "906", "908"]].to_numpy(np.float32))
    assert "2 spectral column(s) hold no value in any row and are left out: '904', '910'" in caplog.text
    # the channel's range is the kept points' (910 was the last column): a model's file must cover that, no more
    assert table.describe()["channel_ranges"] == {"spectrum": [900.0, 908.0]}
    # predicting: the model's points are taken from the file that still has its empty columns
    assert len(load_table(df, tabular=None, expected_axis=table.axis,
                          expected_ranges=table.describe()["channel_ranges"])) == 6
    # a model's axis is never shortened: there the rows with the empty column are dropped as any row with NaN
    with pytest.raises(SchemaError, match="no rows left: .*; fill those columns: the model takes them"):
        load_table(df, tabular=None, expected_axis=[900.0, 902.0, 904.0, 906.0, 908.0])
    # a value in one row keeps the point; that row alone is kept whole, the others are dropped
    df.loc[0, "910"] = 1.0
    assert load_table(df, tabular=None).axis.tolist() == [900.0, 902.0, 906.0, 908.0, 910.0]


def test_a_channel_empty_in_every_row_is_named_with_the_channels_to_keep():
    df = make_frame(8, channels=("277",), xs=range(300, 320), lspr=True)
    df[[c for c in df.columns if c.startswith("lspr_")]] = np.nan
    # the lspr channel's own points hold nothing (its zero padding outside them is no value either)
    with pytest.raises(SchemaError, match=r"no rows left: .*; channel\(s\) 'lspr' hold no value in any row: leave "
                                          r"them out with `--channels 277`\.$"):
        load_table(df, channels=None, tabular=None)
    assert len(load_table(df, channels=["277"], tabular=None)) == 8
