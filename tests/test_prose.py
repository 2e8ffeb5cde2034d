"""Prose agrees with the page: a number written in a chapter's text in the printed scientific format
(``1.2e-03``, ``4.7e+01``) must appear in that chapter's stored outputs, so a sentence cannot quote a number from
a run that is not on the page (or from an earlier run than the stored one). A paper's own numbers are written in
the form 4.19·10⁻³, which this check leaves alone."""
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


RUNTIMES = ROOT / "book" / "runtimes.md"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_stated_run_time_is_the_measured_one(path):
    """The title cell's 'Run time: about N s' is the time `make notebooks` measured (book/runtimes.md)."""
    measured = dict(re.findall(r"\| `([^`]+)` \| (\d+) \|", RUNTIMES.read_text()))
    assert path.name in measured, f"{path.name} has no measured run time in book/runtimes.md: run make notebooks"
    title = "".join(json.loads(path.read_text())["cells"][0]["source"])
    stated = re.search(r"Run time: about (\d+) s", title)
    assert stated, f"{path.name}: the first cell states no 'Run time: about N s'"
    assert abs(int(stated.group(1)) - int(measured[path.name])) <= 5, (
        f"{path.name} states {stated.group(1)} s but book/runtimes.md measured {measured[path.name]} s")
    assert int(measured[path.name]) <= 120, f"{path.name} takes {measured[path.name]} s, over the 2-minute budget"
