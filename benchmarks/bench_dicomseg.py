#!/usr/bin/env python
"""DICOM SEG benchmark: size and write time of BINARY vs LABELMAP, and DICOMweb push/pull times.

    python benchmarks/bench_dicomseg.py [--slices 300] [--structures 20] [--no-pacs]

Builds a synthetic 512x512xN CT series with pydicom (uncompressed, valid UIDs) in a temporary
folder, places ``--structures`` non-overlapping ellipsoids of organ-like sizes on it, and writes
it as DICOM SEG: BINARY (bit-packed, uncompressed), LABELMAP uncompressed and LABELMAP RLE.
With a local Debian Orthanc + orthanc-dicomweb it then starts one on loopback (as the tests do)
and times STOW-RS push of the series and of each SEG, and WADO-RS pull of the series.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "Testing" / "pytest"))


def build_series(folder: Path, slices: int, size: int = 512) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    study, series, frame = (generate_uid(entropy_srcs=["bench", k]) for k in ("study", "series", "frame"))
    rng = np.random.default_rng(0)
    base = (rng.normal(40, 20, (size, size)).clip(-1000, 2000) + 1024).astype(np.uint16)
    for k in range(slices):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["bench", "instance", str(k)])
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.PatientID, ds.PatientName, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "BENCH", "Bench^CT", "CT", 1, k + 1
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "20260101", "120000", "1", "", ""
        ds.PatientBirthDate, ds.PatientSex, ds.Manufacturer = "", "O", "bench"
        ds.ImagePositionPatient = [-250.0, -250.0, -300.0 + k * 1.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [0.9765625, 0.9765625], 1.0
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = base.tobytes()
        ds.save_as(folder / f"CT{k:04d}.dcm", enforce_file_format=True)


def structures(shape, n: int) -> list[np.ndarray]:
    """``n`` disjoint ellipsoids with radii of 15-60 mm, on a jittered 5x4 layout."""
    rng = np.random.default_rng(1)
    grid = [(i, j) for i in range(5) for j in range(4)]
    masks = []
    label = np.zeros(shape, np.uint8)
    ii, jj = np.ogrid[:shape[0], :shape[1]]
    for s in range(n):
        gi, gj = grid[s % len(grid)]
        ci, cj = 50 + gi * (shape[0] - 100) / 4, 60 + gj * (shape[1] - 120) / 3
        ck = rng.uniform(0.3, 0.7) * shape[2]
        ri, rj, rk = rng.uniform(15, 45), rng.uniform(15, 55), rng.uniform(0.1, 0.3) * shape[2]
        m = np.zeros(shape, bool)
        for k in range(max(0, int(ck - rk)), min(shape[2], int(ck + rk) + 1)):
            f = 1 - ((k - ck) / rk) ** 2
            if f > 0:
                m[:, :, k] = ((ii - ci) / ri) ** 2 + ((jj - cj) / rj) ** 2 <= f
        m &= label == 0
        label[m] = s + 1
        masks.append(m)
    return masks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--structures", type=int, default=20)
    ap.add_argument("--no-pacs", action="store_true")
    args = ap.parse_args()

    import highdicom

    from TextSegLib.io import read_volume, write_dicom_seg
    from TextSegLib.segmentation import Segment, Segmentation

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU(s), "
          f"load average {os.getloadavg()[0]:.1f}; highdicom {highdicom.__version__}")
    with tempfile.TemporaryDirectory(prefix="bench-dicomseg-") as tmp:
        tmp = Path(tmp)
        series = tmp / "series"
        series.mkdir()
        t = time.perf_counter()
        build_series(series, args.slices)
        print(f"series: 512x512x{args.slices} built in {time.perf_counter() - t:.1f} s, "
              f"{sum(f.stat().st_size for f in series.iterdir()) / 1e6:.0f} MB")
        volume = read_volume(series)
        masks = structures(volume.shape, args.structures)
        seg = Segmentation(volume, [Segment(f"Structure {n + 1}", m) for n, m in enumerate(masks)])
        seg.meta["model"] = "bench"
        voxels = sum(int(m.sum()) for m in masks)
        print(f"{args.structures} structures, {voxels / 1e6:.1f} M voxels in all")
        print(f"{'type':<22s} {'write s':>8s} {'CPU s':>7s} {'size MB':>9s} {'frames':>7s}")
        outputs = {}
        for name, kind, compress in (("BINARY", "BINARY", False), ("LABELMAP", "LABELMAP", False),
                                     ("LABELMAP + RLE", "LABELMAP", True)):
            path = tmp / f"{name.replace(' + ', '_')}.dcm"
            t, c = time.perf_counter(), time.process_time()
            report = write_dicom_seg(seg, volume, path, segmentation_type=kind, compress=compress)
            dt, dc = time.perf_counter() - t, time.process_time() - c
            outputs[name] = path
            print(f"{name:<22s} {dt:8.1f} {dc:7.1f} {path.stat().st_size / 1e6:9.2f} {report.frames:7d}")
        if args.no_pacs:
            return
        from _orthanc_helpers import dicomweb_plugin, orthanc_binary, start_orthanc, stop_orthanc

        if not orthanc_binary() or not dicomweb_plugin():
            print("PACS: skipped (Debian orthanc + orthanc-dicomweb not installed)")
            return
        from TextSegLib.pacs import PacsClient, resolve_settings

        server, proc = start_orthanc(tmp / "orthanc")
        try:
            client = PacsClient(resolve_settings(server.dicomweb, user=server.credentials))
            files = sorted(series.iterdir())
            t = time.perf_counter()
            for n in range(0, len(files), 50):  # STOW-RS in batches of 50 instances
                client.push(files[n:n + 50])
            print(f"PACS push series ({len(files)} instances, STOW-RS x{(len(files) + 49) // 50}): "
                  f"{time.perf_counter() - t:.1f} s")
            import pydicom

            for name, path in outputs.items():
                t = time.perf_counter()
                client.push([path])
                pushed = time.perf_counter() - t
                uid = pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID
                t = time.perf_counter()
                client.pull_series(uid, study_uid=volume.meta["StudyInstanceUID"], cache=tmp / "cache")
                print(f"PACS SEG {name}: push {pushed:.2f} s, pull {time.perf_counter() - t:.2f} s")
            t = time.perf_counter()
            folder = client.pull_series(volume.meta["SeriesInstanceUID"], cache=tmp / "cache")
            print(f"PACS pull series (WADO-RS): {time.perf_counter() - t:.1f} s, {len(list(folder.glob('*.dcm')))} files")
        finally:
            stop_orthanc(proc)


if __name__ == "__main__":
    main()
