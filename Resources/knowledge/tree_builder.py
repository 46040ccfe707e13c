"""Merging logic behind ``build_tree.py``: sources -> coded concepts -> searchable names.

A concept is keyed by its codes (type, type modifier, anatomic region, region modifier), so
the same structure met in several sources becomes one node carrying every source's names.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from TextSegLib.knowledge.text import normalize

GA = "Segmentation category and type - 3D Slicer General Anatomy list"
DM = "Segmentation category and type - DICOM master list"
ANAT = "Anatomic codes - DICOM master list"
LOCAL = "99TEXTSEG"  # private coding scheme for structures no public code list defines
LEFT = ("SCT", "7771000", "Left")
RIGHT = ("SCT", "24028007", "Right")
BILATERAL = ("SCT", "51440002", "Right and left")
ANATOMICAL = ("SCT", "123037004", "Anatomical Structure")
ALTERED = ("SCT", "49755003", "Morphologically Altered Structure")
SIDE_FORMS = {"7771000": ("Left", "L", "Lt"), "24028007": ("Right", "R", "Rt")}
ORDINALS = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
            "tenth", "eleventh", "twelfth"]
ROMAN = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI", "XII"]
GROUP_REGION = {7152: "thorax", 7153: "brain", 7154: "abdomen", 7155: "thorax", 7156: "vessels",
                7160: "pelvis", 7167: "nerves", 7170: "abdomen", 7159: "lesions", 7166: "tissues"}
GROUP_CATEGORY = {7157: "Physical object", 7158: "Physical object", 7159: ALTERED[2],
                  7168: ALTERED[2], 7169: ALTERED[2], 7166: "Tissue"}
# Ordered keyword rules: first region whose words occur in a normalised name wins (a_b: the phrase "a b").
REGION_WORDS = [
    # organ parts named with a generic brain word (tract, septum, cortex, lobule) come first
    ("thorax", "outflow inflow interatrial interventricular pulmonary_lobule"),
    ("abdomen", "renal_cortex renal_medulla adrenal_cortex"),
    ("spine", "vertebra vertebrae vertebral spine spinal sacrum sacral coccyx intervertebral disc"),
    ("brain", "brain cerebral cerebellum cerebellar gyrus sulcus lobule cortex thalamus "
              "hippocampus amygdala putamen caudate pallidus nucleus brainstem pons medulla midbrain "
              "corpus_callosum fornix insula hypothalamus cingulate cistern white_matter gray_matter "
              "fasciculus peduncle tract lemniscus striatum claustrum habenula colliculus pineal "
              "septum_pellucidum choroid_plexus telencephalon diencephalon accumbens "
              "temporal_lobe lateral_ventricle"),
    ("head and neck", "skull eye eyeball orbit lens optic ear cochlea tympanic nasal nose "
                      "sinus oral mouth tongue tooth teeth lip palate pharynx larynx glottis parotid "
                      "submandibular thyroid mandible maxilla zygoma temporal_bone mastoid "
                      "lacrimal cheek buccal trachea carotid jugular hyoid tonsil pituitary chiasm "
                      "ethmoid sphenoid vomer palatine frontal_bone parietal_bone occipital_bone "
                      "temporalis eustachian"),
    ("thorax", "thorax thoracic chest lung pulmonary bronchus bronchi heart cardiac atrium "
               "myocardium pericardium pericardial mediastinum pleura pleural rib costal sternum "
               "esophagus breast thymus coronary mitral tricuspid aortic valve diaphragm"),
    ("abdomen", "abdomen abdominal liver hepatic couinaud gallbladder bile biliary pancreas spleen "
                "splenic kidney renal adrenal stomach gastric duodenum jejunum ileum intestine bowel "
                "colon cecum appendix omentum peritoneum peritoneal retroperitoneal portal mesenteric "
                "celiac"),
    ("pelvis", "pelvis pelvic bladder prostate rectum rectal uterus cervix ovary vagina testis "
               "seminal hip iliac gluteus gluteal femoral_head acetabulum pubis pubic ischium ilium "
               "urethra anus sacroiliac"),
    ("upper limb", "arm humerus radius ulna hand wrist finger thumb elbow shoulder scapula clavicle "
                   "forearm carpal metacarpal deltoid biceps triceps axilla axillary brachial "
                   "scaphoid lunate glenoid acromion coracoid olecranon humeral upper_limb"),
    ("lower limb", "leg femur tibia fibula knee ankle foot toe thigh patella calf tarsal metatarsal "
                   "quadriceps hamstring popliteal meniscus "
                   "talus navicular calcaneus trochanter achilles "
                   "femoral_neck femoral_nerve lower_limb"),
    ("vessels", "artery arteries vein veins aorta vena vessel vascular arterial venous"),
]


#: SNOMED CT semantic tags of codes that are never a segmentable structure or finding
NOT_ANATOMY = re.compile(r"\((environment|procedure|qualifier value|observable entity|physical object|organism|"
                         r"substance|situation|attribute|regime/therapy|occupation|person|record artifact|"
                         r"staging scale|specimen|product)\)$")


def local_code(name: str) -> tuple[str, str, str]:
    """A stable private code (``99TEXTSEG``) for a structure without a public code."""
    return (LOCAL, "T" + hashlib.sha1(normalize(name).encode()).hexdigest()[:12], name)


def code_str(code) -> str:
    return "^".join(code) if code else "^^"


def clean_meaning(m: str) -> str:
    m = re.sub(r"\s*\((body structure|morphologic abnormality|disorder)\)$", "", m)
    return re.sub(r"^(Structure of|Bone structure of) ", "", re.sub(r" structure$", "", m)).strip()


def meaning_keys(text: str) -> list[str]:
    """Normalised keys a code meaning (or a name) is matched under: as written, without
    "structure of"/"entire"/"the", and "X of Y" read as "Y X" ("Head of femur" = "femur head")."""
    key = normalize(clean_meaning(text))
    key = re.sub(r"^(entire|the) ", "", key)
    key = " ".join(w for w in key.split() if w != "the")
    out = [key] if key else []
    m = re.fullmatch(r"(.+?) of ([^()]+)", key)
    if m and " of " not in m.group(2):
        out.append(f"{m.group(2)} {m.group(1)}")
    return out


def plural(word: str) -> str | None:
    if len(word) < 4 or not word.isalpha() or word.endswith(("s", "x", "us", "um")):
        return None
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + ("es" if word.endswith(("ch", "sh")) else "s")


class TreeBuilder:
    def __init__(self) -> None:
        self.concepts: dict[tuple, dict] = {}
        self.by_name: dict[str, list[tuple]] = {}
        self.meaning_code: dict[str, tuple[str, str, str]] = {}
        self.code_synonyms: dict[str, str] = {}
        self.code_origin: dict[tuple[str, str], str] = {}  # (scheme, value) -> source tag
        self.categories: dict[str, tuple[str, str, str]] = {}
        self.warnings: list[str] = []

    # ---- core -----------------------------------------------------------------------------
    def key(self, type_, mod=None, reg=None, regmod=None) -> tuple:
        return (type_[0], type_[1], mod[1] if mod else "", reg[1] if reg else "", regmod[1] if regmod else "")

    def get(self, type_, mod=None, reg=None, regmod=None, *, cat=None, name=None, ctx=DM,
            source="", color=None) -> dict:
        k = self.key(type_, mod, reg, regmod)
        c = self.concepts.get(k)
        if c is None:
            if name is None:
                side = (regmod or mod)
                base = reg[2] + " " + type_[2].lower() if reg else self._side_base_name(type_) if side else type_[2]
                name = f"{side[2]} {base[0].lower() + base[1:]}" if side else base
            c = {"key": k, "type": tuple(type_), "mod": tuple(mod) if mod else None,
                 "reg": tuple(reg) if reg else None, "regmod": tuple(regmod) if regmod else None,
                 "cat": tuple(cat or ANATOMICAL), "ctx": ctx, "name": name, "names": {},
                 "color": None, "region": None, "parent": None, "modalities": set(),
                 "sat": {}, "ts": set(), "sources": set(), "groups": set()}
            self.concepts[k] = c
            self.add_name(c, name, 0)
            if (mod or regmod) and not (mod and regmod):
                base = self.get(type_, None, reg, None, cat=cat, ctx=ctx, source=source)
                c["parent"] = base["key"]
        elif not (mod or reg or regmod):
            self.add_name(c, clean_meaning(type_[2]), 1)  # another source's meaning for the code
        if name is not None and name not in c["names"]:
            self.add_name(c, name, 1)
        if source:
            c["sources"].add(source)
        if color and not c["color"]:
            c["color"] = [int(v) for v in color]
        return c

    def _side_base_name(self, type_) -> str:
        """Structure name a lateral node is named from: the code meaning, except that a Title
        Case or "Entire ..." meaning gives way to the base concept's plain name."""
        m = re.sub(r"^Entire ", "", type_[2])
        words = [w for w in m.split() if w.isalpha() and w not in ("of", "and", "the")]
        if m == type_[2] and not (len(words) > 1 and all(w[0].isupper() for w in words)):
            return m
        plain = self.concepts.get(self.key(type_))
        if plain is not None and plain["name"][1:] == plain["name"][1:].lower():
            return plain["name"]
        return m[:1] + m[1:].lower()

    def add_name(self, c: dict, name: str, kind: int) -> None:
        name = name.strip()
        if not name or len(name) > 120:
            return
        if name not in c["names"] or c["names"][name] > kind:
            c["names"][name] = kind
        lst = self.by_name.setdefault(normalize(name), [])
        if c["key"] not in lst:
            lst.append(c["key"])

    def find(self, name: str, *, plain: bool = True) -> dict | None:
        """Concept with this (normalised) name; ``plain`` skips lateral and lesion-in-organ nodes."""
        for k in self.by_name.get(normalize(name), []):
            c = self.concepts[k]
            if not plain or not (c["mod"] or c["reg"]):
                return c
        return None

    def code_for(self, meaning: str):
        """The public code of a structure name: a concept's code, else a code meaning of the
        offline code lists matched by :func:`meaning_keys`, else a reviewed synonym
        (``code_synonyms.tsv``); ``None`` when no offline list defines it."""
        c = self.find(meaning)
        if c is not None:
            return c["type"]
        keys = meaning_keys(meaning)
        for k in keys:
            c = self.find(k)
            if c is not None:
                return c["type"]
        for k in keys:
            if k in self.meaning_code:
                return self.meaning_code[k]
        target = self.code_synonyms.get(normalize(meaning))
        return self.code_for(target) if target else None

    def index_code(self, meaning: str, code: tuple[str, str, str], origin: str) -> None:
        """Make ``code`` findable by its meaning (first source wins, except over a meaning
        that still carries a parenthesised qualifier); ``origin`` tags the list it came from."""
        self.code_origin.setdefault(code[:2], origin)
        for k in meaning_keys(meaning):
            cur = self.meaning_code.get(k)
            if cur is None or ("(" in cur[2] and "(" not in code[2] and cur[0] == code[0]):
                self.meaning_code[k] = code

    def load_code_synonyms(self, path: Path) -> None:
        """Reviewed name -> code-meaning pairs; each row is checked against the offline code
        lists (the meaning must give the code written in the row)."""
        for line in path.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            name, meaning, code, *_note = line.split("\t")
            got = self.code_for(meaning)
            if got is None or "^".join(got[:2]) != code:
                raise SystemExit(f"code_synonyms.tsv: {meaning!r} gives {got}, not {code} (row {name!r})")
            self.code_synonyms[normalize(name)] = meaning

    # ---- sources --------------------------------------------------------------------------
    def load_slicer(self, doc: dict, which: str) -> None:
        ctx = GA if which == "GA" else DM
        for cat in doc["SegmentationCodes"]["Category"]:
            catc = (cat["CodingSchemeDesignator"], cat["CodeValue"], cat["CodeMeaning"])
            self.categories.setdefault(cat["CodeMeaning"], catc)
            for t in cat.get("Type", []):
                tc = (t["CodingSchemeDesignator"], t["CodeValue"], t["CodeMeaning"])
                c = self.get(tc, cat=catc, ctx=ctx, source="slicer-" + which.lower(),
                             color=t.get("recommendedDisplayRGBValue"))
                if t.get("3dSlicerLabel"):  # Slicer's own label decides ambiguous names
                    self.add_name(c, t["3dSlicerLabel"], 0)
                c["groups"].add(t.get("cid", ""))
                if t.get("paired") == "Y":
                    c["paired"] = True
                for m in t.get("Modifier", []):
                    mc = (m["CodingSchemeDesignator"], m["CodeValue"], m["CodeMeaning"])
                    lc = self.get(tc, mc, cat=catc, ctx=ctx, source="slicer-" + which.lower(),
                                  color=m.get("recommendedDisplayRGBValue") or t.get("recommendedDisplayRGBValue"))
                    if m.get("3dSlicerLabel"):
                        self.add_name(lc, m["3dSlicerLabel"], 0)

    def load_anatomic_regions(self, doc: dict) -> None:
        for r in doc["AnatomicCodes"]["AnatomicRegion"]:
            if r["CodingSchemeDesignator"] == "SCT":
                self.index_code(r["CodeMeaning"], ("SCT", r["CodeValue"], r["CodeMeaning"]), "slicer-regions")

    def load_pydicom(self) -> None:
        from pydicom.sr._cid_dict import cid_concepts
        from pydicom.sr._concepts_dict import concepts

        not_anatomy = set()  # codes one of whose meanings is a ward, procedure, device, ...
        for scheme in ("SCT", "FMA", "NEU"):
            for entries in concepts[scheme].values():
                for value, (meaning, _cids) in entries.items():
                    if NOT_ANATOMY.search(meaning):
                        not_anatomy.add((scheme, value))
        for scheme in ("SCT", "FMA", "NEU"):  # SNOMED CT first; FMA and NeuroNames fill gaps
            for entries in concepts[scheme].values():
                for value, (meaning, _cids) in entries.items():
                    if (scheme, value) not in not_anatomy:
                        self.index_code(meaning, (scheme, value, clean_meaning(meaning)), "dicom-code")
        groups = [7151, 7192, 4, 4031] + list(range(7152, 7171))
        for cid in groups:
            if cid in (7157, 7158, 7161, 7162, 7165):  # devices, artefacts, algorithms: not prompts
                continue
            for scheme, keywords in cid_concepts.get(cid, {}).items():
                for kw in keywords:
                    for value, (meaning, cids) in concepts[scheme][kw].items():
                        if any(g in cids for g in (7157, 7158, 7162, 7165)) and cid == 7151:
                            continue
                        cat_meaning = next((GROUP_CATEGORY[g] for g in cids if g in GROUP_CATEGORY), None)
                        cat = self.categories.get(cat_meaning or "Anatomical Structure", ANATOMICAL)
                        c = self.get((scheme, value, clean_meaning(meaning)), cat=cat, source="dicom-cid")
                        c["groups"].update(str(g) for g in cids)
                        if clean_meaning(meaning) != meaning and len(meaning) < 80:
                            self.add_name(c, meaning, 1)

    #: TotalSegmentator 2.18.0 rows whose codes contradict their class name (mapping errata):
    #: the class name is attached to the concept named here instead of the row's code.
    TS_ERRATA = {"gluteus_minimus": "Gluteus minius muscle"}

    def load_totalsegmentator(self, rows: list[dict]) -> None:
        def code(row, prefix):
            v = row.get(prefix + ".CodeValue", "")
            return (row[prefix + ".CodingSchemeDesignator"], v, row[prefix + ".CodeMeaning"]) if v else None

        errata = []
        for row in rows:
            if row["Structure"] in self.TS_ERRATA:
                errata.append(row["Structure"])
                continue
            cat = code(row, "SegmentedPropertyCategoryCodeSequence")
            tc = code(row, "SegmentedPropertyTypeCodeSequence")
            mod = code(row, "SegmentedPropertyTypeModifierCodeSequence")
            reg = code(row, "AnatomicRegionSequence")
            regmod = code(row, "AnatomicRegionModifierSequence")
            color = [int(x) for x in row["DicomRGBColor"].split(",")] if row.get("DicomRGBColor") else None
            ctx = DM
            base = self.concepts.get(self.key(tc))
            if base is not None:
                ctx, cat = base["ctx"], base["cat"]
            c = self.get(tc, mod, reg, regmod, cat=cat, ctx=ctx, source="totalsegmentator", color=color)
            for x in (tc, reg):
                if x:
                    self.index_code(x[2], x, "totalsegmentator")
            cls = row["Structure"]
            c["ts"].add(cls)
            self.add_name(c, cls.replace("_", " "), 1)
        for cls in errata:
            c = self.find(self.TS_ERRATA[cls])
            if c is not None:
                c["ts"].add(cls)
                self.add_name(c, cls.replace("_", " "), 1)

    def add_numbered_structures(self) -> None:
        spine = {"C": ("cervical", "Cervical spine", 7), "T": ("thoracic", "Thoracic spine", 12),
                 "L": ("lumbar", "Lumbar spine", 5)}
        for letter, (word, parent_name, n) in spine.items():
            parent = self.find(parent_name)
            for i in range(1, n + 1):
                lab = f"{letter}{i}"
                tc = self.code_for(f"{lab} vertebra") or local_code(f"{lab} vertebra")
                c = self.get(tc, name=f"{lab} vertebra", source="rule")
                c["parent"] = parent["key"] if parent else None
                c["region"] = "spine"
                for s in (lab, f"vertebra {lab}", f"vertebrae {lab}", f"{word} vertebra {i}",
                          f"{ORDINALS[i - 1]} {word} vertebra", f"{word} vertebrae {i} ({lab.lower()})"):
                    self.add_name(c, s, 2 if s == lab else 1)
        for i, lab in enumerate(["S1", "L6"]):
            c = self.get(self.code_for(f"{lab} vertebra") or local_code(f"{lab} vertebra"),
                         name=f"{lab} vertebra", source="rule")
            c["region"] = "spine"
            word = "sacral" if lab == "S1" else "lumbar"
            for s in (lab, f"vertebra {lab}", f"{word} vertebrae {lab[1]} ({lab.lower()})", f"{word} vertebra {lab[1]}"):
                self.add_name(c, s, 1)
        # intervertebral discs: SNOMED names the disc after the vertebra above it
        order = [f"C{i}" for i in range(2, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] + ["S1"]
        words = {"C": "cervical", "T": "thoracic", "L": "lumbar", "S": "sacral"}
        for a, b in zip(order, order[1:]):
            wa = words[a[0]]
            meaning = (f"Intervertebral disc structure of {ORDINALS[int(a[1:]) - 1]} {wa} vertebra"
                       if a != "L5" else "Intervertebral disc of L5 and S1")
            tc = self.code_for(meaning) or local_code(f"{a}-{b} intervertebral disc")
            c = self.get(tc, name=f"{a}-{b} intervertebral disc", source="rule")
            c["region"] = "spine"
            full_b = "sacrum" if b == "S1" else f"{words[b[0]]} vertebrae {b[1:]} ({b.lower()})"
            for s in (f"{a}/{b} disc", f"{a}-{b} disc", f"{a}{b} disc", f"disc {a}-{b}",
                      f"intervertebral disc between {wa} vertebrae {a[1:]} ({a.lower()}) and {full_b}"):
                self.add_name(c, s, 1)
        for i in range(12):
            rib = self.code_for(f"{ORDINALS[i]} rib")
            if rib is None:
                continue
            c = self.get(rib, source="rule")
            for s in (f"rib {i + 1}", f"{ORDINALS[i]} rib", f"{i + 1}th rib" if i > 2 else f"{i + 1}{['st', 'nd', 'rd'][i]} rib"):
                self.add_name(c, s, 1)
            c["paired"] = True
            for side in (LEFT, RIGHT):
                self.get(rib, side, source="rule")
        liver = self.find("Liver")
        sat_names = {1: "caudate lobe", 2: "left lateral superior segment of liver",
                     3: "left lateral inferior segment of liver", 4: "left medial segment of liver",
                     5: "right anterior inferior segment of liver", 6: "right posterior inferior segment of liver",
                     7: "right posterior superior segment of liver", 8: "right anterior superior segment of liver"}
        for i in range(1, 9):
            c = self.find(f"Couinaud hepatic segment {ROMAN[i - 1]}")
            if c is None:
                continue
            c["parent"] = liver["key"] if liver else None
            self._segment_names(c, str(i), ROMAN[i - 1])
            self.add_name(c, sat_names[i], 1)
            if i == 4:
                for sub in ("a", "b"):
                    sc = self.get(local_code(f"Couinaud hepatic segment IV{sub}"),
                                  name=f"Couinaud hepatic segment IV{sub}", source="rule")
                    sc["parent"] = c["key"]
                    self._segment_names(sc, "4" + sub, "IV" + sub)

    def _segment_names(self, c: dict, num: str, roman: str) -> None:
        for s in (f"liver segment {num}", f"hepatic segment {num}", f"segment {num}", f"Couinaud {num}",
                  f"Couinaud segment {num}", f"liver segment {roman}", f"segment {roman}",
                  f"Couinaud segment {roman}", f"liver S{num}", f"S{num} liver"):
            self.add_name(c, s, 1)

    def add_extra_structures(self, path: Path) -> None:
        """Common structures from a hand list, coded from pydicom's SNOMED CT dictionary."""
        for line in path.read_text().splitlines():
            name, _, kind = line.strip().partition("\t")
            if not name or name.startswith("#") or self.find(name) is not None:
                continue
            cat = self.categories.get(ALTERED[2], ALTERED) if kind == "lesion" else ANATOMICAL
            code = self.code_for(name)
            if code is None:  # no public code available offline: private code, flagged as such
                self.get(local_code(name), name=name, cat=cat, source="hand-list")
            else:
                self.get(code, name=name, cat=cat, source="dicom-code")

    def load_hand_synonyms(self, path: Path, final: bool = False) -> None:
        """Attach hand-written names; the ``final`` pass creates concepts for targets that
        have a DICOM code but no node yet, and reports the rest."""
        for line in path.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            target, kind, names = line.split("\t")
            c = self.find(target) or self.find(target, plain=False)
            if c is None and self.code_for(target):
                c = self.get(self.code_for(target), name=target, source="dicom-code")
            if c is None:
                if final:
                    self.warnings.append(f"synonyms.tsv: no concept or code for {target!r}")
                continue
            for n in names.split("|"):
                self.add_name(c, n, 2 if kind == "abbr" else 1)

    def add_lesions(self, path: Path) -> None:
        lesions, organs = [], []
        for line in path.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            kind, meaning, words = line.split("\t")
            (lesions if kind == "lesion" else organs).append((meaning, words.split("|")))
        cat = self.categories.get(ALTERED[2], ALTERED)
        for lmeaning, lwords in lesions:
            lc = self.code_for(lmeaning)
            if lc is None:
                self.warnings.append(f"lesions.tsv: no code for lesion {lmeaning!r}")
                continue
            for ometa, adjs in organs:
                organ = self.find(ometa)
                if organ is None:
                    self.warnings.append(f"lesions.tsv: no concept for organ {ometa!r}")
                    continue
                oname = organ["name"].lower()
                sides = [None] + ([LEFT, RIGHT] if organ.get("paired") and lwords[0] in ("tumor", "cyst", "mass", "nodule") else [])
                for side in sides:
                    pre = f"{SIDE_FORMS[side[1]][0].lower()} " if side else ""
                    c = self.get(lc, None, organ["type"], side, cat=cat,
                                 name=f"{pre}{oname} {lwords[0]}".capitalize(), source="rule")
                    c["parent"] = (self.get(organ["type"], side) if side else organ)["key"]
                    for w in lwords:
                        for s in (f"{pre}{oname} {w}", f"{w} of {pre}{oname}", *(f"{pre}{a} {w}" for a in adjs)):
                            self.add_name(c, s, 1)

    def add_coded_findings(self, path: Path) -> None:
        """Named findings of one structure ("myocardial scar"): the finding's code as the type
        and the structure's code as the anatomic region, both checked against the code lists."""
        cat = self.categories.get(ALTERED[2], ALTERED)
        for line in path.read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            name, meaning, code, structure, _note = line.split("\t")
            lc, organ = self.code_for(meaning), self.find(structure)
            if lc is None or "^".join(lc[:2]) != code or organ is None:
                raise SystemExit(f"lesion_codes.tsv: {meaning!r} gives {lc}, structure {structure!r} "
                                 f"{'found' if organ else 'not found'} (row {name!r})")
            c = self.get(lc, None, organ["type"], None, cat=cat, name=name, source="dicom-code")
            c["parent"] = organ["key"]

    def load_covale(self, reg: dict) -> None:
        brain = self.find("Brain")
        groups: dict[str, list[dict]] = {}
        for r in reg["regions"].values():
            groups.setdefault(r["canonical_name"].strip().lower(), []).append(r)
        for canon, rs in sorted(groups.items()):
            c = self.find(canon)
            if c is None:
                code = self.code_for(canon)
                c = self.get(code or local_code(canon.capitalize()), name=canon.capitalize(),
                             source="covale")
                c["modalities"].add("mri")
            c["sources"].add("covale")
            c["region"] = c["region"] or ("vessels" if rs[0]["structure_type"] == "vascular" else "brain")
            parent = rs[0].get("parent_anatomy")
            pc = self.find(parent) if parent else None
            if c["parent"] is None and pc is not None and pc is not c:
                c["parent"] = pc["key"]
            elif c["parent"] is None and brain is not None and c is not brain:
                c["parent"] = brain["key"]
            for r in rs:
                side = {"left": LEFT, "right": RIGHT}.get(r["laterality"])
                target = self.get(c["type"], side, cat=c["cat"], ctx=c["ctx"], source="covale") if side else c
                for s in [r["display_name"]] + r.get("synonyms", []):
                    if "_" in s or "ctx-" in s or s.lower().startswith(("left ", "right ")) and not side:
                        continue
                    if side and not s.lower().startswith(("left ", "right ")) and not s.lower().endswith((" left", " right")):
                        self.add_name(c, s, 1)
                    else:
                        self.add_name(target, s, 1)

    def load_sat(self, doc: dict, alias_path: Path) -> None:
        aliases = {}
        for line in alias_path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                a, b = line.split("\t")
                aliases[a.strip()] = b.strip()
        for full in doc["all"]:
            modality, term = full.split("_", 1)
            c = self._sat_concept(term, aliases)
            c["sat"].setdefault(modality, set()).add(term)
            c["modalities"].add(modality)
            c["sources"].add("sat")
            self.add_name(c, term, 1)

    def _sat_concept(self, term: str, aliases: dict) -> dict:
        target = aliases.get(term, term)
        c = self.find(target) or self.find(target, plain=False)
        if c is not None:
            return c
        for side, word in ((LEFT, "left "), (RIGHT, "right ")):
            if f" of {word}" in term:  # "head of left femur" -> left "head of femur"
                term = word + term.replace(f" of {word}", " of ")
            if term.startswith(word):
                base = self._sat_concept(term[len(word):], aliases)
                if base["reg"]:
                    return self.get(base["type"], None, base["reg"], side, cat=base["cat"], ctx=base["ctx"], source="sat")
                return self.get(base["type"], side, cat=base["cat"], ctx=base["ctx"], source="sat")
        code = self.code_for(target)
        if code is not None:
            return self.get(code, name=target.capitalize(), source="sat")
        lesion = re.search(r"tumou?r|cancer|lesion|edema|hemorrhage|infection|nodule|cyst|effusion|"
                           r"embolism|scar|stroke|hyperintensit|schwannoma|necrotic", term)
        cat = self.categories.get(ALTERED[2], ALTERED) if lesion else ANATOMICAL
        return self.get(local_code(target.capitalize()), name=target.capitalize(), cat=cat, source="sat")
