"""Label-driven simulation of contrast-enhanced CT phases for training.

The abdominal CT of the training set is unenhanced (aorta ≈ 40 HU), while most
clinical abdominal CT, including the held-out patient's scan, is contrast
enhanced (aorta 100–350 HU, liver and spleen 80–110 HU). A network trained on
unenhanced vessels alone does not recognise a bright aorta. For unenhanced
cases with organ labels we therefore add, per crop, a phase-dependent HU offset
to each enhancing tissue class: arteries, veins, heart, liver, spleen, kidneys,
pancreas, adrenals, bowel wall and muscle. Offsets are drawn from ranges typical
of arterial, portal-venous and delayed phases (textbook enhancement values,
rounded), with a little spatial smoothing at tissue borders.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Tissue classes (index 1..N in a case's class map) and the concepts they hold.
CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("artery", ("aorta", "left common iliac artery", "right common iliac artery", "celiac trunk",
                "superior mesenteric artery", "brachiocephalic trunk", "left common carotid artery",
                "left subclavian artery", "pulmonary artery")),
    ("vein", ("inferior vena cava", "portal vein and splenic vein", "left common iliac vein",
              "right common iliac vein")),
    ("heart", ("heart",)),
    ("liver", ("liver",)),
    ("spleen", ("spleen",)),
    ("kidney", ("left kidney", "right kidney")),
    ("pancreas", ("pancreas",)),
    ("adrenal", ("left adrenal gland", "right adrenal gland")),
    ("bowel", ("stomach", "duodenum", "small intestine", "colon")),
    ("muscle", ("left iliopsoas", "right iliopsoas", "left erector spinae", "right erector spinae",
                "left gluteus maximus", "right gluteus maximus")),
)

#: HU offset ranges per phase and class (same order as CLASSES).
PHASES: dict[str, tuple[tuple[float, float], ...]] = {
    "arterial": ((180, 380), (0, 50), (150, 350), (5, 30), (40, 110), (90, 180), (50, 100),
                 (20, 50), (10, 40), (5, 15)),
    "portal": ((70, 200), (70, 160), (70, 180), (35, 75), (40, 90), (100, 190), (30, 70),
               (20, 50), (10, 40), (5, 20)),
    "delayed": ((30, 90), (30, 90), (30, 90), (25, 50), (25, 55), (90, 200), (15, 40),
                (10, 30), (5, 25), (5, 15)),
}

#: Cases whose aorta is darker than this (median HU) count as unenhanced.
UNENHANCED_AORTA_HU = 100.0


def class_map(labels: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """uint8 map of tissue classes (0 = none) from a case's concept masks.

    Later classes never overwrite earlier ones, so a vessel inside an organ's
    label keeps the vessel's enhancement.
    """
    out = np.zeros(shape, dtype=np.uint8)
    for idx, (_, concepts) in enumerate(CLASSES, start=1):
        for c in concepts:
            m = labels.get(c)
            if m is not None:
                out[m & (out == 0)] = idx
    return out


def is_unenhanced(image: np.ndarray, labels: dict[str, np.ndarray], modality: str) -> bool:
    """True for a CT whose labelled aorta is unenhanced (simulation applies)."""
    aorta = labels.get("aorta")
    if modality != "ct" or aorta is None or not aorta.any():
        return False
    return float(np.median(image[aorta])) < UNENHANCED_AORTA_HU


def enhancement(classes: np.ndarray, rng: np.random.Generator, phase: str | None = None) -> np.ndarray:
    """HU offsets (float32, ``classes``' shape) for one random phase."""
    phase = phase or str(rng.choice(list(PHASES)))
    lut = np.zeros(len(CLASSES) + 1, dtype=np.float32)
    for i, (lo, hi) in enumerate(PHASES[phase], start=1):
        lut[i] = rng.uniform(lo, hi)
    off = lut[classes]
    if off.any():
        off = ndimage.gaussian_filter(off, 0.6)
    return off
