"""Maintain the chapters: the generated header cells, and executing them top to bottom.

    python tools/notebooks.py header            # (re)write badge + setup cell in every notebook
    python tools/notebooks.py execute [NB ...] [--record]   # run in place in a fresh kernel, classroom preset
                                                # (all notebooks, or the named ones with --record: also records
                                                # their run times in book/runtimes.md and writes them into each
                                                # chapter's "Run time" line)

The Colab badge and the setup cell come from the one repository setting in ``book/_config.yml``.
"""
from __future__ import annotations

import math
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
HEADER_TAG = "pinnkit-header"


def repository() -> tuple[str, str]:
    text = (ROOT / "book" / "_config.yml").read_text()
    block = text.split("\nrepository:", 1)[1]
    url = re.search(r"url:\s*(\S+)", block).group(1).rstrip("/")
    branch = re.search(r"branch:\s*(\S+)", block).group(1)
    return url, branch


def header_cells(path: Path) -> list:
    url, branch = repository()
    slug = url.split("github.com/", 1)[1]
    colab = f"https://colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{path.name}"
    badge = nbformat.v4.new_markdown_cell(
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})")
    setup = nbformat.v4.new_code_cell(
        "# Setup: in Colab, install pinnkit (Colab's own torch is kept) and enable widgets; locally, nothing.\n"
        "import sys\n"
        "\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    %pip install -q \"pinnkit @ git+{url}@{branch}\"\n"
        "    from google.colab import output\n"
        "\n"
        "    output.enable_custom_widget_manager()")   # as `ruff format` writes it (notebooks/ruff.toml)
    for cell in (badge, setup):
        cell.metadata["tags"] = [HEADER_TAG]
    setup.metadata["tags"].append("remove-cell")   # the rendered book has its own launch button
    badge.metadata["tags"].append("remove-cell")
    return [badge, setup]


def header(paths: list[Path]) -> None:
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        body = [c for c in nb.cells if HEADER_TAG not in c.metadata.get("tags", [])]
        # the title cell stays first; header goes right after it
        nb.cells = body[:1] + header_cells(path) + body[1:]
        nbformat.write(nb, path)
        print(f"header: {path.relative_to(ROOT)}")


RUN_TIME = re.compile(r"Run time: about \d+ s \([^)]*\)")


def run_time_line(seconds: float) -> str:
    """The first cell's run-time sentence for a measured wall time (rounded up to 5 s)."""
    return f"Run time: about {max(5, 5 * math.ceil(seconds / 5))} s (classroom preset, one torch thread, 2-core CPU)"


def set_run_time(nb: nbformat.NotebookNode, seconds: float) -> None:
    """Write the measured run time into the title cell's ``Run time: about N s (...)`` sentence."""
    title = nb.cells[0]
    if not RUN_TIME.search(title.source):
        raise ValueError("the first cell has no 'Run time: about N s (...)' sentence (see CONTRIBUTING.md)")
    title.source = RUN_TIME.sub(run_time_line(seconds), title.source, count=1)


def execute(paths: list[Path], record: Path | None = None) -> None:
    from nbclient import NotebookClient
    os.environ["PINNKIT_PRESET"] = "classroom"
    os.environ["PINNKIT_PROGRESS"] = "0"
    os.environ.setdefault("PYTHONHASHSEED", "0")
    os.environ.setdefault("PINNKIT_DEVICE", "cpu")
    os.environ.setdefault("PINNKIT_THREADS", "1")  # the thread count the tests compare at (Makefile)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # waiting OpenMP threads sleep: same outputs, less CPU
    rows = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        t = time.perf_counter()
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                       ).execute()
        nbformat.write(nb, path)
        seconds = time.perf_counter() - t
        if record is not None:
            set_run_time(nb, seconds)
            nbformat.write(nb, path)
        rows.append(f"| `{path.name}` | {seconds:.0f} |")
        print(f"executed {path.relative_to(ROOT)} in {seconds:.0f} s")
    if record is not None:   # merge: chapters not run now keep their measured times
        row = re.compile(r"^\| `([^`]+)` \| (\d+) \|$", flags=re.M)
        known = dict(row.findall(record.read_text())) if record.exists() else {}
        known.update(dict(row.findall("\n".join(rows))))
        body = "\n".join(f"| `{name}` | {sec} |" for name, sec in sorted(known.items()))
        record.write_text("| chapter | seconds (wall, fresh kernel) |\n|---|---|\n" + body + "\n")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:] or ["help"]
    paths = [Path(a).resolve() for a in args] or NOTEBOOKS
    if cmd == "header":
        header(paths)
    elif cmd == "execute":
        record = not args or "--record" in args      # all notebooks, or named ones with --record
        paths = [Path(a).resolve() for a in args if a != "--record"] or NOTEBOOKS
        execute(paths, record=ROOT / "book" / "runtimes.md" if record else None)
    else:
        print(__doc__)
        sys.exit(2)
