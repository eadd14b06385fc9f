"""Training batches streamed from the HDF5 splits, for data larger than the memory budget
(`segsweep.memory`; the resident path of `segsweep.train.loop` indexes tensors on the device).

- `StreamedSamples` turns rows of split files (`segsweep.io.stream`) into network inputs and
  class-index targets exactly as the resident path does (the run's label mode and `inputs`), in
  blocks of consecutive samples (`BLOCK_BYTES`: one sequential read each), of which it keeps the
  most recently used few in memory (bounded by the budget);
- `streamed_order` shuffles an epoch at batch level without random reads: the blocks in random
  order, then the samples within each window of `WINDOW` consecutive blocks; drawn from the
  run's seeded generator, so a streamed run is deterministic and resumes exactly (the order is
  part of the saved state), though its batches differ from a resident run's;
- `Prefetcher` reads the batches of an order `PREFETCH` steps ahead on a background thread and,
  on CUDA, pins them and copies them to the device on a side stream, so reading and copying
  overlap the compute; augmentation stays on the device (`segsweep.model.augment`). It counts
  the seconds the training loop waited for data (`wait_s`).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import torch

from segsweep.io.stream import RowReader, Rows
from segsweep.labels import targets
from segsweep.model.inputs import InputChannels
from segsweep.model.tensors import to_tensor

BLOCK_BYTES = 8 * 2**20  # consecutive samples read at once
WINDOW = 4  # blocks whose samples are shuffled together
PREFETCH = 3  # batches read ahead of the one the device computes on
Batch = tuple[torch.Tensor, torch.Tensor]


class StreamedSamples:
    """Samples of split files as network inputs [n, c, (z,) H, W] float32 and targets int64,
    read on demand in blocks; `budget` bounds the bytes of blocks kept in memory."""

    def __init__(
        self, rows: Rows, label_mode: str, inputs: InputChannels | None, budget: int
    ) -> None:
        self.rows, self.label_mode, self.inputs = rows, label_mode, inputs
        self.reader = RowReader(rows)
        x, y = self._prepare(np.zeros(1, np.int64))
        self.sample_shape, self.target_shape = tuple(x.shape[1:]), tuple(y.shape[1:])
        self.sample_bytes = x.element_size() * x[0].numel() + y.element_size() * y[0].numel()
        self.block = max(1, min(len(rows), BLOCK_BYTES // self.sample_bytes))
        block_bytes = self.block * self.sample_bytes
        self.capacity = max(2, min(2 * WINDOW, budget // (4 * block_bytes)))
        self.blocks: OrderedDict[int, Batch] = OrderedDict()
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def channels(self) -> int:
        return self.sample_shape[0]

    def close(self) -> None:
        self.reader.close()

    def _prepare(self, samples: np.ndarray) -> Batch:
        images, masks = self.reader.read(samples)
        y, _ = targets(masks, self.rows.classes, self.label_mode)
        if self.inputs is not None:
            images = self.inputs.apply(images)
        return to_tensor(images), torch.from_numpy(y)

    def _block(self, b: int) -> Batch:
        """Block b (samples b·block … ), from memory or read, evicting the least recently used."""
        if b in self.blocks:
            self.blocks.move_to_end(b)
            return self.blocks[b]
        start = b * self.block
        self.blocks[b] = self._prepare(np.arange(start, min(start + self.block, len(self))))
        while len(self.blocks) > self.capacity:
            self.blocks.popitem(last=False)
        return self.blocks[b]

    def take(self, index: np.ndarray | list[int]) -> Batch:
        """The samples `index`, in that order, as CPU tensors."""
        index = np.asarray(index, dtype=np.int64)
        with self.lock:
            x = torch.empty((len(index), *self.sample_shape), dtype=torch.float32)
            t = torch.empty((len(index), *self.target_shape), dtype=torch.int64)
            for b in np.unique(index // self.block):
                at = np.flatnonzero(index // self.block == b)
                bx, bt = self._block(int(b))
                local = torch.from_numpy(index[at] - b * self.block)
                x[torch.from_numpy(at)] = bx[local]
                t[torch.from_numpy(at)] = bt[local]
        return x, t


def streamed_order(rng: np.random.Generator, n: int, block: int) -> np.ndarray:
    """A permutation of n samples that reads sequentially: blocks of `block` consecutive
    samples in random order, the samples of each window of `WINDOW` such blocks shuffled."""
    blocks = rng.permutation(math.ceil(n / block))
    order = []
    for w in range(0, len(blocks), WINDOW):
        window = np.concatenate(
            [np.arange(b * block, min((b + 1) * block, n)) for b in blocks[w : w + WINDOW]]
        )
        order.append(window[rng.permutation(len(window))])
    return np.concatenate(order) if order else np.array([], np.int64)


class Prefetcher:
    """The batches of `order` from step `start` on (batch i: order[i·B:(i+1)·B]), on `device`,
    read ahead on a background thread; iterate it, then `close` it."""

    def __init__(
        self,
        samples: StreamedSamples,
        order: np.ndarray | list[int],
        batch_size: int,
        device: torch.device,
        start: int = 0,
        memory_format: torch.memory_format = torch.contiguous_format,
    ) -> None:
        self.samples, self.order, self.batch_size = samples, np.asarray(order), batch_size
        self.device, self.memory_format = device, memory_format
        self.cuda = device.type == "cuda"
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.steps = math.ceil(len(self.order) / batch_size)
        self.queue: queue.Queue = queue.Queue(maxsize=PREFETCH)
        self.stopped = threading.Event()
        self.wait_s = 0.0
        self.thread = threading.Thread(target=self._read, args=(start,), daemon=True)
        self.thread.start()

    def _read(self, start: int) -> None:
        try:
            for step in range(start, self.steps):
                index = self.order[step * self.batch_size : (step + 1) * self.batch_size]
                x, t = self.samples.take(index)
                event = None
                if self.cuda:
                    x, t = x.pin_memory(), t.pin_memory()
                    with torch.cuda.stream(self.stream):
                        x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
                        t = t.to(self.device, non_blocking=True)
                        event = torch.cuda.Event()
                        event.record(self.stream)
                else:
                    x = x.contiguous(memory_format=self.memory_format)
                if not self._put((x, t, event)):
                    return
            self._put(None)
        except BaseException as error:  # handed to the training loop, which raises it
            self._put(error)

    def _put(self, item: object) -> bool:
        """Queue `item` unless closed meanwhile; False when closed."""
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Batch]:
        while True:
            waited = time.perf_counter()
            item = self.queue.get()
            self.wait_s += time.perf_counter() - waited
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            x, t, event = item
            if event is not None:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(event)
                x.record_stream(current)  # the side stream's memory, now used on this one
                t.record_stream(current)
            yield x, t

    def close(self) -> None:
        self.stopped.set()
        self.thread.join()
