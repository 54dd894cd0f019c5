import numpy as np
import pandas as pd
import pytest

from spectratorch.data.targets import handle_rare_classes, resolve_target
from spectratorch.errors import SplitError, TargetError


@pytest.fixture
def meta():
    intensity = ["OK", "OK - Inspecteur", "OK - SpectrAcer", "VR", "VR", "NC", "CROCHET", "VR", "NC"]
    types = [0, 0, 0, 11, 1, 2, 0, 13, 6]
    return pd.DataFrame({"greffon_defaut_severite": intensity, "greffon_defaut_type": types,
                         "label": list("abcabcabc")})


def _names(target):
    return [target.labels[i] for i in target.y]


def test_in(meta):
    t = resolve_target(meta, ("AVA", "IN"))
    assert t.labels == ("OK", "VR", "NC", "CROCHET")
    assert _names(t) == ["OK", "OK", "OK", "VR", "VR", "NC", "CROCHET", "VR", "NC"]


def test_ins(meta):
    t = resolve_target(meta, ("AVA", "INs"))
    assert t.labels == ("OK - CROCHET", "VR - NC")
    assert _names(t)[:7] == ["OK - CROCHET"] * 3 + ["VR - NC"] * 3 + ["OK - CROCHET"]


def test_types(meta):
    assert resolve_target(meta, ("AVA", "TY")).labels == ("0", "1", "11", "13", "2", "6")
    tys = resolve_target(meta, ("AVA", "TYs"))
    assert tys.labels == ("0", "1", "2", "6")
    assert _names(tys)[3] == "1" and _names(tys)[7] == "1"


def test_inty_and_insimple(meta):
    inty = resolve_target(meta, ("AVA", "INTY"))
    assert inty.labels == ("OK", "VR1", "VR11", "VR13", "NC2", "NC6", "CROCHET")
    assert list(inty.full_truth) == _names(inty)
    assinsimple = resolve_target(meta, ("AVA", "INsTYs"))
    assert assinsimple.labels == ("OK", "CROCHET", "1", "2", "6")


def test_ova_lookup_order(meta):
    ok = resolve_target(meta, ("OVA", "OK"))
    assert ok.labels == ("The rest", "OK") and ok.y.tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0]
    eleven = resolve_target(meta, ("OVA", "11"))
    assert eleven.y.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0]
    vr11 = resolve_target(meta, ("OVA", "VR13"))
    assert vr11.y.sum() == 1


def test_a_class_value_under_ava_and_a_code_under_ova_name_the_other_mode(meta):
    with pytest.raises(TargetError, match=r"^'OK' is a class value, not an AVA code: one class against the rest is "
                                          r"`--targets OVA OK`"):
        resolve_target(meta, ("AVA", "OK"))
    with pytest.raises(TargetError, match=r"^'IN' is an AVA code, not a class value: all its classes are "
                                          r"`--targets AVA IN`"):
        resolve_target(meta, ("OVA", "IN"))
    assert resolve_target(meta, ("AVA", "label")).labels == ("a", "b", "c")  # a column is still a column


def test_type_codes_as_strings_or_floats(meta):
    meta["greffon_defaut_type"] = meta["greffon_defaut_type"].astype(float)
    assert resolve_target(meta, ("AVA", "TY")).labels == ("0", "1", "11", "13", "2", "6")
    meta["greffon_defaut_type"] = meta["greffon_defaut_type"].astype(int).astype(str)
    assert resolve_target(meta, ("OVA", "11")).y.sum() == 1


def test_generic(meta):
    t = resolve_target(meta, ("AVA", "label"))
    assert t.labels == ("a", "b", "c") and list(t.full_truth) == list("abcabcabc")
    o = resolve_target(meta, ("OVA", "label", "b"))
    assert o.labels == ("The rest", "b") and o.y.sum() == 3


def test_generic_numbers_sorted_naturally():
    meta = pd.DataFrame({"grade": [10, 2, 1, 2]})
    assert resolve_target(meta, ("AVA", "grade")).labels == ("1", "2", "10")


def test_unknown_code_lists_what_data_has(meta):
    with pytest.raises(TargetError, match="unknown target code or column 'XX'"):
        resolve_target(meta, ("AVA", "XX"))
    expected = r"no row has the class value 'ZZ'.*'intensity': \['CROCHET', 'NC', 'OK', 'VR'\]"
    with pytest.raises(TargetError, match=expected):
        resolve_target(meta, ("OVA", "ZZ"))
    with pytest.raises(TargetError, match="starts with AVA or OVA"):
        resolve_target(meta, ("ALL", "IN"))


def test_lab_code_on_generic_data():
    with pytest.raises(TargetError, match="needs the lab's columns"):
        resolve_target(pd.DataFrame({"label": ["a"]}), ("AVA", "IN"))
    with pytest.raises(TargetError, match="OVA <column> x"):
        resolve_target(pd.DataFrame({"label": ["a"]}), ("OVA", "x"))


