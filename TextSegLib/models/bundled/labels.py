"""Label names of the training sources → textseg-mini concept names, and
the prompt paraphrases sampled during training.

Concept names are plain preferred anatomical names ("left kidney",
"aorta") that the knowledge tree resolves. Class indices of TotalSegmentator
outputs come from the ``class_map`` of ``totalsegmentator/map_to_binary.py``
(TotalSegmentator 2.18.0, Apache-2.0); only the names are used here.
"""
from __future__ import annotations

import random
import re

#: TotalSegmentator 'total' / 'total_mr' structure name → concept name.
#: Structures sharing a concept are merged (lobes → lung, vertebrae → spine).
TS_TO_CONCEPT: dict[str, str] = {
    "spleen": "spleen", "kidney_right": "right kidney", "kidney_left": "left kidney",
    "gallbladder": "gallbladder", "liver": "liver", "stomach": "stomach",
    "pancreas": "pancreas", "adrenal_gland_right": "right adrenal gland",
    "adrenal_gland_left": "left adrenal gland",
    "lung_upper_lobe_left": "left lung", "lung_lower_lobe_left": "left lung",
    "lung_upper_lobe_right": "right lung", "lung_middle_lobe_right": "right lung",
    "lung_lower_lobe_right": "right lung", "lung_left": "left lung", "lung_right": "right lung",
    "esophagus": "esophagus", "trachea": "trachea", "small_bowel": "small intestine",
    "duodenum": "duodenum", "colon": "colon", "urinary_bladder": "urinary bladder",
    "sacrum": "sacrum", "heart": "heart", "aorta": "aorta",
    "inferior_vena_cava": "inferior vena cava",
    "portal_vein_and_splenic_vein": "portal vein and splenic vein",
    "iliac_artery_left": "left common iliac artery", "iliac_artery_right": "right common iliac artery",
    "iliac_vena_left": "left common iliac vein", "iliac_vena_right": "right common iliac vein",
    "femur_left": "left femur", "femur_right": "right femur",
    "hip_left": "left hip bone", "hip_right": "right hip bone",
    "spinal_cord": "spinal cord",
    "gluteus_maximus_left": "left gluteus maximus", "gluteus_maximus_right": "right gluteus maximus",
    "autochthon_left": "left erector spinae", "autochthon_right": "right erector spinae",
    "iliopsoas_left": "left iliopsoas", "iliopsoas_right": "right iliopsoas",
    "humerus_left": "left humerus", "humerus_right": "right humerus",
    "scapula_left": "left scapula", "scapula_right": "right scapula",
    "sternum": "sternum", "costal_cartilages": "costal cartilage",
    "brain": "brain", "pulmonary_artery": "pulmonary artery",
}
#: Prefix rules for numbered structures (merged).
TS_PREFIX_TO_CONCEPT: tuple[tuple[str, str], ...] = (
    ("vertebrae_L", "lumbar spine"), ("vertebrae_T", "thoracic spine"),
    ("vertebrae_C", "cervical spine"), ("rib_", "ribs"),
)
#: Concepts that are unions of other concepts.
UNIONS: dict[str, tuple[str, ...]] = {
    "vertebral column": ("lumbar spine", "thoracic spine", "cervical spine"),
}


def ts_concept(name: str) -> str | None:
    """Concept for a TotalSegmentator structure name, or None if not trained."""
    if name in TS_TO_CONCEPT:
        return TS_TO_CONCEPT[name]
    if name == "vertebrae":  # total_mr: all vertebrae in one class
        return "vertebral column"
    for prefix, concept in TS_PREFIX_TO_CONCEPT:
        if name.startswith(prefix):
            return concept
    return None


#: Synonyms used as training prompts (besides the concept name itself).
SYNONYMS: dict[str, tuple[str, ...]] = {
    "liver": ("hepatic parenchyma", "hepar", "the liver", "liver organ"),
    "spleen": ("splenic parenchyma", "lien", "the spleen"),
    "kidney": ("renal parenchyma", "ren"),
    "lung": ("pulmonary parenchyma", "pulmo"),
    "aorta": ("aortic lumen", "the aorta", "abdominal aorta", "thoracic aorta", "aortic artery"),
    "stomach": ("gaster", "gastric body"),
    "gallbladder": ("gall bladder", "cholecyst"),
    "pancreas": ("pancreatic gland",),
    "adrenal gland": ("suprarenal gland",),
    "esophagus": ("oesophagus", "gullet"),
    "trachea": ("windpipe",),
    "small intestine": ("small bowel", "ileum and jejunum"),
    "colon": ("large bowel", "large intestine"),
    "urinary bladder": ("bladder",),
    "heart": ("cardiac silhouette", "myocardium and cardiac chambers"),
    "inferior vena cava": ("IVC", "vena cava inferior"),
    "portal vein and splenic vein": ("portal vein", "portosplenic vein"),
    "spinal cord": ("medulla spinalis",),
    "vertebral column": ("spine", "vertebrae", "spinal column"),
    "lumbar spine": ("lumbar vertebrae", "lumbar vertebral column"),
    "thoracic spine": ("thoracic vertebrae", "thoracic vertebral column"),
    "cervical spine": ("cervical vertebrae", "cervical vertebral column"),
    "ribs": ("rib cage", "costae"),
    "body": ("patient body", "body outline", "skin surface contour", "whole body"),
    "lung tumor": ("lung nodule", "lung mass", "pulmonary lesion", "lung lesion", "lung cancer"),
    "liver tumor": ("liver lesion", "hepatic tumor", "hepatic lesion", "liver metastasis"),
    "erector spinae": ("autochthonous back muscle", "paraspinal muscle"),
    "iliopsoas": ("iliopsoas muscle", "psoas"),
    "gluteus maximus": ("gluteus maximus muscle",),
    "hip bone": ("os coxae", "pelvic bone"),
    "femur": ("thigh bone",),
    "common iliac artery": ("iliac artery",),
    "common iliac vein": ("iliac vein",),
    "sternum": ("breastbone",),
    "pulmonary artery": ("pulmonary trunk",),
    "brachiocephalic trunk": ("innominate artery",),
    "celiac trunk": ("coeliac trunk", "celiac artery"),
    "superior mesenteric artery": ("SMA",),
}
_SIDE_FORMS = {
    "left": ("left {x}", "{x}, left", "lt {x}", "L {x}", "left-sided {x}", "the left {x}"),
    "right": ("right {x}", "{x}, right", "rt {x}", "R {x}", "right-sided {x}", "the right {x}"),
}


def split_side(concept: str) -> tuple[str, str]:
    """('left'|'right'|'', base) for a concept name."""
    m = re.match(r"^(left|right) (.+)$", concept)
    return (m.group(1), m.group(2)) if m else ("", concept)


def prompt_forms(concept: str) -> list[str]:
    """Every training prompt for ``concept`` (name, synonyms, laterality forms)."""
    side, base = split_side(concept)
    bases = [base, *SYNONYMS.get(base, ())]
    if not side:
        return list(dict.fromkeys([concept, *SYNONYMS.get(concept, ())]))
    forms = [f.format(x=b) for b in bases for f in _SIDE_FORMS[side]]
    return list(dict.fromkeys([concept, *forms]))


def sample_prompt(concept: str, rng: random.Random, p_canonical: float = 0.4) -> str:
    """The canonical name with probability ``p_canonical``, otherwise a paraphrase."""
    if rng.random() < p_canonical:
        return concept
    return rng.choice(prompt_forms(concept))
