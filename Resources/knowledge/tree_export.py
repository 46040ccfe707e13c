"""Second half of the build: regions, parents, colours, generated names and search indexes."""
from __future__ import annotations

import hashlib
import re

from TextSegLib.knowledge.text import normalize, trigrams
from tree_builder import ANAT, BILATERAL, GROUP_REGION, REGION_WORDS, SIDE_FORMS, LOCAL, code_str, plural

REGION_CONCEPT = {"abdomen": "Abdomen", "thorax": "Thorax", "head and neck": "Head and Neck", "brain": "Brain",
                  "spine": "Spine", "pelvis": "Pelvis", "upper limb": "Upper limb",
                  "lower limb": "Lower limb", "vessels": "Blood vessel", "lesions": "Lesion",
                  "tissues": "Tissue", "nerves": "Peripheral nervous system", "whole body": "Entire body",
                  "devices": "Physical object"}
REGION_COLOR = {"abdomen": (221, 130, 101), "thorax": (202, 164, 140), "head and neck": (150, 208, 243),
                "brain": (200, 200, 235), "spine": (241, 214, 145), "pelvis": (222, 154, 132),
                "upper limb": (253, 232, 158), "lower limb": (226, 202, 134), "vessels": (216, 101, 79),
                "lesions": (144, 238, 144), "tissues": (128, 174, 128), "nerves": (244, 214, 49),
                "whole body": (177, 122, 101), "devices": (240, 255, 30)}
MAX_TOP = 48


def _region_by_words(name: str) -> str | None:
    text = f" {normalize(name)} "
    for region, words in REGION_WORDS:
        for w in (p.replace("_", " ") for p in words.split()):
            if f" {w} " in text or (len(w) > 5 and f" {w}" in text):
                return region
    return None


def _base_key(c: dict) -> tuple:
    k = c["key"]
    if c["mod"]:
        return (k[0], k[1], "", k[3], k[4])
    return (k[0], k[1], k[2], k[3], "")


def finish(b) -> None:
    cs = b.concepts
    for r, n in REGION_CONCEPT.items():  # region nodes are the roots of their own region
        rc = b.find(n)
        if rc is not None:
            rc["region"], rc["parent"] = r, None
    order = sorted(cs.values(), key=lambda c: (bool(c["mod"] or c["regmod"]), bool(c["reg"])))
    for c in order:
        if c["region"]:
            continue
        base = cs.get(_base_key(c)) if (c["mod"] or c["regmod"]) else None
        organ = cs.get((c["reg"][0], c["reg"][1], "", "", "")) if c["reg"] else None
        cat = c["cat"][2].lower()
        region = (base or {}).get("region") or (organ or {}).get("region")
        if region is None and "altered" not in cat and _region_by_words(c["name"]) == "spine":
            region = "spine"  # vertebrae, discs, cord: before the DICOM groups (cord is in CNS)
        if region is None:
            region = next((GROUP_REGION[int(g)] for g in sorted(c["groups"]) if g.isdigit() and int(g) in GROUP_REGION), None)
        if region is None and "altered" not in cat:
            region = _region_by_words(c["name"]) or _region_by_words(" ".join(c["names"]))
        if region is None:
            region = ("lesions" if "altered" in cat else "tissues" if cat in ("tissue", "body substance")
                      else "devices" if "object" in cat else "whole body")
        c["region"] = region
    region_keys = {r: (b.find(n) or {}).get("key") for r, n in REGION_CONCEPT.items()}
    for c in cs.values():
        if c["parent"] is None and (c["mod"] or c["regmod"]):
            c["parent"] = _base_key(c) if _base_key(c) in cs else None
        if c["parent"] is None and region_keys.get(c["region"]) not in (None, c["key"]):
            c["parent"] = region_keys[c["region"]]
        if c["parent"] == c["key"]:
            c["parent"] = None
    for c in cs.values():  # break any cycle
        seen, k = {c["key"]}, c["parent"]
        while k is not None:
            if k in seen:
                c["parent"] = None
                break
            seen.add(k)
            k = cs[k]["parent"] if k in cs else None
    coded_by = {"slicer-ga", "slicer-dm", "totalsegmentator", "dicom-cid", "dicom-code", "slicer-regions"}
    for c in cs.values():
        if c["type"][0] != LOCAL and not c["sources"] & coded_by:  # coded by a meaning lookup
            c["sources"].add(b.code_origin.get(c["type"][:2], "dicom-code"))
        if not c["modalities"]:
            c["modalities"] = {"ct", "mri", "pet"}
        if not c["color"]:
            src = cs.get(c["parent"]) if c["parent"] else None
            if src and src["color"] and (c["mod"] or c["regmod"]):
                c["color"] = src["color"]
            else:
                h = hashlib.sha1(c["name"].encode()).digest()
                c["color"] = [max(0, min(255, v + (h[i] % 41) - 20)) for i, v in enumerate(REGION_COLOR[c["region"]])]
        _generate_names(b, c)
        c["rank"] = (0 if c["sat"] else 1) + (0 if c["sources"] & {"slicer-ga", "totalsegmentator"} else 1) \
            + (1 if c["type"][0] == LOCAL else 0)


