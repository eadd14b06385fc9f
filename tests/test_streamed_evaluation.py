"""Selection and evaluation of a split that does not fit the memory budget stream it one patient
at a time (`segsweep.evaluate.chunks`), with the results of the split held in memory: the same
selection scores, the same per-slice and per-patient tables (row order and dtypes: the CSV files
are byte for byte the same), the same exported predictions; and a streamed pass never reads more
than one patient's slices."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from test_inference_paths import LABELS, _subject
from test_train import CLASSES, HP

from segsweep import layout
from segsweep.config_schema import complete
from segsweep.errors import InputError
from segsweep.evaluate import chunks as chunks_module
from segsweep.evaluate.chunks import SplitChunks
from segsweep.evaluate.select import LEVELS, score_checkpoints
from segsweep.evaluate.tables import FinalExport, evaluate_model, evaluate_split
from segsweep.io import splits, stream
from segsweep.io.records import write_csv
from segsweep.io.splits import read_samples, read_split, write_split
from segsweep.io.stream import list_patients, read_patients
from segsweep.metrics import METRICS
from segsweep.model.checkpoints import load_checkpoint, save_checkpoint
from segsweep.model.unet import build_model
from segsweep.preprocess.normalise import compute_stats
from segsweep.preprocess.pack import crop_files, pack_split

CPU = torch.device("cpu")
RESIDENT = {"data": "resident"}
STREAMED = {"memory_budget_gb": 1e-9}  # `data: auto` with a budget no patient fits
TESTED = {"resident": RESIDENT, "streamed": STREAMED, "forced": {"data": "streamed"}}


def _packed(path: Path, sizes: dict[str, int], seed: int = 0) -> Path:
    """A split as packing writes it (`write_split`): patients of different slice counts and
    spacings, their slices consecutive rows; images with bright squares where the masks are."""
    rng = np.random.default_rng(seed)

    def samples():
        for n in sizes.values():
            masks = (rng.random((n, 16, 16, len(CLASSES))) < 0.2).astype(np.uint8)
            images = rng.normal(0.0, 0.3, (n, 16, 16, 1)).astype(np.float32)
            images[..., 0] += masks @ np.array([2.0, 1.0, 3.0], np.float32)
            yield images, masks

    spacings = [[0.5 + 0.25 * i, 0.8, 2.0 + i] for i in range(len(sizes))]
    write_split(
        path, list(sizes), list(sizes.values()), (16, 16, 1, 3), CLASSES, {}, spacings, samples()
    )
    return path


def _scattered(packed: Path, out: Path, seed: int = 0) -> Path:
    """`packed` with its rows shuffled: each patient's slices scattered over the file."""
    with h5py.File(packed, "r") as source, h5py.File(out, "w") as h5:
        order = np.random.default_rng(seed).permutation(len(source["patient_id"]))
        for name in ("images", "masks", "patient_id", "slice_id"):
            h5.create_dataset(name, data=source[name][()][order], dtype=source[name].dtype)
        h5.attrs.update(source.attrs)
    return out


def _write_run(run_dir: Path, hp: dict, classes: list[str], seeds=(0, 1, 2)) -> Path:
    """A run's checkpoints (untrained networks of `seeds`, their output layer scaled up) and
    index.json; the same seeds give the same weights whatever `hp` says about memory."""
    hp = complete({**HP, **hp}, "train")
    folder = run_dir / "checkpoints"
    entries = []
    for epoch, seed in enumerate(seeds, 1):
        torch.manual_seed(seed)
        model = build_model(hp, 1, len(classes) + 1)
        last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        with torch.no_grad():  # logits that vary with the image: every class gets predicted
            last.weight.mul_(50.0)
            last.bias.zero_()
        meta = {
            "hp": hp,
            "classes": classes,
            "label_mode": hp["labels"],
            "in_channels": 1,
            "out_channels": len(classes) + 1,
        }
        name = f"epoch-{epoch:04d}.pt"
        save_checkpoint(folder / name, model, meta, epoch, 3 * epoch)
        entries.append({"file": name, "epoch": epoch, "step": 3 * epoch})
    index = {"checkpoints": entries, "classes": classes, "label_mode": hp["labels"]}
    (folder / "index.json").write_text(json.dumps(index))
    return folder / "index.json"


