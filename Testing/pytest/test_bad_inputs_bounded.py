"""Bad inputs that must be refused before anything large is allocated (issue 22, items 6-10).

Cases that today's readers would turn into gigabytes run ``textseg info`` in a subprocess whose
address space is capped (RLIMIT_AS), so a regression fails the test instead of the machine.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from TextSegLib.errors import InputFileError, VolumeTooLargeError
from TextSegLib.io import read_volume
from TextSegLib.volume import Volume, make_ijk_to_ras

from _io_helpers import BAD, TS
from test_bad_inputs import BOUNDED

import TextSegLib

REPO = Path(TextSegLib.__file__).resolve().parents[1]  # the code under test, wherever it is imported from
#: `textseg info` on a small file peaks at about 0.45 GB of address space.
LIMIT = 1 << 30


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def run_info(path: Path, limit: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "TextSegLib.cli.main", "info", str(path)], capture_output=True,
                          text=True, env=env, cwd=str(REPO), timeout=120, preexec_fn=_limited if limit else None)


@pytest.mark.parametrize("name,phrase", BOUNDED, ids=[c[0] for c in BOUNDED])
def test_declared_sizes_are_checked_against_the_bytes_before_allocating(name, phrase):
    done = run_info(BAD / name)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.count("\n") == 1 and phrase in done.stderr, done.stderr


def test_gzip_trailer_check_inflates_no_more_than_the_header_declares(tmp_path):
    """A valid .nii.gz followed by a gzip member of 1 GiB of zeros (1 MB on disk) is read within
    the memory cap; its voxels are all there, so it reads normally."""
    scan = (TS / "example_mr_sm.nii.gz").read_bytes()
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 24)
    tail = b"".join(bomb.compress(zeros) for _ in range(64)) + bomb.flush()
    path = tmp_path / "trailing_zeros.nii.gz"
    path.write_bytes(scan + tail)
    done = run_info(path)
    assert done.returncode == 0, done.stderr
    assert "trailing_zeros.nii.gz (NIfTI)" in done.stdout


def test_gzip_length_is_counted_to_the_limit_only(tmp_path):
    from TextSegLib.io.nifti_header import gunzip_length

    path = tmp_path / "z.gz"
    path.write_bytes(_gz(bytes(50 << 20)))
    assert gunzip_length(path, 1000) == 1000
    assert gunzip_length(path, 100 << 20) == 50 << 20


def _gz(data: bytes) -> bytes:
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def test_model_grid_is_bounded_before_resampling():
    """A 16x16x8 scan with 500 mm voxels (built in memory, past the readers' plausibility check)
    would be resampled into tens of gigabytes; the grid is refused before any allocation."""
    from TextSegLib.engine.preprocess import preprocess
    from TextSegLib.engine.resample import make_grid

    v = Volume(np.zeros((16, 16, 8), np.int16), make_ijk_to_ras([500.0] * 3, [0, 0, 0], np.eye(3)), "ct", "big.nii")
    with pytest.raises(VolumeTooLargeError, match=r"big.nii: resampling it to the model's spacing 1.5 x 1.5 x 1.5 mm"):
        make_grid(v, (1.5, 1.5, 1.5))
    with pytest.raises(VolumeTooLargeError, match="spacing 500 x 500 x 500 mm or field of view is implausible"):
        preprocess(v)


def test_a_seg_nrrd_given_as_the_scan_is_refused(tmp_path, capsys):
    from TextSegLib.cli.main import main
    from TextSegLib.io import write_seg_nrrd
    from TextSegLib.segmentation import Geometry, Segment, Segmentation

    seg = Segmentation(Geometry((6, 5, 4), np.eye(4)))
    mask = np.zeros((6, 5, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    seg.add(Segment("liver", mask))
    path = write_seg_nrrd(seg, tmp_path / "liver.seg.nrrd")
    with pytest.raises(InputFileError, match=r"liver.seg.nrrd: is a Slicer segmentation \(.seg.nrrd\), not a scan"):
        read_volume(path)
    capsys.readouterr()
    assert main(["segment", str(path), "-p", "liver", "-o", str(tmp_path / "out.seg.nrrd"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a scan" in err


def test_a_dicom_seg_measured_against_another_series_is_warned(tmp_path, capsys):
    pytest.importorskip("highdicom", reason="DICOM SEG needs the 'dicom' extra")
    import pydicom

    from TextSegLib.cli.main import main
    from TextSegLib.io import write_dicom_seg
    from TextSegLib.segmentation import Segment, Segmentation

    from _dicomseg_helpers import build_series

    own = build_series(tmp_path / "own", "axial")
    other = tmp_path / "other"
    other.mkdir()
    for f in sorted(own.iterdir()):  # the same grid under another series UID
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.SOPInstanceUID = pydicom.uid.generate_uid(entropy_srcs=["other", f.name])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(other / f.name)
    volume = read_volume(own)
    mask = np.zeros(volume.shape, bool)
    mask[200:260, 200:260, 5:10] = True
    seg = Segmentation(volume)
    seg.add(Segment("liver", mask))
    path = write_dicom_seg(seg, volume, tmp_path / "liver.dcm").path
    capsys.readouterr()
    assert main(["info", str(path), "--image", str(own)]) == 0
    assert "warning" not in capsys.readouterr().err
    assert main(["info", str(path), "--image", str(other)]) == 0
    err = capsys.readouterr().err
    assert "but --image is series 1.2.826.0.1.3680043.8.498.1: the intensities are measured in another series" in err
