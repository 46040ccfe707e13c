"""``textseg info FILE|DICOMDIR``: geometry, modality guess and intensities of a scan."""
from __future__ import annotations

import json

import click
import numpy as np

from .options import modality_option

from ..volume import Volume


def orientation_code(direction: np.ndarray) -> str:
    """Three letters naming where each of the I, J, K axes points (e.g. 'LPS' for axial DICOM)."""
    letters = (("R", "L"), ("A", "P"), ("S", "I"))
    code = ""
    for col in np.asarray(direction).T:
        axis = int(np.argmax(np.abs(col)))
        code += letters[axis][0] if col[axis] > 0 else letters[axis][1]
    return code


def describe(volume: Volume) -> dict:
    """A JSON-ready summary of a volume (what ``textseg info`` prints)."""
    from ..io.modality import guess_modality, sample_voxels

    a = volume.array
    sample = sample_voxels(a)
    pcts = np.percentile(sample, [0.5, 5, 50, 95, 99.5]) if sample.size else [np.nan] * 5
    modality, reason = (volume.modality, volume.meta.get("modality_reason", "")) if volume.modality \
        else guess_modality(volume)
    info = {
        "name": volume.name,
        "format": volume.meta.get("format", ""),
        "shape": list(volume.shape),
        "spacing_mm": [round(float(s), 6) for s in volume.spacing],
        "origin_ras_mm": [round(float(s), 4) for s in volume.origin],
        "direction_ras": [[round(float(v), 6) for v in row] for row in volume.direction],
        "orientation": orientation_code(volume.direction),
        "oblique": bool(np.any(np.abs(np.abs(volume.direction).max(axis=0) - 1) > 1e-4)),
        "modality": modality,
        "modality_reason": reason,
        "dtype": str(a.dtype),
        "min": float(a.min()),
        "max": float(a.max()),
        "percentiles": {k: round(float(v), 4) for k, v in zip(("p0.5", "p5", "p50", "p95", "p99.5"), pcts)},
        "size_mb": round(a.nbytes / 1e6, 3),
        "extent_mm": [round(float(n * s), 3) for n, s in zip(volume.shape, volume.spacing)],
    }
    if volume.meta.get("format") == "DICOM":
        for key in ("SeriesInstanceUID", "StudyInstanceUID", "SeriesDescription", "PatientID"):
            info[key] = volume.meta.get(key, "")
        info["slices"] = len(volume.meta.get("dicom_files", []))
        info["skipped_files"] = list(volume.meta.get("skipped_files", []))
    return info


def describe_segmentation(seg, name: str, image: Volume | None = None, fmt: str = "Slicer segmentation") -> dict:
    """A JSON-ready summary of a ``.seg.nrrd`` or DICOM SEG (grid and segments, each measured;
    intensities inside each segment when the scan ``image`` is given)."""
    from ..measurements import measure

    if image is not None and (tuple(image.shape) != tuple(seg.shape)
                              or not np.allclose(image.ijk_to_ras, seg.ijk_to_ras, atol=1e-3)):
        from ..errors import GeometryError

        raise GeometryError(f"--image {image.name or 'scan'}: its grid {image.shape} is not the segmentation's "
                            f"{tuple(seg.shape)} (or is placed elsewhere).",
                            "Give the scan the segmentation was made on.")
    m = seg.ijk_to_ras
    spacing = np.linalg.norm(m[:3, :3], axis=0)
    direction = m[:3, :3] / spacing
    segments = []
    for s in seg:
        t = s.terminology_entry()
        row = measure(s.mask, image, name=s.name, ijk_to_ras=seg.ijk_to_ras).row()
        row.pop("name")
        row.pop("reason")
        row.pop("mean_probability")
        segments.append({"name": s.name, "color": [round(c, 4) for c in s.color or ()],
                         "type": "^".join(t.type) if t else "",
                         "type_modifier": "^".join(t.type_modifier) if t and t.type_modifier else "",
                         "concept_id": s.concept_id or "", **row})
    return {"name": name, "format": fmt, "shape": list(seg.shape),
            "spacing_mm": [round(float(v), 6) for v in spacing],
            "origin_ras_mm": [round(float(v), 4) for v in m[:3, 3]],
            "orientation": orientation_code(direction), "overlapping_pairs": len(seg.overlaps()),
            "segments": segments}


def other_series_warnings(seg, image: Volume | None, name: str) -> list[str]:
    """Lines saying that a DICOM SEG is measured against a scan other than the one it references
    (same grid, another series or frame of reference: the numbers describe the wrong scan)."""
    if image is None or image.meta.get("format") != "DICOM":
        return []
    out = []
    refs = [u for u in seg.meta.get("referenced_series", []) if u]
    uid = image.meta.get("SeriesInstanceUID", "")
    if refs and uid and uid not in refs:
        out.append(f"{name} was made on series {', '.join(refs)}, but --image is series {uid}: "
                   "the intensities are measured in another series.")
    frame, own = seg.meta.get("FrameOfReferenceUID", ""), image.meta.get("FrameOfReferenceUID", "")
    if frame and own and frame != own:
        out.append(f"{name} is in frame of reference {frame}, but --image is in {own}: the positions do not "
                   "correspond.")
    return out


