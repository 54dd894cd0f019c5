import mmap
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spectratorch.data.io import read_dataset, read_dataset_mapped, safe_load_pickle, write_dataset
from spectratorch.errors import DataFormatError, SchemaError, UnsafePickleError
from tests.conftest import make_frame
from tests.data.test_cli_data import _cli

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("suffix", [".pkl", ".parquet", ".csv"])
def test_round_trip(tmp_path, suffix):
    df = make_frame(20)
    path = tmp_path / f"d{suffix}"
    write_dataset(df, path)
    back = read_dataset(path)
    assert list(back.index) == list(df.index)
    np.testing.assert_allclose(back["277_300"].to_numpy(), df["277_300"].to_numpy(), rtol=1e-6)
    assert list(back["greffon_defaut_severite"]) == list(df["greffon_defaut_severite"])
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_old_pandas_pickle_loads():
    # written by pandas 1.5.3 / numpy 1.26, as the lab's existing pickles are
    df = read_dataset(FIXTURES / "pandas153_lab.pkl")
    assert df.shape == (12, 13)
    assert df["instrument_id"].dtype.name == "category"
    assert str(df["mesure_date"].dtype).startswith("datetime64")


class _WritesAFile:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


class _RunsAShell:
    def __reduce__(self):
        return (os.system, ("touch /tmp/spectratorch-pwned",))


def test_malicious_pickle_refused_and_file_not_created(tmp_path):
    target = tmp_path / "created-by-pickle.txt"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"df": make_frame(3), "x": _WritesAFile(str(target))}))
    with pytest.raises(UnsafePickleError, match="builtins.open|io.open"):
        read_dataset(path)
    assert not target.exists()
    # the unrestricted unpickler would have created it: the test payload is real
    pickle.loads(path.read_bytes())
    assert target.exists()


@pytest.mark.parametrize("payload", [_RunsAShell(), np.memmap])
def test_other_payloads_refused(tmp_path, payload):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UnsafePickleError, match="refused"):
        safe_load_pickle(path)


def test_dotted_method_refused(tmp_path):
    # protocol 4 lets a pickle name `DataFrame.to_csv`: a method that writes files
    class _Evil:
        def __reduce__(self):
            return (pd.DataFrame.to_csv, (make_frame(2), str(tmp_path / "x.csv")))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil(), protocol=4))
    with pytest.raises(UnsafePickleError):
        read_dataset(path)
    assert not (tmp_path / "x.csv").exists()


def test_truncated_pickle(tmp_path):
    path = tmp_path / "d.pkl"
    write_dataset(make_frame(30), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="truncated"):
        read_dataset(path)


def test_truncated_parquet(tmp_path):
    path = tmp_path / "d.parquet"
    write_dataset(make_frame(30), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataFormatError, match="parquet"):
        read_dataset(path)


@pytest.mark.parametrize("name,match", [("d.xls", "unsupported"), ("missing.pkl", "no such"), ("empty.csv", "empty")])
def test_bad_files(tmp_path, name, match):
    if name.startswith("empty"):
        (tmp_path / name).write_text("")
    with pytest.raises(DataFormatError, match=match):
        read_dataset(tmp_path / name)


