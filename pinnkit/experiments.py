r"""Experiments at the papers' own settings: a run is a config and a record.

An :class:`Experiment` is a small serialisable config (problem and its parameters, widths, collocation sizes,
optimizer chain with its options, seed, dtype, device, budget). :func:`run` trains it with :func:`pinnkit.train`
and appends a :class:`Record` to a :class:`Store` — an SQLite file (stdlib ``sqlite3``) under ``results/``:
the final and periodic loss per term, L2RE, wall time per iteration, and the provenance (pinnkit version, git
commit, torch version, device). Records are append-only and written in one transaction when a run finishes, so a
run that is interrupted half way never corrupts the finished ones.

Long runs are **resumable**: every ``checkpoint_every`` seconds ``theta``, the optimizer state and the history so
far are saved under ``results/checkpoints/`` (not in git); running the same experiment again resumes from there
and gives the same result as an uninterrupted run.

A config file (TOML) names a list of experiments and, optionally, a grid that multiplies them::

    [base]                          # fields shared by every experiment of the file
    widths = [50, 50, 50]
    [grid]                          # every combination is one experiment
    seed = [123, 234]
    [[experiment]]
    name = "convection/adam"
    problem = "convection"
    params = { beta = 40.0 }
    method = "adam"
    steps = 41000

From the shell::

    python -m pinnkit.experiments run configs/rathore_table1.toml            # sequential
    python -m pinnkit.experiments run configs/rathore_table1.toml --ray      # one Ray task per run
    python -m pinnkit.experiments show

>>> e = Experiment(name="demo", problem="convection", params={"beta": 1.0}, widths=(8,), n_res=64, n_ic=16,
...                n_bc=8, method="adam", steps=5, options={"lr": 1e-2})
>>> Experiment.from_dict(e.to_dict()) == e
True
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import torch

if TYPE_CHECKING:  # pragma: no cover
    from .features import PowerLaw

__all__ = ["Experiment", "Record", "Store", "load_config", "run", "sweep", "report", "main", "stored", "fig10_fit",
           "DEFAULT_STORE", "REPOSITORY_STORE"]

#: the default results store, relative to the working directory
DEFAULT_STORE = Path("results") / "pinnkit.sqlite"
#: the store committed with the repository (exists in a clone, not in an installed wheel)
REPOSITORY_STORE = Path(__file__).resolve().parents[1] / "results" / "pinnkit.sqlite"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: config fields that do not change a run's result, left out of :attr:`Experiment.key`
UNKEYED = ("name", "threads")
#: the store's schema version (``PRAGMA user_version``); :class:`Store` migrates older files when it opens them
SCHEMA_VERSION = 2
#: run statuses: those of :func:`pinnkit.train` and ``"error"`` (the run raised; ``message`` says what)
FAILED = ("diverged", "error")


@dataclass(frozen=True)
class Experiment:
    """One training run, fully described by plain values (so it can be stored, hashed and sent to a worker).

    Attributes:
        name: a label, e.g. ``"table1/convection/adam+lbfgs"``.
        problem: a name from :func:`pinnkit.problems.make`; ``params`` its coefficients (``{"beta": 40.0}``).
        widths, n_res, n_ic, n_bc, sampling, activation: the network and the collocation points.
        method, steps, switch, options, phase_options: passed to :func:`pinnkit.train`.
        seed: initialisation and sampling seed; dtype ``"float32"``/``"float64"``; device ``"cpu"``,
            ``"cuda"`` or ``"auto"``.
        log_every: history interval in steps; analysis: post-training measurements (``"hessian_extremes"``:
            the largest eigenvalue, the smallest-magnitude one and their ratio, from the dense Hessian);
            log: quantities logged along training (``"intra_alignment"``: the alignment score of the per-term
            gradients, Wang et al.).
        threads: torch CPU threads for this run.
    """

    name: str
    problem: str
    params: Mapping[str, float] = field(default_factory=dict)
    widths: tuple[int, ...] = (50, 50, 50)
    n_res: int = 10_000
    n_ic: int = 257
    n_bc: int = 101
    sampling: str = "grid"
    activation: str = "tanh"
    method: str = "adam"
    steps: int = 1000
    switch: int | tuple[int, ...] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    phase_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    log_every: int = 100
    analysis: tuple[str, ...] = ()
    log: tuple[str, ...] = ()
    threads: int = 1

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"{self.name}: dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"{self.name}: device must be 'cpu', 'cuda' or 'auto', got {self.device!r}")
        from .problems import PROBLEMS
        from .train import _names

        if self.problem.lower().replace("-", "_") not in PROBLEMS:
            raise ValueError(f"{self.name}: problem {self.problem!r} is not one of {sorted(PROBLEMS)}")
        if self.sampling not in ("grid", "authors", "random"):
            raise ValueError(f"{self.name}: sampling must be 'grid', 'authors' or 'random', got {self.sampling!r}")
        try:
            _names(self.method)
        except ValueError as err:
            raise ValueError(f"{self.name}: method: {err}") from None
        unknown = set(self.analysis) - set(ANALYSES)
        if unknown:
            raise ValueError(f"{self.name}: unknown analysis {sorted(unknown)}; valid: {sorted(ANALYSES)}")
        unknown = set(self.log) - set(LOGGERS)
        if unknown:
            raise ValueError(f"{self.name}: unknown log {sorted(unknown)}; valid: {sorted(LOGGERS)}")
        for name in ("widths", "analysis", "log"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.switch, list):
            object.__setattr__(self, "switch", tuple(self.switch))
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "options", dict(self.options))
        object.__setattr__(self, "phase_options", {k: dict(v) for k, v in self.phase_options.items()})

    def __hash__(self) -> int:
        return hash(self.key)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        d = dataclasses.asdict(self)
        d["widths"], d["analysis"], d["log"] = list(self.widths), list(self.analysis), list(self.log)
        if isinstance(self.switch, tuple):
            d["switch"] = list(self.switch)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Experiment":
        """The inverse of :meth:`to_dict`; unknown keys raise a ``TypeError`` that names the valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - valid
        if unknown:
            raise TypeError(f"unknown experiment field(s) {sorted(unknown)}; valid: {sorted(valid)}")
        return cls(**d)

    @property
    def key(self) -> str:
        """A content hash of the fields that affect the result (all but :data:`UNKEYED`: ``name``, ``threads``):
        equal runs have equal keys, whatever they are called (checkpoints and records are found by it).
        """
        d = {k: v for k, v in self.to_dict().items() if k not in UNKEYED}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_stored(cls, d: Mapping[str, Any]) -> "Experiment":
        """A config read back from a store: fields this version does not know are dropped (a record written by
        a newer pinnkit still loads), missing ones take their defaults.
        """
        valid = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in valid})


