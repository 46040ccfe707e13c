"""textseg-mini = a small SAT (``build_sat`` with overrides) + a query head on
frozen MiniLM sentence embeddings; weights saved as one safetensors file.

Tensor names in ``model.safetensors``: ``sat.<SAT state_dict key>``,
``query.<QueryHead key>`` and ``term_embeddings`` (cached MiniLM vectors of
the term list in ``config.json``, float16).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import CheckpointError, ModelError
from ..sat import build_sat
from ..sat.model import SAT
from .text import QueryHead

#: SAT overrides of the bundled model (a small 5-stage U-Net, 2 decoder layers).
SAT_OVERRIDES: dict = {
    "stage_channels": (16, 24, 32, 48, 64),
    "convs_per_stage": 2,
    "in_channels": 3,
    "proj_hidden": 128,
    "query_dim": 96,
    "num_layers": 2,
    "num_heads": 4,
    "ffn_dim": 192,
    "mask_hidden": 64,
    "patch_size": (48, 48, 32),
}


@dataclass
class MiniConfig:
    sat: dict = field(default_factory=lambda: dict(SAT_OVERRIDES))
    spacing: float = 3.0
    threshold: float = 0.5
    query_hidden: int = 256
    terms: list[str] = field(default_factory=list)
    concepts: dict[str, list[str]] = field(default_factory=dict)  # modality -> trained concepts
    info: dict = field(default_factory=dict)

    def to_json(self) -> str:
        d = dict(self.__dict__)
        d["sat"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.sat.items()}
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "MiniConfig":
        d = json.loads(text)
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class MiniModel(torch.nn.Module):
    """The trainable parts: ``sat`` (image side) and ``query`` (text side)."""

    def __init__(self, config: MiniConfig) -> None:
        super().__init__()
        self.config = config
        self.sat: SAT = build_sat("nano", **config.sat)
        # SAT's mask head ends in a GELU, which bounds mask embeddings below by -0.17;
        # trained from scratch on little data they collapse there (all logits < 0, zero
        # gradient). textseg-mini drops that last activation (no parameters change).
        if isinstance(self.sat.mask_embed_proj[-1], torch.nn.GELU):
            self.sat.mask_embed_proj[-1] = torch.nn.Identity()
        self.query = QueryHead(int(config.sat["query_dim"]), config.query_hidden)


def save_weights(model: MiniModel, term_embeddings: np.ndarray, path: Path, half: bool = True) -> None:
    """Write ``model.safetensors`` (float16 by default: the file stays small)."""
    from safetensors.torch import save_file

    tensors = {}
    for prefix, mod in (("sat.", model.sat), ("query.", model.query)):
        for k, v in mod.state_dict().items():
            t = v.detach().cpu()
            tensors[prefix + k] = (t.half() if half and t.is_floating_point() else t).contiguous()
    tensors["term_embeddings"] = torch.from_numpy(term_embeddings.astype(np.float16))
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"format": "textseg-mini"})
    tmp.replace(path)


def load_weights(folder: Path) -> tuple[MiniModel, np.ndarray]:
    """``(model, term_embeddings)`` from ``folder`` (config.json + model.safetensors)."""
    from safetensors.torch import load_file

    cfg_path, w_path = folder / "config.json", folder / "model.safetensors"
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise ModelError(f"textseg-mini: {p} is missing.",
                             "Reinstall TextSeg or retrain with `textseg train --out " + str(folder) + "`.")
    try:
        config = MiniConfig.from_json(cfg_path.read_text())
    except (ValueError, TypeError) as exc:
        raise ModelError(f"textseg-mini: {cfg_path} is not a valid config ({exc}).") from None
    model = MiniModel(config)
    try:
        tensors = load_file(str(w_path))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"textseg-mini: cannot read {w_path}: {exc}.",
                              "The file is damaged; reinstall or retrain.") from None
    emb = tensors.pop("term_embeddings", None)
    if emb is None or emb.shape != (len(config.terms), 384):
        raise CheckpointError(f"textseg-mini: {w_path} has no term embeddings matching {cfg_path}'s term list.")
    for prefix, mod in (("sat.", model.sat), ("query.", model.query)):
        sd = {k[len(prefix):]: v.float() if v.is_floating_point() else v
              for k, v in tensors.items() if k.startswith(prefix)}
        try:
            missing, unexpected = mod.load_state_dict(sd, strict=False)
        except RuntimeError as exc:  # wrong shapes
            raise CheckpointError(f"textseg-mini: {w_path} does not fit the model in {cfg_path}: "
                                  f"{str(exc).splitlines()[-1].strip()}",
                                  "Use the config.json that was written with these weights.") from None
        if missing or unexpected:
            raise CheckpointError(
                f"textseg-mini: {w_path} does not match the model in {cfg_path} "
                f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}).",
                "Use the config.json that was written with these weights.")
    return model.eval(), emb.float().numpy()