def test_not_a_dataframe(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataFormatError, match="expected a pandas DataFrame, found a list"):
        read_dataset(path)


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "d.pkl"
    write_dataset(make_frame(5), path)
    before = path.read_bytes()

    class _Broken(pd.DataFrame):
        def to_pickle(self, *args, **kwargs):
            raise OSError("disk full")

    with pytest.raises(OSError):
        write_dataset(_Broken(make_frame(5)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.pkl"]


# ---- large pickles: buffers viewed through a mapping of the file (read_dataset_mapped) ------------------------------
def test_mapped_read_equals_the_copying_read_and_survives_release(tmp_path):
    df = make_frame(3000)
    path = tmp_path / "d.pkl"
    write_dataset(df, path)
    # the spectral block (480 kB) is mapped; pickle writes buffers under 64 kB inside its frames, which are copied
    mapped, release = read_dataset_mapped(path, map_from=1024)
    assert isinstance(_memory_owner(mapped["277_300"].to_numpy()), mmap.mmap)
    assert not isinstance(_memory_owner(read_dataset(path)["277_300"].to_numpy()), mmap.mmap)
    release()  # pages handed back; the views stay valid and read the file again
    pd.testing.assert_frame_equal(mapped, read_dataset(path))
    pd.testing.assert_frame_equal(mapped, df)


def _memory_owner(array: np.ndarray) -> object:
    while isinstance(array, np.ndarray) and array.base is not None:
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


def test_mapped_read_of_an_old_pandas_pickle():
    mapped, _ = read_dataset_mapped(FIXTURES / "pandas153_lab.pkl", map_from=0)
    pd.testing.assert_frame_equal(mapped, read_dataset(FIXTURES / "pandas153_lab.pkl"))


def test_mapped_read_refuses_what_the_copying_read_refuses(tmp_path):
    target = tmp_path / "created-by-pickle.txt"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"df": make_frame(3), "x": _WritesAFile(str(target))}, protocol=5))
    with pytest.raises(UnsafePickleError, match="builtins.open|io.open"):
        read_dataset_mapped(path, map_from=0)
    assert not target.exists()
    path.write_bytes(pickle.dumps(_RunsAShell(), protocol=5))
    with pytest.raises(UnsafePickleError, match="refused"):
        read_dataset_mapped(path, map_from=0)


