"""The in-Slicer self-test ("liver in the bundled abdomen CT") and the Sample Data entry for that CT.

Qt-free, with the Slicer pieces injected (the logic, a volume loader, a message callback), so
the same scenario runs in Slicer's self-test (``TextSegTest``) and on PyPI slicer-core.
It tests what it can without PyTorch (the sample, the coded prompt, the MRML import, the
keep-the-user's-segments and Undo rules) and, where PyTorch and the engine's packages are
installed, a real run of the bundled model. Whatever it skipped is listed with the reason.
Afterwards no process it started is alive (checked through the process table).
"""
from __future__ import annotations

import importlib.util
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from TextSegLib.errors import InputFileError, TextSegError

SAMPLE_FILE = "abdomen_ct_sample.nii.gz"
#: SHA-256 of Resources/samples/abdomen_ct_sample.nii.gz (Sample Data verifies the file with it)
SAMPLE_SHA256 = "07e94e31ea3959bb7c14c4cc30e7239eb9666b4baf0806433410c77e169d7d29"
SAMPLE_NODE_NAME = "TextSegAbdomenCT"


def sample_ct_path() -> Path:
    """The bundled sample CT, installed with TextSegLib's Resources/ beside the module."""
    from TextSegLib.resources import resource_path

    path = Path(resource_path("samples", SAMPLE_FILE))
    if not path.is_file():
        raise InputFileError(f"{path}: the sample CT is not installed.", "Reinstall the TextSeg extension.")
    return path


def register_sample_data(register: Callable[..., Any], thumbnail: str | None = None) -> None:
    """Register the sample CT with ``SampleData.SampleDataLogic.registerCustomSampleDataSource``.

    Keywords as in Slicer 5.10 and 5.12 (Modules/Scripted/SampleData/SampleData.py): ``category``,
    ``sampleName``, ``uris``, ``fileNames``, ``nodeNames``, ``thumbnailFileName``,
    ``loadFileTypes``, ``checksums`` (``"SHA256:<hex>"``). The file is already on disk, so its URI
    is a ``file://`` one: SampleDataLogic.downloadFile fetches it with ``urllib.request.urlretrieve``
    (which reads file:// URIs) into its cache and checks the checksum there."""
    path = sample_ct_path()
    register(
        category="TextSeg",
        sampleName=SAMPLE_NODE_NAME,
        uris=[path.as_uri()],
        fileNames=[f"{SAMPLE_NODE_NAME}.nii.gz"],
        nodeNames=[SAMPLE_NODE_NAME],
        thumbnailFileName=thumbnail,
        loadFileTypes=["VolumeFile"],
        checksums=[f"SHA256:{SAMPLE_SHA256}"],
    )


@dataclass
class SelfTestReport:
    """What the self-test checked, and what it skipped with the reason."""

    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"{len(self.passed)} checks passed"
        return text + (f"; skipped: {'; '.join(self.skipped)}" if self.skipped else "; nothing skipped")


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses the name (e.g. a blocked package)
        return False


def missing_for_model_run() -> list[str]:
    """Import names the engine process needs that are not installed ('torch' first)."""
    from .deps import missing_requirements

    return missing_requirements(lambda name: object() if _importable(name) else None)


def child_pids(pid: int | None = None) -> set[int] | None:
    """Live (non-zombie) descendants of ``pid`` (default: this process); None where unknown."""
    pid = os.getpid() if pid is None else pid
    try:
        import psutil  # type: ignore[import-not-found]

        return {p.pid for p in psutil.Process(pid).children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}
    except ImportError:
        pass
    if not os.path.isdir("/proc"):
        return None
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z":
            parents[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier and c not in found}
        found |= frontier
    return found


def _stand_in_liver(volume: Any) -> np.ndarray:
    """A block of soft-tissue voxels standing in for the model's liver mask (tests the MRML plumbing only)."""
    a = volume.array
    i, j, k = a.shape
    mask = np.zeros(a.shape, bool)
    mask[i // 5: i // 2, j // 4: 3 * j // 4, :] = True
    return mask & (a > 0) & (a < 200)


def segment_liver(logic: Any, load_volume: Callable[[str], Any], say: Callable[[str], None] = print,
                  timeout_s: float = 600) -> SelfTestReport:
    """The self-test: 'liver' in the bundled abdomen CT. Raises AssertionError on a failed check."""
    report = SelfTestReport()
    before = child_pids()
    say("Loading the bundled abdomen CT")
    node = load_volume(str(sample_ct_path()))
    _expect(node is not None, "the sample CT did not load")
    volume = logic.volume(node, "ct")
    _expect(volume.shape[2] >= 10, f"the sample CT has {volume.shape} voxels; expected an axial series")
    report.passed.append(f"sample CT loaded ({'x'.join(map(str, volume.shape))} voxels)")

    say("Resolving 'liver' for the bundled model")
    logic.use_model("bundled", device="cpu")
    (prompt,) = logic.resolve("liver", "ct")
    _expect(prompt.name == "Liver" and "Liver" in (prompt.terminology or ""), f"'liver' resolved to {prompt.name!r}")
    report.passed.append("'liver' resolves to the coded concept Liver")

    say("Importing a stand-in liver mask (no model)")
    mask = _stand_in_liver(volume)
    seg, (sid,) = logic.import_result(node, {prompt.text: mask}, [prompt])
    segmentation = seg.GetSegmentation()
    _expect(segmentation.GetSegment(sid).GetName() == "Liver", "the imported segment is not named Liver")
    _expect("Liver" in (segmentation.GetSegment(sid).GetTerminology() or ""), "the segment carries no Liver terminology")
    user = segmentation.AddEmptySegment("", "my segment")
    try:
        logic.undo(seg)
        raise AssertionError("Undo run discarded a segment added after the run")
    except TextSegError:
        pass
    logic.import_result(node, {prompt.text: mask}, [prompt], seg)
    _expect(segmentation.GetNumberOfSegments() == 2 and segmentation.GetSegment(user) is not None,
            "a rerun did not keep the user's segment and replace its own")
    report.passed.append("coded segment imported; a rerun keeps the user's segment; Undo refuses over a later edit")
    segmentation.RemoveSegment(user)

    missing = missing_for_model_run()
    if missing:
        report.skipped.append(f"bundled model run ({', '.join(missing)} not installed; TextSeg offers to install "
                              "them on the first run)")
    else:
        say("Segmenting 'liver' with the bundled model (engine process)")
        try:
            out = logic.segment(node, "liver", modality="ct", timeout_s=timeout_s)
        finally:
            logic.shutdown()
        names = [out.GetSegmentation().GetNthSegment(i).GetName() for i in range(out.GetSegmentation().GetNumberOfSegments())]
        _expect("Liver" in names, f"the bundled model made {names}, no Liver")
        report.passed.append("bundled model segmented Liver")
    logic.shutdown()
    _expect_no_leftover(before, report)
    say(f"TextSeg self-test: {report.summary()}")
    return report


def _expect_no_leftover(before: set[int] | None, report: SelfTestReport, wait_s: float = 10.0) -> None:
    if before is None:
        report.skipped.append("leftover-process check (no process table on this platform)")
        return
    end = time.monotonic() + wait_s
    while True:
        left = (child_pids() or set()) - before
        if not left or time.monotonic() > end:
            break
        time.sleep(0.2)
    _expect(not left, f"processes left behind after the self-test: {sorted(left)}")
    report.passed.append("no process left behind")
