"""``textseg terms``."""
from __future__ import annotations

import json

from TextSegLib.cli.main import main


def test_terms_table(capsys):
    assert main(["terms", "lt", "kidn", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("* Left kidney") and "SCT^64033007^Kidney" in out


def test_terms_json_and_modality(capsys):
    assert main(["terms", "brain tumor", "--json", "--modality", "mri", "--limit", "2", "--model", "SAT-Nano"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["name"] == "Brain tumor" and rows[0]["in_vocabulary"] is True
    assert rows[0]["terminology"].startswith("Segmentation category and type")


def test_terms_resolve_with_custom_vocabulary(tmp_path, capsys):
    voc = tmp_path / "terms.txt"
    voc.write_text("liver\nspleen\n")
    assert main(["terms", "--resolve", "--vocabulary", str(voc), "--json", "hepatic parenchyma"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["concept"]["name"] == "Liver" and r["in_vocabulary"] is True


def test_terms_bad_input(tmp_path, capsys):
    assert main(["terms", ""]) == 0
    assert "No matching" in capsys.readouterr().out
    bad = tmp_path / "bin.txt"
    bad.write_bytes(b"\xff\xfe\x00")
    assert main(["terms", "--vocabulary", str(bad), "liver"]) == 2
    assert "Cannot read vocabulary file" in capsys.readouterr().err
    assert main(["terms", "--modality", "xray", "liver"]) != 0