def test_mapped_read_of_a_truncated_pickle(tmp_path):
    path = tmp_path / "d.pkl"
    write_dataset(make_frame(3000), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut inside the spectral block
    with pytest.raises(DataFormatError, match="truncated"):
        read_dataset_mapped(path, map_from=1024)


# ---- CSV and Excel: missing cells, repeated headers, the first column ------------------------------------------------
def _plain_table(n=30, seed=0, label="label", headers="{:g}") -> pd.DataFrame:
    """``n`` spectra of 20 points (900..976 nm), the ``label`` column first, its classes cycling over ``a b c``."""
    rng = np.random.default_rng(seed)
    axis = np.arange(900, 980, 4.0)
    df = pd.DataFrame(0.5 + 0.01 * rng.standard_normal((n, axis.size)), columns=[headers.format(x) for x in axis])
    df.insert(0, label, np.array(["a", "b", "c"])[np.arange(n) % 3])
    return df


def _write_table(df: pd.DataFrame, path: Path, kind: str = "csv") -> Path:
    if kind == "xlsx":
        df.to_excel(path.with_suffix(".xlsx"), index=False)
        return path.with_suffix(".xlsx")
    if kind == "european":
        # reason: the layouts io.py sniffs (notes above the header, semicolons, decimal commas, Windows-1252) keep
        # reading the words as text while the spectra's missing words stay missing.
        commas = df.map(lambda value: repr(value).replace(".", ",") if isinstance(value, float) else value)
        text = commas.to_csv(index=False, sep=";")
        path.write_bytes(("Instrument: NIR-1\n" + text).encode("cp1252"))
        return path
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("kind", ["csv", "european", "xlsx"])
def test_class_names_pandas_reads_as_missing_stay_classes_and_missing_spectral_cells_stay_missing(tmp_path, kind):
    from spectratorch.data.datamodule import SpectralDataModule

    df = _plain_table(36, label="contamination").astype({"904": object, "908": object})
    words = ["None", "NA", "N/A", "null", "nan", "Crème"]
    df["contamination"] = [words[i % 6] for i in range(36)]
    df.loc[30, "contamination"] = ""  # an empty cell, and a blank one, are the only missing labels
    df.loc[31, "contamination"] = "  "
    df.loc[4, "904"], df.loc[7, "904"], df.loc[9, "908"] = "NaN", "NA", None  # missing points of a spectrum, as before
    path = _write_table(df, tmp_path / "contamination.csv", kind)
    back = read_dataset(path)
    assert back["contamination"].iloc[:6].tolist() == words
    assert back[["904", "908"]].dtypes.tolist() == [np.float64, np.float64]
    assert back[["904", "908"]].isna().sum().tolist() == [2, 1]
    dm = SpectralDataModule(data=str(path))
    dm.prepare()
    assert sorted(dm.labels) == sorted(words)
    # reason: the table's report, not the log: the CLI run in-process by other tests leaves a filter on pytest's log
    # handler that drops a warning already seen, and every kind here warns alike.
    assert dm.table.ids.tolist() == [i for i in range(36) if i not in (4, 7, 9, 30, 31)]
    assert dm.table.report["non_finite"] == 3


def test_a_column_of_numbers_with_missing_words_reads_as_numbers_and_one_of_text_keeps_them(tmp_path):
    (tmp_path / "d.csv").write_text("id;code;batch;note;900;901\n"
                                    "a;1;NA;None;0,5;1,5\nb;NA;2;ok;nan;2\nc;3;;;1;#N/A\n")
    df = read_dataset(tmp_path / "d.csv")
    assert df["code"].tolist()[::2] == [1.0, 3.0] and df["code"].isna().tolist() == [False, True, False]
    assert df["batch"].isna().tolist() == [True, False, True] and df["900"].isna().tolist() == [False, True, False]
    assert df["901"].tolist()[:2] == [1.5, 2.0] and np.isnan(df.loc["c", "901"])
    assert df["note"].tolist()[:2] == ["None", "ok"] and pd.isna(df.loc["c", "note"])


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_a_header_that_names_a_wavelength_twice_is_refused_in_excel_as_in_csv(tmp_path, kind):
    df = _plain_table()
    df.columns = [*df.columns[:11], "936", *df.columns[12:]]  # the column after 936 is named 936 too
    assert df.columns.tolist().count("936") == 2
    path = _write_table(df, tmp_path / "twice.csv", kind)
    with pytest.raises(DataFormatError, match=r"the column '936' appears twice in the header; keep one of them\.$"):
        read_dataset(path)
    result = _cli("train", "--data", str(path), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0 and "appears twice" in result.stderr


@pytest.mark.parametrize("kind", ["csv", "xlsx"])
@pytest.mark.parametrize("label_first", [True, False])
def test_headers_of_neither_layout_keep_their_first_column_and_get_the_no_spectral_column_error(tmp_path, kind,
                                                                                               label_first):
    from spectratorch.data.schema import load_table

    df = _plain_table(headers="wl{:g}")
    if not label_first:
        df = df[[*df.columns[1:], "label"]]
    path = _write_table(df, tmp_path / "wl.csv", kind)
    back = read_dataset(path)
    assert back.columns.tolist() == df.columns.tolist() and back.index.tolist() == list(range(30))
    with pytest.raises(SchemaError, match="^no spectral column: expected column names that are numbers") as err:
        load_table(path)
    shown = "'label', 'wl900', 'wl904'" if label_first else "'wl900', 'wl904', 'wl908'"
    assert f"the first columns are {shown}" in str(err.value) and "\n" not in str(err.value)


def test_a_label_column_first_in_the_lab_layout_stays_a_column(tmp_path):
    from spectratorch.data.generic import make_generic_frame
    from spectratorch.data.schema import load_table

    frame = make_generic_frame(12, length=20)
    frame[["label", *frame.columns.drop("label")]].to_csv(tmp_path / "lab.csv", index=False)
    back = read_dataset(tmp_path / "lab.csv")
    assert back.columns[0] == "label" and back.index.tolist() == list(range(12))
    assert load_table(back, channels="default").spectra.shape == (12, 1, 20)


@pytest.mark.parametrize("header", ["sample", ""])
def test_a_repeated_sample_id_in_a_file_is_one_line_about_the_first_column(tmp_path, header):
    df = _plain_table()
    df.insert(0, header, [f"S{i // 2:02d}" for i in range(30)])  # two scans of each sample
    df.to_csv(tmp_path / "replicates.csv", index=False)
    column = "the first column, 'sample'," if header else "the first column (no header)"
    with pytest.raises(DataFormatError) as err:
        read_dataset(tmp_path / "replicates.csv")
    message = str(err.value)
    assert f"{column} is read as the sample id and must be unique; 15 rows repeat the id of an earlier row, e.g. " \
           "['S00', 'S01', 'S02', 'S03', 'S04']" in message
    assert "\n" not in message and "Remove" not in message and "DataFrame" not in message
    result = _cli("train", "--data", str(tmp_path / "replicates.csv"), "--output-dir", str(tmp_path / "out"))
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "is read as the sample id and must be unique" in result.stderr
    # named otherwise, the column stays one and the rows are numbered from 0
    df.rename(columns={header: "group"}).to_csv(tmp_path / "group.csv", index=False)
    back = read_dataset(tmp_path / "group.csv")
    assert back.columns[0] == "group" and back.index.tolist() == list(range(30))


def test_a_tsv_file_reads_as_a_csv_and_a_folder_or_a_txt_file_is_one_line_saying_what_to_do(tmp_path):
    from spectratorch.data.generic import make_generic_frame

    df = make_generic_frame(12, length=20)
    write_dataset(df, tmp_path / "d.tsv")
    assert "\t" in (tmp_path / "d.tsv").read_text().splitlines()[0]
    back = read_dataset(tmp_path / "d.tsv")
    assert back.index.tolist() == df.index.tolist()
    np.testing.assert_allclose(back.drop(columns="label").to_numpy(), df.drop(columns="label").to_numpy(), rtol=1e-6)
    with pytest.raises(DataFormatError, match=r": a folder; expected a dataset file \(.pkl, .*\)\. A folder of the "
                                              r"instrument's exports is made into one by `spectratorch convert`\.$"):
        read_dataset(tmp_path)
    # a table saved as text (Excel's "Text (Tab delimited)", an instrument's export of one spectrum per row) reads as
    # a .tsv does; the fluorimeter's own export files are refused for the folder that `convert` reads
    (tmp_path / "d.txt").write_text((tmp_path / "d.tsv").read_text())
    pd.testing.assert_frame_equal(read_dataset(tmp_path / "d.txt"), back)
    (tmp_path / "EX_277_demo_I.txt").write_text((tmp_path / "d.tsv").read_text())
    with pytest.raises(DataFormatError, match=r"one of the fluorimeter's export files; give the folder of the exports"):
        read_dataset(tmp_path / "EX_277_demo_I.txt")
    with pytest.raises(DataFormatError, match=r"unsupported dataset file type '\.txt'"):
        write_dataset(df, tmp_path / "out.txt")


def test_r_row_names_and_a_separator_ending_the_data_lines_read_and_a_longer_line_is_named(tmp_path):
    """R's ``write.table`` writes row names its header does not name; some exports end each data line, not the
    header, with a separator. Both read as the table they are; a line that is longer than its neighbours is named."""
    from spectratorch.data.generic import make_generic_frame

    df = make_generic_frame(12, length=20)
    folder = tmp_path
    spectra = df.drop(columns="label")
    header = "\t".join(f'"X{c}"' for c in spectra.columns) + '\t"label"\n'
    lines = [f'"{i}"\t' + "\t".join(f"{v:.6g}" for v in row) + f'\t"{label}"\n'
             for i, row, label in zip(df.index, spectra.to_numpy(), df["label"])]
    (folder / "r.tsv").write_text(header + "".join(lines))
    back = read_dataset(folder / "r.tsv")
    assert back.index.tolist() == df.index.tolist() and back["label"].tolist() == df["label"].tolist()
    np.testing.assert_allclose(back.drop(columns="label").to_numpy(), spectra.to_numpy(), rtol=1e-5)
    text = df.to_csv()
    head, *rows = text.splitlines()
    (folder / "t.csv").write_text(head + "\n" + "".join(f"{row},\n" for row in rows))
    back = read_dataset(folder / "t.csv")
    assert back.index.tolist() == df.index.tolist() and list(back.columns) == list(df.columns)
    rows[3] += ",7"
    (folder / "long.csv").write_text(head + "\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataFormatError, match=r"line 5 has 23 fields, the header 22; a value holding the separator "
                                              r"',', or a column without a name in the header\?$"):
        read_dataset(folder / "long.csv")


def test_the_decimal_mark_is_the_one_most_numbers_use_and_a_misread_one_is_named(tmp_path):
    from spectratorch.data.generic import make_generic_frame
    from spectratorch.data.schema import load_table

    df = make_generic_frame(12, length=20)
    df.insert(0, "batch", [f"{k % 3 + 1}.{k % 2 + 1}" for k in range(12)])  # codes such as 1.1, read as text
    df.to_csv(tmp_path / "eu.csv", sep=";", decimal=",")
    back = read_dataset(tmp_path / "eu.csv")
    assert back["batch"].tolist() == df["batch"].tolist()
    np.testing.assert_allclose(back[df.columns[1:-1]].to_numpy(), df[df.columns[1:-1]].to_numpy(), rtol=1e-6)
    # numbers written with a decimal comma in a comma-separated file (quoted) cannot be read as numbers: the line
    # names a cell and the likely cause
    df.to_csv(tmp_path / "quoted.csv", decimal=",", quoting=1)
    with pytest.raises(SchemaError, match=r"has non-numeric values \(12 in column 'nir_[0-9.]+', row 'G00000': "
                                          r"'0,\d+'\); expected numbers\. A decimal comma in a file read with decimal "
                                          r"points"):
        load_table(tmp_path / "quoted.csv")


def test_a_workbook_table_is_found_below_its_notes_and_behind_a_sheet_of_settings(tmp_path):
    from spectratorch.data.generic import make_generic_frame

    df = make_generic_frame(12, length=20)
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path, engine="openpyxl") as book:
        pd.DataFrame({"setting": ["instrument", "operator"], "value": ["NIR-1", "ann"]}).to_excel(
            book, sheet_name="Info", index=False)
        pd.DataFrame([["Spectra of batch 7"], ["exported 2024-05-02"]]).to_excel(
            book, sheet_name="Data", index=False, header=False)
        df.to_excel(book, sheet_name="Data", startrow=3)
    back = read_dataset(path)
    assert back.index.tolist() == df.index.tolist() and back["label"].tolist() == df["label"].tolist()
    np.testing.assert_allclose(back.drop(columns="label").to_numpy(), df.drop(columns="label").to_numpy(), rtol=1e-6)


def test_csv_spectra_read_as_float32_with_the_values_of_a_float64_read(tmp_path):
    # the schema keeps float32 spectra: parsed as such, the frame takes half the memory, and pandas' parser a quarter
    rng = np.random.default_rng(3)
    spectra = rng.random((300, 50)) * 10.0 ** rng.integers(-6, 6, (300, 50))
    df = pd.DataFrame(spectra, columns=[f"nir_{900 + 2 * k}" for k in range(50)])
    df.insert(0, "label", ["a", "b", "c"] * 100)
    df["temperature"] = rng.random(300) * 30
    df.to_csv(tmp_path / "d.csv", index=False, float_format="%.17g")
    back = read_dataset(tmp_path / "d.csv")
    spectral = [c for c in back.columns if c.startswith("nir_")]
    assert (back[spectral].dtypes == np.float32).all() and back["temperature"].dtype == np.float64
    as_float64 = pd.read_csv(tmp_path / "d.csv")
    np.testing.assert_array_equal(back[spectral].to_numpy(), as_float64[spectral].to_numpy().astype(np.float32))
    np.testing.assert_array_equal(back["temperature"].to_numpy(), as_float64["temperature"].to_numpy())


@pytest.mark.parametrize("text, expected", [
    ("id,label,900,901\na,x,1,2\nb,y,3,4\n", ""),  # clean
    ("id,label,900,901\r\na,x,1,2\r\n\r\nb,y,3,4\r\n", ""),  # Windows line ends and a blank line
    ("id,label,900,901\na,x,1,2\nb,y,3\n", "line 3 has 3 fields, the header 4; the file may be truncated"),
    ("id,label,900,901\na,x,1,2,5\nb,y,3,4,6\n", "row_names"),  # R's row names
    ("id,label,900,901\na,x,1,2,\nb,y,3,4,\n", "trailing"),  # a separator ending every data line
    ("id,label,900,901\na,x,1,2,5\nb,y,3,4\n", "line 3 has 4 fields, the header 4; a value holding the separator"),
    ("Instrument: NIR-1\nid;label;900;901\na;x;0,41;0,42\nb;y;0,43\n", "line 4 has 3 fields, the header 4"),
])
def test_counting_separators_says_what_the_csv_module_says(tmp_path, text, expected, monkeypatch):
    # counting the separator's byte is the fast way where no line holds a quote; it must agree with the csv module
    from spectratorch.data import io as data_io

    path = tmp_path / "d.csv"
    path.write_bytes(text.encode())
    dialect = data_io.csv_dialect(path)

    def verdict():
        try:
            return data_io._check_csv(path, dialect)
        except DataFormatError as err:
            return str(err)

    assert len(list(data_io._rows_by_bytes(path, dialect))) == 2  # the fast way read these lines itself
    fast = verdict()
    assert fast == expected if expected in ("", "trailing", "row_names") else fast.startswith(f"{path}: {expected}")

    def quotes(path, dialect):
        raise data_io._NeedsQuotes
        yield

    monkeypatch.setattr(data_io, "_rows_by_bytes", quotes)
    assert verdict() == fast


def test_a_quoted_field_holding_the_separator_is_read_by_the_csv_module(tmp_path):
    (tmp_path / "d.csv").write_text('id,label,900,901\na,"olive, extra",1,2\nb,"a\nb",3,4\n')
    df = read_dataset(tmp_path / "d.csv")
    assert df["label"].tolist() == ["olive, extra", "a\nb"] and df["901"].tolist() == [2.0, 4.0]


def _parquet_layouts():
    rng = np.random.default_rng(0)
    columns = [f"277_{x}" for x in range(300, 312)] + [f"380_{x}" for x in range(400, 412)]
    base = pd.DataFrame(rng.normal(size=(40, len(columns))).astype(np.float32), columns=columns)
    labelled = base.copy()
    labelled.insert(0, "label", list("ab") * 20)
    labelled["tabular"] = np.arange(40.0)
    named = labelled.set_axis(pd.Index([f"s{i}" for i in range(40)], name="id"))
    holes = labelled.copy()
    holes.iloc[[3, 9], [4, 20]] = np.nan
    return {
        "meta on both sides": labelled,
        "named text index": named,
        "index from 5": labelled.set_axis(pd.RangeIndex(5, 45)),
        "missing values": holes,
        "float64 spectra": labelled.astype(dict.fromkeys(columns, "float64")),
        "no rows": labelled.iloc[:0],
        "spectra first": labelled[columns + ["label", "tabular"]],
        "named column index": labelled.rename_axis(columns="field"),
        # the next three are read by pandas whole
        "spectra only": base,
        "one float64 column": labelled.astype({columns[5]: "float64"}),
        "a column between the spectra": labelled[["277_300", "label", *columns[1:], "tabular"]],
    }


@pytest.mark.parametrize("layout", list(_parquet_layouts()))
def test_parquet_read_a_few_spectral_columns_at_a_time_equals_pandas_read(tmp_path, monkeypatch, layout):
    import spectratorch.data.io as io

    path = tmp_path / "d.parquet"
    _parquet_layouts()[layout].to_parquet(path, row_group_size=16)
    # reason: 5 columns a time, so that the 24 spectral columns take several reads, one of them short
    monkeypatch.setattr(io, "_PARQUET_COLUMNS", 5)
    pd.testing.assert_frame_equal(read_dataset(path), pd.read_parquet(path))


def test_parquet_of_the_lab_layout_is_not_read_whole_by_pandas(tmp_path, monkeypatch):
    from spectratorch.data.synthetic import make_dataset

    path = tmp_path / "lab.parquet"
    frame = make_dataset(60, seed=1)
    frame.to_parquet(path)
    expected = pd.read_parquet(path)

    def whole(*args, **kwargs):
        raise AssertionError("read whole by pandas")

    monkeypatch.setattr(pd, "read_parquet", whole)
    pd.testing.assert_frame_equal(read_dataset(path), expected)
