"""Deterministic synthetic radiograph cohort: the embedded default of `task: classification`.

No radiograph dataset can be downloaded, so a fresh clone generates one with the structure of
MURA (patients, each with one or more studies of one study type, each study one to four views;
a study is normal or abnormal, every view of it alike). Images are drawn with numpy/scipy as
X-ray projections: attenuation of soft tissue, bone (marrow and a brighter cortex) and metal
summed along the beam, shown bright on dark (1 − exp(−attenuation)).

Config section `data.radiographs` (missing keys take `DEFAULTS`):
- `seed` (7): every random choice derives from it;
- `patients` (60): patient i (1-based) is `P{i:04d}`, its studies `P0001-S1`, …, its images
  `P0001-S1-V1`, …;
- `size` (64): side of the square PNGs, in pixels (8 or more);
- `abnormal` (0.4): fraction of abnormal studies; exactly round(abnormal · n_studies) of them are
  abnormal (study j, counted over the cohort in id order, is abnormal when
  round((j+1) · abnormal) > round(j · abnormal), so every prefix of patients keeps the ratio);
- `views` ([1, 4]) and `studies` ([1, 2]): min and max images per study and studies per patient;
- `study_types` ([XR_WRIST, XR_ELBOW, XR_FINGER]): any of `STUDY_TYPES`; patient i's studies
  are all of type `study_types[(i-1) % n]`, so each type gets an equal share of patients;
- `finding_contrast` (1.0): multiplies how visible the finding is (0: invisible);
- `labels` ({normal: 0, abnormal: 1}): the class of a normal study is the name with the lowest
  value, of an abnormal one the name with the highest.

Anatomy per study type: XR_WRIST (radius and ulna side by side, two rows of carpals,
metacarpals), XR_ELBOW (humerus with condyles, radius and ulna at a flexion angle),
XR_FINGER (metacarpal head and three phalanges, neighbouring fingers on PA views),
XR_HUMERUS (one long bone with head and condyles), XR_CHEST (thorax, lungs with vessel
markings, heart, spine, ribs, clavicles). Findings: on musculoskeletal studies a fracture line
(a dark gap across a long bone) or hardware (a bright plate with screws), at one anatomical
place of the study and so at a view-dependent place in each image; on chest studies a
pneumothorax (a dark crescent without lung markings at one lung's lateral edge, bounded by the
bright visceral pleural line). Views vary in rotation, shift, scale, projection (on lateral views
of wrist and finger the bones overlap; the elbow's flexion changes), exposure and noise.

Randomness: patient i draws from `default_rng([seed, i, 0, 0])`, study k from
`[seed, i, k, 0]`, view v from `[seed, i, k, v]` (i, k, v 1-based), each a fixed number of draws,
so an image depends only on the seed, its ids, its label, `size`, its study type and the finding
contrast: adding patients or views leaves every other image as it was.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from scipy import ndimage

from segsweep.errors import ConfigError
from segsweep.io.records import write_csv

DEFAULTS: dict = {
    "seed": 7,
    "patients": 60,
    "size": 64,
    "abnormal": 0.4,
    "views": [1, 4],
    "studies": [1, 2],
    "study_types": ["XR_WRIST", "XR_ELBOW", "XR_FINGER"],
    "finding_contrast": 1.0,
    "labels": {"normal": 0, "abnormal": 1},
}
STUDY_TYPES = ("XR_WRIST", "XR_ELBOW", "XR_FINGER", "XR_HUMERUS", "XR_CHEST")
MANIFEST_COLUMNS = ["image", "label", "study_id", "patient_id", "study_type", "view"]
KEY = "data.radiographs"

# attenuation (arbitrary units) added by each tissue along the beam
SOFT, MARROW, CORTEX, METAL = 0.35, 0.45, 0.85, 3.0
LUNG_AIR, HEART, SPINE, RIB, VESSEL = -0.35, 0.3, 0.5, 0.14, 0.14


@dataclass(frozen=True)
class RadiographSpec:
    """One image of the cohort; `finding` is "" for a normal study, else "fracture",
    "hardware" or "pneumothorax". `patient_index`, `study_index` and `view` are 1-based."""

    image_id: str
    study_id: str
    patient_id: str
    study_type: str
    view: int
    label: str
    abnormal: bool
    finding: str
    patient_index: int
    study_index: int


def complete(cfg: dict | None) -> dict:
    """`cfg` over `DEFAULTS`, checked; ConfigError names the first bad key."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"{KEY}.{unknown[0]}", cfg[unknown[0]], ", ".join(DEFAULTS))
    full = {**DEFAULTS, **cfg}
    for key, low in (("seed", 0), ("patients", 1), ("size", 8)):
        if not isinstance(full[key], int) or isinstance(full[key], bool) or full[key] < low:
            raise ConfigError(f"{KEY}.{key}", full[key], f"an integer >= {low}")
    if not 0 <= float(full["abnormal"]) <= 1:
        raise ConfigError(f"{KEY}.abnormal", full["abnormal"], "a fraction in [0, 1]")
    for key in ("views", "studies"):
        pair = full[key]
        if not (
            isinstance(pair, list | tuple)
            and len(pair) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) for n in pair)
            and 1 <= pair[0] <= pair[1]
        ):
            raise ConfigError(f"{KEY}.{key}", pair, "[min, max] integers with 1 <= min <= max")
    types = full["study_types"]
    if not types or not isinstance(types, list | tuple) or not set(types) <= set(STUDY_TYPES):
        raise ConfigError(f"{KEY}.study_types", types, f"a non-empty list of {STUDY_TYPES}")
    if len(set(types)) != len(types):
        raise ConfigError(f"{KEY}.study_types", types, "each study type once")
    if float(full["finding_contrast"]) < 0:
        raise ConfigError(f"{KEY}.finding_contrast", full["finding_contrast"], "a number >= 0")
    labels = full["labels"]
    if not isinstance(labels, dict) or len(labels) < 2 or len(set(labels.values())) < len(labels):
        raise ConfigError(f"{KEY}.labels", labels, "{class: value} with two or more classes")
    return full