def test_rare_classes():
    meta = pd.DataFrame({"label": ["a"] * 10 + ["b"] * 10 + ["c"] * 2 + ["d"] * 3})
    target = resolve_target(meta, ("AVA", "label"))
    with pytest.raises(SplitError, match=r"'c' \(2\), 'd' \(3\).*`--n-splits 2`.*--rare-classes drop"):
        handle_rare_classes(target, 5, "error")
    # the default keeps a class of 3 rows or more, and names only the classes it cannot keep
    with pytest.raises(SplitError, match=r"^class\(es\) 'c' \(2\) have fewer than 3 rows.*--rare-classes drop"):
        handle_rare_classes(target, 5)
    single = resolve_target(pd.DataFrame({"label": ["a"] * 10 + ["b"]}), ("AVA", "label"))
    with pytest.raises(SplitError, match="'b' \\(1\\)") as refused:
        handle_rare_classes(single, 5, "error")
    assert "--n-splits" not in str(refused.value)
    dropped, keep = handle_rare_classes(target, 5, "drop")
    assert dropped.labels == ("a", "b") and keep.sum() == 20 and dropped.counts() == {"a": 10, "b": 10}
    bundled, keep = handle_rare_classes(target, 5, "other", min_samples=4)
    assert bundled.labels == ("a", "b", "other") and keep.all() and bundled.counts()["other"] == 5
    same, keep = handle_rare_classes(target, 2)
    assert same is target and keep.all()


def test_the_default_keeps_a_class_of_three_rows_and_says_so(caplog):
    target = resolve_target(pd.DataFrame({"label": ["a"] * 10 + ["b"] * 10 + ["d"] * 3}), ("AVA", "label"))
    with caplog.at_level("WARNING"):
        same, keep = handle_rare_classes(target, 5)
    assert same is target and keep.all()
    assert "class(es) 'd' (3) have fewer rows than the 5 folds: kept" in caplog.text
    # every class below the folds: no warning here, the stratified split refuses the set in one line
    caplog.clear()
    small = resolve_target(pd.DataFrame({"label": ["a"] * 4 + ["b"] * 4}), ("AVA", "label"))
    with caplog.at_level("WARNING"):
        assert handle_rare_classes(small, 5)[1].all()
    assert "kept" not in caplog.text


def test_labels_differing_only_in_case_or_spacing_are_named_in_one_warning(caplog):
    labels = ["Colza"] * 10 + ["COLZA"] * 4 + ["olive oil"] * 10 + ["Olive  Oil"] * 1 + ["sunflower"] * 10
    target = resolve_target(pd.DataFrame({"label": labels}), ("AVA", "label"))
    with caplog.at_level("WARNING"):
        handle_rare_classes(target, 2, "drop")
    assert ("labels that differ only in case or spacing are separate classes: 'COLZA' (4 rows) and 'Colza' (10 rows); "
            "'Olive  Oil' (1 row) and 'olive oil' (10 rows); if each is one class, write it one way") in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        handle_rare_classes(resolve_target(pd.DataFrame({"label": ["a"] * 5 + ["b"] * 5}), ("AVA", "label")), 2)
    assert "case" not in caplog.text


def test_a_class_spelled_as_a_missing_value_is_kept_and_named_in_one_warning(caplog):
    labels = ["pure"] * 10 + ["NA"] * 5 + ["#N/A"] * 1 + ["None"] * 6 + ["rich"] * 10
    target = resolve_target(pd.DataFrame({"label": labels}), ("AVA", "label"))
    with caplog.at_level("WARNING"):
        handle_rare_classes(target, 2, "drop")
    assert ("class(es) '#N/A' (1 row), 'NA' (5 rows) are spelled as a missing value (R writes NA, Excel #N/A): they "
            "are kept as classes; if those rows have no label, leave their label cells empty") in caplog.text
    assert "'None'" not in caplog.text and set(target.labels) == {"pure", "NA", "#N/A", "None", "rich"}


def test_true_false_labels_keep_their_words():
    target = resolve_target(pd.DataFrame({"adulterated": [True, False] * 6}), ("AVA", "adulterated"))
    assert sorted(target.labels) == ["False", "True"]
    mixed = resolve_target(pd.DataFrame({"grade": np.array([1, 2.0, "3"] * 4, dtype=object)}), ("AVA", "grade"))
    assert sorted(mixed.labels) == ["1", "2", "3"]  # numbers stay compared as numbers


def test_one_class_is_one_line_and_exit_2(tmp_path, capsys):
    from spectratorch.cli import main
    from spectratorch.data.generic import make_generic_frame

    frame = make_generic_frame(30, seed=1, length=40).assign(label="ok")
    frame.to_csv(tmp_path / "one.csv")
    with pytest.raises(SplitError, match=r"one class in the data, 'ok' \(30 rows\); a classifier needs at least 2"):
        handle_rare_classes(resolve_target(frame[["label"]], ("AVA", "label")), 5)
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "one.csv"), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "one class in the data" in err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json"))


def test_a_measured_value_as_target_is_told_to_bin_it_in_a_short_line():
    fat = np.round(np.random.default_rng(0).uniform(2, 30, 60), 2)
    target = resolve_target(pd.DataFrame({"fat": fat}), ("AVA", "fat"))
    with pytest.raises(SplitError) as refused:
        handle_rare_classes(target, 5)
    message = str(refused.value)
    assert message.startswith(f"'fat' holds {len(set(fat))} distinct numbers in 60 rows")
    assert "pd.qcut(frame['fat'], 3" in message and f"({len(set(fat))} classes in all)" in message
    assert len(message) < 700
    # a few real classes with few rows each get no such hint
    few = resolve_target(pd.DataFrame({"label": ["1", "2", "3"] * 2 + ["4"] * 10}), ("AVA", "label"))
    with pytest.raises(SplitError) as refused:
        handle_rare_classes(few, 5)
    assert "measured value" not in str(refused.value)
