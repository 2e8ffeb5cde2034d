"""Prose agrees with the page: a number written in a chapter's text in the printed scientific format
(``1.2e-03``, ``4.7e+01``) must appear in that chapter's stored outputs, so a sentence cannot quote a number from
a run that is not on the page (or from an earlier run than the stored one)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SCI = re.compile(r"(?<![\w.])[-+]?\d\.\d+e[-+]\d+")


def quoted_and_printed(path: Path) -> tuple[set[str], str]:
    nb = json.loads(path.read_text())
    quoted, printed = set(), []
    for cell in nb["cells"]:
        src = "".join(cell.get("source", ""))
        if cell["cell_type"] == "markdown":
            # solutions of exercises may reason about numbers the reader computes; they are checked by checkers
            src = re.sub(r"<details>.*?</details>", "", src, flags=re.S)
            quoted.update(m.lstrip("+") for m in SCI.findall(src))
        for out in cell.get("outputs", []):
            printed.append("".join(out.get("text", "")))
            printed.append("".join(out.get("data", {}).get("text/plain", "")))
    return quoted, "\n".join(printed)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_numbers_in_the_text_are_printed_on_the_page(path):
    quoted, printed = quoted_and_printed(path)
    missing = sorted(q for q in quoted if q not in printed)
    assert not missing, f"{path.name}: the text quotes {missing}, which no output on the page prints"


def test_the_pattern_sees_printed_numbers():
    assert SCI.findall("loss 2.7e-03 and L2RE 9.9e-3, not 1e-3 or v1.2e-3x") == ["2.7e-03", "9.9e-3"]
