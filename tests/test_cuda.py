"""What only a CUDA GPU can show: mixed precision, channels_last, device augmentation, device
metrics, fold ensembles and device leases give on the GPU what the CPU paths (tested everywhere
else) give. Skipped, with the reason, on a machine without CUDA; `bash tests/gpu/run.sh` runs
them on one. Every comparison is against the same computation on the CPU or in fp32, with a
tolerance that the precision of the two sides explains (see each test)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_device_metrics import RUN_CLASSES, LabelEcho, _random_case
from test_train import CLASSES, HP, write_toy_h5

from segsweep.config_schema import complete
from segsweep.devices import lease_device
from segsweep.evaluate import counts as dm
from segsweep.evaluate.predict import predict_labels
from segsweep.io.splits import read_split, read_volumes
from segsweep.io.stream import open_rows
from segsweep.labels import targets
from segsweep.model.augment import Augmenter
from segsweep.model.checkpoints import Ensemble, load_models, save_checkpoint
from segsweep.model.tensors import to_tensor
from segsweep.model.unet import build_model
from segsweep.train.batches import Prefetcher, StreamedSamples
from segsweep.train.loop import train_run

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]
CUDA = torch.device("cuda")
CPU = torch.device("cpu")
AUGMENT = {
    "augment": True,
    "aug_p": 0.7,
    "aug_flip": True,
    "aug_shift": 0.15,
    "aug_rotate": 20.0,
    "aug_brightness": 0.2,
    "aug_contrast": 0.2,
    "aug_gamma": 0.3,
}


def _gen(seed: int) -> torch.Generator:
    """A seeded CPU generator: the kind the Trainer gives the Augmenter."""
    return torch.Generator().manual_seed(seed)


@pytest.fixture()
def fp32() -> Iterator[None]:
    """True fp32 convolutions and matmuls: cuDNN allows TF32 (10-bit mantissa) by default,
    which alone would differ from the CPU by ~1e-3."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture()
def restore_determinism() -> Iterator[None]:
    """Training asks torch for deterministic algorithms process-wide; later tests get the
    setting they started with."""
    saved = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.use_deterministic_algorithms(saved, warn_only=warn_only)


def test_a_mixed_precision_step_gives_the_fp32_loss(tmp_path: Path, restore_determinism):
    """One training step (the whole training set as one batch) on CUDA — autocast fp16,
    GradScaler, channels_last, as the Trainer does there — against the same step in fp32 on
    the CPU: same initial weights (seeded, built on the CPU) and same batch. fp16 keeps 11
    significant bits (relative rounding 5e-4); through the 8 convolutions of a depth-2 U-Net
    the logits stay within ~1e-3 relative, and the Dice loss, a ratio of sums over all 2,048
    pixels computed in fp32 (softmax autocasts to fp32), averages that down further: rtol
    1e-2 is a tenfold margin. After the step the weights must be finite (the scaler unscaled
    and checked the gradients)."""
    train_h5 = write_toy_h5(tmp_path / "train.h5", ("a", "b"), seed=1)
    val_h5 = write_toy_h5(tmp_path / "val.h5", ("c",), seed=2)
    hp = {**HP, "epochs": 1, "batch_size": 8, "checkpoint_every": 1, "labels": "separate"}
    logs = []
    for name, device in (("cpu", CPU), ("cuda", CUDA)):
        out = tmp_path / "runs" / name
        train_run(hp, train_h5, val_h5, out, device=device)
        logs.append(pd.read_csv(out / "train_log.csv").iloc[0])
        weights = torch.load(out / "checkpoints" / "epoch-0001.pt", weights_only=True)["model"]
        assert all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point())
    reference, amp = logs
    assert amp["step"] == reference["step"] == 1
    assert np.isfinite(amp["train_loss"]) and np.isfinite(amp["val_loss"])
    np.testing.assert_allclose(amp["train_loss"], reference["train_loss"], rtol=1e-2)


@pytest.mark.parametrize(
    ("model", "shape", "memory_format"),
    [
        ("unet2d", (3, 2, 32, 24), torch.channels_last),
        ("unet3d", (2, 2, 4, 32, 24), torch.channels_last_3d),
    ],
)
def test_channels_last_gives_the_logits_of_contiguous(model, shape, memory_format, fp32):
    """The Trainer moves a CUDA model and its inputs to channels_last; cuDNN then runs other
    (NHWC) kernels that sum in another order. In fp32 that changes rounding only: ~1e-7
    relative per multiply-add, grown to ~1e-6 through the network for logits of order 1, so
    rtol = atol = 1e-4 leaves a hundredfold margin while a wrong layout (mixed-up channels
    or pixels) is off by O(1)."""
    torch.manual_seed(0)
    hp = complete({**HP, "model": model, "labels": "separate"}, "train")
    net = build_model(hp, shape[1], len(CLASSES) + 1).to(CUDA).eval()
    x = torch.randn(shape, generator=_gen(1)).to(CUDA)
    strided = copy.deepcopy(net).to(memory_format=memory_format)
    with torch.no_grad():
        contiguous = net(x)
        channels_last = strided(x.to(memory_format=memory_format))
    assert strided.encoder[0].first[0].weight.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(channels_last, contiguous, rtol=1e-4, atol=1e-4)


