"""The reproduction report quotes the chapters: every `backticked` number in its classroom column must appear in
the stored outputs of the chapter the row cites, so the report cannot drift from what the chapters compute."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "book" / "reproduction.md"


def rows():
    for line in REPORT.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] not in ("claim", "---"):
            yield cells


def outputs(path: Path) -> str:
    nb = json.loads(path.read_text())
    text = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            text.append("".join(out.get("text", "")))
            text.append("".join(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


ROWS = list(rows())


def test_report_has_rows_for_every_paper():
    text = REPORT.read_text()
    for key in ("rathore2024challenges", "rowan2025newton", "wang2025alignment", "rowan2026landscapes"):
        assert key in text
    assert len(ROWS) >= 12


@pytest.mark.parametrize("row", ROWS, ids=[r[0][:40] for r in ROWS])
def test_quoted_numbers_appear_in_the_cited_chapter(row):
    claim, paper, ours, gpu, verdict, chapter = row
    quoted = re.findall(r"`([^`]+)`", ours)
    links = re.findall(r"\(\.\./(notebooks/[^)]+\.ipynb)\)", chapter)
    if not quoted:
        assert ours == "—", f"{claim}: the classroom column quotes no number"
        return
    assert links, f"{claim}: cite the chapter that computes {quoted}"
    text = outputs(ROOT / links[0])
    for q in quoted:
        assert q in text, f"{claim}: {q!r} is not in the outputs of {links[0]}"
    assert verdict, f"{claim}: no verdict"