def _runs(root: Path, labels: str, classes: list[str]) -> dict[str, Path]:
    """The same run under each memory setting of TESTED: name → its index.json."""
    return {
        name: _write_run(root / name, {**memory, "labels": labels}, classes)
        for name, memory in TESTED.items()
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("streamed")
    train = _packed(root / "train.h5", {"a": 3, "b": 5, "c": 2}, seed=1)
    val = _packed(root / "val.h5", {"d": 4, "e": 3}, seed=2)
    return root, train, val


def _equal_splits(ours, theirs) -> None:
    for name in ("images", "masks", "patient_id", "slice_id"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
        assert getattr(ours, name).dtype == getattr(theirs, name).dtype, name
    assert (ours.classes, ours.normalisation) == (theirs.classes, theirs.normalisation)


def test_packed_patients_are_row_ranges_read_as_the_readers_read_them(files):
    _, train, _ = files
    entries = list_patients(train)
    assert [e.patient for e in entries] == ["a", "b", "c"]
    assert [e.selection() for e in entries] == [slice(0, 3), slice(3, 8), slice(8, 10)]
    whole = read_split(train)
    assert sum(e.nbytes for e in entries) == whole.images.nbytes + whole.masks.nbytes
    _equal_splits(read_patients(entries), whole)
    assert read_patients(entries).spacing == whole.spacing
    for entry in entries:
        one = read_patients([entry])
        rows = whole.patient_id == entry.patient
        assert set(one.patient_id.tolist()) == {entry.patient}
        np.testing.assert_array_equal(one.images, whole.images[rows])
        assert one.spacing == {entry.patient: whole.spacing[entry.patient]}


def test_scattered_rows_are_read_with_sorted_indices(files, tmp_path):
    _, train, _ = files
    scattered = _scattered(train, tmp_path / "scattered.h5")
    whole = read_split(scattered)
    entries = list_patients(scattered)
    first_rows = [np.flatnonzero(whole.patient_id == e.patient)[0] for e in entries]
    assert first_rows == sorted(first_rows)  # a file's patients by their first row
    for entry in entries:
        rows = np.flatnonzero(whole.patient_id == entry.patient)
        assert isinstance(entry.selection(), np.ndarray)
        np.testing.assert_array_equal(entry.rows, rows)
        one = read_patients([entry])
        np.testing.assert_array_equal(one.images, whole.images[rows])
        np.testing.assert_array_equal(one.masks, whole.masks[rows])
        np.testing.assert_array_equal(one.slice_id, whole.slice_id[rows])


def test_subjects_among_several_files_are_listed_in_reading_order(files, tmp_path):
    _, train, val = files
    entries = list_patients([train, val], ["e", "b", "a"])
    assert [(e.patient, Path(e.path).name) for e in entries] == [
        ("a", "train.h5"),
        ("b", "train.h5"),
        ("e", "val.h5"),
    ]
    _equal_splits(read_patients(entries), read_samples([train, val], ["e", "b", "a"]))
    with pytest.raises(InputError, match="subject not in the split files"):
        list_patients([train, val], ["a", "zz"])
    with pytest.raises(ValueError, match="several split files"):
        list_patients([train, val])
    twice = _packed(tmp_path / "twice.h5", {"a": 2})
    with pytest.raises(InputError, match="slices in several split files"):
        list_patients([train, twice], ["a"])


@pytest.mark.parametrize(("labels", "classes"), [("merged", ["foreground"]), ("separate", CLASSES)])
def test_streamed_selection_scores_equal_the_resident_ones(files, labels, classes, capsys):
    root, train, val = files
    runs = _runs(root / f"select-{labels}", labels, classes)
    cfgs = [
        {
            "metric": metric,
            "level": level,
            "aggregate": ("mean", "median")[i % 2],
            "class": [*classes, "foreground"][i % (len(classes) + 1)],
        }
        for i, (metric, level) in enumerate((m, v) for m in METRICS for v in LEVELS)
    ]
    for data, subjects in ((val, None), ([train, val], ["e", "a", "c"])):
        for cfg in cfgs:
            found = {
                name: json.dumps(score_checkpoints(index, data, cfg, CPU, subjects))
                for name, index in runs.items()
            }
            assert found["streamed"] == found["resident"] == found["forced"], cfg
    printed = capsys.readouterr().out
    assert printed.count("streaming the split patient by patient") == 2 * 2 * len(cfgs)


def _crop_subjects(root: Path, gains: dict[str, float]) -> Path:
    """Subjects ingested and cropped (the files native export needs), packed into test.h5."""
    for subject, gain in gains.items():
        _subject(root, subject, gain)
    crop = root / "crop"
    stats = compute_stats([crop / s / "image.nii.gz" for s in gains], "zscore")
    pack_split(list(gains), *crop_files(crop, list(gains)), stats, LABELS, root / "test.h5")
    return root / "test.h5"


def _final(root: Path, patients: list[str], out: Path) -> FinalExport:
    def files(folder: Path, pattern: str, base: str) -> dict[str, Path]:
        return {p: layout.under(folder, pattern, base=base, subject=p) for p in patients}

    return FinalExport(
        labels=LABELS,
        grids=files(root / "crop", layout.CROP_IMAGE, layout.CROP_DIR),
        crop_records=files(root / "crop", layout.CROP_RECORD, layout.CROP_DIR),
        ingest_records=files(root / "data", layout.INGEST_RECORD, layout.DATA_DIR),
        predictions_dir=out / "processed",
        native_dir=out / "native",
        figures_dir=out / "figures",
    )


@pytest.fixture(scope="module")
def final_case(tmp_path_factory):
    """Three ingested, cropped and packed test subjects, and a merged run's checkpoints under
    each memory setting (evaluated as the ensemble of two)."""
    root = tmp_path_factory.mktemp("final")
    test_h5 = _crop_subjects(root, {"s0": 1.0, "s1": 1.3, "s2": 1.6})
    runs = _runs(root, "merged", ["foreground"])
    return root, test_h5, runs


def _evaluate(root, test_h5, index, name):
    out = root / "out" / name
    checkpoints = [index.parent / "epoch-0001.pt", index.parent / "epoch-0002.pt"]
    final = _final(root, ["s0", "s1", "s2"], out)
    evaluate_split(
        checkpoints,
        test_h5,
        "test",
        "m",
        out / "slice.csv",
        out / "patient.csv",
        CPU,
        final,
        nsd_tolerance_mm=1.0,
    )
    return out


def _image(path: Path) -> tuple:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image.GetOrigin(), image.GetSpacing(), image.GetSize()


def test_streamed_evaluation_equals_the_resident_one(final_case):
    root, test_h5, runs = final_case
    outs = {name: _evaluate(root, test_h5, index, name) for name, index in runs.items()}
    resident = outs["resident"]
    predicted = np.concatenate([_image(p)[0].ravel() for p in resident.glob("processed/*")])
    assert len(set(predicted.tolist())) > 1, "the toy model must predict both classes"
    for name in ("streamed", "forced"):
        out = outs[name]
        for table in ("slice.csv", "patient.csv"):
            assert (out / table).read_bytes() == (resident / table).read_bytes(), (name, table)
        for kind in ("processed", "native"):
            names = sorted(p.name for p in (resident / kind).iterdir())
            assert (
                names
                == sorted(p.name for p in (out / kind).iterdir())
                == [f"s{i}.nii.gz" for i in range(3)]
            )
            for file in names:
                ours, theirs = _image(out / kind / file), _image(resident / kind / file)
                np.testing.assert_array_equal(ours[0], theirs[0])
                assert ours[1:] == theirs[1:]
        figures = sorted(p.name for p in (out / "figures").iterdir())
        assert figures == sorted(p.name for p in (resident / "figures").iterdir())
        assert figures and all(f.startswith("outlines_") for f in figures)
    native = (resident / "patient.csv").read_text()
    assert ",native," in native and ",processed," in native


def test_streamed_tables_of_a_folds_subjects_equal_the_resident_ones(files):
    root, train, val = files
    runs = _runs(root / "fold", "separate", CLASSES)
    found = {}
    for name, index in runs.items():
        out = root / "fold-out" / name
        checkpoints = [index.parent / "epoch-0003.pt"]
        subjects = ["e", "b", "d"]
        evaluate_split(
            checkpoints,
            [train, val],
            "val",
            "r",
            out / "s.csv",
            out / "p.csv",
            CPU,
            None,
            subjects,
            nsd_tolerance_mm=1.0,
        )
        found[name] = [(out / f).read_bytes() for f in ("s.csv", "p.csv")]
    assert found["streamed"] == found["resident"] == found["forced"]
    # and the tables of the whole split in memory at once, as evaluation made them before
    model, meta = load_checkpoint(runs["resident"].parent / "epoch-0003.pt", CPU)
    data = read_samples([train, val], ["e", "b", "d"])
    whole = evaluate_model(model, meta, data, "r", "val", CPU, 1.0)[:2]
    for table, name in zip(whole, ("s.csv", "p.csv"), strict=True):
        write_csv(table, root / "fold-out" / name)
    assert found["resident"] == [(root / "fold-out" / f).read_bytes() for f in ("s.csv", "p.csv")]


@pytest.fixture()
def one_patient_reads(monkeypatch):
    """Spies on the readers: every read is of one patient's rows; the whole-split readers
    are never called. Yields the patients read, in order."""
    read = []
    real = stream.read_patients

    def spy(entries, files=None):
        assert len(entries) == 1, "a streamed pass reads one patient at a time"
        split = real(entries, files)
        assert set(split.patient_id.tolist()) == {entries[0].patient}
        assert len(split.images) == len(entries[0].rows)
        read.append(entries[0].patient)
        return split

    def forbidden(*args, **kwargs):
        raise AssertionError("a streamed pass read the whole split")

    monkeypatch.setattr(stream, "read_patients", spy)
    monkeypatch.setattr(chunks_module, "read_patients", spy)
    for name in ("read_split", "read_subjects", "read_samples"):
        monkeypatch.setattr(splits, name, forbidden)
    monkeypatch.setattr(chunks_module, "read_samples", forbidden)
    return read


def test_a_streamed_selection_holds_one_patient_at_a_time(files, one_patient_reads):
    root, train, val = files
    index = _write_run(root / "spy-select", {**STREAMED, "labels": "separate"}, CLASSES)
    selection = score_checkpoints(index, [train, val], {"level": "patient"}, CPU, ["e", "a", "c"])
    assert len(selection["scores"]) == 3
    assert one_patient_reads == ["a", "c", "e"] * 3  # sorted, read anew for each checkpoint


def test_a_streamed_final_evaluation_holds_one_patient_at_a_time(final_case, one_patient_reads):
    root, test_h5, runs = final_case
    out = _evaluate(root, test_h5, runs["streamed"], "spy")
    shown = len(list((out / "figures").glob("outlines_*.png")))
    assert one_patient_reads[:3] == ["s0", "s1", "s2"] and len(one_patient_reads) == 3 + shown


def test_a_resident_split_is_read_once_for_every_checkpoint(files, monkeypatch):
    root, train, val = files
    index = _write_run(root / "once", {**RESIDENT, "labels": "merged"}, ["foreground"])
    calls = []
    real = chunks_module.read_patients
    monkeypatch.setattr(
        chunks_module, "read_patients", lambda entries: calls.append(entries) or real(entries)
    )
    score_checkpoints(index, [train, val], {"level": "slice"}, CPU, ["e", "a"])
    assert [[e.patient for e in entries] for entries in calls] == [["a", "e"]]


def test_streaming_follows_the_budget_of_the_run(files):
    _, train, _ = files
    nbytes = sum(e.nbytes for e in list_patients(train))
    fits = {"memory_budget_gb": 1.01 * nbytes / 2**30}
    short = {"memory_budget_gb": 0.99 * nbytes / 2**30}
    assert not SplitChunks(train, None, fits).streamed
    assert SplitChunks(train, None, short).streamed
    assert SplitChunks(train, None, {**short, "data": "resident"}).streamed is False
    assert SplitChunks(train, None, {**fits, "data": "streamed"}).streamed
    for memory in (fits, short):  # both: patient by patient, in sorted order
        chunks = SplitChunks(train, None, memory)
        patients = [chunk.patient_id.tolist() for chunk in chunks]
        assert patients == [["a"] * 3, ["b"] * 5, ["c"] * 2]
    resident = list(SplitChunks(train, None, fits))  # views of the split, read once
    whole = resident[0].images.base
    assert whole is not None and all(chunk.images.base is whole for chunk in resident)
    assert len(whole) == sum(len(chunk.images) for chunk in resident)