def _seg_text(info: dict) -> str:
    lines = [f"{info['name']} ({info['format']})",
             f"  shape        {' x '.join(str(n) for n in info['shape'])} voxels",
             f"  spacing      {' x '.join(f'{s:g}' for s in info['spacing_mm'])} mm",
             f"  origin       ({', '.join(f'{v:g}' for v in info['origin_ras_mm'])}) mm RAS",
             f"  orientation  {info['orientation']}",
             f"  segments     {len(info['segments'])} ({info['overlapping_pairs']} overlapping pair(s))"]
    if info.get("model"):
        lines.insert(-1, f"  model        {info['model']}")
    for s in info["segments"]:
        modifier = f" ({s['type_modifier'].split('^')[-1]})" if s["type_modifier"] else ""
        inten = "" if s["mean"] is None else \
            f"  {s['mean']:.1f} ± {s['std']:.1f} [{s['min']:g}, {s['max']:g}]"
        lines.append(f"    {s['name']:<28s} {s['volume_ml']:>9.1f} mL {s['voxels']:>10,d} voxels{inten}  "
                     f"{s['type'] or ('(no code)' if 'algorithm_type' in s else '')}{modifier}"
                     + (f"  [{s['algorithm_type']}]" if s.get("algorithm_type") else ""))
    if info["segments"] and info["segments"][0]["mean"] is None:
        lines.append("  (add --image SCAN for the intensities inside each segment"
                     + (", and the scan's full grid)" if "algorithm_type" in info["segments"][0] else ")"))
    return "\n".join(lines)


def _text(info: dict) -> str:
    p = info["percentiles"]
    lines = [
        f"{info['name']} ({info['format']})",
        f"  shape        {' x '.join(str(n) for n in info['shape'])} voxels, {info['dtype']}, {info['size_mb']:.1f} MB in memory",
        f"  spacing      {' x '.join(f'{s:g}' for s in info['spacing_mm'])} mm (extent {' x '.join(f'{e:g}' for e in info['extent_mm'])} mm)",
        f"  origin       ({', '.join(f'{v:g}' for v in info['origin_ras_mm'])}) mm RAS",
        f"  orientation  {info['orientation']}{' (oblique)' if info['oblique'] else ''}",
        "  direction    " + "  ".join("[" + " ".join(f"{v:+.4f}" for v in row) + "]" for row in info["direction_ras"]),
        f"  modality     {info['modality'] or 'unknown'} ({info['modality_reason']})",
        f"  intensity    min {info['min']:g}, max {info['max']:g}; p0.5 {p['p0.5']:g}, median {p['p50']:g}, p99.5 {p['p99.5']:g}",
    ]
    if "SeriesInstanceUID" in info:
        lines.append(f"  DICOM series {info['SeriesInstanceUID'] or '(empty UID)'} {info['SeriesDescription']!r}, {info['slices']} file(s)")
        if info["skipped_files"]:
            lines.append(f"  warning      {len(info['skipped_files'])} DICOM file(s) here belong to no readable series "
                         f"(corrupt, or not images): {', '.join(info['skipped_files'][:5])}")
    return "\n".join(lines)


@click.command("info")
@click.argument("path", type=click.Path(path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--series-uid", default=None, help="DICOM series to read when a folder holds several.")
@modality_option("Override the modality guess.")
@click.option("--image", "image_path", type=click.Path(exists=True), default=None,
              help="For a .seg.nrrd or DICOM SEG: the scan it was made on, to report intensities inside each segment.")
def command(path: str, as_json: bool, series_uid: str | None, modality: str | None,
            image_path: str | None = None) -> None:
    """Show geometry, modality guess and intensity range of a scan (file or DICOM folder),
    or the grid and segments of a Slicer .seg.nrrd or a DICOM SEG file."""
    from ..io.volumes import read_volume

    if path.lower().endswith(".seg.nrrd"):
        from pathlib import Path

        from ..io.segfiles import read_seg_nrrd

        image = read_volume(image_path, modality=modality) if image_path else None
        info = describe_segmentation(read_seg_nrrd(path), Path(path).name, image)
        click.echo(json.dumps(info, indent=2) if as_json else _seg_text(info))
        return
    from ..io.dicomseg_read import is_dicom_seg

    if is_dicom_seg(path):
        from pathlib import Path

        from ..io.dicomseg_read import read_dicom_seg

        image = read_volume(image_path, modality=modality) if image_path else None
        seg = read_dicom_seg(path, reference=image)
        for line in other_series_warnings(seg, image, Path(path).name):
            click.echo(f"warning: {line}", err=True)
        info = describe_segmentation(seg, Path(path).name, image, f"DICOM SEG {seg.meta['segmentation_type']}")
        info["model"] = seg.meta.get("model", "")
        for d, segment in zip(info["segments"], seg):
            d["algorithm_type"] = segment.meta.get("algorithm_type", "")
            d["prompt"] = segment.meta.get("prompt", "")
        click.echo(json.dumps(info, indent=2) if as_json else _seg_text(info))
        return
    volume = read_volume(path, modality=modality, series_uid=series_uid)
    info = describe(volume)
    click.echo(json.dumps(info, indent=2) if as_json else _text(info))
