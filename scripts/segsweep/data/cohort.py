"""Deterministic synthetic knee MRI cohort: the default workflow's data.

No knee dataset can be downloaded, so the default workflow run generates one that mirrors the
structure of the knee thesis (three sources, coronal and sagittal acquisitions, partly labelled,
labels only in a window around the joint, bias field, Rician noise, per-source intensities).

The anatomy is built in patient (DICOM LPS) coordinates relative to the joint centre and sampled
on each subject's voxel grid, so coronal and sagittal subjects show the same knee in different
orientations and every geometric quantity (joint centre, label window) is known exactly.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from segsweep import layout
from segsweep.errors import ConfigError
from segsweep.io.images import write_image
from segsweep.io.records import write_json

DEFAULT_SYNTHETIC: dict = {
    "seed": 42,
    "scale": 0.125,
    "sources": {
        "epi": {"n": 12, "labelled": 0.75},
        "jopp": {"n": 10, "labelled": 0.9},
        "maas": {"n": 2, "labelled": 0.0},
    },
}

LABELS = {"femur": 1, "tibia": 2, "fibula": 3}
IMAGES = ("image", "mask", "roi", "bias")  # the volumes written per subject
WINDOW_MM = 100.0  # side of the in-plane label window, centred on the joint centre
SLAB_VOXELS = 2_000_000  # voxels rendered at once (bounds memory at native resolution)
MANIFEST_COLUMNS = ["subject_id", "source", "perspective", "age", "image", "mask", "roi"]

# Direction matrices as SimpleITK wants them: row-major 3x3 whose *columns* are the axis directions.
DIRECTIONS = {
    # x -> Left, y -> Inferior, z -> Posterior ("LIP"): each slice is a coronal plane.
    "coronal": (1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0),
    # x -> Posterior, y -> Inferior, z -> Right ("PIR"): each slice is a sagittal plane.
    "sagittal": (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0),
}


@dataclass(frozen=True)
class SourceProfile:
    """How one source acquires: native matrices, slice thickness, field of view, intensities."""

    perspective: str
    matrices: tuple[tuple[int, int, int], ...]  # native (columns, rows, slices)
    slice_mm: tuple[float, ...]  # slice thickness for each native matrix
    fov_mm: float
    intensity_scale: float
    noise: float  # Rician sigma as a fraction of intensity_scale
    tissue: dict[str, float] = field(default_factory=dict)


_BASE_TISSUE = {
    "muscle": 0.30,
    "fat": 0.95,
    "marrow_epiphysis": 1.00,
    "marrow_metaphysis": 0.85,
    "cortex": 0.04,
    "cartilage": 0.42,
    "fluid": 0.12,
    "ligament": 0.08,
    "growth_plate": 0.28,
}

SOURCES: dict[str, SourceProfile] = {
    "epi": SourceProfile(
        perspective="coronal",
        matrices=((800, 800, 41),),
        slice_mm=(3.0,),
        fov_mm=160.0,
        intensity_scale=1000.0,
        noise=0.03,
        tissue=dict(_BASE_TISSUE),
    ),
    "jopp": SourceProfile(
        perspective="coronal",
        matrices=((512, 512, 24),),
        slice_mm=(4.0,),
        fov_mm=160.0,
        intensity_scale=300.0,
        noise=0.05,
        tissue={
            **_BASE_TISSUE,
            "muscle": 0.36,
            "fat": 0.88,
            "marrow_epiphysis": 0.92,
            "marrow_metaphysis": 0.80,
            "cartilage": 0.46,
            "growth_plate": 0.33,
        },
    ),
    "maas": SourceProfile(
        perspective="sagittal",
        matrices=((512, 512, 20), (384, 384, 28), (448, 448, 24)),
        slice_mm=(4.5, 3.5, 4.0),
        fov_mm=170.0,
        intensity_scale=2000.0,
        noise=0.04,
        tissue={
            **_BASE_TISSUE,
            "muscle": 0.26,
            "fat": 1.00,
            "cartilage": 0.38,
            "fluid": 0.15,
            "growth_plate": 0.25,
        },
    ),
}


@dataclass(frozen=True)
class SubjectSpec:
    """Everything that identifies one synthetic subject; cheap to build at DAG parse time."""

    subject_id: str
    source: str
    perspective: str
    age: float
    labelled: bool
    size: tuple[int, int, int]  # voxels (x, y, z)
    spacing: tuple[float, float, float]  # mm
    seed: int


def _stable_int(*parts: object) -> int:
    """A platform-independent integer from strings (Python's hash() is salted per process)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([_stable_int(*parts)]))


def plan_cohort(synthetic_cfg: dict) -> list[SubjectSpec]:
    """List the subjects of the cohort without touching any image (called at parse time)."""
    seed = int(synthetic_cfg.get("seed", DEFAULT_SYNTHETIC["seed"]))
    scale = float(synthetic_cfg.get("scale", DEFAULT_SYNTHETIC["scale"]))
    if not 0 < scale <= 1:
        raise ConfigError("data.synthetic.scale", scale, "a number in (0, 1]")
    sources = synthetic_cfg.get("sources", DEFAULT_SYNTHETIC["sources"])
    specs = []
    for source, opts in sources.items():
        if source not in SOURCES:
            raise ConfigError("data.synthetic.sources", source, ", ".join(SOURCES))
        n, fraction = int(opts.get("n", 0)), float(opts.get("labelled", 0.0))
        if n < 0 or not 0 <= fraction <= 1:
            raise ConfigError(
                f"data.synthetic.sources.{source}", opts, "n >= 0, 0 <= labelled <= 1"
            )
        chosen = set(_rng(seed, source, "labelled").permutation(n)[: round(n * fraction)].tolist())
        specs += [_plan_subject(seed, scale, source, i, i in chosen) for i in range(n)]
    return specs


def _plan_subject(seed: int, scale: float, source: str, index: int, labelled: bool) -> SubjectSpec:
    subject_id = f"{source}-{index:03d}"
    profile = SOURCES[source]
    rng = _rng(seed, subject_id, "plan")
    m = int(rng.integers(len(profile.matrices)))
    nx, ny, nz = profile.matrices[m]
    size = (max(16, round(nx * scale)), max(16, round(ny * scale)), nz)
    spacing = (profile.fov_mm / size[0], profile.fov_mm / size[1], profile.slice_mm[m])
    age = round(float(np.clip(rng.normal(17.5, 1.7), 14.0, 21.0)), 2)
    subject_seed = int(np.random.SeedSequence([seed, _stable_int(subject_id)]).generate_state(1)[0])
    return SubjectSpec(
        subject_id=subject_id,
        source=source,
        perspective=profile.perspective,
        age=age,
        labelled=labelled,
        size=size,
        spacing=tuple(round(s, 6) for s in spacing),
        seed=subject_seed,
    )


# --------------------------------------------------------------------------------------------
# Implicit anatomy: approximate signed distances in mm (negative inside), local knee coordinates
# x -> patient left (medial for a right knee), y -> posterior, z -> superior, origin = joint centre.


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth union, so condyles blend into the metaphysis without creases."""
    h = np.clip(k - np.abs(a - b), 0.0, None) / k
    return np.minimum(a, b) - h * h * k / 4.0


def _ellipsoid(x, y, z, centre, radii) -> np.ndarray:
    """Approximate signed distance to an ellipsoid (exact enough for rims of a few mm)."""
    u = [(c - c0) / r for c, c0, r in zip((x, y, z), centre, radii, strict=True)]
    k0 = np.sqrt(u[0] ** 2 + u[1] ** 2 + u[2] ** 2)
    k1 = np.sqrt(sum((ui / r) ** 2 for ui, r in zip(u, radii, strict=True)))
    near_centre = (k0 - 1.0) * min(radii)
    return np.where(k0 < 0.5, near_centre, k0 * (k0 - 1.0) / np.maximum(k1, 1e-6))


def _ellipse(a, b, centre, radii) -> np.ndarray:
    """Approximate signed distance to an infinite elliptic cylinder; radii may vary per voxel."""
    ua, ub = (a - centre[0]) / radii[0], (b - centre[1]) / radii[1]
    k0 = np.sqrt(ua**2 + ub**2)
    k1 = np.sqrt((ua / radii[0]) ** 2 + (ub / radii[1]) ** 2)
    near_centre = (k0 - 1.0) * np.asarray(np.minimum(radii[0], radii[1]), np.float32)
    return np.where(k0 < 0.5, near_centre, k0 * (k0 - 1.0) / np.maximum(k1, 1e-6))


def _smoothstep(e0: float, e1: float, v: np.ndarray) -> np.ndarray:
    t = np.clip((v - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _femur(x, y, z, width: float) -> np.ndarray:
    x = x / width
    medial = _ellipsoid(x, y, z, (19.0, 3.0, 24.0), (15.0, 29.0, 21.0))
    lateral = _ellipsoid(x, y, z, (-19.0, 1.0, 24.0), (14.5, 28.0, 21.0))
    trochlea = _ellipsoid(x, y, z, (0.0, -9.0, 28.0), (31.0, 16.0, 18.0))
    flare = _smoothstep(72.0, 30.0, z)
    shaft = _ellipse(x, y, (0.0, 3.0), (13.5 + 24.0 * flare, 12.5 + 15.0 * flare))
    shaft = np.maximum(shaft, 22.0 - z)
    bone = _smin(_smin(_smin(medial, lateral, 4.0), trochlea, 6.0), shaft, 10.0)
    notch = np.maximum(_ellipse(x, z, (0.0, 3.0), (8.5, 22.0)), -4.0 - y)
    return np.maximum(bone, -notch)


def _tibia(x, y, z, width: float) -> np.ndarray:
    x = x / width
    flare = _smoothstep(-50.0, -12.0, z)
    body = _ellipse(x, y, (0.0, 4.0), (13.0 + 25.5 * flare, 12.5 + 14.0 * flare))
    plateau = -_smin(-body, -(z + 3.0), 3.0)  # smooth intersection rounds the plateau rim
    spines = _ellipsoid(x, y, z, (0.0, 3.0, -5.0), (9.0, 10.0, 4.5))
    return _smin(plateau, spines, 2.0)


def _fibula(x, y, z, tibia: np.ndarray, size: float) -> np.ndarray:
    head = _ellipsoid(x, y, z, (-31.0, 15.0, -24.0), (11.0 * size, 11.0 * size, 12.5 * size))
    centre = (-30.0 - 0.08 * (z + 24.0), 15.0)
    shaft = np.maximum(_ellipse(x, y, centre, (8.0 * size, 8.0 * size)), z + 24.0)
    bone = _smin(head, shaft, 4.0)
    return np.maximum(bone, -(tibia - 1.5))  # keep the proximal tibiofibular joint space


@dataclass
class Rendered:
    """All arrays of one subject in (z, y, x) order, with the geometry and ground truth."""

    image: np.ndarray
    clean: np.ndarray  # noise-free anatomy intensity (scaled, without bias)
    mask: np.ndarray
    roi: np.ndarray
    bias: np.ndarray
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    spacing: tuple[float, float, float]
    truth: dict


@dataclass(frozen=True)
class _Draws:
    """Every random choice of one subject, drawn once so slabs can be rendered independently."""

    direction: np.ndarray  # 3x3, columns = image axes in patient space
    origin: np.ndarray
    fov_centre: np.ndarray
    joint: np.ndarray
    shift: np.ndarray  # joint offset from the FOV centre along the image axes (mm)
    angles: np.ndarray  # degrees about the patient x, y, z axes
    rotation: np.ndarray  # 3x3, local knee axes in patient space
    bone_scale: float
    shape: tuple[float, float, float]  # femur width, tibia width, fibula size factors
    leg_scale: float
    fat_mm: float
    openness: float  # growth plate: 1 open, 0 closed
    tissue: dict[str, float]
    waves: np.ndarray  # muscle texture: 3 plane waves (spatial frequency, phase)
    bias_weights: np.ndarray
    bias_ratio: float


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _growth_plate_openness(age: float, rng: np.random.Generator) -> float:
    """Physes close between 14 and 21 years (thesis 4.2); logistic around 17.5 with jitter."""
    return float(np.clip(1.0 / (1.0 + np.exp((age - 17.5) / 1.0)) + rng.normal(0, 0.05), 0, 1))


def _draw(spec: SubjectSpec, rng: np.random.Generator) -> _Draws:
    """Scanner-like placement (FOV near the isocentre, knee shifted and tilted a little),
    subject anatomy and acquisition parameters."""
    profile = SOURCES[spec.source]
    direction = np.array(DIRECTIONS[spec.perspective]).reshape(3, 3)
    size, spacing = np.array(spec.size), np.array(spec.spacing)
    fov_centre = np.array([-80.0, 10.0, 0.0]) + rng.uniform(-20.0, 20.0, 3)
    shift = np.array([*rng.uniform(-12.0, 12.0, 2), rng.uniform(-4.0, 4.0)])
    angles = np.clip(rng.normal(0.0, 2.0, 3), -5.0, 5.0)
    age_growth = 0.01 * (spec.age - 14.0)
    gain = profile.intensity_scale * rng.uniform(0.9, 1.1)
    return _Draws(
        direction=direction,
        origin=fov_centre - direction @ ((size - 1) / 2.0 * spacing),
        fov_centre=fov_centre,
        joint=fov_centre + direction @ shift,
        shift=shift,
        angles=angles,
        rotation=_rotation(angles),
        bone_scale=float(np.clip(0.93 + age_growth + rng.normal(0, 0.03), 0.85, 1.1)),
        shape=tuple(float(f) for f in rng.uniform([0.95, 0.95, 0.85], [1.05, 1.05, 1.15])),
        leg_scale=float(rng.uniform(0.95, 1.12)),
        fat_mm=float(rng.uniform(5.0, 10.0)),
        openness=_growth_plate_openness(spec.age, rng),
        # per-subject gain and a small per-tissue contrast jitter on top of the source profile
        tissue={k: v * gain * rng.uniform(0.95, 1.05) for k, v in profile.tissue.items()},
        waves=np.column_stack([rng.uniform(-0.3, 0.3, (3, 3)), rng.uniform(0, 2 * np.pi, 3)]),
        bias_weights=rng.normal(0.0, 1.0, 9) * np.array([1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]),
        bias_ratio=float(rng.uniform(1.5, 2.0)),
    )


def _grid(
    spec: SubjectSpec, axes: np.ndarray, start: np.ndarray, slices: slice
) -> list[np.ndarray]:
    """Coordinates `start + axes @ (index * spacing)` per voxel of `slices`, as (z, y, x) arrays."""
    nx, ny, nz = spec.size
    steps = (axes * np.asarray(spec.spacing)).astype(np.float32)  # column a: step of index a
    i = np.arange(nx, dtype=np.float32)[None, None, :]
    j = np.arange(ny, dtype=np.float32)[None, :, None]
    k = np.arange(nz, dtype=np.float32)[slices, None, None]
    return [
        np.float32(start[c]) + i * steps[c, 0] + j * steps[c, 1] + k * steps[c, 2] for c in range(3)
    ]


def _intensity(x, y, z, bones: dict[str, np.ndarray], leg: np.ndarray, dr: _Draws, blur_mm: float):
    """Paint tissues back to front with partial-volume edges (T1-like contrast)."""
    s, tissue = dr.bone_scale, dr.tissue

    def cover(sdf: np.ndarray) -> np.ndarray:
        return np.clip(0.5 - sdf / blur_mm, 0.0, 1.0)

    def paint(img: np.ndarray, sdf: np.ndarray, value) -> np.ndarray:
        return img + cover(sdf) * (value - img)

    femur, tibia = bones["femur"], bones["tibia"]
    waves = dr.waves.astype(np.float32)  # float64 scalars would promote every array
    texture = 1 + np.float32(0.04) * sum(np.sin(a * x + b * y + c * z + p) for a, b, c, p in waves)
    img = paint(np.zeros(x.shape, np.float32), leg, tissue["muscle"] * texture)
    img = paint(img, np.maximum(leg, -(leg + dr.fat_mm)), tissue["fat"])  # subcutaneous
    popliteal = _ellipsoid(x, y, z, (0.0, 34.0, 2.0), (17.0, 10.0, 30.0)) * s
    hoffa = _ellipsoid(x, y, z, (0.0, -27.0, -5.0), (16.0, 8.0, 10.0)) * s
    img = paint(img, np.maximum(np.minimum(popliteal, hoffa), leg), tissue["fat"])
    footprint = _ellipse(x, y, (0.0, 4.0), (37.0, 25.0)) * s
    joint_space = np.maximum(footprint, (np.abs(z) - 4.0) * s)
    img = paint(img, joint_space, tissue["fluid"])
    cruciates = _ellipsoid(x, y, z, (0.0, 9.0, 10.0), (4.5, 13.0, 13.0)) * s
    img = paint(img, cruciates, tissue["ligament"])
    shell = np.minimum(femur, tibia) - 2.5 * s
    cartilage = np.maximum(np.maximum(shell, footprint), (np.abs(z) - 8.0) * s)
    img = paint(img, cartilage, tissue["cartilage"])

    all_bone = np.minimum(np.minimum(femur, tibia), bones["fibula"])
    img = paint(img, all_bone, tissue["cortex"])
    marrow_sdf = all_bone + (1.2 + 2.0 * _smoothstep(35.0, 55.0, np.abs(z))) * s
    femur_plate = 24.0 + 2.5 * np.cos(np.pi * x / 25.0) - 0.04 * y
    tibia_plate = -19.0 - 2.0 * np.cos(np.pi * x / 30.0) - 0.05 * y
    epiphysis = (z < femur_plate) & (z > tibia_plate)
    marrow = np.where(epiphysis, tissue["marrow_epiphysis"], tissue["marrow_metaphysis"])
    marrow = marrow.astype(np.float32)
    img = paint(img, marrow_sdf, marrow)
    half_width = (0.3 + 1.3 * dr.openness) * s
    plate_dist = np.minimum(np.abs(z - femur_plate), np.abs(z - tibia_plate)) * s
    plate = cover(plate_dist - half_width) * cover(marrow_sdf) * (0.15 + 0.85 * dr.openness)
    return (img + plate * (tissue["growth_plate"] - img)).astype(np.float32)


def _render_slab(spec: SubjectSpec, dr: _Draws, slices: slice):
    """Clean intensity, label map, window and raw log-bias of a range of slices."""
    d, rot, s = dr.direction, dr.rotation, dr.bone_scale
    # Local knee coordinates q = R^T (p - joint) / bone_scale; distances are rescaled by s.
    x, y, z = _grid(spec, rot.T @ d / s, rot.T @ (dr.origin - dr.joint) / s, slices)
    femur_width, tibia_width, fibula_size = dr.shape
    tibia = _tibia(x, y, z, tibia_width)
    bones = {
        "femur": _femur(x, y, z, femur_width) * s,
        "tibia": tibia * s,
        "fibula": _fibula(x, y, z, tibia, fibula_size) * s,
    }
    ls = dr.leg_scale
    leg = _ellipse(x / ls, y / ls, (0.0, 4.0), (60.0, 53.0)) * s * ls
    clean = _intensity(x, y, z, bones, leg, dr, blur_mm=float(np.mean(spec.spacing[:2])))

    # Label window: in-plane square along the image axes around the joint, all slices.
    u, v, _ = _grid(spec, np.eye(3), d.T @ (dr.origin - dr.joint), slices)
    roi = ((np.abs(u) <= WINDOW_MM / 2) & (np.abs(v) <= WINDOW_MM / 2)).astype(np.uint8)
    mask = np.zeros(x.shape, np.uint8)
    for name in ("fibula", "tibia", "femur"):  # femur last: wins where implicit shapes touch
        mask[bones[name] < 0] = LABELS[name]
    mask *= roi

    # Bias: a quadratic in FOV-normalised patient coordinates (rescaled later, volume-wide).
    half_fov = SOURCES[spec.source].fov_mm / 2.0
    px, py, pz = _grid(spec, d / half_fov, (dr.origin - dr.fov_centre) / half_fov, slices)
    terms = (px, py, pz, px * px, py * py, pz * pz, px * py, py * pz, px * pz)
    log_bias = sum(float(w) * t for w, t in zip(dr.bias_weights, terms, strict=True))
    return clean, mask, roi, log_bias.astype(np.float32)


def render(spec: SubjectSpec) -> Rendered:
    """Sample the anatomy, label window, bias and noise of one subject (no I/O).

    Rendered in slabs of slices so native resolutions (scale 1) stay within memory.
    """
    rng = np.random.default_rng(spec.seed)
    dr = _draw(spec, rng)
    nx, ny, nz = spec.size
    clean = np.empty((nz, ny, nx), np.float32)
    log_bias = np.empty_like(clean)
    mask = np.empty(clean.shape, np.uint8)
    roi = np.empty_like(mask)
    step = max(1, SLAB_VOXELS // (nx * ny))
    for k0 in range(0, nz, step):
        slab = slice(k0, min(nz, k0 + step))
        clean[slab], mask[slab], roi[slab], log_bias[slab] = _render_slab(spec, dr, slab)

    # Smooth multiplicative field with max/min = bias_ratio and geometric mean 1.
    span = max(float(log_bias.max() - log_bias.min()), 1e-6)
    log_bias -= log_bias.mean()
    bias = np.exp(log_bias * np.float32(np.log(dr.bias_ratio) / span))
    # Rician noise: magnitude of the complex signal with Gaussian noise in both channels.
    sigma = SOURCES[spec.source].noise * SOURCES[spec.source].intensity_scale
    image = np.empty_like(clean)
    for k0 in range(0, nz, step):
        slab = slice(k0, min(nz, k0 + step))
        noise = rng.normal(0.0, sigma, (2, *clean[slab].shape)).astype(np.float32)
        image[slab] = np.hypot(clean[slab] * bias[slab] + noise[0], noise[1])

    joint_index = dr.direction.T @ (dr.joint - dr.origin) / np.array(spec.spacing)
    truth = {
        "subject_id": spec.subject_id,
        "source": spec.source,
        "perspective": spec.perspective,
        "age": spec.age,
        "labelled": spec.labelled,
        "joint_centre_mm": _rounded(dr.joint),
        "joint_centre_index": _rounded(joint_index),
        "fov_centre_mm": _rounded(dr.fov_centre),
        "shift_mm": _rounded(dr.shift),
        "rotation_deg": _rounded(dr.angles),
        "bone_scale": round(dr.bone_scale, 4),
        "shape": dict(
            zip(("femur_width", "tibia_width", "fibula_size"), _rounded(dr.shape), strict=True)
        ),
        "growth_plate_openness": round(dr.openness, 4),
        "window_mm": WINDOW_MM,
        "labels": LABELS,
        "tissue_intensity": {k: round(float(val), 3) for k, val in dr.tissue.items()},
        "noise_sigma": sigma,
        "bias_ratio": round(dr.bias_ratio, 4),
        "size": list(spec.size),
        "spacing": list(spec.spacing),
        "seed": spec.seed,
    }
    return Rendered(
        image=image,
        clean=clean,
        mask=mask,
        roi=roi,
        bias=bias,
        origin=tuple(float(c) for c in dr.origin),
        direction=DIRECTIONS[spec.perspective],
        spacing=tuple(float(c) for c in spec.spacing),
        truth=truth,
    )


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]


def _to_image(array: np.ndarray, rendered: Rendered) -> sitk.Image:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(rendered.spacing)
    img.SetOrigin(rendered.origin)
    img.SetDirection(rendered.direction)
    return img


def subject_files(folder: str | Path) -> dict[str, str]:
    """The files of one subject's folder of the cohort (`segsweep.layout`'s COHORT_*): image,
    mask, roi and true bias field as MetaImage headers (each with its .zraw voxel file beside
    it), and truth.json."""
    patterns = {name: getattr(layout, f"COHORT_{name.upper()}") for name in (*IMAGES, "truth")}
    return {
        name: str(layout.under(folder, pattern, base=layout.COHORT_SUBJECT))
        for name, pattern in patterns.items()
    }


def generate_subject(spec: SubjectSpec, out_dir: Path) -> None:
    """Write the files of `subject_files(out_dir)` for one subject."""
    rendered = render(spec)
    files = subject_files(out_dir)
    for name in IMAGES:
        write_image(_to_image(getattr(rendered, name), rendered), files[name])
    write_json(files["truth"], rendered.truth)


def write_manifest(specs: list[SubjectSpec], path: Path) -> None:
    """Manifest CSV with paths relative to its folder; unlabelled subjects have no mask/roi."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        for s in specs:
            writer.writerow(
                {
                    "subject_id": s.subject_id,
                    "source": s.source,
                    "perspective": s.perspective,
                    "age": f"{s.age:.2f}",
                    "image": subject_files(s.subject_id)["image"],
                    "mask": subject_files(s.subject_id)["mask"] if s.labelled else "",
                    "roi": subject_files(s.subject_id)["roi"] if s.labelled else "",
                }
            )


