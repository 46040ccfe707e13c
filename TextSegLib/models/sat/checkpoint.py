"""Strict loading of SAT checkpoints (released layout or plain state dicts).

Accepted: ``.pth``/``.pt`` files (read with ``torch.load(weights_only=True)``,
memory-mapped where possible), ``.safetensors`` files, or an in-memory dict.
Layout handled: a ``{'model_state_dict': ...}`` (or ``'state_dict'``) wrapper,
the DDP ``module.`` prefix, nnU-Net's ``...convs.N.all_modules.{0,1}.*`` alias
keys (same tensors as ``conv.*`` / ``norm.*``). Only documented
inference-unused keys are ignored (``mid_mask_embed_proj.*``, deep-supervision
heads; ``embeddings.position_ids`` for the text encoder). Anything else that
is missing, unexpected or of the wrong shape raises :class:`CheckpointError`.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Union

import torch
from torch import nn

from ...errors import CheckpointError, ModelError

StateDictLike = Union[str, os.PathLike, Mapping[str, object]]
SAT_IGNORED_PREFIXES = ("mid_mask_embed_proj.",)
TEXT_IGNORED_SUFFIXES = ("embeddings.position_ids",)
_ALIAS = re.compile(r"\.all_modules\.([01])\.")
_WRAPPERS = ("model_state_dict", "state_dict", "model")
_SHOW = 8


@dataclass
class LoadReport:
    """What :func:`load_sat_checkpoint` did."""

    source: str
    loaded: int
    ignored: list[str] = field(default_factory=list)
    aliases: int = 0

    def __str__(self) -> str:
        return (f"{self.source}: {self.loaded} tensors loaded, {len(self.ignored)} inference-unused keys "
                f"ignored, {self.aliases} alias keys merged")


def load_state_dict_file(path: str | os.PathLike) -> dict[str, object]:
    """Read a checkpoint file safely (tensors only) and return its top-level dict."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"Checkpoint file {str(p)!r} does not exist.",
                         "Download the weights (see `textseg models`) or fix the path.")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return dict(load_file(str(p)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{str(p)!r} is not a valid safetensors file ({exc}).",
                                  "Re-download the file; it may be truncated.") from None
    errors: list[str] = []
    for mmap in (True, False):
        try:
            obj = torch.load(str(p), map_location="cpu", weights_only=True, mmap=mmap)
            break
        except pickle.UnpicklingError as exc:
            raise CheckpointError(
                f"{str(p)!r} contains Python objects other than tensors; refusing to unpickle it "
                f"(weights_only=True): {str(exc).splitlines()[0][:200]}",
                "Use a checkpoint that stores only tensors (state dict), or convert it to .safetensors.",
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            errors.append(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
    else:
        raise CheckpointError(f"{str(p)!r} is not a PyTorch checkpoint ({errors[-1]}).",
                              "Check the file (it may be truncated or of another format) and re-download it.")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{str(p)!r} holds a {type(obj).__name__}, not a state dict.",
                              "Save the model with torch.save(model.state_dict(), path).")
    return dict(obj)


def _unwrap(obj: Mapping[str, object], source: str) -> dict[str, torch.Tensor]:
    for key in _WRAPPERS:
        if key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]  # type: ignore[assignment]
            break
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad or not obj:
        raise CheckpointError(f"{source} is not a state dict of tensors"
                              + (f" (non-tensor entries: {bad[:_SHOW]})." if bad else " (it is empty)."),
                              "Pass the model weights file (e.g. SAT's nano.pth / pro.pth).")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}  # type: ignore[misc]


def _merge_aliases(sd: dict[str, torch.Tensor], source: str) -> int:
    count = 0
    for key in [k for k in sd if _ALIAS.search(k)]:
        canon = _ALIAS.sub(lambda m: ".conv." if m.group(1) == "0" else ".norm.", key)
        alias = sd.pop(key)
        count += 1
        if canon not in sd:
            sd[canon] = alias
        elif (sd[canon].shape != alias.shape or (
                sd[canon].data_ptr() != alias.data_ptr() and not torch.equal(sd[canon], alias))):
            raise CheckpointError(f"{source}: alias key {key!r} differs from {canon!r}.",
                                  "The checkpoint is inconsistent; re-download it.")
    return count


def _fmt(keys: list[str]) -> str:
    more = f" (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else ""
    return f"{len(keys)} [{', '.join(keys[:_SHOW])}{more}]"


def strict_load(model: nn.Module, source: StateDictLike, *, ignore_prefixes: tuple[str, ...] = (),
                ignore_suffixes: tuple[str, ...] = (), what: str = "checkpoint") -> LoadReport:
    """Load ``source`` into ``model``; only the ignore lists may differ."""
    name = str(source) if isinstance(source, (str, os.PathLike)) else f"in-memory {what}"
    raw = load_state_dict_file(source) if isinstance(source, (str, os.PathLike)) else source
    sd = _unwrap(raw, name)
    aliases = _merge_aliases(sd, name)
    ignored = sorted(k for k in sd if k.startswith(ignore_prefixes) or k.endswith(ignore_suffixes))
    for k in ignored:
        del sd[k]
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [f"{k} {tuple(sd[k].shape)}!={tuple(v.shape)}" for k, v in expected.items()
              if k in sd and sd[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append("missing " + _fmt(missing))
        if unexpected:
            parts.append("unexpected " + _fmt(unexpected))
        if shapes:
            parts.append("wrong shape " + _fmt(shapes))
        raise CheckpointError(f"{name} does not match the {what} model: " + "; ".join(parts) + ".",
                              "Use the checkpoint of the same model variant (nano/pro) and an untruncated file.")
    on_meta = any(p.is_meta for p in model.parameters())
    if on_meta:  # assign keeps the checkpoint's tensors: match the model's dtypes first
        sd = {k: v.to(expected[k].dtype) if v.is_floating_point() else v for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=on_meta)
    if on_meta:
        _materialize_buffers(model)
    return LoadReport(source=name, loaded=len(sd), ignored=ignored, aliases=aliases)


def _materialize_buffers(model: nn.Module) -> None:
    """After an ``assign`` load into a meta-built model, rebuild known non-persistent buffers."""
    for mod_name, module in model.named_modules():
        for name, buf in list(module.named_buffers(recurse=False)):
            if not buf.is_meta:
                continue
            if name == "position_ids":  # transformers' arange(max_positions) buffer
                module.register_buffer(name, torch.arange(buf.shape[-1]).expand(buf.shape).clone(),
                                       persistent=False)
            else:
                raise ModelError(f"Buffer {mod_name}.{name} cannot be restored after loading on the meta device.",
                                 "Build the model on the CPU before loading the checkpoint.")


def load_sat_checkpoint(model: nn.Module, path_or_state_dict: StateDictLike) -> LoadReport:
    """Strictly load SAT weights (see module docstring for the accepted layouts)."""
    return strict_load(model, path_or_state_dict, ignore_prefixes=SAT_IGNORED_PREFIXES, what="SAT")


_HASH_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """sha256 of a file, read incrementally; cached by (path, size, mtime)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]
