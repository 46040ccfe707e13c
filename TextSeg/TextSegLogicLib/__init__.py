"""Qt-free logic of the TextSeg Slicer module (usable from Slicer's Python console)."""
from .logic import TextSegLogic
from .prompts import parse_prompts

__all__ = ["TextSegLogic", "parse_prompts"]
