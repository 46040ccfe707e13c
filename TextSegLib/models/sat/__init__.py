"""SAT (text-prompted 3-D segmentation), an independent PyTorch implementation.

Public API::

    build_sat(variant="nano", **overrides) -> SAT   # model(image, queries) -> logits
    model.encode_image(image) -> SATFeatures        # backbone once per tile ...
    model.decode(features, queries) -> logits       # ... then any number of prompts
    SATConfig                                       # sizes; see config.py for safe fields
    load_sat_checkpoint(model, path_or_state_dict) -> LoadReport
    build_sat_text_encoder() -> SATTextEncoder      # encode(texts, modality) -> (N, 768)
    load_text_encoder_checkpoint(encoder, path_or_state_dict) -> LoadReport
    QueryTable(encoder_factory, vocabulary, cache_path, checkpoint_path=...)
"""
from .checkpoint import LoadReport, file_sha256, load_sat_checkpoint, load_state_dict_file
from .config import PRESETS, SATConfig, make_config
from .model import SAT, SATFeatures, build_sat
from .query_table import QueryTable, load_sat_vocabulary, make_sat_query_table
from .text import (MODALITY_INDEX, SATTextEncoder, build_sat_text_encoder, load_text_encoder_checkpoint,
                   normalize_modality)

__all__ = [
    "LoadReport", "MODALITY_INDEX", "PRESETS", "QueryTable", "SAT", "SATConfig", "SATFeatures", "SATTextEncoder",
    "build_sat", "build_sat_text_encoder", "file_sha256", "load_sat_checkpoint", "load_sat_vocabulary",
    "load_state_dict_file", "load_text_encoder_checkpoint", "make_config", "make_sat_query_table",
    "normalize_modality",
]
