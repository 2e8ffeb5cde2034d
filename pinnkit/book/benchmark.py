r"""The what-works benchmark read back from the results store: final L2RE per method and problem (median and
range over seeds) and the L2RE-against-time curves.

Records are named ``<prefix>/<problem>/<method>/seed=<s>`` (``configs/what_works.toml``). :func:`table` groups
their final L2RE (that of the last logged iterate) by problem and method; :func:`curves` returns each run's logged
``(time, L2RE)`` pairs, ``time`` being the optimizer's seconds on the clock the runs' ``max_seconds`` budget was
measured on: CPU seconds (``History.extra["cpu_time"]``, ``budget_clock="cpu"``) when logged, else wall seconds
(``History.time``); both count the time inside the steps only, the logging excluded. In a chapter::

    from pinnkit import benchmark
    from pinnkit.experiments import stored
    records = stored("what-works/%")                  # the repository's store (an empty list without one)
    print(benchmark.markdown(benchmark.table(records)))
    for (problem, method), runs in benchmark.curves(records).items(): ...   # (seconds, L2RE) per seed

>>> from types import SimpleNamespace as NS
>>> rec = lambda m, s, e: NS(name=f"what-works/convection/{m}/seed={s}", l2re=e, status="max_seconds",
...                          history={"time": [0.0, 60.0], "l2re": [1.0, e]}, config=NS(dtype="float64"))
>>> rows = table([rec("engd", 0, 1e-3), rec("engd", 1, 4e-3), rec("engd", 2, 2e-3), rec("adam", 0, 0.5)])
>>> [(r.problem, r.method, r.seeds, r.median, r.low, r.high) for r in rows]
[('convection', 'adam', 1, 0.5, 0.5, 0.5), ('convection', 'engd', 3, 0.002, 0.001, 0.004)]
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

__all__ = ["Row", "parse_name", "table", "curves", "markdown", "PREFIX"]

#: the name prefix of the benchmark's records
PREFIX = "what-works"


@dataclass(frozen=True)
class Row:
    """One (problem, method) cell: the number of ``seeds`` (runs), the ``median`` final L2RE and its range
    ``low``..``high``, the precision ``dtype`` of the runs, and ``failed`` (runs that diverged or raised; their
    L2RE, of the last finite iterate, is included).
    """

    problem: str
    method: str
    seeds: int
    median: float
    low: float
    high: float
    dtype: str
    failed: int


def parse_name(name: str) -> tuple[str, str, str]:
    """``(problem, method, seed)`` of a record named ``<prefix>/<problem>/<method>/seed=<s>``.

    Raises:
        ValueError: another layout.
    """
    parts = name.split("/")
    if len(parts) != 4 or not parts[3].startswith("seed="):
        raise ValueError(f"{name!r} is not a benchmark record name '<prefix>/<problem>/<method>/seed=<s>'")
    return parts[1], parts[2], parts[3][len("seed="):]


def _order(names: Sequence[str], preferred: Sequence[str]) -> list[str]:
    seen = list(dict.fromkeys(names))
    return [n for n in preferred if n in seen] + sorted(n for n in seen if n not in preferred)


#: the order of the table's rows and columns
PROBLEMS = ("convection", "reaction", "wave", "poisson2d")
METHODS = ("adam", "soap", "lbfgs", "adam+lbfgs+nncg", "lbfgs64", "engd", "lm", "ssbfgs", "ssbroyden")


def table(records: Sequence[Any], prefix: str = PREFIX) -> list[Row]:
    """The final L2RE per (problem, method) over seeds, problems and methods in the book's order.

    Args:
        records: :class:`pinnkit.experiments.Record`\\ s (e.g. ``Store(path).records("what-works/%")``); those
            whose name does not start with ``prefix + "/"`` are ignored, and of several records of one config
            (same name) the newest counts.
        prefix: the records' name prefix.

    Returns:
        One :class:`Row` per (problem, method) present.
    """
    latest: dict[str, Any] = {}
    for r in records:
        if r.name.startswith(prefix + "/"):
            latest[r.name] = r                        # records come oldest first: the newest wins
    groups: dict[tuple[str, str], list[Any]] = {}
    for name, r in latest.items():
        problem, method, _ = parse_name(name)
        groups.setdefault((problem, method), []).append(r)
    rows = []
    for problem in _order([p for p, _ in groups], PROBLEMS):
        for method in _order([m for p, m in groups if p == problem], METHODS):
            runs = groups[(problem, method)]
            errs = [float(r.l2re) for r in runs if math.isfinite(float(r.l2re))]
            dtypes = sorted({r.config.dtype for r in runs})
            rows.append(Row(problem, method, len(runs), statistics.median(errs) if errs else math.nan,
                            min(errs, default=math.nan), max(errs, default=math.nan), "/".join(dtypes),
                            sum(r.status in ("diverged", "error") for r in runs)))
    return rows


def curves(records: Sequence[Any], prefix: str = PREFIX) -> dict[tuple[str, str], list[tuple[list[float], list[float]]]]:
    """The L2RE-against-time data: ``{(problem, method): [(seconds, l2re) per seed]}``, each a pair of lists of
    the run's log points (seconds of optimizer time; newest record per name, as :func:`table`).
    """
    latest = {r.name: r for r in records if r.name.startswith(prefix + "/")}
    out: dict[tuple[str, str], list[tuple[list[float], list[float]]]] = {}
    for name in sorted(latest):
        r = latest[name]
        problem, method, _ = parse_name(name)
        h = r.history
        if h.get("l2re"):
            clock = (h.get("extra") or {}).get("cpu_time") or h["time"]
            out.setdefault((problem, method), []).append((list(clock), list(h["l2re"])))
    return out


def markdown(rows: Sequence[Row], digits: int = 1) -> str:
    """A markdown table, one row per method, one column per problem: ``median [low, high]`` of the final L2RE
    (``digits`` significant digits after the first), the seeds' count and precision in the method's cell.

    >>> print(markdown([Row("wave", "lm", 3, 1.23e-3, 1e-3, 2e-3, "float64", 0)]))
    | method | wave |
    |---|---|
    | lm (float64) | 1.2e-03 [1.0e-03, 2.0e-03] (3) |
    """
    problems = list(dict.fromkeys(r.problem for r in rows))
    methods = list(dict.fromkeys(r.method for r in rows))
    cell = {(r.problem, r.method): r for r in rows}
    dtype = {r.method: r.dtype for r in rows}
    lines = ["| method | " + " | ".join(problems) + " |", "|---|" + "---|" * len(problems)]
    for m in methods:
        out = []
        for p in problems:
            r = cell.get((p, m))
            out.append("—" if r is None else f"{r.median:.{digits}e} [{r.low:.{digits}e}, {r.high:.{digits}e}] "
                       f"({r.seeds}{', ' + str(r.failed) + ' failed' if r.failed else ''})")
        lines.append(f"| {m} ({dtype[m]}) | " + " | ".join(out) + " |")
    return "\n".join(lines)