@dataclass(frozen=True)
class Record:
    """What a finished run leaves in the store."""

    id: int
    key: str
    name: str
    config: Experiment
    loss: float
    terms: Mapping[str, float]
    l2re: float
    iterations: int
    seconds: float
    seconds_per_iteration: float
    status: str
    history: Mapping[str, Any]
    analysis: Mapping[str, float]
    pinnkit_version: str
    git_commit: str
    torch_version: str
    device: str
    created: str
    evals: int | None = None    # loss + gradient evaluations of the optimizers (None: a stepper did not count)
    message: str = ""            # why a failed run failed

    @property
    def failed(self) -> bool:
        """True for a run that diverged or raised (its loss and L2RE are those of its last finite iterate)."""
        return self.status in FAILED

    def loss_at(self, iteration: int) -> float:
        """The loss logged at the last log point at or before ``iteration`` (an L-BFGS step counts 20, as in
        ``history["iteration"]``), e.g. ``r.loss_at(r.iterations - 10_000) / r.loss``: the gain of the last 10,000
        iterations.
        """
        its, losses = self.history.get("iteration", []), self.history.get("loss", [])
        before = [loss for it, loss in zip(its, losses) if it <= iteration]
        if not before:
            raise ValueError(f"no log point at or before iteration {iteration} (the first is {its[0] if its else None})")
        return float(before[-1])


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL,
    loss REAL, terms TEXT, l2re REAL, iterations INTEGER, seconds REAL, seconds_per_iteration REAL,
    status TEXT, history TEXT, analysis TEXT,
    pinnkit_version TEXT, git_commit TEXT, torch_version TEXT, device TEXT, created TEXT NOT NULL,
    evals INTEGER, message TEXT
);
CREATE INDEX IF NOT EXISTS records_key ON records (key);
CREATE INDEX IF NOT EXISTS records_name ON records (name);
"""


class Store:
    """An append-only SQLite store of :class:`Record`\\ s (one file; safe to copy, diff-friendly when small)."""

    def __init__(self, path: str | Path = DEFAULT_STORE):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ValueError(f"{self.path} has schema version {version}, newer than this pinnkit's "
                                 f"{SCHEMA_VERSION}; upgrade pinnkit to write to it")
            db.executescript(_SCHEMA)
            if version < SCHEMA_VERSION:
                self._migrate(db, version)

    @staticmethod
    def _migrate(db: sqlite3.Connection, version: int) -> None:
        """Bring a store of schema ``version`` (0 or 1: before ``PRAGMA user_version``) to :data:`SCHEMA_VERSION`:
        add the ``evals`` and ``message`` columns and recompute every key as :attr:`Experiment.key` defines it now
        (version 1 hashed ``name`` and ``threads`` too).
        """
        cols = {row[1] for row in db.execute("PRAGMA table_info(records)")}
        for col, kind in (("evals", "INTEGER"), ("message", "TEXT")):
            if col not in cols:
                db.execute(f"ALTER TABLE records ADD COLUMN {col} {kind}")
        for rid, config in db.execute("SELECT id, config FROM records").fetchall():
            key = Experiment.from_stored(json.loads(config)).key
            db.execute("UPDATE records SET key = ? WHERE id = ?", (key, rid))
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def _rows(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        db = self._connect()
        try:
            db.row_factory = sqlite3.Row
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def append(self, row: Mapping[str, Any]) -> int:
        """Insert one finished run in a single transaction and return its id."""
        cols = ["key", "name", "config", "loss", "terms", "l2re", "iterations", "seconds", "seconds_per_iteration",
                "status", "history", "analysis", "pinnkit_version", "git_commit", "torch_version", "device",
                "created", "evals", "message"]
        values = [json.dumps(row.get(c)) if isinstance(row.get(c), (dict, list)) else row.get(c) for c in cols]
        db = self._connect()
        try:
            with db:  # commits on success, rolls back on error
                cur = db.execute(f"INSERT INTO records ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                                 values)
            return int(cur.lastrowid or 0)
        finally:
            db.close()

    def records(self, name: str | None = None, key: str | None = None) -> list[Record]:
        """The stored records, oldest first; ``name`` may use SQL ``LIKE`` wildcards (``"table1/%"``)."""
        sql, args = "SELECT * FROM records", []
        where = []
        if name is not None:
            where.append("name LIKE ?")
            args.append(name)
        if key is not None:
            where.append("key = ?")
            args.append(key)
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._rows(sql + " ORDER BY id", args)
        fields = {f.name for f in dataclasses.fields(Record)}
        out = []
        for r in rows:
            d = {k: v for k, v in dict(r).items() if k in fields}   # leniently: columns of a newer schema drop
            for c in ("terms", "history", "analysis"):
                d[c] = json.loads(d[c]) if d.get(c) else {}
            d["config"] = Experiment.from_stored(json.loads(d["config"]))
            d["message"] = d.get("message") or ""
            out.append(Record(**d))
        return out

    def merge(self, other: "Store") -> list[str]:
        """Append the records of ``other`` that this store lacks (same key and creation time); return their
        names. Records keep their content; their ids are this store's.
        """
        have = {(r.key, r.created) for r in self.records()}
        added = []
        for r in other.records():
            if (r.key, r.created) in have:
                continue
            row = {f.name: getattr(r, f.name) for f in dataclasses.fields(r) if f.name != "id"}
            row["config"] = r.config.to_dict()
            self.append(row)
            added.append(r.name)
        return added

    def latest(self, experiment: Experiment) -> Record | None:
        """The newest record of exactly this config, or ``None``."""
        found = self.records(key=experiment.key)
        return found[-1] if found else None


# --- config files ------------------------------------------------------------------------------------------
def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge TOML tables: later layers win, and tables (``params``, ``options``, ``phase_options``) merge key by
    key instead of replacing each other.
    """
    out: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def load_config(path: str | Path) -> list[Experiment]:
    """The experiments of a TOML config file: each ``[[experiment]]`` over ``[base]``, times the ``[grid]``.

    Tables merge deeply (an experiment's ``options = {lr = 1e-2}`` keeps the base's other options). Grid values
    are lists; every combination becomes one experiment, its name suffixed with the grid values
    (``"convection/adam/seed=123"``). Every experiment is validated here, so a typo fails before any run starts.

    Raises:
        ValueError: a malformed file, or an experiment with a bad field (the message names the file, the
            experiment and the field).
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    with open(path, "rb") as fh:
        cfg = tomllib.load(fh)
    unknown = set(cfg) - {"base", "grid", "experiment", "description"}
    if unknown:
        raise ValueError(f"{path}: unknown top-level table(s) {sorted(unknown)}; valid: base, grid, experiment")
    base, grid, entries = cfg.get("base", {}), cfg.get("grid", {}), cfg.get("experiment", [])
    if not entries:
        raise ValueError(f"{path}: no [[experiment]] entries")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ValueError(f"{path}: grid.{k} must be a non-empty list, got {v!r}")
    keys = sorted(grid)
    out = []
    for i, entry in enumerate(entries):
        for combo in itertools.product(*(grid[k] for k in keys)) if keys else [()]:
            d = _merge(base, entry, dict(zip(keys, combo)))
            suffix = "/".join(f"{k}={_short(v)}" for k, v in zip(keys, combo))
            label = d.get("name", f"experiment #{i + 1}")
            if suffix and "name" in d:
                d["name"] = f"{d['name']}/{suffix}"
            try:
                out.append(Experiment.from_dict(d))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}: experiment {label!r}: {err}") from None
    return out


def _short(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


# --- running -------------------------------------------------------------------------------------------------
def _hessian_extremes(experiment: Experiment, pinn: Any, theta: torch.Tensor) -> dict[str, float]:
    """Rathore et al.'s Fig. 10 quantity: lambda_max / (smallest-magnitude eigenvalue), from the dense Hessian.

    The Hessian is formed in float64 at the trained ``theta`` on the run's own collocation points.
    """
    from .conditioning import condition_number
    from .curvature import hessian

    exact = build(dataclasses.replace(experiment, dtype="float64"))
    exact.points = {k: v.to(torch.float64) for k, v in pinn.points.items()}
    lam = torch.linalg.eigvalsh(hessian(exact.loss, theta.to(torch.float64)))
    small = lam.abs().min()
    return {"lambda_max": float(lam.max()), "lambda_min": float(lam.min()), "min_abs_lambda": float(small),
            "ratio_max_over_min_abs": condition_number(lam, rcut=0.0), "n_params": float(lam.numel())}


def _intra_alignment(pinn: Any) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """Wang et al.'s intra-step alignment score of the per-term gradients, as a ``train(log=...)`` callback."""
    from .alignment import alignment_score, term_gradients

    return lambda theta, grad: alignment_score(term_gradients(pinn.terms, theta))


