"""Point and box refinement of masks (see :func:`refine`)."""
from .api import Refiner, RefineResult, make_refiner, refine
from .builtin import BuiltinRefiner, Interaction
from .session import RefineSession
from .geometry import RefineInputError, Region, VoxelBox

__all__ = [
    "refine", "RefineResult", "Refiner", "make_refiner", "BuiltinRefiner",
    "Interaction", "RefineSession", "RefineInputError", "Region", "VoxelBox",
]
