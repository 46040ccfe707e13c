"""A small but real VoxTell model folder, made at test time (no download, nothing stored).

``plans.json`` describes a 6-stage residual encoder whose stage-4 features are 12³ on a 48³
patch (VoxTell's prompt decoder fixes that grid and the channel widths); the weights are
torch's default initialisation under a fixed seed, saved as a real nnU-Net-style checkpoint
in float16 (the 2048-wide transformer VoxTellPredictor fixes keeps the network near 360 M
parameters); the bank holds random float16 vectors for a few prompts.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PATCH = 48
BANK_PROMPTS = ("liver", "spleen", "left kidney", "right kidney", "kidney", "aorta")


def release_layout(folder: Path, labels=("liver", "left kidney")) -> Path:
    """A folder shaped like the VoxTell release, with a bank of ``labels`` and no real weights
    (for catalog and licence tests: nothing here is loaded as a network)."""
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text("{}")
    (folder / "fold_0" / "checkpoint_final.pth").write_bytes(b"x")
    np.savez(folder / "text_embeddings.npz", labels=np.array(labels),
             embeddings=np.zeros((len(labels), 2560), np.float16))
    return folder


def plans(patch: int = PATCH) -> dict:
    return {"dataset_name": "TextSegTest", "plans_name": "nnUNetResEncUNetPlans",
            "configurations": {"3d_fullres": {"patch_size": [patch] * 3, "spacing": [1.0, 1.0, 1.0], "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
                "arch_kwargs": {
                    "n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320],
                    "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[3, 3, 3]] * 6,
                    "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [1, 1, 1], [1, 1, 1], [1, 1, 1]],
                    "n_blocks_per_stage": [1, 1, 1, 1, 1, 1], "n_conv_per_stage_decoder": [1, 1, 1, 1, 1],
                    "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                    "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}}}


def make_model_folder(folder: Path, seed: int = 0, bank_prompts=BANK_PROMPTS) -> Path:
    """Write plans.json, fold_0/checkpoint_final.pth and text_embeddings.npz into ``folder``."""
    import torch

    from TextSegLib.models.voxtell.checkpoint import build_network

    folder = Path(folder)
    (folder / "fold_0").mkdir(parents=True, exist_ok=True)
    (folder / "plans.json").write_text(json.dumps(plans()), encoding="utf-8")
    torch.manual_seed(seed)
    net, _ = build_network(folder)
    sd = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    torch.save({"network_weights": sd, "current_epoch": 1, "trainer_name": "nnUNetTrainer",
                "inference_allowed_mirroring_axes": (0, 1, 2),
                "logging": {"mean_fg_dice": [np.float64(0.5)], "epoch_end_timestamps": [1.0]}},
               folder / "fold_0" / "checkpoint_final.pth")
    del net, sd
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((len(bank_prompts), 2560)).astype(np.float16)
    np.savez(folder / "text_embeddings.npz", labels=np.array(bank_prompts), embeddings=emb)
    return folder


def ct_like(shape=(40, 44, 36), seed: int = 1) -> np.ndarray:
    """A CT-like array: air outside, a soft-tissue body, a brighter 'organ' and noise."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    a = np.full(shape, -1000.0, dtype=np.float32)
    body = i ** 2 / 0.8 + j ** 2 / 0.6 < 1
    a[body] = 40.0
    a[body & ((i - 0.3) ** 2 + (j + 0.1) ** 2 + (k - 0.2) ** 2 < 0.12)] = 160.0
    a += rng.normal(0, 15, shape).astype(np.float32)
    a[:3] = 0.0  # outside the reconstruction field: VoxTell crops to the non-zero box
    return a


def make_tiny_qwen(folder):
    """A 1-layer Qwen3 with VoxTell's 2560-d output and a word-level tokenizer, saved locally."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3Model

    words = "instruct given an anatomical term query retrieve the precise entity and location it represents : " \
            "liver spleen kidney left right lesion hepatic tumour in segment".split()
    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    import torch

    torch.manual_seed(3)
    cfg = Qwen3Config(vocab_size=len(vocab), hidden_size=2560, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=32, max_position_embeddings=256)
    Qwen3Model(cfg).save_pretrained(str(folder))
    fast.save_pretrained(str(folder))
    return folder