ANALYSES = {"hessian_extremes": _hessian_extremes}
LOGGERS = {"intra_alignment": _intra_alignment}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).resolve().parent,
                          timeout=10).stdout


def _provenance() -> dict[str, str]:
    """The version of pinnkit, the git commit of its source and torch's version.

    With uncommitted changes to tracked files the commit reads ``<commit>+dirty.<hash>``, ``<hash>`` the first 12
    hex digits of the SHA-256 of ``git diff HEAD``: the record names the exact code, and the command line refuses
    to run into a store from a dirty tree unless asked (``--allow-dirty``).
    """
    from . import __version__

    try:
        commit = _git("rev-parse", "--short=12", "HEAD").strip() or "unknown"
        diff = _git("diff", "HEAD") if commit != "unknown" else ""
        if diff:
            commit += "+dirty." + hashlib.sha256(diff.encode()).hexdigest()[:12]
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"pinnkit_version": __version__, "git_commit": commit, "torch_version": torch.__version__}


#: the provenance of the code this process runs, taken once when the module is imported (the code is loaded then);
#: asking git when a run ends would name whatever commit is checked out by then
PROVENANCE = _provenance()


def build(experiment: Experiment) -> Any:
    """The :class:`~pinnkit.PINN` of an experiment (on its device and dtype)."""
    from .pinn import PINN
    from .problems import make

    device = experiment.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return PINN(make(experiment.problem, **experiment.params), widths=list(experiment.widths),
                n_res=experiment.n_res, n_ic=experiment.n_ic, n_bc=experiment.n_bc, seed=experiment.seed,
                activation=experiment.activation, sampling=experiment.sampling, dtype=DTYPES[experiment.dtype],
                device=device)


