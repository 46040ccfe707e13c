"""Training samples: crops of a case with augmentation (numpy / scipy only).

Geometric: random crop (often centred on a labelled voxel), thin-slab crops
(only the first few axial slices hold data, like a short scan in the
sliding window), isotropic scale ±15 %, small rotation about the S axis and a
cheap coarse elastic field. NO left/right flips: anatomy is not mirror
symmetric. Intensity (CT, in HU before normalisation): global scale/offset,
contrast-phase shifts of enhancing soft tissue, per-tissue simulated contrast
phases on unenhanced CT (:mod:`.contrast`), noise, occasional blur.
Content always starts at index 0 of a crop and is zero-padded at the end,
exactly as the sliding window pads short tiles at inference.
"""
from __future__ import annotations

import random

import numpy as np
from scipy import ndimage

from . import contrast
from .cases import Case
from .preprocess import body_center_x, intensity_channels, lateral_channel

#: Probability of a thin-slab crop (6-18 slices of data): short scans such as 40 mm slabs.
SLAB_P = 0.35
#: Probability that a crop of an unenhanced CT gets a simulated contrast phase.
CONTRAST_P = 0.6


def _crop_start(n: int, size: int, centre: int | None, rng: random.Random) -> int:
    if n <= size:
        return 0
    if centre is None:
        return rng.randint(0, n - size)
    jitter = rng.randint(-size // 3, size // 3)
    return int(np.clip(centre - size // 2 + jitter, 0, n - size))


def _affine_coords(size: tuple[int, int, int], start: np.ndarray, scale: float, angle: float,
                   elastic: np.ndarray | None) -> np.ndarray:
    """Source coordinates (3, *size) for a crop with scale/rotation about its centre."""
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in size], indexing="ij")
    c = (np.array(size, dtype=np.float32) - 1) / 2
    x, y, z = grids[0] - c[0], grids[1] - c[1], grids[2] - c[2]
    ca, sa = np.cos(angle), np.sin(angle)
    xs = (ca * x - sa * y) * scale + c[0] + start[0]
    ys = (sa * x + ca * y) * scale + c[1] + start[1]
    zs = z * scale + c[2] + start[2]
    coords = np.stack([xs, ys, zs])
    if elastic is not None:
        coords += elastic
    return coords


def _elastic(size: tuple[int, int, int], rng: np.random.Generator, magnitude: float) -> np.ndarray:
    coarse = rng.normal(0, magnitude, size=(3, 4, 4, 3)).astype(np.float32)
    zoom = [size[0] / 4, size[1] / 4, size[2] / 3]
    return np.stack([ndimage.zoom(c, zoom, order=1, grid_mode=True, mode="nearest")[: size[0], : size[1], : size[2]]
                     for c in coarse])


def _augment_hu(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = img * rng.uniform(0.92, 1.08) + rng.uniform(-25, 25)
    if rng.random() < 0.6:  # contrast phase: enhancing soft tissue brighter / darker
        soft = np.clip((img - 20.0) / 80.0, 0, 1) * np.clip((400.0 - img) / 150.0, 0, 1)
        img = img + soft * rng.uniform(-40, 80)
    if rng.random() < 0.3:
        img = ndimage.gaussian_filter(img, rng.uniform(0.3, 0.9))
    if rng.random() < 0.5:
        img = img + rng.normal(0, rng.uniform(2, 25), img.shape).astype(np.float32)
    return img


def _augment_norm(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = x * rng.uniform(0.85, 1.15) + rng.uniform(-0.2, 0.2)
    if rng.random() < 0.5:
        x = x + rng.normal(0, rng.uniform(0.02, 0.15), x.shape).astype(np.float32)
    return x


def _classes(case: Case) -> np.ndarray | None:
    """The case's tissue-class map if it is an unenhanced CT (cached on the case), else None."""
    if not hasattr(case, "_classes"):
        case._classes = (contrast.class_map(case.labels, case.image.shape)  # type: ignore[attr-defined]
                         if contrast.is_unenhanced(case.image, case.labels, case.modality) else None)
    return case._classes  # type: ignore[attr-defined]


def make_sample(case: Case, concepts: list[str], size: tuple[int, int, int], rng: random.Random,
                centre_on: str | None, strong: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image (C,*size), targets (K,*size) float32, valid (*size) bool)`` for ``concepts``.

    A concept absent from ``case.labels`` gives an empty target (a negative).
    """
    nrng = np.random.default_rng(rng.getrandbits(32))
    shape = case.image.shape
    centre = None
    if centre_on is not None and centre_on in case.labels:
        pts = np.argwhere(case.labels[centre_on][::2, ::2, ::1])
        if len(pts):
            centre = pts[rng.randrange(len(pts))] * np.array([2, 2, 1])
    scale = rng.uniform(0.85, 1.15) if strong and rng.random() < 0.7 else 1.0
    angle = np.deg2rad(rng.uniform(-10, 10)) if strong and rng.random() < 0.5 else 0.0
    ext = [int(min(n, np.ceil(s * scale))) for n, s in zip(shape, size)]
    start = np.array([_crop_start(n, e, None if centre is None else int(centre[a]), rng)
                      for a, (n, e) in enumerate(zip(shape, ext))], dtype=np.float32)
    # Output extent holding data (the rest is end padding), as in sliding-window tiles.
    fill = [min(s, int(np.floor((n - st) / scale))) for s, n, st in zip(size, shape, start)]
    if strong and rng.random() < SLAB_P:  # thin slab: a short scan in z
        fill[2] = min(fill[2], rng.randint(6, 18))
    elastic = _elastic(size, nrng, 1.0) if strong and rng.random() < 0.3 else None
    coords = _affine_coords(size, start, scale, angle, elastic)
    if getattr(case, "_cx", None) is None:  # body centre of the WHOLE scan, as at inference
        case._cx = body_center_x(case.image, case.modality)  # type: ignore[attr-defined]
    if case.modality == "ct":  # pointwise normalisation: augment HU, then normalise
        img = ndimage.map_coordinates(case.image, coords, order=1, mode="nearest").astype(np.float32)
        classes = _classes(case) if strong and nrng.random() < CONTRAST_P else None
        if classes is not None:
            cls = ndimage.map_coordinates(classes, coords, order=0, mode="constant", cval=0)
            img = img + contrast.enhancement(cls, nrng)
        x = intensity_channels(_augment_hu(img, nrng) if strong else img, "ct")
    else:  # whole-volume statistics, as at inference
        if getattr(case, "_norm", None) is None:
            case._norm = intensity_channels(case.image, case.modality)[0]  # type: ignore[attr-defined]
        ch = ndimage.map_coordinates(case._norm, coords, order=1, mode="nearest").astype(np.float32)  # type: ignore[attr-defined]
        x = np.stack([ch, ch])
        if strong:
            x = _augment_norm(x, nrng)
    x = np.concatenate([x, lateral_channel(coords[0], case._cx)[None]])  # type: ignore[attr-defined]
    valid = np.zeros(size, dtype=bool)
    valid[: fill[0], : fill[1], : fill[2]] = True
    x[:, ~valid] = 0.0
    targets = np.zeros((len(concepts),) + tuple(size), dtype=np.float32)
    for k, c in enumerate(concepts):
        m = case.labels.get(c)
        if m is not None:
            t = ndimage.map_coordinates(m.astype(np.float32), coords, order=1, mode="constant", cval=0.0)
            targets[k] = (t >= 0.5) & valid
    return x, targets, valid
