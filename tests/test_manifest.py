"""The bring-your-own manifest read at parse time: paths, masks per class, channels, errors."""

from __future__ import annotations

import pytest

from segsweep.data.manifest import read_manifest
from segsweep.errors import InputError

LABELS = {"femur": 1, "tibia": 2}


def test_paths_relative_to_the_csv_masks_per_class_channels_and_extra(tmp_path):
    csv = tmp_path / "data" / "cohort.csv"
    csv.parent.mkdir()
    csv.write_text(
        "subject_id,pet,ct,mask,mask_femur,mask_tibia,source,patient_id\n"
        "a,a/pet.nii.gz,a/ct.nii.gz,a/seg.nii.gz,,,x,p1\n"
        f"b,b/pet.mha,{tmp_path}/b_ct.mha,,b/f.nii,b/t.nii,y,p1\n"
        "c,c/pet.mha,c/ct.mha,,,,y,p2\n"
    )
    table, problems = read_manifest(csv, LABELS, ["pet", "ct"])
    assert list(table) == ["a", "b", "c"] and problems == []
    folder = csv.parent
    assert table["a"]["images"] == [str(folder / "a/pet.nii.gz"), str(folder / "a/ct.nii.gz")]
    assert table["a"]["image"] == str(folder / "a/pet.nii.gz")
    assert table["b"]["images"][1] == str(tmp_path / "b_ct.mha")
    assert table["a"]["mask"] == str(folder / "a/seg.nii.gz") and table["a"]["class_masks"] == {}
    assert table["b"]["class_masks"] == {
        "femur": str(folder / "b/f.nii"),
        "tibia": str(folder / "b/t.nii"),
    }
    assert [table[s]["labelled"] for s in "abc"] == [True, True, False]
    assert table["b"]["extra"] == {"patient_id": "p1"}
    assert table["c"]["source"] == "y"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("subject,image\na,a.nii\n", "lacks required column 'subject_id'"),
        ("subject_id,mask\na,a.nii\n", "lacks required column 'image'"),
        ("subject_id,image\na,1.nii\n,2.nii\n", "line 3: empty subject_id"),
    ],
)
def test_table_errors_name_the_manifest(tmp_path, text, message):
    csv = tmp_path / "m.csv"
    csv.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        read_manifest(csv, LABELS)
    assert str(csv) in str(info.value)
    with pytest.raises(InputError, match="manifest not found"):
        read_manifest(tmp_path / "missing.csv", LABELS)


def test_subject_problems_are_returned_together_and_leave_the_subject_out(tmp_path):
    """A duplicated id (every row of it), an empty image cell and a row with both kinds of
    mask are each one subject's problem: all are returned, the others' rows are kept."""
    csv = tmp_path / "m.csv"
    csv.write_text(
        "subject_id,image,mask,mask_femur\n"
        "a,1.nii,,\nb,2.nii,,\na,3.nii,,\nc,,,\nd,4.nii,m.nii,f.nii\ne,5.nii,,\n"
    )
    table, problems = read_manifest(csv, LABELS)
    assert list(table) == ["b", "e"]
    assert [(s, f) for s, f, _ in problems] == [("c", str(csv)), ("d", str(csv)), ("a", str(csv))]
    found = {s: p for s, _, p in problems}
    assert found["a"] == "duplicate subject id (lines 2, 4)"
    assert found["c"] == "line 5: no image in column 'image'"
    assert "give either 'mask' or mask_<class> files" in found["d"]
