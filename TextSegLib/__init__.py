"""TextSegLib: the engine of TextSeg, a plain Python package (no Slicer, no Qt).

Sub-packages:
  io         volumes and segmentations from and to files (NIfTI, NRRD, DICOM, .seg.nrrd)
  knowledge  the knowledge tree of coded anatomy terms and the autocomplete
  models     SAT-Nano / SAT-Pro and the bundled offline model
  engine     the engine interface, preprocessing, sliding-window inference
  refine     point and box refinement
  cli        the ``textseg`` command line
"""
from .errors import TextSegError
from .volume import Volume

__version__ = "0.1.0"
__all__ = ["TextSegError", "Volume", "__version__"]
