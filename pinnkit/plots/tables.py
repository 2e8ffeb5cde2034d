"""Tables for the pages: rendered as HTML in a notebook (they fit the column and scroll), as text elsewhere.

:func:`table` builds one; :func:`tuning_table` and :func:`spread_table` show the gradient-alignment chapter's
learning-rate sweeps and seed spreads (:mod:`pinnkit.alignment`).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from html import escape
from typing import Any, Mapping, Sequence


@dataclass(frozen=True)
class Table:
    """A small table: ``header`` and ``rows`` of already formatted strings.

    A notebook shows it as an HTML table (``_repr_html_``); ``str(table)`` is the fixed-width text.

    Example:
        >>> t = Table(("x", "x^2"), (("1", "1"), ("2", "4")))
        >>> print(t)
        x  x^2
        1    1
        2    4
        >>> t._repr_html_().startswith("<table")
        True
    """

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        bad = [r for r in self.rows if len(r) != len(self.header)]
        if bad:
            raise ValueError(f"a row has {len(bad[0])} cells, the header {len(self.header)}: give one per column")

    def __str__(self) -> str:
        cols = list(zip(self.header, *self.rows))
        w = [max(len(c) for c in col) for col in cols]
        just = [str.ljust if i == 0 else str.rjust for i in range(len(w))]
        return "\n".join("  ".join(j(c, n) for j, c, n in zip(just, line, w)).rstrip()
                         for line in (self.header, *self.rows))

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    """A :class:`Table` from any cells (each turned into ``str``)."""
    return Table(tuple(map(str, header)), tuple(tuple(map(str, r)) for r in rows))


def tuning_table(tunings: Mapping[str, Any]) -> Table:
    """The learning-rate sweeps of several optimizers side by side: final loss per rate (2 significant digits),
    the chosen rate last. ``tunings`` maps a name to a :class:`~pinnkit.book.alignment_study.Tuning`.
    """
    lrs = sorted({lr for t in tunings.values() for lr in t.lrs})
    rows: list[list[str]] = []
    for lr in lrs:
        cells = [f"{dict(zip(t.lrs, t.losses))[lr]:.1e}" if lr in t.lrs else "" for t in tunings.values()]
        rows.append([f"{lr:.0e}", *cells])
    rows.append(["chosen", *(f"lr {t.best:.0e}" for t in tunings.values())])
    return table(["learning rate", *(f"{name}: final loss" for name in tunings)], rows)


def spread_table(result: Any, methods: Sequence[str] | None = None) -> Table:
    """One column per optimizer of a :class:`~pinnkit.book.alignment_study.Study`, one row per quantity:
    median [min, max] over the seeds of the final loss, the L2RE and the late alignments (intra-step, of the
    preconditioned term gradients, consecutive updates and gradients) and the type I ratio max/min ‖g_i‖.
    ``methods``: which optimizers (default all).
    """
    def rng(xs: Sequence[float], f: str) -> str:
        return f"{statistics.median(xs):{f}} [{min(xs):{f}}, {max(xs):{f}}]"

    quantities = [("final loss", "loss", ".1e"), ("L2RE", "l2re", ".1e"), ("intra-step A(g_i)", "intra", "+.2f"),
                  ("A(M⁻¹ g_i), own M", "intra_precond", "+.2f"), ("cos, consecutive updates", "inter", "+.2f"),
                  ("cos, consecutive gradients", "inter_grad", "+.2f"), ("max/min ‖g_i‖", "imbalance", ".2g")]
    spreads = {m: result.summary(m) for m in (methods or result.traces)}
    header = ["median [min, max] over seeds", *(f"{m} (lr {s.lr:.0e})" for m, s in spreads.items())]
    return table(header, [[name, *(rng(getattr(s, attr), f) for s in spreads.values())]
                          for name, attr, f in quantities])
