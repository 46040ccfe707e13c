"""First-use dependency check and install (runs inside Slicer, on the main thread).

Torch comes from the PyTorch extension (``PyTorchUtils``) so the CUDA build
matches the machine; everything else from ``slicer.util.pip_install`` with
pinned ranges. All Slicer functions are injected, so each piece is testable.
"""
from __future__ import annotations

import importlib.util
from typing import Callable, Sequence

#: import name -> pip requirement (ranges tested with TextSegLib).
REQUIREMENTS: dict[str, str] = {
    "numpy": "numpy>=1.24,<3",
    "SimpleITK": "SimpleITK>=2.3,<3",
    "monai": "monai>=1.3,<2",
    "transformers": "transformers>=4.40,<6",
    "safetensors": "safetensors>=0.4,<1",
    "scipy": "scipy>=1.10,<2",
    "requests": "requests>=2.28,<3",
    "nrrd": "pynrrd>=1.0,<2",
    "slicerio": "slicerio>=1.1,<2",
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
