"""Streamed training data (`segsweep.io.stream`, `segsweep.train.batches`): the samples are the
resident ones, the shuffle reads sequentially and is seeded, the prefetcher yields the batches of
an order from any step, memory stays bounded, and a run streams when its splits exceed the
budget."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from test_train import HP, write_toy_h5

from segsweep.bench import train as train_bench
from segsweep.config_schema import complete
from segsweep.io.splits import read_split, read_volumes
from segsweep.io.stream import open_rows
from segsweep.labels import targets
from segsweep.model.tensors import to_tensor
from segsweep.train.batches import WINDOW, Prefetcher, StreamedSamples, streamed_order
from segsweep.train.loop import train_run, training_data


@pytest.fixture()
def files(tmp_path):
    return (
        write_toy_h5(tmp_path / "a.h5", ("p1", "p2", "p3"), n_slices=5, seed=1, volumes=True),
        write_toy_h5(tmp_path / "b.h5", ("p4", "p5"), n_slices=5, seed=2, volumes=True),
    )


def resident(path, label_mode="separate", volumes=False):
    split = (read_volumes if volumes else read_split)(path)
    y, _ = targets(split.masks, split.classes, label_mode)
    return to_tensor(split.images), torch.from_numpy(y)


@pytest.mark.parametrize("volumes", [False, True], ids=["slices", "volumes"])
def test_streamed_samples_are_the_resident_ones_in_any_order(files, volumes) -> None:
    x, t = resident(files[0], volumes=volumes)
    samples = StreamedSamples(open_rows([files[0]], volumes=volumes), "separate", None, 2**20)
    index = np.random.default_rng(0).permutation(len(x))[:7]
    sx, st = samples.take(index)
    assert torch.equal(sx, x[index]) and torch.equal(st, t[index])
    samples.close()


def test_blocks_kept_in_memory_are_bounded_by_the_budget(files, monkeypatch) -> None:
    monkeypatch.setattr("segsweep.train.batches.BLOCK_BYTES", 1)  # one sample per block
    samples = StreamedSamples(open_rows([files[0]]), "merged", None, 0)
    assert samples.block == 1 and samples.capacity == 2
    x, _ = resident(files[0], "merged")
    for i in range(len(x)):
        assert torch.equal(samples.take([i])[0], x[[i]])
        assert len(samples.blocks) <= 2
    samples.close()


def test_the_rows_of_subjects_across_files_are_those_training_reads(files) -> None:
    rows = open_rows(list(files), ["p2", "p4"])
    assert rows.patient_id.tolist() == ["p2"] * 5 + ["p4"] * 5
    assert rows.file.tolist() == [0] * 5 + [1] * 5 and rows.row.tolist() == [
        *range(5, 10),
        *range(5),
    ]


def test_the_streamed_shuffle_is_seeded_and_reads_a_window_of_blocks_at_a_time() -> None:
    assert sorted(streamed_order(np.random.default_rng(3), 103, 8).tolist()) == list(range(103))
    n, block = 104, 8  # whole blocks: windows of WINDOW · block samples
    order = streamed_order(np.random.default_rng(3), n, block)
    assert np.array_equal(order, streamed_order(np.random.default_rng(3), n, block))
    assert not np.array_equal(order, streamed_order(np.random.default_rng(4), n, block))
    span = WINDOW * block
    for start in range(0, n, span):  # each window's samples come from WINDOW blocks
        assert len(set((order[start : start + span] // block).tolist())) <= WINDOW


def test_the_prefetcher_yields_the_batches_of_an_order_from_any_step(files) -> None:
    x, t = resident(files[0])
    samples = StreamedSamples(open_rows([files[0]]), "separate", None, 2**20)
    order = np.random.default_rng(1).permutation(len(x))
    prefetcher = Prefetcher(samples, order, 4, torch.device("cpu"), start=1)
    batches = list(prefetcher)
    prefetcher.close()
    expected = [order[s : s + 4] for s in range(4, len(order), 4)]
    assert [len(b[0]) for b in batches] == [len(i) for i in expected]
    for (bx, bt), index in zip(batches, expected, strict=True):
        assert torch.equal(bx, x[index]) and torch.equal(bt, t[index])
    assert prefetcher.wait_s >= 0


def test_a_read_error_reaches_the_training_loop(files) -> None:
    samples = StreamedSamples(open_rows([files[0]]), "separate", None, 2**20)
    prefetcher = Prefetcher(samples, [0, 1, 999], 2, torch.device("cpu"))
    with pytest.raises(IndexError):
        list(prefetcher)
    prefetcher.close()


def test_a_closed_prefetcher_stops_reading(files) -> None:
    samples = StreamedSamples(open_rows([files[0]]), "separate", None, 2**20)
    prefetcher = Prefetcher(samples, range(len(samples)), 1, torch.device("cpu"))
    next(iter(prefetcher))
    prefetcher.close()
    assert not prefetcher.thread.is_alive()


def test_splits_over_the_budget_stream_and_resident_forces_memory(files, tmp_path, capsys):
    hp = complete({**HP, "memory_budget_gb": 1e-6}, "train")
    data = training_data(hp, *files)
    assert data.streamed is not None and data.x_train is None
    assert "streaming the splits" in capsys.readouterr().out
    forced = training_data({**hp, "data": "resident"}, *files)
    assert forced.streamed is None and len(forced.x_train) == 15
    roomy = training_data({**hp, "memory_budget_gb": 1.0}, *files)
    assert roomy.streamed is None
    train_run({**hp, "epochs": 1}, *files, tmp_path / "run", device="cpu")
    assert (tmp_path / "run" / "checkpoints" / "index.json").is_file()


def test_the_training_bench_prints_its_last_line(capsys) -> None:
    tiny = ["--size", "32", "--volume-size", "16", "--steps", "2", "--budget-gb", "0.0005"]
    train_bench.main([*tiny, "--device", "cpu"])
    lines = capsys.readouterr().out.strip().splitlines()
    number = r"\d+\.\d+"
    fields = (
        rf"device=cpu resident_steps_per_s={number} streamed_steps_per_s={number} "
        rf"data_wait_share={number} peak_mem_gb={number}"
    )
    assert re.fullmatch(f"train: {fields}", lines[-1]), lines[-1]
    assert any(re.fullmatch(f"train-3d: {fields}", line) for line in lines)
