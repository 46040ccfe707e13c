"""Qt-free logic of the TextSeg Slicer module (usable from Slicer's Python console)."""
from .logic import TextSegLogic
from .terms import SegmentSpec, parse_prompts

__all__ = ["SegmentSpec", "TextSegLogic", "parse_prompts"]
