"""Segmentation results: named binary masks on a reference grid, with coded terminology.

Terminology strings follow 3D Slicer's ``TerminologyEntry`` tag of
``.seg.nrrd`` files: seven ``~``-separated fields
``context~category~type~typeModifier~anatomicContext~anatomicRegion~anatomicRegionModifier``,
each code written ``scheme^value^meaning`` (``^^`` when absent), e.g.::

    Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .errors import GeometryError, TerminologyError, TextSegError

Code = tuple[str, str, str]  # (coding scheme designator, code value, code meaning)

DEFAULT_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
DEFAULT_ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
_EMPTY: Code = ("", "", "")

#: colours given to segments without one (distinct, colour-blind friendlier first).
PALETTE = [
    (0.902, 0.624, 0.0), (0.337, 0.706, 0.914), (0.0, 0.62, 0.451), (0.941, 0.894, 0.259),
    (0.0, 0.447, 0.698), (0.835, 0.369, 0.0), (0.8, 0.475, 0.655), (0.6, 0.6, 0.6),
    (0.651, 0.337, 0.157), (0.498, 0.788, 0.498), (0.745, 0.682, 0.831), (0.992, 0.753, 0.525),
]


class SegmentationError(TextSegError):
    """A segment or segmentation that is inconsistent (shape, name clash, colour)."""


# -- terminology -------------------------------------------------------------------
def _code_str(code: Code | None, field_name: str) -> str:
    code = tuple(code) if code else _EMPTY
    if len(code) != 3 or not all(isinstance(c, str) for c in code):
        raise TerminologyError(f"terminology {field_name}: {code!r} is not a (scheme, value, meaning) triple of strings.")
    for part in code:
        if any(ch in part for ch in "~^|\n"):
            raise TerminologyError(f"terminology {field_name}: {part!r} contains one of the reserved characters ~ ^ | or a newline.",
                                   "Remove them from the code.")
    return "^".join(code)


def _parse_code(text: str, field_name: str) -> Code | None:
    parts = text.split("^")
    if len(parts) != 3:
        raise TerminologyError(f"terminology {field_name}: {text!r} is not 'scheme^value^meaning'.")
    return None if parts == ["", "", ""] else (parts[0], parts[1], parts[2])


@dataclass(frozen=True)
class TerminologyEntry:
    """The parsed fields of a Slicer terminology string."""

    category: Code
    type: Code
    type_modifier: Code | None = None
    anatomic_region: Code | None = None
    anatomic_region_modifier: Code | None = None
    context: str = DEFAULT_CONTEXT
    anatomic_context: str = DEFAULT_ANATOMIC_CONTEXT

    def to_string(self) -> str:
        return terminology_string(self.category, self.type, self.type_modifier, self.anatomic_region,
                                  self.anatomic_region_modifier, self.context, self.anatomic_context)


def terminology_string(category: Code, type: Code, modifier: Code | None = None,
                       anatomic_region: Code | None = None, anatomic_region_modifier: Code | None = None,
                       context: str = DEFAULT_CONTEXT,
                       anatomic_context: str = DEFAULT_ANATOMIC_CONTEXT) -> str:
    """Build a Slicer ``TerminologyEntry`` string from (scheme, value, meaning) triples."""
    if not category or not type or not all(category) or not all(type[:2]):
        raise TerminologyError(f"terminology: category {category!r} and type {type!r} must both be full codes.",
                               "Give (scheme, value, meaning), e.g. ('SCT', '10200004', 'Liver').")
    for name, text in (("context", context), ("anatomic context", anatomic_context)):
        if any(ch in text for ch in "~|\n"):
            raise TerminologyError(f"terminology {name}: {text!r} contains ~, | or a newline.")
    return "~".join([
        context, _code_str(category, "category"), _code_str(type, "type"),
        _code_str(modifier, "type modifier"), anatomic_context,
        _code_str(anatomic_region, "anatomic region"),
        _code_str(anatomic_region_modifier, "anatomic region modifier"),
    ])


def parse_terminology(text: str) -> TerminologyEntry:
    """Parse a Slicer ``TerminologyEntry`` string (raises :class:`TerminologyError`)."""
    fields = text.split("~")
    if len(fields) != 7:
        raise TerminologyError(
            f"terminology string {text[:80]!r} has {len(fields)} '~'-separated fields, expected 7.",
            "Build it with terminology_string().",
        )
    category = _parse_code(fields[1], "category")
    type_ = _parse_code(fields[2], "type")
    if category is None or type_ is None:
        raise TerminologyError(f"terminology string {text[:80]!r} lacks a category or type code.")
    return TerminologyEntry(category, type_, _parse_code(fields[3], "type modifier"),
                            _parse_code(fields[5], "anatomic region"),
                            _parse_code(fields[6], "anatomic region modifier"), fields[0], fields[4])


# -- segments ---------------------------------------------------------------------
@dataclass
class Geometry:
    """A voxel grid: shape ``(I, J, K)`` and 4×4 IJK→RAS matrix."""

    shape: tuple[int, int, int]
    ijk_to_ras: np.ndarray

    @classmethod
    def of(cls, reference) -> "Geometry":
        """From a Volume, Geometry or any object with ``shape`` and ``ijk_to_ras``."""
        try:
            shape = tuple(int(s) for s in reference.shape)
            m = np.asarray(reference.ijk_to_ras, dtype=np.float64)
        except AttributeError:
            raise GeometryError(f"segmentation reference {type(reference).__name__} has no shape/ijk_to_ras.",
                                "Pass the Volume the masks were computed on.") from None
        if len(shape) != 3 or m.shape != (4, 4):
            raise GeometryError(f"segmentation reference: shape {shape} / matrix {m.shape} are not 3D / 4×4.")
        return cls(shape, m.copy())


@dataclass
class Segment:
    """One structure: a boolean mask ``[i, j, k]`` on the reference grid plus its labels."""

    name: str
    mask: np.ndarray
    terminology: str = ""
    color: tuple[float, float, float] | None = None
    concept_id: str | None = None
    probability: np.ndarray | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip() or any(c in self.name for c in "\n|"):
            raise SegmentationError(f"segment name {self.name!r} is empty or contains a newline or '|'.")
        mask = np.asarray(self.mask)
        if mask.dtype != bool:
            if mask.dtype.kind not in "biu" or (mask.size and mask.max(initial=0) > 1) or (mask.size and mask.min(initial=0) < 0):
                raise SegmentationError(f"segment {self.name!r}: mask of type {mask.dtype} is not boolean (0/1).",
                                        "Threshold it first, e.g. mask = probability > 0.5.")
            mask = mask.astype(bool)
        if mask.ndim != 3:
            raise SegmentationError(f"segment {self.name!r}: mask has shape {mask.shape}, expected 3D [i, j, k].")
        self.mask = mask
        if self.terminology:
            parse_terminology(self.terminology)
        if self.color is not None:
            c = tuple(float(v) for v in self.color)
            if len(c) != 3 or not all(0.0 <= v <= 1.0 for v in c):
                raise SegmentationError(f"segment {self.name!r}: colour {self.color!r} is not three values in 0..1.")
            self.color = c
        if self.probability is not None:
            p = np.asarray(self.probability)
            if p.shape != mask.shape:
                raise SegmentationError(f"segment {self.name!r}: probability shape {p.shape} differs from mask {mask.shape}.")
            self.probability = p

    @property
    def voxel_count(self) -> int:
        return int(np.count_nonzero(self.mask))

    def terminology_entry(self) -> TerminologyEntry | None:
        return parse_terminology(self.terminology) if self.terminology else None


class Segmentation:
    """Segments on one reference grid. Names are unique; nothing is dropped silently."""

    def __init__(self, reference, segments: list[Segment] | None = None):
        self.geometry = Geometry.of(reference)
        self.meta: dict = {}
        self._segments: list[Segment] = []
        for s in segments or []:
            self.add(s)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.geometry.shape

    @property
    def ijk_to_ras(self) -> np.ndarray:
        return self.geometry.ijk_to_ras

    @property
    def segments(self) -> list[Segment]:
        return list(self._segments)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._segments]

    def __len__(self) -> int:
        return len(self._segments)

    def __iter__(self) -> Iterator[Segment]:
        return iter(list(self._segments))

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def __getitem__(self, name: str) -> Segment:
        for s in self._segments:
            if s.name == name:
                return s
        raise SegmentationError(f"no segment named {name!r}; segments: {', '.join(self.names) or '(none)'}.")

    def _check(self, segment: Segment) -> None:
        if segment.mask.shape != self.shape:
            raise SegmentationError(
                f"segment {segment.name!r}: mask shape {segment.mask.shape} differs from the reference grid {self.shape}.",
                "Compute the mask on the reference volume's grid (resample it first).",
            )

    def unique_name(self, name: str) -> str:
        """``name``, or ``name (2)``, ``name (3)``… if it is taken."""
        if name not in self:
            return name
        n = 2
        while f"{name} ({n})" in self:
            n += 1
        return f"{name} ({n})"

    def add(self, segment: Segment, on_conflict: str = "error") -> Segment:
        """Add a segment. A taken name raises (``'error'``), or is renamed ``name (2)`` (``'rename'``)."""
        self._check(segment)
        if segment.name in self:
            if on_conflict == "rename":
                segment.name = self.unique_name(segment.name)
            else:
                raise SegmentationError(f"a segment named {segment.name!r} already exists.",
                                        "Use replace() to overwrite it or add(..., on_conflict='rename').")
        if segment.color is None:
            segment.color = PALETTE[len(self._segments) % len(PALETTE)]
        self._segments.append(segment)
        return segment

    def replace(self, segment: Segment) -> Segment:
        """Replace the segment of the same name (which must exist); returns the old one."""
        self._check(segment)
        for n, old in enumerate(self._segments):
            if old.name == segment.name:
                if segment.color is None:
                    segment.color = old.color
                self._segments[n] = segment
                return old
        raise SegmentationError(f"no segment named {segment.name!r} to replace.", "Use add() for a new segment.")

    def remove(self, name: str) -> Segment:
        seg = self[name]
        self._segments.remove(seg)
        return seg

    def overlaps(self) -> list[tuple[str, str, int]]:
        """Pairs of segments that share voxels, with the shared voxel count."""
        out = []
        for a in range(len(self._segments)):
            for b in range(a + 1, len(self._segments)):
                n = int(np.count_nonzero(self._segments[a].mask & self._segments[b].mask))
                if n:
                    out.append((self._segments[a].name, self._segments[b].name, n))
        return out

    def to_layers(self, max_label: int = 255) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
        """Pack segments into as few uint8 label layers as possible without merging overlaps.

        Returns the layers and, per segment, its ``(layer index, label value)``.
        """
        layers: list[np.ndarray] = []
        counts: list[int] = []
        where: list[tuple[int, int]] = []
        for seg in self._segments:
            for li, layer in enumerate(layers):
                if counts[li] < max_label and not np.any(layer[seg.mask]):
                    break
            else:
                layers.append(np.zeros(self.shape, dtype=np.uint8))
                counts.append(0)
                li = len(layers) - 1
            counts[li] += 1
            layers[li][seg.mask] = counts[li]
            where.append((li, counts[li]))
        if not layers:
            layers.append(np.zeros(self.shape, dtype=np.uint8))
        return layers, where
