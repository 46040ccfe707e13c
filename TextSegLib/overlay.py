"""Overlay pictures of a scan and its masks: axial, coronal and sagittal cuts in radiological view.

:func:`view_cuts` is the one definition of the three cuts (RAS arrays, no interpolation);
:func:`render_view` blends masks onto a windowed slice as an RGB array (numpy only, fast
enough for thousands of cohort thumbnails); :func:`write_thumbnails` writes a grid with one
row per structure (each row cut through that structure's centre); :func:`write_overlay_png`
is the captioned three-panel figure of ``textseg demo``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

VIEWS = ("axial", "coronal", "sagittal")
#: (left, right, top, bottom) side labels of each view in radiological convention
VIEW_MARKERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}
#: soft-tissue window for CT (HU)
CT_WINDOW = (-160.0, 240.0)
#: display colours for structures whose recommended colours are too alike to tell apart on a slice
DISTINCT = ((0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16), (0.58, 0.4, 0.74),
            (0.09, 0.75, 0.81), (0.74, 0.74, 0.13), (0.89, 0.47, 0.76))


def legible_colors(colors: Mapping[str, Sequence[float]], min_distance: float = 0.25) -> dict[str, tuple]:
    """The structures' colours for a picture: each keeps its recommended colour unless it lies within
    ``min_distance`` (RGB, 0..1) of an earlier one (Slicer's liver, aorta and kidneys are all
    brownish red); those get the first colour of :data:`DISTINCT` far enough from every other."""
    out: dict[str, tuple] = {}

    def far(c) -> bool:
        return all(float(np.linalg.norm(np.subtract(c[:3], o[:3]))) >= min_distance for o in out.values())

    for name, color in colors.items():
        c = tuple(float(v) for v in (color or (0.5, 0.5, 0.5))[:3])
        if not far(c):
            c = next((d for d in DISTINCT if far(d)), c)
        out[name] = c
    return out


def axial_levels(union: np.ndarray, n: int = 3) -> list[int]:
    """``n`` axial slice indices (RAS order) spread over the structures' superior-inferior extent."""
    ks = np.nonzero(union.any(axis=(0, 1)))[0]
    lo, hi = (int(ks.min()), int(ks.max())) if ks.size else (0, union.shape[2] - 1)
    return [int(round(lo + (hi - lo) * (i + 1) / (n + 1))) for i in range(n)]