def _labels_in_blocks(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Class indices 0…3 constant on 4×4 pixel blocks: label edges, not noise, so a nearest
    sample can only change class at a block edge."""
    *lead, height, width = shape
    blocks = torch.randint(0, 4, (*lead, height // 4, width // 4), generator=_gen(seed))
    return blocks.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1)


@pytest.mark.parametrize(
    ("images_shape", "labels_shape", "memory_format"),
    [
        ((10, 2, 24, 20), (10, 24, 20), torch.channels_last),
        ((4, 1, 3, 24, 20), (4, 3, 24, 20), torch.channels_last_3d),
    ],
)
def test_device_augmentation_equals_the_cpu_for_the_same_draw(
    images_shape, labels_shape, memory_format
):
    """The Augmenter draws every random number from a CPU generator and builds the sampling
    grids on the CPU in float32, so equal seeds give both devices the same transforms and the
    same grids; only the arithmetic runs on the device. Moves copy values (exact); nearest
    label sampling rounds the same grid coordinates (exact unless a coordinate lies within an
    ulp of a half pixel — not so for this draw, checked on the CPU, and blocky labels would
    confine such a change to block edges); bilinear weights, the slice means of contrast and
    the log1p/exp2 of gamma differ by a few float32 ulps on values of order 1: images within
    rtol = atol = 1e-5. Rows are drawn with a repeat, in the Trainer's layout on CUDA
    (channels_last and the index on the device)."""
    hp = complete({**HP, **AUGMENT}, "train")
    images = torch.randn(images_shape, generator=_gen(2))
    labels = _labels_in_blocks(labels_shape, seed=3)
    rows = [7, 0, 3, 3, 1, 2, 9, 5] if images_shape[0] == 10 else [3, 0, 2, 2, 1]
    out = []
    for device, layout in ((CPU, torch.contiguous_format), (CUDA, memory_format)):
        augment = Augmenter(hp, _gen(11))
        x, t = images.to(device, memory_format=layout), labels.to(device)
        index = torch.tensor(rows, device=device)
        out.append([tensor.cpu() for tensor in augment.batch(x, t, index)])
    (cpu_images, cpu_labels), (cuda_images, cuda_labels) = out
    assert not torch.equal(cpu_images, images[rows])  # the draw did transform the batch
    torch.testing.assert_close(cuda_labels, cpu_labels, rtol=0, atol=0)
    torch.testing.assert_close(cuda_images, cpu_images, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", list(RUN_CLASSES))
@pytest.mark.parametrize("seed", [0, 1])
def test_device_counts_and_metrics_on_cuda_equal_the_cpu(mode, seed):
    """Confusion counts are integer sums (int64 on both devices) of the same label maps, so
    they are equal exactly; the metrics are float64 ratios of sums and products of those
    integers (exact below 2**53) with one correctly rounded division (IEEE on both devices),
    so they are equal exactly too, NaN where undefined. LabelEcho's label maps come from the
    images, not from logits that could differ in the last bit, and batches of 4 cross
    patients."""
    run_classes = RUN_CLASSES[mode]
    data = _random_case(len(run_classes) + 1, seed)
    model = LabelEcho(len(run_classes) + 1)
    cpu, cuda = (dm.split_counts(model, data, run_classes, d, batch_size=4) for d in (CPU, CUDA))
    assert cuda.per_slice.device.type == "cuda" and cuda.classes == cpu.classes
    for level in ("per_slice", "per_patient"):
        counts_cpu, counts_cuda = getattr(cpu, level), getattr(cuda, level)
        assert counts_cuda.dtype == torch.int64
        torch.testing.assert_close(counts_cuda.cpu(), counts_cpu, rtol=0, atol=0)
        metrics_cpu, metrics_cuda = dm.overlap_metrics(counts_cpu), dm.overlap_metrics(counts_cuda)
        for name, values in metrics_cuda.items():
            np.testing.assert_array_equal(
                values.cpu().numpy(), metrics_cpu[name].numpy(), err_msg=f"{level} {name}"
            )


def _fold_checkpoints(folder: Path, seeds: tuple[int, ...]) -> list[Path]:
    """Checkpoints of untrained tiny U-Nets (one per seed: distinct weights, as folds have),
    written by `save_checkpoint` as training writes them."""
    hp = complete({**HP, "labels": "separate"}, "train")
    meta = {
        "hp": hp,
        "classes": CLASSES,
        "label_mode": "separate",
        "in_channels": 1,
        "out_channels": len(CLASSES) + 1,
    }
    paths = []
    for seed in seeds:
        torch.manual_seed(seed)
        paths.append(folder / f"fold-{seed}.pt")
        save_checkpoint(paths[-1], build_model(hp, 1, len(CLASSES) + 1), meta, epoch=1, step=1)
    return paths


def test_a_fold_ensemble_on_cuda_predicts_what_it_predicts_on_the_cpu(tmp_path: Path, fp32):
    """Mean softmax probabilities of two folds in fp32 on both devices: the logits agree to
    ~1e-6 (rounding only, as for channels_last) and probabilities are 1-Lipschitz in them, so
    atol 1e-4 is a wide margin. Given that bound, the argmax can only change where the CPU's
    two highest probabilities lie within 2e-4: everywhere else the labels must be equal."""
    paths = _fold_checkpoints(tmp_path, seeds=(0, 1))
    images = np.random.default_rng(5).normal(0.0, 1.0, (6, 24, 24, 1)).astype(np.float32)
    probabilities, labels = [], []
    for device in (CPU, CUDA):
        model, meta = load_models(paths, device)
        assert isinstance(model, Ensemble) and meta["classes"] == CLASSES
        with torch.no_grad():
            probabilities.append(model(to_tensor(images).to(device)).exp().cpu())
        labels.append(predict_labels(model, images, device, batch_size=4))
    (cpu, cuda), (cpu_labels, cuda_labels) = probabilities, labels
    torch.testing.assert_close(cuda, cpu, rtol=0, atol=1e-4)
    top_two = cpu.topk(2, dim=1).values
    clear = (top_two[:, 0] - top_two[:, 1] > 2e-4).numpy()
    assert clear.mean() > 0.9  # the comparison below covers nearly every pixel
    np.testing.assert_array_equal(cuda_labels[clear], cpu_labels[clear])


@pytest.mark.parametrize("volumes", [False, True], ids=["slices", "volumes"])
def test_streamed_batches_on_cuda_are_the_resident_ones(tmp_path: Path, volumes: bool):
    """The prefetcher's pinned, asynchronous copies (on a side stream, channels_last) give the
    device exactly the batches of the resident tensors: copies are exact."""
    path = write_toy_h5(tmp_path / "t.h5", ("a", "b", "c"), n_slices=4, volumes=True)
    split = (read_volumes if volumes else read_split)(path)
    y, _ = targets(split.masks, split.classes, "separate")
    fmt = torch.channels_last_3d if volumes else torch.channels_last
    x = to_tensor(split.images).to(CUDA, memory_format=fmt)
    t = torch.from_numpy(y).to(CUDA)
    samples = StreamedSamples(open_rows([path], volumes=volumes), "separate", None, 2**20)
    order = np.random.default_rng(0).permutation(len(samples))
    prefetcher = Prefetcher(samples, order, 2, CUDA, memory_format=fmt)
    for step, (bx, bt) in enumerate(prefetcher):
        index = torch.as_tensor(order[2 * step : 2 * step + 2], device=CUDA)
        assert bx.device.type == CUDA.type and bx.is_contiguous(memory_format=fmt)
        assert torch.equal(bx, x[index]) and torch.equal(bt, t[index])
    prefetcher.close()
    samples.close()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_jobs_on_a_two_gpu_lease_compute_on_different_devices(tmp_path, monkeypatch):
    """Two leases taken in turn (as two training jobs of one machine take them, see
    tests/test_devices.py) hold distinct lock indices and distinct CUDA devices, and a tensor
    put on each lives on its own GPU. CUDA is initialised before CUDA_VISIBLE_DEVICES is
    dropped (a given one makes leases take no lock), so device numbers keep their meaning."""
    torch.cuda.init()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SEGSWEEP_GPU_COUNT", raising=False)
    lock_dir = tmp_path / "locks"
    first = lease_device(lock_dir, timeout_s=5)
    second = lease_device(lock_dir, timeout_s=5)
    try:
        assert first.device.type == second.device.type == "cuda"
        assert first.index != second.index and first.device != second.device
        placed = [torch.ones(1, device=lease.device).device.index for lease in (first, second)]
        assert placed == [first.device.index, second.device.index] and placed[0] != placed[1]
    finally:
        first.release()
        second.release()
