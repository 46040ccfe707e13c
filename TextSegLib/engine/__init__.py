"""Engines: everything that turns (volume, prompts) into masks."""
from .base import CancelToken, Engine, EngineResult, ProgressCallback

__all__ = ["CancelToken", "Engine", "EngineResult", "ProgressCallback"]
