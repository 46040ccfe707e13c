"""Build VoxTell's network from ``plans.json`` and load its weights safely.

``voxtell``'s own predictor unpickles ``fold_0/checkpoint_final.pth`` with
``torch.load(..., weights_only=False)``, which runs any code a tampered file carries.
TextSeg never calls that: it builds :class:`voxtell.model.voxtell_model.VoxTellModel`
itself, with the fixed arguments the predictor uses (1 input channel, decoder layer 4,
2560-d text input, 5 mask-former stages, 32 heads, 2048-wide queries and projection,
no deep supervision), and reads the checkpoint with ``weights_only=True``. The only
globals allowed beyond tensors and containers are numpy's scalar and dtype
reconstructors, which nnU-Net's training log in a checkpoint may hold.
The classes ``plans.json`` names (``conv_op``, ``norm_op``, ...) are looked up in
``torch.nn`` from a short allow-list, never imported by name.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch

from ...errors import CheckpointError, ModelError

PLANS = "plans.json"
CHECKPOINT = "fold_0/checkpoint_final.pth"
CONFIGURATION = "3d_fullres"
#: what the predictor passes to VoxTellModel besides plans.json's arch_kwargs (voxtell 0.1.2)
FIXED_ARGS = dict(input_channels=1, decoder_layer=4, text_embedding_dim=2560, num_maskformer_stages=5,
                  num_heads=32, query_dim=2048, project_to_decoder_hidden_dim=2048, deep_supervision=False)
TEXT_DIM = FIXED_ARGS["text_embedding_dim"]
#: torch.nn classes plans.json may name for the keys listed in ``_kw_requires_import``
ALLOWED_CLASSES = frozenset({
    "Conv1d", "Conv2d", "Conv3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d", "BatchNorm1d",
    "BatchNorm2d", "BatchNorm3d", "GroupNorm", "LayerNorm", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d",
    "LeakyReLU", "ReLU", "PReLU", "GELU", "ELU", "SiLU",
})


def _safe_globals() -> list:
    """numpy scalar / dtype reconstructors (nnU-Net logs floats as numpy scalars)."""
    out: list = [np.dtype]
    core = getattr(np, "_core", None) or getattr(np, "core")
    out.append(core.multiarray.scalar)
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        cls = getattr(getattr(np, "dtypes", None), name, None)
        if cls is not None:
            out.append(cls)
    return out


def read_plans(folder: Path) -> dict:
    """The ``3d_fullres`` configuration of ``folder/plans.json``."""
    p = Path(folder) / PLANS
    try:
        plans = json.loads(p.read_text(encoding="utf-8"))
        conf = plans["configurations"][CONFIGURATION]
        conf["architecture"]["arch_kwargs"], conf["patch_size"]
    except FileNotFoundError:
        raise ModelError(f"{folder}: plans.json is missing.",
                         "Copy plans.json of the VoxTell release into the folder "
                         "(textseg models pull VoxTell downloads it).") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{p}: not a VoxTell plans file ({type(exc).__name__}: {exc}).",
                         "Use the plans.json that came with the checkpoint.") from None
    return conf


def _resolve_class(value: str, key: str, source: Path):
    name = str(value).rsplit(".", 1)[-1]
    if not str(value).startswith("torch.nn") or name not in ALLOWED_CLASSES:
        raise ModelError(f"{source}: {key} = {value!r} is not a torch.nn layer TextSeg allows.",
                         f"Use one of torch.nn.{', torch.nn.'.join(sorted(ALLOWED_CLASSES))}.")
    return getattr(torch.nn, name)


def build_network(folder: Path) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    """``(VoxTellModel with random weights, patch size)`` as ``plans.json`` describes it."""
    from voxtell.model.voxtell_model import VoxTellModel

    conf = read_plans(folder)
    arch = conf["architecture"]
    kwargs = dict(arch["arch_kwargs"])
    for key in arch.get("_kw_requires_import", ()):
        if kwargs.get(key) is not None:
            kwargs[key] = _resolve_class(kwargs[key], key, Path(folder) / PLANS)
    try:
        net = VoxTellModel(**FIXED_ARGS, **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError) as exc:
        raise ModelError(f"{Path(folder) / PLANS}: cannot build VoxTell from it ({type(exc).__name__}: {exc}).",
                         "Use the plans.json that came with the checkpoint.") from None
    return net.eval(), tuple(int(v) for v in conf["patch_size"])  # type: ignore[return-value]


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """``network_weights`` of an nnU-Net checkpoint, read with ``weights_only=True``.

    A checkpoint holding any other Python object (a pickled payload) is refused before
    anything in it runs: :class:`~TextSegLib.errors.CheckpointError`, one line."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p.parent.parent}: the VoxTell checkpoint {CHECKPOINT} is missing.",
                         "Run `textseg models pull VoxTell`, or copy fold_0/checkpoint_final.pth of the release there.")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            try:
                obj = torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:  # an old (non-zip) file cannot be memory-mapped
                if "mmap" not in str(exc).lower() and "zip" not in str(exc).lower():
                    raise
                obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        why = next((ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "global" in ln.lower()), "")
        raise CheckpointError(f"{p}: refused to load: the checkpoint holds Python objects, not only weights"
                              + (f" ({why[:160]})" if why else "") + ".",
                              "TextSeg loads weights only (weights_only=True); use the checkpoint of the "
                              "VoxTell release, or re-save just its 'network_weights'.") from None
    except Exception as exc:  # truncated, not a torch file
        raise CheckpointError(f"{p}: cannot read the checkpoint ({type(exc).__name__}: {str(exc)[:160]}).",
                              "Download it again (partial download?).") from None
    sd = obj.get("network_weights") if isinstance(obj, dict) else None
    if sd is None and isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj  # a bare state dict
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{p}: no 'network_weights' state dict in the checkpoint.",
                              "Use fold_0/checkpoint_final.pth of a VoxTell release.")
    return sd


def load_network(folder: Path) -> tuple[torch.nn.Module, tuple[int, int, int]]:
    """The VoxTell network of a model folder with its weights, loaded safely."""
    net, patch = build_network(folder)
    sd = load_weights(Path(folder) / CHECKPOINT)
    sd = {k.removeprefix("_orig_mod."): v for k, v in sd.items()}  # saved from a compiled module
    try:
        result = net.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        raise CheckpointError(f"{Path(folder) / CHECKPOINT}: does not match plans.json "
                              f"({str(exc).splitlines()[-1].strip()[:200]}).",
                              "Use the plans.json and checkpoint of the same VoxTell release.") from None
    if result.missing_keys or result.unexpected_keys:
        def few(keys):
            return ", ".join(keys[:3]) + (" ..." if len(keys) > 3 else "")
        raise CheckpointError(f"{Path(folder) / CHECKPOINT}: does not match plans.json "
                              f"({len(result.missing_keys)} missing: {few(result.missing_keys)}; "
                              f"{len(result.unexpected_keys)} unexpected: {few(result.unexpected_keys)}).",
                              "Use the plans.json and checkpoint of the same VoxTell release.")
    return net.eval(), patch
