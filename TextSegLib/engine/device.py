"""Pick a torch device and its mixed-precision mode (CUDA, Apple MPS, CPU)."""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

from ..errors import TextSegError

DEVICE_NAMES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")


class DeviceError(TextSegError):
    """The requested compute device is not available."""


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """Device kinds usable in this process, best first."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    if _mps_available():
        out.append("mps")
    out.append("cpu")
    return out


def choose_device(name: str | None = "auto") -> torch.device:
    """``'auto'`` → CUDA, else MPS, else CPU; ``'cuda:1'`` picks a GPU.

    Raises :class:`DeviceError` if the requested device is absent.
    """
    name = (name or "auto").strip().lower()
    kind, _, index = name.partition(":")
    if kind not in DEVICE_NAMES:
        raise DeviceError(f"Unknown device {name!r}.", "Use one of: auto, cuda, cuda:N, mps, cpu.")
    if kind == "auto":
        return torch.device(available_devices()[0])
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                "CUDA was requested but no NVIDIA GPU is usable by this PyTorch build "
                f"(torch {torch.__version__}, CUDA {torch.version.cuda or 'not compiled in'}).",
                "Use --device cpu (or auto), or install a CUDA build of PyTorch and an NVIDIA driver.",
            )
        if index:
            if not index.isdigit() or int(index) >= torch.cuda.device_count():
                raise DeviceError(
                    f"GPU {name!r} does not exist ({torch.cuda.device_count()} visible).",
                    "Pick cuda:0 … cuda:N-1 or check CUDA_VISIBLE_DEVICES.",
                )
            return torch.device("cuda", int(index))
        return torch.device("cuda")
    if kind == "mps":
        if not _mps_available():
            raise DeviceError(
                "Apple MPS was requested but is not available on this machine.",
                "Use --device cpu (or auto); MPS needs Apple silicon and macOS 12.3+.",
            )
        return torch.device("mps")
    return torch.device("cpu")


def resolve_precision(device: torch.device, precision: str = "auto") -> torch.dtype:
    """The autocast dtype: fp16 on CUDA (as SAT's reference), fp32 on CPU/MPS for 'auto'."""
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise DeviceError(f"Unknown precision {precision!r}.", "Use one of: auto, fp32, fp16, bf16.")
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError("This GPU does not support bfloat16.", "Use --precision fp16 or fp32.")
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def autocast_factory(device: torch.device, dtype: torch.dtype) -> Callable[[], contextlib.AbstractContextManager]:
    """A zero-argument context-manager factory for mixed precision (no-op for fp32)."""
    if dtype == torch.float32:
        return contextlib.nullcontext
    if device.type == "cpu" and dtype == torch.float16:
        raise DeviceError("fp16 autocast is not supported on CPU.", "Use fp32 or bf16 on CPU.")
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)
