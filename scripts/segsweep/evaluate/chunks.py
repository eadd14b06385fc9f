"""A split for selection and evaluation, one patient at a time: views of the whole split when it
fits the memory budget, else each patient read from its HDF5 file (streamed).

A user's split can be larger than memory (tens of GB). Every metric of selection and evaluation
is per slice or per patient, so a patient's slices are a unit of work: streamed, a job holds one
patient's images (float32) and masks, the model's predictions on them and their per-class label
maps, never the split. Per-patient results, concatenated with the patients in sorted order (the
row order of the tables, `segsweep.evaluate.tables.metrics_tables`), are the whole split's.

Resident and streamed splits take the same code path, patient by patient; they differ only in
where a patient's slices come from. This keeps the two bit for bit identical: a network's
logits for a slice can change in the last float bits with the size of its batch (convolution
algorithms are chosen per shape, on the CPU too), so batches never span patients, whether the
split is resident or streamed.

Whether a split streams is `segsweep.memory.streams` with the run's hyperparameters
(`train.data`, `memory_budget_gb`, `memory_share`, from its checkpoint) on the host, where the
split is held: the bytes of its rows' images as float32 and masks as stored, from the HDF5
shapes (`segsweep.io.stream.list_patients`; nothing of image size is read to decide). A
resident split reads only its patients' rows (not every row of the files holding a fold's
subjects), once however often it is iterated (selection scores every checkpoint on it); a
streamed one is read anew on every pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from segsweep.io.splits import Split, read_samples
from segsweep.io.stream import PatientRows, list_patients, read_patients, stream_patients
from segsweep.memory import budget_bytes, streams

HOST = torch.device("cpu")  # where selection and evaluation hold a split


class SplitChunks:
    """The patients of a split (or `subjects` among its files), iterable one patient at a time
    in sorted order: views of the whole split, read once, when it fits the budget of `hp`;
    else each patient read from its file, anew on every pass."""

    def __init__(
        self, paths: Path | list[Path], subjects: list[str] | None, hp: dict[str, Any]
    ) -> None:
        self.entries: list[PatientRows] = sorted(
            list_patients(paths, subjects), key=lambda entry: entry.patient
        )
        self.nbytes = sum(entry.nbytes for entry in self.entries)
        self.streamed = bool(self.entries) and streams(hp, self.nbytes, HOST)
        self.paths, self.subjects = paths, subjects
        self._resident: Split | None = None  # read on first use
        self._starts: dict[str, int] = {}  # patient → its first row there
        if self.streamed:
            print(
                f"streaming the split patient by patient: {self.nbytes / 2**30:.3g} GB, memory "
                f"budget {budget_bytes(hp, HOST) / 2**30:.3g} GB",
                flush=True,
            )

    @property
    def patients(self) -> list[str]:
        """The split's patients, sorted."""
        return [entry.patient for entry in self.entries]

    def __iter__(self) -> Iterator[Split]:
        if not self.entries:  # no patients: the (empty) split as the readers give it
            yield read_samples(self.paths, self.subjects)
        elif self.streamed:
            yield from stream_patients(self.entries)
        else:
            for entry in self.entries:
                yield self._view(entry)

    def of(self, patient: str) -> Split:
        """One patient's slices (a view of the resident split, or read from its file)."""
        (entry,) = [entry for entry in self.entries if entry.patient == patient]
        return read_patients([entry]) if self.streamed else self._view(entry)

    def _view(self, entry: PatientRows) -> Split:
        """The patient's rows of the resident split (read on first use), without a copy: the
        split holds the patients' rows one patient after the other, in sorted order."""
        if self._resident is None:
            self._resident = read_patients(self.entries)
            self._starts = dict(
                zip(
                    self.patients,
                    np.cumsum([0] + [len(e.rows) for e in self.entries]),
                    strict=False,
                )
            )
        whole, start = self._resident, int(self._starts[entry.patient])
        rows = slice(start, start + len(entry.rows))
        return replace(
            whole,
            images=whole.images[rows],
            masks=whole.masks[rows],
            patient_id=whole.patient_id[rows],
            slice_id=whole.slice_id[rows],
            spacing={p: whole.spacing[p] for p in [entry.patient] if p in whole.spacing},
        )
