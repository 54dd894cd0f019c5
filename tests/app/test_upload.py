"""Uploads onto disk: accepted types, size limits, zips of exports unpacked flat and safely."""

from __future__ import annotations

import io
import zipfile

import pytest

from spectratorch.app.upload import check_upload, save_upload
from spectratorch.data.raw import read_raw_exports
from spectratorch.errors import DataFormatError


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_checks_name_emptiness_and_size():
    assert check_upload("Lot 12.PARQUET", 10) == ".parquet"
    assert [check_upload(f"lot.{kind}", 10) for kind in ("xlsx", "tsv", "txt")] == [".xlsx", ".tsv", ".txt"]
    with pytest.raises(DataFormatError, match=r"notes.docx: files of type '.docx' are not read here"):
        check_upload("notes.docx", 10)
    with pytest.raises(DataFormatError, match=r"^Y_lot 3.txt: one of the instrument's export files; drop a .zip"):
        check_upload("Y_lot 3.txt", 10)


def test_a_txt_table_is_read_as_predict_reads_it(tmp_path):
    from spectratorch.data.io import read_dataset

    path = save_upload("nir.txt", b"id\t1100.5\t1102.5\tlabel\na\t0.1\t0.2\trye\nb\t0.3\t0.4\twheat\n", tmp_path)
    table = read_dataset(path)
    assert table.index.tolist() == ["a", "b"] and table["1102.5"].tolist() == pytest.approx([0.2, 0.4], rel=1e-7)
    with pytest.raises(DataFormatError, match="empty"):
        check_upload("a.csv", 0)
    with pytest.raises(DataFormatError, match=r"a.pkl: 3 MB is over the page's upload limit of 2 MB"):
        check_upload("a.pkl", 3_000_000, limit_mb=2)


def test_a_zip_of_exports_unpacks_flat_into_a_folder_the_raw_reader_takes(demo_data, tmp_path):
    members = {f"lab/exports/{p.name}": p.read_bytes() for p in demo_data["raw"].iterdir()}
    members["__MACOSX/lab/._Y_demo.txt"] = b"junk"
    members["../../escape.txt"] = b"must stay inside"
    folder = save_upload("lab.zip", _zip(members), tmp_path / "work")
    assert folder == tmp_path / "work" / "exports"
    assert sorted(p.name for p in folder.iterdir()) == sorted([p.name for p in demo_data["raw"].iterdir()]
                                                              + ["escape.txt"])
    assert not (tmp_path / "escape.txt").exists()
    assert len(read_raw_exports(folder)) == len(read_raw_exports(demo_data["raw"]))


def test_a_zip_with_one_dataset_file_gives_that_file(demo_data, tmp_path):
    path = save_upload("d.zip", _zip({"x/batch.parquet": demo_data["parquet"].read_bytes()}), tmp_path)
    assert path.name == "batch.parquet" and path.read_bytes() == demo_data["parquet"].read_bytes()


@pytest.mark.parametrize("members, pattern", [
    ({"readme.md": b"hello"}, "expected the instrument's exports"),
    ({"a/Y_x.txt": b"1", "b/Y_x.txt": b"2"}, r"several files are named \['Y_x.txt'\]"),
    ({"big.txt": b"0" * 3_000_000}, "unpacks to 3 MB, over the limit of 1 MB"),
])
def test_unusable_zips_are_refused(members, pattern, tmp_path):
    with pytest.raises(DataFormatError, match=pattern):
        save_upload("up.zip", _zip(members), tmp_path, limit_mb=0.1)


def test_the_file_name_never_leaves_the_folder(tmp_path):
    path = save_upload("../../x/evil name.csv", b"id,277_300\na,1\n", tmp_path / "w")
    assert path.parent == tmp_path / "w" and path.name == "evil name.csv"


def test_a_zip_bomb_is_refused_by_its_ratio_before_unpacking(tmp_path):
    bomb = _zip({"EX_277_x_I.txt": b"0" * 5_000_000})  # deflates about 1000 to 1, under the size limit
    with pytest.raises(DataFormatError, match=r"'EX_277_x_I.txt' would unpack to [\d,]+ times its packed size"):
        save_upload("bomb.zip", bomb, tmp_path)
    assert not any(tmp_path.rglob("*.txt"))


def test_a_zip_of_too_many_members_is_refused(tmp_path, monkeypatch):
    from spectratorch.app import upload

    monkeypatch.setattr(upload, "MAX_MEMBERS", 50)
    with pytest.raises(DataFormatError, match="holds 51 files, over the limit of 50"):
        save_upload("many.zip", _zip({f"Y_{i}.txt": b"1" for i in range(51)}), tmp_path)


def test_repeated_members_are_found_in_linear_time(tmp_path):
    import time

    from spectratorch.app.upload import MAX_MEMBERS

    members = {f"d{i}/Y_{i // 2}.txt": b"1" for i in range(MAX_MEMBERS)}  # every name twice, in other folders
    data = _zip(members)
    start = time.perf_counter()
    with pytest.raises(DataFormatError, match=r"several files are named \['Y_0.txt', .*\] and 4995 more"):
        save_upload("twice.zip", data, tmp_path)
    # reason: comparing each name with every other (names.count) took 2.9 s for these 10,000 names on a shared
    # 2-core machine, and grows with their square; counting them once takes 0.01 s.
    assert time.perf_counter() - start < 1.0
