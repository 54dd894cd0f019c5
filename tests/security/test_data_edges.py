"""Data is never silently altered: unsafe channel names, repeated points, gaps, cut CSVs are refused in one line."""

import numpy as np
import pytest

from spectratorch.contract import model_name
from spectratorch.data.io import read_dataset, write_dataset
from spectratorch.data.schema import load_table
from spectratorch.errors import ConfigError, DataFormatError, SchemaError
from tests.conftest import make_frame


def _renamed(df, old: str, new: str):
    return df.rename(columns={c: c.replace(old, new, 1) for c in df.columns if c.startswith(old + "_")})


@pytest.mark.parametrize("channel", ["x/../../esc", "a\\\\b", "new\\nline", "tab\\tx", ".."])
def test_channel_names_that_are_not_file_names_are_refused(channel):
    channel = channel.encode().decode("unicode_escape")
    df = _renamed(make_frame(20), "277", channel)
    with pytest.raises(SchemaError, match=r"column .*path separator or a control character") as err:
        load_table(df, channels=[channel, "380"])
    assert "\n" not in str(err.value)


def test_stem_with_a_separator_is_refused():
    fields = dict(arch="TinyVGG", targets=["AVA", "a/b"], channels=["277"], transforms=None, current_split=0,
                  n_splits=5, seed=42, eps=0.1)
    with pytest.raises(ConfigError, match="path separator"):
        model_name(fields)


def test_the_same_point_twice_is_refused():
    df = make_frame(20)
    df["277_300.0"] = df["277_300"] + 1
    with pytest.raises(SchemaError, match=r"'277_300'.*'277_300.0'|'277_300.0'.*'277_300'"):
        load_table(df, channels=["277", "380"])


def test_a_gap_inside_a_channel_is_refused_padding_outside_is_not():
    df = make_frame(20, xs=range(300, 330)).drop(columns=[f"277_{x}" for x in range(310, 320)])
    with pytest.raises(SchemaError, match=r"channel '277' has no column at 310 between '277_309' and '277_320' "
                                          r"\(10 such points\)"):
        load_table(df, channels=["277", "380"])
    alone = load_table(df, channels=["277"])  # one channel: its own axis, nothing filled in
    assert alone.spectra.shape == (20, 1, 20)
    shorter = make_frame(20, xs=range(300, 330), lspr=True)
    assert load_table(shorter, channels=["277", "lspr"]).spectra[:, 1, :5].sum() == 0  # padding outside the range


def test_repeated_csv_column_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    write_dataset(make_frame(5), path)
    lines = path.read_text().splitlines()
    lines = [lines[0] + ",277_300"] + [line + ",1.0" for line in lines[1:]]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"'277_300' appears twice"):
        read_dataset(path)


def test_csv_cut_mid_row_is_refused(tmp_path):
    path = tmp_path / "d.csv"
    write_dataset(make_frame(5), path)
    text = path.read_text()
    path.write_text(text[: len(text) - 40])
    with pytest.raises(DataFormatError, match=r"line 6 has \d+ fields, the header \d+; the file may be truncated"):
        read_dataset(path)
    write_dataset(make_frame(5), path)
    assert read_dataset(path).shape == (5, 45)
    np.testing.assert_array_equal(read_dataset(path).index, make_frame(5).index)