def _classes(labels: dict) -> tuple[str, str]:
    """(normal class, abnormal class): the names with the lowest and the highest value."""
    ordered = sorted(labels, key=lambda name: labels[name])
    return ordered[0], ordered[-1]


def _count(u: float, bounds: list[int]) -> int:
    """An integer in [low, high] from a uniform draw in [0, 1)."""
    low, high = bounds
    return low + min(int(u * (high - low + 1)), high - low)


def plan_radiographs(cfg: dict | None) -> list[RadiographSpec]:
    """Every image of the cohort, in id order, without drawing any (cheap)."""
    cfg = complete(cfg)
    seed, types, fraction = cfg["seed"], list(cfg["study_types"]), float(cfg["abnormal"])
    normal, abnormal = _classes(cfg["labels"])
    specs, j = [], 0  # j: the study's position in the cohort
    for p in range(1, cfg["patients"] + 1):
        study_type = types[(p - 1) % len(types)]
        n_studies = _count(np.random.default_rng([seed, p, 0, 0]).random(), cfg["studies"])
        for s in range(1, n_studies + 1):
            rng = np.random.default_rng([seed, p, s, 0])
            n_views = _count(rng.random(), cfg["views"])
            kind = rng.random()
            is_abnormal = round((j + 1) * fraction) > round(j * fraction)
            j += 1
            finding = ""
            if is_abnormal:
                finding = "pneumothorax" if study_type == "XR_CHEST" else "fracture"
                finding = "hardware" if finding == "fracture" and kind >= 0.5 else finding
            for v in range(1, n_views + 1):
                specs.append(
                    RadiographSpec(
                        image_id=f"P{p:04d}-S{s}-V{v}",
                        study_id=f"P{p:04d}-S{s}",
                        patient_id=f"P{p:04d}",
                        study_type=study_type,
                        view=v,
                        label=abnormal if is_abnormal else normal,
                        abnormal=is_abnormal,
                        finding=finding,
                        patient_index=p,
                        study_index=s,
                    )
                )
    return specs