def _find(specs: list[SubjectSpec], subject_id: str) -> SubjectSpec:
    for spec in specs:
        if spec.subject_id == subject_id:
            return spec
    raise ConfigError("subject", subject_id, ", ".join(s.subject_id for s in specs))


def main(argv: list[str] | None = None) -> None:
    """`subject` writes one subject folder, `manifest` the CSV, `all` a whole cohort folder."""
    parser = argparse.ArgumentParser(prog="segsweep cohort", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, what in (
        ("subject", "generate one subject into DIR (the subject's own folder)"),
        ("manifest", "write the manifest CSV"),
        ("all", "generate every subject into DIR/{subject}/ and DIR/manifest.csv"),
    ):
        p = sub.add_parser(name, help=what)
        p.add_argument("--config-json", default=None, help="JSON of the data.synthetic section")
        p.add_argument("--out", required=True, type=Path)
        if name == "subject":
            p.add_argument("--subject", required=True)
    args = parser.parse_args(argv)
    cfg = DEFAULT_SYNTHETIC if args.config_json is None else json.loads(args.config_json)
    specs = plan_cohort(cfg)
    if args.command == "subject":
        generate_subject(_find(specs, args.subject), args.out)
    elif args.command == "manifest":
        write_manifest(specs, args.out)
    else:
        for spec in specs:
            generate_subject(spec, args.out / spec.subject_id)
        write_manifest(specs, args.out / "manifest.csv")


if __name__ == "__main__":
    main()