def _generate_names(b, c: dict) -> None:
    names = c["names"]
    side = c["regmod"] or c["mod"]
    base = b.concepts.get(_base_key(c)) if side else None
    if base is not None and side[1] in SIDE_FORMS:
        full, short, mid = SIDE_FORMS[side[1]]
        for n, kind in list(base["names"].items()):
            if kind > 2 or n.lower().startswith(("bilateral ", "both ", "left ", "right ")):
                continue
            for s in (f"{full} {n}", f"{n}, {full}", f"{n} {full}", f"{short} {n}", f"{mid} {n}"):
                names.setdefault(s, 3)
    elif base is not None and side[1] == BILATERAL[1]:
        for n, kind in list(base["names"].items()):
            if kind <= 1:
                for s in (f"bilateral {n}", f"both {n}", f"right and left {n}"):
                    names.setdefault(s, 3)
    for n, kind in list(names.items()):
        if kind > 1:
            continue
        m = re.fullmatch(r"(.+?) of (?:the )?([^,()]+)", n, flags=re.I)
        if m and " of " not in m.group(2):
            names.setdefault(f"{m.group(2)} {m.group(1)}", 3)
        if not side and not c["reg"]:
            words = n.split()
            p = plural(words[-1].lower()) if words else None
            if p:
                names.setdefault(" ".join(words[:-1] + [p]), 3)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", normalize(name)).strip("_") or "concept"


def _compact_display(display: str, key: str) -> str:
    """"" when the display equals the key, "^" when it is the key capitalised."""
    return "" if display == key else "^" if display == key[:1].upper() + key[1:] else display


def export(b, sources: list[dict]) -> dict:
    # equal names: the better-ranked concept (model term, Slicer/TotalSegmentator) gets the plain id
    cs = sorted(b.concepts.values(), key=lambda c: (c["region"], normalize(c["name"]), c["rank"], c["key"]))
    ids, index = {}, {}
    for i, c in enumerate(cs):
        s = _slug(c["name"])
        n, sid = 2, s
        while sid in ids.values():
            sid, n = f"{s}_{n}", n + 1
        ids[c["key"]] = sid
        index[c["key"]] = i
    contexts = sorted({c["ctx"] for c in cs}) + [ANAT]
    codes: dict[str, int] = {}
    regions = sorted({c["region"] for c in cs})
    mods = sorted({",".join(sorted(c["modalities"])) for c in cs})
    srcs = sorted({s for c in cs for s in c["sources"]})
    col: dict[str, list] = {k: [] for k in ("id", "name", "color", "codes", "region", "parent", "modalities",
                                            "sources", "rank")}
    sat, ts = {}, {}
    for i, c in enumerate(cs):
        col["id"].append(ids[c["key"]])
        col["name"].append(c["name"])
        col["color"].append(c["color"])
        col["codes"].append([contexts.index(c["ctx"])] + [codes.setdefault(code_str(x), len(codes)) for x in
                                                          (c["cat"], c["type"], c["mod"], c["reg"], c["regmod"])])
        col["region"].append(regions.index(c["region"]))
        col["parent"].append(index[c["parent"]] if c["parent"] else -1)
        col["modalities"].append(mods.index(",".join(sorted(c["modalities"]))))
        col["sources"].append(sum(1 << srcs.index(s) for s in c["sources"]))
        col["rank"].append(c["rank"])
        if c["sat"]:
            sat[str(i)] = {m: sorted(t) for m, t in sorted(c["sat"].items())}
        if c["ts"]:
            ts[str(i)] = sorted(c["ts"])
    concepts = dict(col, sat=sat, ts=ts, code_table=list(codes), region_table=regions,
                    modality_table=mods, source_table=srcs)
    best: dict[tuple[str, int], tuple[int, str]] = {}
    for c in cs:
        ci = index[c["key"]]
        for disp, kind in c["names"].items():
            key = normalize(disp)
            if key and ((key, ci) not in best or best[(key, ci)][0] > kind):
                best[(key, ci)] = (kind, disp)
    names = sorted(([k, d, ci, kind] for (k, ci), (kind, d) in best.items()),
                   key=lambda n: (n[0], n[3], col["rank"][n[2]], n[2]))
    static = lambda i: (names[i][3] >= 2, col["rank"][names[i][2]], len(names[i][0]))  # noqa: E731
    buckets: dict[str, list[int]] = {}
    for i, (key, _d, _c, _k) in enumerate(names):
        for L in range(1, min(4, len(key)) + 1):
            buckets.setdefault(key[:L], []).append(i)
    prefix_top = {p: sorted(v, key=static)[:MAX_TOP] for p, v in buckets.items() if len(v) > MAX_TOP}
    tokens: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        for t in set(n[0].split()):
            tokens.setdefault(t, []).append(i)
    tok_list = sorted(tokens)
    tri: dict[str, list[int]] = {}
    for ti, t in enumerate(tok_list):
        for g in trigrams(t):
            tri.setdefault(g, []).append(ti)
    if b.warnings:
        print("\n".join("warning: " + w for w in b.warnings))
    return {"format": 3, "sources": sources, "contexts": contexts, "concepts": concepts,
            "names": {"keys": [n[0] for n in names], "display": [_compact_display(n[1], n[0]) for n in names],
                      "concept": [n[2] for n in names], "kind": [n[3] for n in names]},
            "prefix_top": prefix_top, "tokens": tok_list, "postings": [tokens[t] for t in tok_list],
            "trigrams": tri}
