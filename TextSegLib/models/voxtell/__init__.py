"""VoxTell (MIC-DKFZ, free-text 3D segmentation) as a TextSeg model, on the ``voxtell`` package.

A VoxTell model folder holds (as the release on the Hugging Face Hub)::

    plans.json                   network description (nnU-Net plans)
    fold_0/checkpoint_final.pth  weights (loaded with weights_only=True, see .checkpoint)
    text_embeddings.npz          embedding bank (optional, the published prompts)
    text_encoder/                Qwen3-Embedding-4B (optional: only for prompts outside the bank)

Public API::

    available() -> bool                     # the voxtell package can be imported
    is_voxtell_folder(folder) -> bool
    load_voxtell_engine(folder, device="auto", name="VoxTell") -> VoxTellEngine
    folder_vocabulary(folder) -> list[str]  # the bank's prompts, without loading weights

Licence of the released weights: CC-BY-NC-SA-4.0 (:data:`LICENCE_LINE`).
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from ...errors import ModelError

LICENCE_LINE = ("VoxTell weights: CC-BY-NC-SA-4.0, non-commercial use only, share-alike "
                "(code: Apache-2.0); not a medical device.")
INSTALL_HINT = "Install it with: pip install 'textseg[voxtell]' (keeps your torch; see docs/models.md)."


def available() -> bool:
    """Whether the ``voxtell`` package is installed (nothing is imported)."""
    return importlib.util.find_spec("voxtell") is not None


def require() -> None:
    if not available():
        raise ModelError("VoxTell needs the voxtell package, which is not installed.", INSTALL_HINT)


def is_voxtell_folder(folder: Path) -> bool:
    from .checkpoint import CHECKPOINT, PLANS

    return (Path(folder) / PLANS).is_file() and (Path(folder) / CHECKPOINT).is_file()


def model_version(folder: Path) -> str:
    """An identity of the weights for the prompt cache: plans.json's hash and the checkpoint's size."""
    from .checkpoint import CHECKPOINT, PLANS

    h = hashlib.sha256((Path(folder) / PLANS).read_bytes())
    ck = Path(folder) / CHECKPOINT
    h.update(str(ck.stat().st_size if ck.is_file() else 0).encode())
    return h.hexdigest()[:16]


def folder_vocabulary(folder: Path) -> list[str]:
    """The bank's prompt strings (empty when the folder has no bank)."""
    from .text import bank_file, bank_labels

    p = bank_file(Path(folder))
    return sorted(set(bank_labels(p))) if p else []


def load_voxtell_engine(folder: Path, device: str = "auto", name: str = "VoxTell",
                        encoder_folder: Path | None = None):
    """A :class:`~.engine.VoxTellEngine` for a model folder; touches no network."""
    require()
    from ...engine.device import choose_device
    from ..catalog import textseg_home
    from .checkpoint import load_network
    from .engine import VoxTellEngine
    from .text import CACHE_DIR, ENCODER_DIR, PromptEmbeddings, QwenEncoder, bank_file, load_bank

    folder = Path(folder)
    net, patch = load_network(folder)
    bank_path = bank_file(folder)
    bank = load_bank(bank_path) if bank_path else {}
    dev = choose_device(device)
    if dev.type == "mps":
        import torch

        dev = torch.device("cpu")
    encoder = QwenEncoder.shared(Path(encoder_folder) if encoder_folder else folder / ENCODER_DIR, dev)
    cache = folder / CACHE_DIR
    try:
        cache.mkdir(exist_ok=True)
    except OSError:  # a read-only model folder
        cache = textseg_home() / "cache" / "voxtell"
    emb = PromptEmbeddings(bank, encoder, model_version(folder), cache)
    return VoxTellEngine(net, patch, emb, name=name, device=str(dev), folder=folder)