# --------------------------------------------------------------------------------------------
# signed distances (negative inside) in body coordinates: u to the right, v down (distal)


def _capsule(u, v, a, b, r0: float, r1: float | None = None) -> np.ndarray:
    """Distance to the segment a → b minus a radius tapering from r0 (at a) to r1 (at b)."""
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = np.clip(((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    radius = r0 + ((r0 if r1 is None else r1) - r0) * t
    return np.hypot(u - ax - t * dx, v - ay - t * dy) - radius


def _ellipse(u, v, centre, radii, angle: float = 0.0) -> np.ndarray:
    """Approximate distance to an ellipse (exact on its axes) rotated by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    du, dv = u - centre[0], v - centre[1]
    a, b = (c * du + s * dv) / radii[0], (-s * du + c * dv) / radii[1]
    return (np.hypot(a, b) - 1.0) * min(radii)


@dataclass(frozen=True)
class _Long:
    """A long bone a finding can lie on: its index among the bones, its axis a → b, radius
    and the stretch [t0, t1] of the axis where findings go."""

    bone: int
    a: tuple[float, float]
    b: tuple[float, float]
    radius: float
    stretch: tuple[float, float]


@dataclass
class _Anatomy:
    """Soft tissue outline, bones (signed distances) and the long bones of findings."""

    soft: np.ndarray
    bones: list[np.ndarray]
    long: list[_Long]


def _wrist(u, v, shape: np.ndarray, spread: float) -> _Anatomy:
    k = 0.85 + 0.3 * shape[0]  # bone thickness
    gap = (0.17 + 0.06 * shape[1]) * spread
    radius = ((-gap, -1.4), (-gap * 1.1, 0.05))
    ulna = ((gap, -1.4), (gap * 0.95, 0.0))
    bones = [
        _capsule(u, v, *radius, 0.1 * k, 0.15 * k),
        _capsule(u, v, *ulna, 0.075 * k, 0.08 * k),
    ]
    for row, (v0, n) in enumerate(((0.25, 4), (0.43, 4))):
        for i in range(n):
            x = (-0.27 + 0.18 * i + 0.04 * row) * (0.6 + 0.4 * spread)
            bones.append(_ellipse(u, v, (x, v0 + 0.02 * (i % 2)), (0.075 * k, 0.06 * k), 0.3 * i))
    for i in range(4):
        x = (-0.24 + 0.16 * i) * (0.5 + 0.5 * spread)
        bones.append(_capsule(u, v, (x, 0.58), (x * 1.5, 1.5), 0.05 * k))
    soft = _capsule(u, v, (0.0, -1.5), (0.0, 1.5), 0.5 + 0.1 * shape[2])
    return _Anatomy(
        soft,
        bones,
        [_Long(0, *radius, 0.1 * k, (0.55, 0.9)), _Long(1, *ulna, 0.08 * k, (0.6, 0.9))],
    )


def _elbow(u, v, shape: np.ndarray, spread: float, flexion: float) -> _Anatomy:
    k = 0.85 + 0.3 * shape[0]
    humerus = ((0.0, -1.5), (0.0, -0.1))
    d = np.array([np.sin(flexion), np.cos(flexion)])  # forearm direction
    n = np.array([d[1], -d[0]])  # its normal
    joint = np.array([0.0, 0.05])
    radius_a = joint + n * 0.1 * spread + d * 0.1
    ulna_a = joint - n * 0.06 * spread - d * 0.02
    radius = (tuple(radius_a), tuple(radius_a + d * 1.5))
    ulna = (tuple(ulna_a), tuple(ulna_a + d * 1.5))
    bones = [
        _capsule(u, v, *humerus, 0.12 * k, 0.14 * k),
        _ellipse(u, v, (0.0, -0.08), ((0.18 + 0.12 * spread) * k, 0.11 * k)),
        _capsule(u, v, *radius, 0.09 * k, 0.07 * k),
        _capsule(u, v, *ulna, 0.1 * k, 0.06 * k),
        _ellipse(u, v, tuple(ulna_a - d * 0.12 - n * 0.05), (0.08 * k, 0.07 * k)),  # olecranon
    ]
    soft = np.minimum(
        _capsule(u, v, (0.0, -1.6), (0.0, 0.0), 0.45 + 0.1 * shape[2]),
        _capsule(u, v, tuple(joint), tuple(joint + d * 1.6), 0.4 + 0.1 * shape[2]),
    )
    long = [
        _Long(0, *humerus, 0.12 * k, (0.6, 0.88)),
        _Long(2, *radius, 0.09 * k, (0.12, 0.35)),
        _Long(3, *ulna, 0.1 * k, (0.15, 0.35)),
    ]
    return _Anatomy(soft, bones, long)


def _finger(u, v, shape: np.ndarray, spread: float, flexion: float) -> _Anatomy:
    k = 0.85 + 0.3 * shape[0]
    bend = np.array([np.sin(flexion), np.cos(flexion)])  # distal direction past the PIP joint
    metacarpal = ((0.0, 1.5), (0.0, 0.78))
    proximal = ((0.0, 0.68), (0.0, 0.02))
    middle_a = np.array([0.0, -0.06])
    middle = (tuple(middle_a), tuple(middle_a - bend * 0.42))
    distal_a = middle_a - bend * 0.5
    distal = (tuple(distal_a), tuple(distal_a - bend * 0.28))
    bones = [
        _capsule(u, v, *metacarpal, 0.085 * k, 0.1 * k),
        _capsule(u, v, *proximal, 0.085 * k, 0.07 * k),
        _capsule(u, v, *middle, 0.07 * k, 0.06 * k),
        _capsule(u, v, *distal, 0.055 * k, 0.045 * k),
    ]
    soft = np.minimum.reduce(
        [
            _capsule(u, v, (0.0, 1.6), (0.0, 0.0), 0.2 + 0.04 * shape[2]),
            _capsule(u, v, (0.0, 0.0), tuple(distal_a - bend * 0.3), 0.18 + 0.04 * shape[2]),
        ]
    )
    if spread > 0.8:  # neighbouring fingers at the edges of a PA view
        for side in (-1.0, 1.0):
            x = side * (0.55 + 0.1 * shape[1])
            bones.append(_capsule(u, v, (x, 1.5), (x * 1.1, -0.2), 0.07 * k))
            soft = np.minimum(soft, _capsule(u, v, (x, 1.6), (x * 1.1, -0.4), 0.18))
    long = [_Long(1, *proximal, 0.08 * k, (0.3, 0.7)), _Long(2, *middle, 0.065 * k, (0.3, 0.7))]
    return _Anatomy(soft, bones, long)


def _humerus(u, v, shape: np.ndarray, spread: float) -> _Anatomy:
    k = 0.85 + 0.3 * shape[0]
    shaft = ((-0.06, -0.95), (0.06, 0.95))
    bones = [
        _capsule(u, v, *shaft, 0.13 * k, 0.12 * k),
        _ellipse(u, v, (-0.14, -1.05), (0.3 * k, 0.28 * k)),  # head
        _ellipse(u, v, (0.07, 1.04), ((0.2 + 0.12 * spread) * k, 0.12 * k)),  # condyles
        _capsule(u, v, (-0.55, -1.3), (-0.45, -0.85), 0.12 * k),  # glenoid and scapula edge
    ]
    soft = _capsule(u, v, (-0.1, -1.6), (0.1, 1.6), 0.5 + 0.1 * shape[2])
    return _Anatomy(soft, bones, [_Long(0, *shaft, 0.125 * k, (0.3, 0.7))])


def _muscular(study_type: str, u, v, shape: np.ndarray, spread: float, flex: float) -> _Anatomy:
    if study_type == "XR_WRIST":
        return _wrist(u, v, shape, spread)
    if study_type == "XR_ELBOW":
        return _elbow(u, v, shape, spread, np.deg2rad(5 + 85 * flex * (spread < 0.8)))
    if study_type == "XR_FINGER":
        return _finger(u, v, shape, spread, np.deg2rad(40 * flex * (spread < 0.8)))
    return _humerus(u, v, shape, spread)


# --------------------------------------------------------------------------------------------
# drawing


def _cover(sdf: np.ndarray, pixel: float) -> np.ndarray:
    """Area inside (1) to outside (0), blended across one pixel (antialiased edges)."""
    return np.clip(0.5 - sdf / pixel, 0.0, 1.0)


def _bone_attenuation(sdf: np.ndarray, pixel: float, cortex: float) -> np.ndarray:
    inside = _cover(sdf, pixel)
    rim = inside - _cover(sdf + cortex, pixel)
    return inside * MARROW + rim * (CORTEX - MARROW)


def _musculoskeletal(spec: RadiographSpec, u, v, pixel, patient, study, spread, flex, contrast):
    """Attenuation of a limb view, with the study's finding when it is abnormal."""
    shape = patient[1:4]
    anatomy = _muscular(spec.study_type, u, v, shape, spread, flex)
    cortex = max(0.03, 0.8 * pixel)
    bones = [_bone_attenuation(d, pixel, cortex) for d in anatomy.bones]
    metal = np.zeros_like(u)
    long = anatomy.long[min(int(study[0] * len(anatomy.long)), len(anatomy.long) - 1)]
    t = long.stretch[0] + (long.stretch[1] - long.stretch[0]) * study[1]
    a, b = np.array(long.a), np.array(long.b)
    axis = (b - a) / np.linalg.norm(b - a)
    normal = np.array([axis[1], -axis[0]])
    centre = a + t * (b - a)
    if spec.finding == "fracture":
        angle = np.deg2rad(-25 + 50 * study[2])  # the line's tilt from square across the bone
        line = np.cos(angle) * axis + np.sin(angle) * normal  # the normal of the fracture line
        half = max(0.03, 0.75 * pixel)
        gap = _cover(np.abs((u - centre[0]) * line[0] + (v - centre[1]) * line[1]) - half, pixel)
        bones[long.bone] = bones[long.bone] * (1.0 - min(1.0, 0.9 * contrast) * gap)
    elif spec.finding == "hardware":
        side = 1.0 if study[3] < 0.5 else -1.0
        offset = normal * side * (long.radius + max(0.025, 0.6 * pixel))
        half = 0.22 + 0.1 * study[4]
        p0, p1 = centre + offset - axis * half, centre + offset + axis * half
        thin = max(0.022, 0.55 * pixel)
        parts = [_capsule(u, v, tuple(p0), tuple(p1), thin)]
        for s in np.linspace(-half * 0.8, half * 0.8, 2 + int(study[5] * 2.999)):
            head = centre + offset + axis * s
            tip = head - normal * side * (2.3 * long.radius)
            parts.append(_capsule(u, v, tuple(head), tuple(tip), thin * 0.8))
        metal = METAL * min(1.0, contrast) * _cover(np.minimum.reduce(parts), pixel)
    return SOFT * _cover(anatomy.soft, pixel) + sum(bones) + metal


def _chest(spec: RadiographSpec, u, v, pixel, patient, study, contrast):
    """Attenuation of a PA chest view, with a pneumothorax when the study is abnormal."""
    shape, texture = patient[1:16], patient[17:]
    width = 0.88 + 0.08 * shape[0]
    body = np.minimum(
        _ellipse(u, v, (0.0, 0.15), (width, 1.05)),
        _capsule(u, v, (-width - 0.1, -0.85), (width + 0.1, -0.85), 0.22),  # shoulders
    )
    lungs, vessels = [], []
    for side in (-1.0, 1.0):
        centre = (side * (0.4 + 0.04 * shape[1]), -0.02)
        radii = (0.3 + 0.04 * shape[2], 0.66 + 0.06 * shape[3])
        lungs.append((centre, radii, _ellipse(u, v, centre, radii, side * 0.08)))
        hilum = (side * 0.16, 0.0)
        draws = texture[(0 if side < 0 else 24) :][:24].reshape(8, 3)
        for angle, length, bend in draws:
            theta = np.deg2rad(-80 + 160 * angle)  # from straight up to straight down
            d = np.array([side * np.cos(theta), np.sin(theta)])
            tip = np.array(hilum) + d * (0.25 + 0.3 * length)
            mid = (np.array(hilum) + tip) / 2 + np.array([0.0, 0.08 * (bend - 0.5)])
            radius = max(0.014, 0.45 * pixel)
            for p, q in ((hilum, mid), (mid, tip)):
                vessels.append(_capsule(u, v, tuple(p), tuple(q), radius, radius * 0.7))
    in_lungs = np.maximum(_cover(lungs[0][2], pixel), _cover(lungs[1][2], pixel))
    markings = VESSEL * _cover(np.minimum.reduce(vessels), pixel) * in_lungs
    air = LUNG_AIR * in_lungs
    if spec.finding == "pneumothorax":
        side = 0 if study[3] < 0.5 else 1
        (cx, cy), (rx, ry), lung = lungs[side]
        sign = -1.0 if side == 0 else 1.0
        depth = 0.3 + 0.2 * study[4]  # how far the lung has collapsed
        collapsed_centre = (cx - sign * depth * rx * 0.55, cy + depth * ry * 0.25)
        collapsed = _ellipse(
            u, v, collapsed_centre, (rx * (1 - depth * 0.6), ry * (1 - depth * 0.3))
        )
        crescent = _cover(lung, pixel) * (1.0 - _cover(collapsed, pixel))
        strength = min(1.0, contrast)
        markings = markings * (1.0 - strength * crescent)
        air = air - 0.22 * contrast * crescent
        line = _cover(np.abs(collapsed) - max(0.01, 0.4 * pixel), pixel) * _cover(lung, pixel)
        air = air + 0.12 * contrast * line
    ribs = []
    for side in (-1.0, 1.0):
        for i in range(10):
            v0 = -0.8 + 0.15 * i + 0.03 * shape[4]
            x = side * u - 0.07  # from the spine outwards
            curve = v0 - 0.12 * x + 0.55 * x * x  # posterior ribs: up, then down laterally
            ribs.append(np.where((x > 0) & (x < width - 0.1), np.abs(v - curve) - 0.022, 1.0))
    rib = RIB * _cover(np.minimum.reduce(ribs), pixel) * _cover(body, pixel)
    bones = np.minimum.reduce(
        [
            _capsule(u, v, (-0.08, -0.8), (-0.6 - 0.05 * shape[5], -0.9), 0.035),
            _capsule(u, v, (0.08, -0.8), (0.6 + 0.05 * shape[5], -0.9), 0.035),
        ]
    )
    heart = _ellipse(u, v, (0.08 + 0.05 * shape[6], 0.32), (0.3 + 0.05 * shape[7], 0.28))
    mediastinum = _capsule(u, v, (0.0, -0.9), (0.0, 0.3), 0.1)
    spine = np.abs(u) - 0.06
    return (
        SOFT * 1.3 * _cover(body, pixel)
        + air
        + markings
        + rib
        + CORTEX * _cover(bones, pixel)
        + HEART * _cover(np.minimum(heart, mediastinum), pixel)
        + SPINE * _cover(spine, pixel) * _cover(body, pixel)
    )


def draw(spec: RadiographSpec, cfg: dict | None) -> np.ndarray:
    """The image of `spec`: uint8 [size, size], bone bright on a dark background."""
    cfg = complete(cfg)
    size, seed, contrast = cfg["size"], cfg["seed"], float(cfg["finding_contrast"])
    p, s = spec.patient_index, spec.study_index
    patient_rng = np.random.default_rng([seed, p, 0, 0])
    patient_rng.random()  # the number of studies (plan)
    patient = patient_rng.random(80)  # [0] laterality, [1:16] shape, [16] tilt, [17:] texture
    study_rng = np.random.default_rng([seed, p, s, 0])
    study_rng.random(2)  # the number of views and the kind of finding (plan)
    study = study_rng.random(8)  # where the finding lies and how it looks
    view = np.random.default_rng([seed, p, s, spec.view])
    pose = view.random(12)

    # pixel centres in [-1, 1], then into body coordinates: rotation, shift, scale, laterality
    centres = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(centres, centres, indexing="ij")
    tilt = 0.0 if spec.study_type == "XR_CHEST" else -8 + 16 * patient[16]
    angle = np.deg2rad(-20 + 40 * pose[0] + tilt)
    scale = 0.85 + 0.3 * pose[1]
    x, y = x - (pose[2] - 0.5) * 0.2, y - (pose[3] - 0.5) * 0.2
    c, n = np.cos(angle), np.sin(angle)
    u, v = (c * x + n * y) / scale, (-n * x + c * y) / scale
    if patient[0] < 0.5:
        u = -u
    pixel = 2.0 / size / scale
    if spec.study_type == "XR_CHEST":
        attenuation = _chest(spec, u, v, pixel, patient, study, contrast)
    else:
        spread = (1.0, 0.35, 0.7, 1.0)[(spec.view - 1) % 4] * (0.9 + 0.2 * pose[4])
        args = (spec, u, v, pixel, patient, study, spread, pose[5], contrast)
        attenuation = _musculoskeletal(*args)

    exposure = 0.9 + 0.4 * pose[6]
    image = 1.0 - np.exp(-exposure * np.clip(attenuation, 0.0, None))
    image = ndimage.gaussian_filter(image, 0.5)
    image = (0.04 * pose[7] + (0.85 + 0.3 * pose[8]) * image) ** (0.8 + 0.4 * pose[9])
    image = image + view.normal(0.0, 0.015 + 0.025 * pose[10], image.shape)
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)


def image_path(spec: RadiographSpec, out_dir: str | Path) -> Path:
    """Where `write_cohort` puts the image: out_dir/{patient}/{study}/{image_id}.png."""
    return Path(out_dir) / spec.patient_id / spec.study_id / f"{spec.image_id}.png"


def write_cohort(cfg: dict | None, out_dir: str | Path) -> pd.DataFrame:
    """Draw and write every image as 8-bit PNG; the manifest rows (`MANIFEST_COLUMNS`), `image`
    the path as written (under `out_dir` as given)."""
    cfg = complete(cfg)
    rows = []
    for spec in plan_radiographs(cfg):
        path = image_path(spec, out_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(sitk.GetImageFromArray(draw(spec, cfg)), str(path))
        rows.append(
            {
                "image": str(path),
                "label": spec.label,
                "study_id": spec.study_id,
                "patient_id": spec.patient_id,
                "study_type": spec.study_type,
                "view": spec.view,
            }
        )
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def main(argv: list[str] | None = None) -> None:
    """Write the cohort's PNGs under --out-dir and its manifest CSV (image paths relative to
    the manifest's folder, as the manifest reader resolves them)."""
    parser = argparse.ArgumentParser(
        prog="segsweep radiographs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config-json", default=None, help="JSON of the data.radiographs section")
    parser.add_argument("--out-dir", required=True, type=Path, help="folder of the PNGs")
    parser.add_argument("--out-manifest", type=Path, help="manifest CSV (default: in --out-dir)")
    args = parser.parse_args(argv)
    cfg = json.loads(args.config_json) if args.config_json else {}
    manifest = args.out_manifest or args.out_dir / "manifest.csv"
    table = write_cohort(cfg, args.out_dir)
    folder = manifest.parent.resolve()
    table["image"] = [
        Path(os.path.relpath(Path(p).resolve(), folder)).as_posix() for p in table["image"]
    ]
    write_csv(table, manifest)


if __name__ == "__main__":
    main()