def ras_arrays(volume, masks: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The image and masks in RAS axis order (flips/transposes only) and the per-axis spacing."""
    from .engine.resample import make_grid, reorient

    grid = make_grid(volume, None)
    return reorient(volume.array, grid), np.asarray(grid.spacing, float), {k: reorient(m, grid) for k, m in masks.items()}


def view_cuts(center: Sequence[int], spacing: Sequence[float]):
    """``(name, cut(array) -> 2-D slice, (column spacing, row spacing))`` for the three views
    through ``center`` (RAS index), displayed radiologically (patient's left on the right)."""
    c, sp = [int(v) for v in center], spacing
    return [
        ("axial", lambda a: a[::-1, ::-1, c[2]].T, (sp[0], sp[1])),
        ("coronal", lambda a: a[::-1, c[1], ::-1].T, (sp[0], sp[2])),
        ("sagittal", lambda a: a[c[0], ::-1, ::-1].T, (sp[1], sp[2])),
    ]


def window_for(volume, image: np.ndarray | None = None) -> tuple[float, float]:
    """Display window: the CT soft-tissue window, else the 1st..99th intensity percentiles."""
    if getattr(volume, "modality", "") == "ct":
        return CT_WINDOW
    a = np.asarray(volume.array if image is None else image)
    sample = a.ravel()[:: max(1, a.size // 200_000)].astype(np.float64)
    lo, hi = np.percentile(sample, [1, 99]) if sample.size else (0.0, 1.0)
    return float(lo), float(hi if hi > lo else lo + 1.0)


def render_view(image2d: np.ndarray, overlays: Sequence[tuple[np.ndarray, Sequence[float]]],
                pixel_spacing: tuple[float, float], window: tuple[float, float], size: int = 160,
                alpha: float = 0.45) -> np.ndarray:
    """A windowed grey slice with coloured masks blended in, as ``uint8`` RGB whose longer side is
    ``size`` pixels and whose pixels are square in millimetres (nearest-neighbour scaling)."""
    lo, hi = window
    grey = np.clip((np.asarray(image2d, np.float64) - lo) / (hi - lo), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    for mask, color in overlays:
        m = np.asarray(mask, bool)
        if m.any():
            rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(color, np.float64)[:3]
    h_mm, w_mm = image2d.shape[0] * pixel_spacing[1], image2d.shape[1] * pixel_spacing[0]
    scale = size / max(h_mm, w_mm, 1e-6)
    out_h, out_w = max(1, int(round(h_mm * scale))), max(1, int(round(w_mm * scale)))
    rows = np.minimum((np.arange(out_h) / scale / pixel_spacing[1]).astype(int), image2d.shape[0] - 1)
    cols = np.minimum((np.arange(out_w) / scale / pixel_spacing[0]).astype(int), image2d.shape[1] - 1)
    return (rgb[rows][:, cols] * 255 + 0.5).astype(np.uint8)


def _center(mask: np.ndarray | None, shape: Sequence[int]) -> np.ndarray:
    if mask is not None and mask.any():
        return np.round(np.argwhere(mask).mean(0)).astype(int)
    return np.array(shape) // 2


def _tile(img: np.ndarray, size: int) -> np.ndarray:
    """``img`` centred on a black ``size`` x ``size`` square."""
    out = np.zeros((size, size, 3), np.uint8)
    h, w = img.shape[:2]
    y, x = (size - h) // 2, (size - w) // 2
    out[y:y + h, x:x + w] = img
    return out


def thumbnail_grid(volume, masks: Mapping[str, np.ndarray], colors: Mapping[str, Sequence[float]],
                   rows: Sequence[str] | None = None, size: int = 128, max_rows: int = 12) -> np.ndarray:
    """RGB grid: one row per structure in ``rows`` (default: those with voxels), three views cut
    through its centre, every mask overlaid; a colour strip on the left says whose row it is.
    No structure with voxels: one row through the middle of the scan."""
    img, sp, rmasks = ras_arrays(volume, masks)
    win = window_for(volume, img)
    keys = [k for k in (rows if rows is not None else masks) if rmasks[k].any()][:max_rows] or [None]
    strip = max(4, size // 16)
    lines = []
    for k in keys:
        cuts = view_cuts(_center(rmasks.get(k) if k else None, img.shape), sp)
        tiles = [_tile(render_view(cut(img), [(cut(m), colors[n]) for n, m in rmasks.items()], px, win, size), size)
                 for _, cut, px in cuts]
        bar = np.zeros((size, strip, 3), np.uint8)
        if k is not None:
            bar[:] = (np.asarray(colors[k][:3]) * 255).astype(np.uint8)
        lines.append(np.concatenate([bar] + tiles, axis=1))
    return np.concatenate(lines, axis=0)


def write_png(rgb: np.ndarray, path: str | os.PathLike) -> Path:
    """Write an RGB array as PNG atomically (temporary name, then rename)."""
    from matplotlib import image as mpimg

    from .io.volumes import write_atomically

    return write_atomically(path, lambda tmp: mpimg.imsave(tmp, rgb, format="png"), ".png")


def write_thumbnails(volume, masks: Mapping[str, np.ndarray], colors: Mapping[str, Sequence[float]],
                     path: str | os.PathLike, rows: Sequence[str] | None = None, size: int = 128) -> Path:
    """:func:`thumbnail_grid` as a PNG file."""
    return write_png(thumbnail_grid(volume, masks, colors, rows, size), path)


def write_overlay_png(volume, masks: dict[str, np.ndarray], colors: dict[str, Sequence[float]],
                      path: Path, title: str = "", axial_only: bool = False) -> Path:
    """Axial, coronal and sagittal slices through the union of the structures, with a legend;
    ``axial_only``: three axial slices over the structures' extent instead (a short scan's coronal
    and sagittal cuts are thin strips). Colours too alike are replaced (:func:`legible_colors`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    img, sp, rmasks = ras_arrays(volume, masks)
    union = np.zeros(img.shape, bool)
    for m in rmasks.values():
        union |= m
    win = window_for(volume, img)
    colors = legible_colors({k: colors.get(k) for k in masks})
    center = _center(union, img.shape)
    views = view_cuts(center, sp)
    if axial_only:
        views = [(f"axial ({where})", view_cuts([*center[:2], k], sp)[0][1], view_cuts(center, sp)[0][2])
                 for where, k in zip(("lower", "middle", "upper"), axial_levels(union))]
    fig, axes = plt.subplots(1, 3, figsize=(13, 5), dpi=100)
    for ax, (name, cut, px) in zip(axes, views):
        ax.imshow(render_view(cut(img), [(cut(m), colors[k]) for k, m in rmasks.items()], px, win, size=480),
                  interpolation="nearest")
        ax.set_title(name, pad=16)
        ax.axis("off")
        left, right, top, bottom = VIEW_MARKERS[name.split()[0]]  # sides inside the image, top/bottom just outside
        style = dict(transform=ax.transAxes, fontsize=11, fontweight="bold")
        ax.text(0.02, 0.5, left, ha="left", va="center", color="yellow", **style)
        ax.text(0.98, 0.5, right, ha="right", va="center", color="yellow", **style)
        ax.text(0.5, 1.01, top, ha="center", va="bottom", color="darkorange", **style)
        ax.text(0.5, -0.01, bottom, ha="center", va="top", color="darkorange", **style)
    fig.legend(handles=[Patch(color=colors[k], label=k) for k in masks], loc="lower center",
               ncol=max(1, len(masks)), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
