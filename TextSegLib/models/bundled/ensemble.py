"""Seed ensembles of textseg-mini: several independently trained members
behind the one SAT interface (``encode_image`` / ``decode``) that the
sliding window uses.

A model folder is an ensemble when it holds ``ensemble.json``::

    {"members": [".", "members/seed7", "members/seed99"]}

Each member is an ordinary model folder (``config.json`` + ``model.safetensors``,
as written by ``textseg train``); ``"."`` is the folder itself. Members must share
the term list and image configuration. Queries of all members are concatenated
along the feature axis; ``decode`` splits them again, runs each member and
returns the logit of the members' mean probability.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ...errors import ModelError

ENSEMBLE_FILE = "ensemble.json"


class EnsembleQueryHead(nn.Module):
    """The members' query heads side by side: ``(..., n_members * query_dim)``."""

    def __init__(self, heads: Sequence[nn.Module]) -> None:
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, embeddings: torch.Tensor, modality_index: torch.Tensor) -> torch.Tensor:
        return torch.cat([h(embeddings, modality_index) for h in self.heads], dim=-1)


class EnsembleSAT(nn.Module):
    """Mean probability of several SAT image models, each with its own slice of the queries."""

    def __init__(self, members: Sequence[nn.Module], query_dim: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.query_dim = int(query_dim)
        self.config = getattr(members[0], "config", None)

    def encode_image(self, image: torch.Tensor):
        return tuple(m.encode_image(image) for m in self.members)

    def decode(self, features, queries: torch.Tensor) -> torch.Tensor:
        d = self.query_dim
        if queries.shape[-1] != d * len(self.members):
            raise ModelError(f"Ensemble of {len(self.members)} members expects queries of width "
                             f"{d * len(self.members)}, got {queries.shape[-1]}.")
        prob = None
        for i, (m, f) in enumerate(zip(self.members, features)):
            p = torch.sigmoid(m.decode(f, queries[..., i * d:(i + 1) * d]).float())
            prob = p if prob is None else prob + p
        prob = prob / len(self.members)
        return torch.logit(prob.clamp(1e-6, 1 - 1e-6))


def member_folders(folder: Path) -> list[Path]:
    """The member folders of ``folder`` (``[folder]`` when it is a single model)."""
    spec = folder / ENSEMBLE_FILE
    if not spec.is_file():
        return [folder]
    try:
        members = json.loads(spec.read_text())["members"]
        paths = [(folder / str(m)).resolve() for m in members]
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"textseg-mini: {spec} is not a valid ensemble file ({exc}).",
                         'It must read {"members": [".", "members/<name>", ...]}.') from None
    if not paths:
        raise ModelError(f"textseg-mini: {spec} lists no members.", "List at least one model folder.")
    return paths


def combine(models: Sequence, term_embeddings: Sequence) -> tuple[nn.Module, nn.Module]:
    """``(image_model, query_head)`` for loaded members (``MiniModel``s)."""
    import numpy as np

    first = models[0].config
    for m, e in zip(models[1:], term_embeddings[1:]):
        if m.config.terms != first.terms or m.config.sat != first.sat:
            raise ModelError("textseg-mini ensemble members differ in term list or image configuration.",
                             "Train every member with the same TextSeg version and settings.")
        if not np.allclose(e, term_embeddings[0], atol=1e-2):
            raise ModelError("textseg-mini ensemble members carry different term embeddings.")
    if len(models) == 1:
        return models[0].sat, models[0].query
    return (EnsembleSAT([m.sat for m in models], int(first.sat["query_dim"])),
            EnsembleQueryHead([m.query for m in models]))
