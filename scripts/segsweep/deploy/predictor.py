"""The one inference path of a segmentation model: a package's fold networks on a scan, from the
image as read to the label map in the scan's own geometry, with its uncertainty and QC.

`Predictor.prepare` repeats the workflow's preprocessing on an image in memory: the canonical
(LIP) float32 image of ingest, N4 (`segsweep.preprocess.n4`, as configured), the crop centre and
the crop (`segsweep.preprocess.crop`) with the packaged window; each intermediate is stored and
read back as the workflow's NIfTI files are (their headers keep geometry in float32), so a
package reproduces the workflow's crops exactly. `Predictor.predict_prepared` is what the
workflow itself runs on its crops (the test patients' and the unlabelled subjects'
predictions): the normalisation of packing, each fold network's softmax (slices in batches of
`BATCH_SIZE`, as every inference path), their mean — the ensemble's class is the argmax of the
log of the mean, as `segsweep.model.checkpoints.Ensemble`; one network: the argmax of its
logits — and the maps taken back to the scan's geometry (`segsweep.evaluate.export.to_native`).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from torch import nn

from segsweep.data.ingest import read_channels
from segsweep.deploy import qc
from segsweep.deploy.archive import open_archive
from segsweep.deploy.manifest import NETWORK_KEYS
from segsweep.deploy.native import to_native
from segsweep.devices import choose_device
from segsweep.errors import InputError
from segsweep.io.images import (
    blank,
    canonical,
    float_type,
    geometry,
    read_volume,
    write_image,
)
from segsweep.io.records import read_json
from segsweep.io.splits import Split
from segsweep.labels import FOREGROUND, label_values
from segsweep.model.checkpoints import (
    BATCH_SIZE,
    load_checkpoint,
    model_from,
    slices_per_batch,
)
from segsweep.model.tensors import to_tensor
from segsweep.preprocess.crop import crop_subject, find_centre
from segsweep.preprocess.n4 import n4_correct
from segsweep.preprocess.normalise import normalised_volume


@dataclass(frozen=True)
class Prepared:
    """A scan as the networks see it: its crop (canonical, float32), the crop record
    (crop.json's fields) and the scan's geometry as read (`segsweep.io.images.geometry`);
    without the last two (a crop alone) only the maps on the cropped grid are made."""

    cropped: sitk.Image
    crop: dict[str, Any] | None = None
    original: dict[str, Any] | None = None

    @classmethod
    def of_records(cls, crop: dict[str, Any], original: dict[str, Any]) -> Prepared:
        """A crop known from its records alone (its voxels come from a split file): the
        crop's grid, empty, as crop.json records it ("output")."""
        return cls(blank(crop["output"], sitk.sitkFloat32), crop, original)


@dataclass(frozen=True)
class Prediction:
    """One scan's prediction: `labels` (the data's label values, uint8) and `uncertainty`
    (normalised entropy of the fold-averaged probabilities, float32) in the scan's geometry
    (None for a crop alone),
    `probabilities` (one float32 component per class, class order of `Predictor.classes`;
    only when asked), the class indices on the cropped grid `classes` [z, y, x] and the label
    map there `cropped_labels`, and the case's QC (`segsweep.deploy.qc`)."""

    labels: sitk.Image | None
    uncertainty: sitk.Image | None
    probabilities: sitk.Image | None
    classes: np.ndarray
    cropped_labels: sitk.Image
    qc: dict[str, Any]


@dataclass(frozen=True)
class SubjectFiles:
    """The workflow's files of each subject: crop (subject → path), crop.json, ingest.json."""

    crops: Mapping[str, str | Path]
    crop_records: Mapping[str, str | Path]
    ingest_records: Mapping[str, str | Path]

    def prepared(self, subject: str) -> Prepared:
        """The subject's crop as the predictor takes it."""
        for files in (self.crops, self.crop_records, self.ingest_records):
            if subject not in files:
                raise InputError(subject, None, "no crop, crop.json or ingest.json given for it")
        return Prepared(
            read_volume(self.crops[subject], subject),
            read_json(self.crop_records[subject]),
            read_json(self.ingest_records[subject])["original"],
        )


def packed_volume(data: Split, prepared: Prepared, where: str | Path) -> np.ndarray:
    """One patient's packed slices (`data`: its rows of a split) as the normalised volume
    [z, y, x, c] of its crop, in slice order: packing wrote every slice (a split that lacks one,
    or a crop of another shape, is an error naming `where`)."""
    depth = prepared.cropped.GetSize()[2]
    held = sorted(set(data.slice_id.tolist()))
    shape = tuple(prepared.cropped.GetSize()[1::-1])
    if held != list(range(depth)) or len(data.slice_id) != depth or data.images.shape[1:3] != shape:
        raise InputError(
            str(data.patient_id[0]),
            str(where),
            f"its split holds slices {held} of shape {data.images.shape[1:3]}, not the "
            f"crop's {depth} slices of shape {shape}",
        )
    volume = np.empty((depth, *data.images.shape[1:]), dtype=data.images.dtype)
    volume[data.slice_id] = data.images
    return volume


def stored(image: sitk.Image) -> sitk.Image:
    """`image` as the workflow's NIfTI file of it reads back (geometry in float32)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "image.nii"
        write_image(image, path)
        return sitk.ReadImage(str(path))


class Predictor:
    """A package's networks and everything their inputs and outputs need (its manifest)."""

    def __init__(
        self, manifest: dict[str, Any], networks: Sequence[nn.Module], device: torch.device
    ) -> None:
        self.manifest = manifest
        self.networks = list(networks)
        self.device = device
        self.label_values = np.asarray(manifest["label_values"], dtype=np.uint8)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> Predictor:
        """The predictor of a package zip, its networks on `device` (auto: CUDA when present)."""
        archive = open_archive(path)
        if archive.manifest.get("task") != "segmentation":
            raise ValueError(f"{path}: a {archive.manifest.get('task')} package, not segmentation")
        device = choose_device(device) if isinstance(device, str) else device
        networks = [
            model_from(network, archive.weights(fold), device)
            for fold, network in enumerate(archive.manifest["networks"])
        ]
        return cls(archive.manifest, networks, device)

    @classmethod
    def of_checkpoints(
        cls,
        paths: Sequence[str | Path],
        labels: dict[str, int],
        device: torch.device,
        stats: dict[str, Any] | None = None,
    ) -> Predictor:
        """A predictor of checkpoint files (a run's, or a configuration's folds) without a
        package: no QC calibration nor intensity reference (those measures are NaN, nothing
        is flagged), and `stats` to normalise crops (`predict_prepared`) when given."""
        loaded = [load_checkpoint(Path(path), device) for path in paths]
        classes = list(loaded[0][1]["classes"])
        if any(list(meta["classes"]) != classes for _, meta in loaded):
            raise ValueError(f"the networks of {list(map(str, paths))} predict different classes")
        manifest = {
            "classes": classes,
            "label_values": label_values(classes, labels).tolist(),
            "networks": [{key: meta.get(key) for key in NETWORK_KEYS} for _, meta in loaded],
        }
        if stats is not None:
            manifest["normalisation"] = stats
        return cls(manifest, [model for model, _ in loaded], device)

    @property
    def hp(self) -> dict[str, Any]:
        """The first network's hyperparameters (how its split is read)."""
        return self.manifest["networks"][0]["hp"]

    def only(self, fold: int) -> Predictor:
        """This predictor with one fold network alone (a configuration's best fold)."""
        return Predictor(self.manifest, [self.networks[fold]], self.device)

    # -- preprocessing ---------------------------------------------------------------------

    def read(self, paths: Sequence[str | Path], case: str | None = None) -> sitk.Image:
        """A scan's channel files (or DICOM series folders) as one image, as ingest reads."""
        return read_channels(list(paths), case)

    def prepare(self, image: sitk.Image) -> Prepared:
        """The scan's crop as the workflow makes it: canonical float32, N4, centre, crop."""
        original = geometry(image)
        expected = len(self.manifest["normalisation"]["mean"])
        if image.GetNumberOfComponentsPerPixel() != expected:
            raise ValueError(
                f"{image.GetNumberOfComponentsPerPixel()} channel(s); the model takes {expected} "
                f"({', '.join(self.manifest['channels'])})"
            )
        image = stored(sitk.Cast(canonical(image), float_type(image)))
        image = stored(self._n4(image))
        crop = self.manifest["crop"]
        centre = find_centre(image, crop["centre"], crop.get("centre_mm"))
        cropped, info = crop_subject(
            image, centre, float(crop["window_mm"]), int(crop["size"]), int(crop["slices"])
        )
        info["centre_method"] = crop["centre"]
        return Prepared(stored(cropped), info, original)

    def _n4(self, image: sitk.Image) -> sitk.Image:
        settings = self.manifest["n4"]
        if image.GetNumberOfComponentsPerPixel() == 1:
            image = sitk.Cast(image, sitk.sitkFloat32)
        if not settings.get("enabled", True):
            return image
        corrected, _ = n4_correct(
            image,
            shrink=int(settings["shrink"]),
            iterations=settings["iterations"],
            convergence=float(settings["convergence"]),
            mask=settings["mask"],
        )
        return corrected

    # -- inference -------------------------------------------------------------------------

    def predict(self, image: sitk.Image, probabilities: bool = False) -> Prediction:
        """One scan (a SimpleITK image, channels as vector components) predicted."""
        return self.predict_prepared(self.prepare(image), probabilities)

    @torch.no_grad()
    def _softmax(self, slices: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each network's softmax [z, K, y, x] (on the CPU) and the ensemble's class indices
        (one network: the argmax of its logits)."""
        members, logits_of_one = [], None
        for network in self.networks:
            batch = slices_per_batch(network, BATCH_SIZE)
            logits = [
                network(to_tensor(slices[start : start + batch]).to(self.device))
                for start in range(0, len(slices), batch)
            ]
            logits_of_one = torch.cat([part.argmax(dim=1).cpu() for part in logits])
            members.append(torch.cat([torch.softmax(part, dim=1).cpu() for part in logits]))
        if len(members) == 1:
            return members, logits_of_one
        return members, torch.stack(members).mean(dim=0).log().argmax(dim=1)

    def predict_prepared(self, prepared: Prepared, probabilities: bool = False) -> Prediction:
        """A prepared scan predicted: maps in its geometry, classes on the crop, and QC."""
        slices = normalised_volume(prepared.cropped, self.manifest["normalisation"])
        return self.predict_slices(slices, prepared, probabilities)

    def predict_slices(
        self, slices: np.ndarray, prepared: Prepared, probabilities: bool = False
    ) -> Prediction:
        """The prepared scan predicted from its normalised slices [z, y, x, c] (as packing
        stores them: the workflow's test patients come from their split file)."""
        members, classes = self._softmax(slices)
        mean = torch.stack(members).mean(dim=0).numpy() if len(members) > 1 else members[0].numpy()
        classes = classes.numpy().astype(np.uint8)  # [z, y, x]
        entropy = qc.normalised_entropy(np.moveaxis(mean, 1, 0))  # [z, y, x]
        foreground = classes > 0
        ingest = {"original": prepared.original}
        cropped_labels = self._on_crop(self.label_values[classes], prepared.cropped)
        native = prepared.crop is not None and prepared.original is not None
        labels = to_native(cropped_labels, prepared.crop, ingest) if native else None
        uncertainty = (
            to_native(
                self._on_crop(entropy, prepared.cropped), prepared.crop, ingest, sitk.sitkLinear
            )
            if native
            else None
        )
        row = {
            **self._volumes(labels if native else cropped_labels),
            "agreement": qc.agreement([m.argmax(dim=1).numpy() > 0 for m in members]),
            "uncertainty": qc.mean_uncertainty(entropy, foreground),
            "intensity_distance": (
                qc.intensity_distance(slices, self.manifest["qc"]["reference"])
                if "reference" in self.manifest.get("qc", {})
                else math.nan
            ),
        }
        calibration = self.manifest.get("qc", {}).get("calibration")
        if calibration is not None:
            row["flag"], row["reason"] = qc.flag(row, calibration)
        maps = None
        if probabilities and native:
            maps = sitk.Compose(
                [
                    to_native(
                        self._on_crop(mean[:, k], prepared.cropped),
                        prepared.crop,
                        ingest,
                        sitk.sitkLinear,
                        1.0 if k == 0 else 0.0,
                    )
                    for k in range(mean.shape[1])
                ]
            )
        return Prediction(labels, uncertainty, maps, classes, cropped_labels, row)

    @staticmethod
    def _on_crop(array: np.ndarray, cropped: sitk.Image) -> sitk.Image:
        image = sitk.GetImageFromArray(array)
        image.CopyInformation(cropped)
        return image

    def _volumes(self, labels: sitk.Image) -> dict[str, float]:
        """Predicted volume (mL) of each class and of the foreground in the scan's geometry."""
        counts = np.bincount(sitk.GetArrayViewFromImage(labels).ravel(), minlength=256)
        voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
        volumes = {
            f"volume_ml_{name}": float(counts[value]) * voxel_ml
            for name, value in zip(self.manifest["classes"], self.label_values[1:], strict=True)
            if name != FOREGROUND
        }
        volumes[f"volume_ml_{FOREGROUND}"] = float(counts[1:].sum()) * voxel_ml
        return volumes