def cache_dir() -> Path:
    """Where unfinished runs keep their checkpoints: ``$PINNKIT_CACHE``, else ``~/.cache/pinnkit`` — outside the
    work tree, so that a fresh checkout of the repository (or a ``git clean``) on the same machine still resumes.
    """
    env = os.environ.get("PINNKIT_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pinnkit"


def checkpoint_path(experiment: Experiment, directory: str | Path) -> Path:
    """Where the checkpoint of ``experiment`` lives (one file per config key)."""
    return Path(directory) / f"{experiment.key}.pt"


def run(experiment: Experiment, store: Store | str | Path | None = DEFAULT_STORE, *,
        checkpoints: str | Path | None = None, checkpoint_every: float = 300.0, stop_after: int | None = None,
        quiet: bool = True, resumable: bool | None = None) -> Record | None:
    """Train ``experiment`` (resuming from its checkpoint if one exists) and append its record to ``store``.

    No run is lost: a run whose loss becomes non-finite or diverges ends with ``status="diverged"`` (its record
    holds the last finite iterate's numbers), and a run that raises is recorded with ``status="error"`` and the
    exception in ``message``; neither raises, so a sweep goes on.

    Args:
        experiment: the config.
        store: a :class:`Store` or a path to one (``None``: do not store, return the record only; then no
            checkpoint is written either, unless ``resumable=True``).
        checkpoints: checkpoint directory (default: ``cache_dir() / "checkpoints"``, outside the work tree).
        checkpoint_every: seconds between checkpoints.
        stop_after: stop (with a checkpoint) after this many steps *of this call* — a deliberate interruption,
            used by the tests to show that a resumed run equals an uninterrupted one.
        quiet: hide the progress bar.
        resumable: checkpoint and resume (default: when there is a store).

    Returns:
        The new :class:`Record`, or ``None`` when ``stop_after`` interrupted the run.
    """
    from .train import TrainState, train

    if isinstance(store, (str, Path)):
        store = Store(store)
    ckpt: Path | None = None
    if resumable or (resumable is None and store is not None):
        ckpt = checkpoint_path(experiment, checkpoints if checkpoints is not None else cache_dir() / "checkpoints")
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(experiment.threads)
    t0 = time.perf_counter()
    try:
        pinn = build(experiment)
        state = TrainState.load(ckpt, map_location=pinn.device) if ckpt is not None and ckpt.exists() else None

        def save(s: TrainState) -> None:
            assert ckpt is not None
            tmp = ckpt.with_suffix(".tmp")
            s.save(tmp)
            os.replace(tmp, ckpt)  # atomic: a crash mid-write never leaves a broken checkpoint

        result = train(pinn, experiment.method, experiment.steps, switch=experiment.switch,
                       log_every=experiment.log_every, quiet=quiet, desc=experiment.name, resume=state,
                       checkpoint=save if ckpt is not None else None,
                       checkpoint_every=checkpoint_every if ckpt is not None else None, stop_after=stop_after,
                       phase_options=experiment.phase_options, log={k: LOGGERS[k](pinn) for k in experiment.log},
                       on_diverge="stop", **experiment.options)
        if result.status == "interrupted":
            return None
        analysis: dict[str, float] = {}
        for name in experiment.analysis:
            analysis.update(ANALYSES[name](experiment, pinn, result.theta))
        row = _row(experiment, result.history, result.status, analysis, str(pinn.device))
    except Exception as err:  # noqa: BLE001 - any failure becomes a record, so that no run is lost
        row = _failed_row(experiment, err, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    new_id = store.append(row) if store is not None else 0
    if ckpt is not None and row["status"] != "error":   # an error keeps its checkpoint: fix the cause, run again
        ckpt.unlink(missing_ok=True)
    if store is None:
        return Record(id=0, **{**row, "config": experiment})
    return store.records(key=experiment.key)[-1] if new_id else None


def _row(experiment: Experiment, h: Any, status: str, analysis: Mapping[str, float], device: str) -> dict[str, Any]:
    """The store row of a finished (or diverged) run from its :class:`~pinnkit.train.History`."""
    iterations = h.iteration[-1]
    evals = h.evals[-1] if h.evals else None
    return {
        "key": experiment.key, "name": experiment.name, "config": experiment.to_dict(),
        "loss": h.loss[-1], "terms": {k: v[-1] for k, v in h.terms.items()},
        "l2re": h.l2re[-1] if h.l2re else math.nan, "iterations": iterations, "seconds": h.time[-1],
        "seconds_per_iteration": h.time[-1] / max(iterations, 1), "status": status,
        "history": {"step": h.step, "iteration": h.iteration, "phase": h.phase, "loss": h.loss, "terms": h.terms,
                    "l2re": h.l2re, "grad_norm": h.grad_norm, "time": h.time, "extra": h.extra, "evals": h.evals,
                    "stops": h.stops},
        "analysis": dict(analysis), "device": device, "evals": evals, "message": "",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **PROVENANCE,
    }


def _failed_row(experiment: Experiment, err: BaseException, seconds: float) -> dict[str, Any]:
    """The store row of a run that raised: status ``"error"`` and the exception, no numbers."""
    return {
        "key": experiment.key, "name": experiment.name, "config": experiment.to_dict(), "loss": math.nan,
        "terms": {}, "l2re": math.nan, "iterations": 0, "seconds": seconds, "seconds_per_iteration": math.nan,
        "status": "error", "history": {}, "analysis": {}, "device": experiment.device, "evals": None,
        "message": f"{type(err).__name__}: {err}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **PROVENANCE,
    }


def _run_remote(config: dict[str, Any], checkpoints: str | None, threads: int | None,
                checkpoint_every: float = 300.0) -> dict[str, Any]:
    """A Ray task: run one experiment (given as a dict) in a worker and return its store row; the driver writes
    it (a worker never writes to a path on the driver's disk). Checkpoints go to the worker's own cache.
    """
    e = Experiment.from_dict(config)
    if threads is not None:
        e = dataclasses.replace(e, threads=threads)
    record = run(e, None, checkpoints=checkpoints, checkpoint_every=checkpoint_every, resumable=True)
    assert record is not None
    row = {f.name: getattr(record, f.name) for f in dataclasses.fields(record) if f.name != "id"}
    row["config"] = e.to_dict()
    return row


def sweep(experiments: Iterable[Experiment], store: str | Path = DEFAULT_STORE, *, use_ray: bool = False,
          ray_address: str | None = None, threads_per_task: int = 1, gpus_per_task: float = 0.0,
          skip_done: bool = True, checkpoints: str | Path | None = None,
          checkpoint_every: float = 300.0) -> list[str]:
    """Run many experiments into one store: sequentially, or as Ray tasks (one per experiment).

    A run that fails is recorded with its status (:func:`run`) and the sweep goes on. With Ray, tasks return
    their rows and the driver appends each to the store as soon as it finishes (``ray.wait``).

    Args:
        experiments: the configs (e.g. :func:`load_config`).
        store: the SQLite store every run appends to.
        use_ray: run on Ray (``pip install pinnkit[sweep]``); ``ray_address`` joins a running cluster
            (``"auto"`` or ``"ray://host:10001"``), else a local Ray instance is started.
        threads_per_task / gpus_per_task: the resources of each task (CPU threads; a GPU share). A GPU share
            needs every experiment on ``device="cuda"`` (or ``"auto"``).
        skip_done: skip configs that already have a record in the store (failed ones are run again).
        checkpoints: checkpoint directory (default :func:`cache_dir`; with Ray, each worker's own).
        checkpoint_every: seconds between checkpoints of a run.

    Returns:
        The names of the experiments that ran, in the order they finished.

    Raises:
        ValueError: ``gpus_per_task > 0`` with an experiment on ``device="cpu"``.
    """
    todo = list(experiments)
    if gpus_per_task > 0:
        cpu = [e.name for e in todo if e.device == "cpu"]
        if cpu:
            raise ValueError(f"--gpus {gpus_per_task:g} gives each task a GPU, but {len(cpu)} experiment(s) run on "
                             f"device='cpu' (e.g. {cpu[0]!r}); set device = \"cuda\" in the config")
    db = Store(store)
    if skip_done:
        todo = [e for e in todo if (r := db.latest(e)) is None or r.failed]
    if not use_ray:
        for e in todo:
            run(e, db, checkpoints=checkpoints, checkpoint_every=checkpoint_every)
        return [e.name for e in todo]
    try:
        import ray
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the Ray sweep needs Ray: pip install 'pinnkit[sweep]'") from err
    started = not ray.is_initialized()
    if started:
        ray.init(address=ray_address, include_dashboard=False, log_to_driver=False,
                 num_cpus=None if ray_address else max(os.cpu_count() or 1, threads_per_task))
    try:
        task = ray.remote(num_cpus=threads_per_task, num_gpus=gpus_per_task)(_run_remote)
        pending = [task.remote(e.to_dict(), None if checkpoints is None else str(checkpoints), threads_per_task,
                               checkpoint_every) for e in todo]
        ran = []
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            row = ray.get(ready[0])
            db.append(row)
            ran.append(row["name"])
        return ran
    finally:
        if started:
            ray.shutdown()


# --- reading the store -------------------------------------------------------------------------------------
def stored(name: str | None = None, path: str | Path = REPOSITORY_STORE) -> list["Record"]:
    """The records of the store at ``path`` (default: the repository's), oldest first, ``name`` as in
    :meth:`Store.records`; an empty list when there is no store there (e.g. pinnkit installed without the
    repository, as in Colab). Unlike :class:`Store`, it never creates a file.
    """
    return Store(path).records(name) if Path(path).is_file() else []


def fig10_fit(records: Sequence[Record]) -> PowerLaw | None:
    r"""The power law :math:`\lambda_{\max} / \min|\lambda| \approx C\,n_{\rm res}^p` through the Fig. 10 records
    (those with the ``hessian_extremes`` analysis), a :class:`~pinnkit.features.PowerLaw`; ``None`` with fewer than
    two values of ``n_res``.
    """
    from .features import fit_power_law

    fig10 = [r for r in records if "ratio_max_over_min_abs" in r.analysis]
    if len({r.config.n_res for r in fig10}) < 2:
        return None
    return fit_power_law([r.config.n_res for r in fig10], [r.analysis["ratio_max_over_min_abs"] for r in fig10])


def _fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2e}"


def report(records: Sequence[Record]) -> str:
    """A markdown table of ``records`` (one row per run, with its width, seed, precision, device, commit, status,
    loss evaluations and wall time per evaluation; "—" where an older record did not count them), followed by
    the Fig. 10 growth fit when Fig. 10 records are present. ``book/reproduction.md`` embeds this text and
    ``tests/test_reproduction.py`` checks that it still matches the store.
    """
    lines = ["| run | width | seed | dtype | device | commit | status | iterations | loss evaluations | loss | L2RE |"
             " ms per evaluation | lambda_max / min abs(lambda) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def natural(r: Record) -> tuple[str, int]:  # n_res=256 before n_res=1024
        return re.sub(r"\d+", lambda m: m.group().zfill(10), r.name), r.id

    for r in sorted(records, key=natural):
        c = r.config
        ratio = r.analysis.get("ratio_max_over_min_abs")
        per_eval = "—" if not r.evals else f"{1e3 * r.seconds / r.evals:.3g}"
        lines.append(f"| {r.name} | {'x'.join(map(str, c.widths))} | {c.seed} | {c.dtype} | {r.device} | "
                     f"{r.git_commit} | {r.status} | {r.iterations} | {'—' if r.evals is None else r.evals} | "
                     f"`{_fmt(r.loss)}` | `{_fmt(r.l2re)}` | {per_eval} | "
                     f"{'—' if ratio is None else '`' + _fmt(ratio) + '`'} |")
    fig10 = [r for r in records if r.name.startswith("fig10/") and "ratio_max_over_min_abs" in r.analysis]
    fit = fig10_fit(fig10)
    if fit is not None:
        lines.append("")
        lines.append(f"Fig. 10 at the authors' setting ({len(fig10)} runs, n_res "
                     f"{min(r.config.n_res for r in fig10)}..{max(r.config.n_res for r in fig10)}): "
                     f"`lambda_max / min abs(lambda) ~ n_res^{fit.slope:.2f}`")
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------------------
def _table(records: Sequence[Record]) -> str:
    lines = [f"{'name':52s} {'status':>9s} {'loss':>9s} {'L2RE':>9s} {'iters':>7s} {'evals':>7s} {'s/it':>8s} "
             f"{'device':>6s} commit"]
    for r in records:
        evals = "-" if r.evals is None else str(r.evals)
        lines.append(f"{r.name[:52]:52s} {r.status:>9s} {r.loss:9.2e} {r.l2re:9.2e} {r.iterations:7d} {evals:>7s} "
                     f"{r.seconds_per_iteration:8.4f} {r.device:>6s} {r.git_commit}"
                     + (f"  ({r.message})" if r.message else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pinnkit.experiments {run,show} ...``."""
    parser = argparse.ArgumentParser(prog="python -m pinnkit.experiments", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the experiments of config files (resumes interrupted ones)")
    p_run.add_argument("configs", nargs="+")
    p_run.add_argument("--store", default=str(DEFAULT_STORE))
    p_run.add_argument("--only", default=None, help="run only experiments whose name contains this text")
    p_run.add_argument("--ray", action="store_true", help="one Ray task per experiment (local instance)")
    p_run.add_argument("--ray-address", default=None, help="join a Ray cluster (implies --ray)")
    p_run.add_argument("--threads", type=int, default=1, help="CPU threads per run / Ray task")
    p_run.add_argument("--gpus", type=float, default=0.0, help="GPUs per Ray task")
    p_run.add_argument("--again", action="store_true", help="run configs that already have a record too")
    p_run.add_argument("--checkpoint-every", type=float, default=300.0, metavar="SECONDS",
                       help="seconds between checkpoints of a run (default 300)")
    p_run.add_argument("--shard", default=None, metavar="K/N",
                       help="run only every N-th experiment, starting at the K-th (0-based): N processes share a "
                            "list without running anything twice")
    p_run.add_argument("--allow-dirty", action="store_true",
                       help="run from a tree with uncommitted changes (the records name the diff's hash)")
    p_show = sub.add_parser("show", help="print the records of a store")
    p_show.add_argument("--store", default=str(DEFAULT_STORE))
    p_show.add_argument("--name", default=None, help="SQL LIKE pattern, e.g. 'table1/%%'")
    p_show.add_argument("--markdown", action="store_true", help="the table book/reproduction.md embeds")
    p_merge = sub.add_parser("merge", help="append the records of another store that this one lacks")
    p_merge.add_argument("source", help="the store to read (e.g. one that runs wrote outside the work tree)")
    p_merge.add_argument("--store", default=str(DEFAULT_STORE))
    args = parser.parse_args(argv)
    if args.command == "show":
        if not Path(args.store).is_file():
            parser.error(f"no store at {args.store}; run experiments first or pass --store PATH")
        records = Store(args.store).records(name=args.name)
        print(report(records) if args.markdown else _table(records))
        return 0
    if args.command == "merge":
        if not Path(args.source).is_file():
            parser.error(f"no store at {args.source}")
        added = Store(args.store).merge(Store(args.source))
        print(f"merged {len(added)} record(s) into {args.store}" + "".join(f"\n  {n}" for n in added))
        return 0
    experiments = [e for path in args.configs for e in load_config(path)]
    if args.only:
        experiments = [e for e in experiments if args.only in e.name]
    if args.shard:
        try:
            k, n = (int(x) for x in args.shard.split("/"))
            if not 0 <= k < n:
                raise ValueError
        except ValueError:
            parser.error(f"--shard takes K/N with 0 <= K < N, got {args.shard!r}")
        experiments = experiments[k::n]
    experiments = [dataclasses.replace(e, threads=args.threads) for e in experiments]
    if args.gpus > 0:
        experiments = [dataclasses.replace(e, device="cuda") if e.device == "auto" else e for e in experiments]
    if "+dirty" in PROVENANCE["git_commit"] and not args.allow_dirty:
        parser.error(f"the work tree has uncommitted changes ({PROVENANCE['git_commit']}): a record must name "
                     f"committed code. Commit first, or pass --allow-dirty (the records then name the diff's hash)")
    ran = sweep(experiments, args.store, use_ray=args.ray or args.ray_address is not None,
                ray_address=args.ray_address, threads_per_task=args.threads, gpus_per_task=args.gpus,
                skip_done=not args.again, checkpoint_every=args.checkpoint_every)
    print(f"ran {len(ran)} experiment(s) into {args.store}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
