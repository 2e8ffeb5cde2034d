r"""Experiments: a run is a serialisable config (:class:`Experiment`) and a :class:`Record` in an SQLite :class:`Store`.

:func:`run` trains an experiment with :func:`pinnkit.train` and appends its record (loss per term, L2RE, time per
iteration, provenance) in one transaction; a long run checkpoints every ``checkpoint_every`` seconds and, run
again, resumes to the result of an uninterrupted run. :func:`load_config` reads experiments from TOML. Shell:
``python -m pinnkit.experiments run CONFIG [--ray]``, ``... show [--markdown]``, ``... merge OTHER``.

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
import platform
import re
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from .features import PowerLaw, fit_power_law

__all__ = ["Experiment", "Record", "Store", "load_config", "run", "sweep", "report", "main", "stored", "progress",
           "Progress", "DEFAULT_STORE", "REPOSITORY_STORE", "REPLAYS", "Replay", "replay", "replay_path"]

#: the default results store, relative to the working directory
DEFAULT_STORE = Path("results") / "pinnkit.sqlite"
#: the store committed with the repository (exists in a clone, not in an installed wheel)
REPOSITORY_STORE = Path(__file__).resolve().parents[1] / "results" / "pinnkit.sqlite"
#: where ``tools/replay.py`` keeps the parameters of stored runs made again (see :func:`replay_path`)
REPLAYS = REPOSITORY_STORE.parent / "replays"
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: config fields that do not change a run's result, left out of :attr:`Experiment.key`
UNKEYED = ("name", "threads")
#: the store's schema version (``PRAGMA user_version``); :class:`Store` migrates older files when it opens them
SCHEMA_VERSION = 3
#: run statuses: those of :func:`pinnkit.train` and ``"error"`` (the run raised; ``message`` says what)
FAILED = ("diverged", "error")


@dataclass(frozen=True)
class Experiment:
    """One training run, described by plain values (stored, hashed, sent to a worker).

    ``problem``/``params`` name a :func:`pinnkit.problems.make` problem; ``widths`` … ``activation`` the network
    and collocation points; ``method`` … ``phase_options`` go to :func:`pinnkit.train`; ``dtype`` is
    ``"float32"``/``"float64"``, ``device`` ``"cpu"``/``"cuda"``/``"auto"``. ``analysis`` names post-training
    measurements (``"hessian_extremes"``: extreme eigenvalues of the dense Hessian), ``log`` quantities logged
    along training (``"intra_alignment"``); ``threads``: torch CPU threads.
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
        from .problems import PROBLEMS
        from .training import _names

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"{self.name}: {message}")

        check(self.dtype in DTYPES, f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        check(self.device in ("cpu", "cuda", "auto"), f"device must be 'cpu', 'cuda' or 'auto', got {self.device!r}")
        check(self.problem.lower().replace("-", "_") in PROBLEMS,
              f"problem {self.problem!r} is not one of {sorted(PROBLEMS)}")
        check(self.sampling in ("grid", "authors", "random"),
              f"sampling must be 'grid', 'authors' or 'random', got {self.sampling!r}")
        try:
            _names(self.method)
        except ValueError as err:
            raise ValueError(f"{self.name}: method: {err}") from None
        for kind, valid in (("analysis", ANALYSES), ("log", LOGGERS)):
            unknown = set(getattr(self, kind)) - set(valid)
            check(not unknown, f"unknown {kind} {sorted(unknown)}; valid: {sorted(valid)}")
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
        if set(d) - valid:
            raise TypeError(f"unknown experiment field(s) {sorted(set(d) - valid)}; valid: {sorted(valid)}")
        return cls(**d)

    @classmethod
    def from_stored(cls, d: Mapping[str, Any]) -> "Experiment":
        """A config read back from a store: unknown fields (a newer pinnkit's) drop, missing ones take defaults."""
        valid = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in valid})

    @property
    def key(self) -> str:
        """SHA-256 (16 hex digits) of the fields that affect the result (all but :data:`UNKEYED`)."""
        d = {k: v for k, v in self.to_dict().items() if k not in UNKEYED}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Record:
    """What a run leaves in the store; ``evals`` counts loss + gradient evaluations (``None``: not counted);
    ``machine`` names the processor that made it (float32 runs of one config end elsewhere on another; ``""`` in
    records made before it was stored).
    """

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
    evals: int | None = None
    message: str = ""            # why a failed run failed
    machine: str = ""            # the processor that made the run, see :func:`machine`

    @property
    def failed(self) -> bool:
        """True for a run that diverged or raised (its numbers are those of its last finite iterate)."""
        return self.status in FAILED

    @property
    def retry(self) -> bool:
        """True when a sweep should make this run again: it raised (a bug or the environment, not the method), or
        it diverged before records said why (the stored divergence of a run is its result, not a failure to run).
        """
        return self.status == "error" or (self.status == "diverged" and not self.message)

    def loss_at(self, iteration: int) -> float:
        """The loss at the last log point at or before ``iteration`` (counted as ``history["iteration"]``)."""
        return self._logged_at("loss", iteration)

    def l2re_at(self, iteration: int) -> float:
        """The L2RE at the last log point at or before ``iteration``, as :meth:`loss_at`."""
        return self._logged_at("l2re", iteration)

    def _logged_at(self, key: str, iteration: int) -> float:
        its, values = self.history.get("iteration", []), self.history.get(key, [])
        before = [v for it, v in zip(its, values) if it <= iteration]
        if not before:
            raise ValueError(f"no log point at or before iteration {iteration} (the first is {its[0] if its else None})")
        return float(before[-1])


_COLUMNS = [f.name for f in dataclasses.fields(Record) if f.name != "id"]
_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL,
    loss REAL, terms TEXT, l2re REAL, iterations INTEGER, seconds REAL, seconds_per_iteration REAL,
    status TEXT, history TEXT, analysis TEXT,
    pinnkit_version TEXT, git_commit TEXT, torch_version TEXT, device TEXT, created TEXT NOT NULL,
    evals INTEGER, message TEXT, machine TEXT
);
CREATE INDEX IF NOT EXISTS records_key ON records (key);
CREATE INDEX IF NOT EXISTS records_name ON records (name);
"""


class Store:
    """An append-only SQLite file of :class:`Record`\\ s."""

    def __init__(self, path: str | Path = DEFAULT_STORE):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ValueError(f"{self.path} has schema version {version}, newer than this pinnkit's "
                                 f"{SCHEMA_VERSION}; upgrade pinnkit to write to it")
            db.executescript(_SCHEMA)
            if version < SCHEMA_VERSION:
                self._migrate(db, version)

    @staticmethod
    def _migrate(db: sqlite3.Connection, version: int) -> None:
        """From schema 0-2: add ``evals``, ``message`` and ``machine``; recompute every key (version 1 hashed all)."""
        cols = {row[1] for row in db.execute("PRAGMA table_info(records)")}
        for col, kind in (("evals", "INTEGER"), ("message", "TEXT"), ("machine", "TEXT")):
            if col not in cols:
                db.execute(f"ALTER TABLE records ADD COLUMN {col} {kind}")
        for rid, config in db.execute("SELECT id, config FROM records").fetchall():
            db.execute("UPDATE records SET key = ? WHERE id = ?", (Experiment.from_stored(json.loads(config)).key, rid))
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def append(self, row: Mapping[str, Any]) -> int:
        """Insert one finished run in a single transaction and return its id."""
        values = [json.dumps(row.get(c)) if isinstance(row.get(c), (dict, list)) else row.get(c) for c in _COLUMNS]
        with closing(self._connect()) as db, db:
            cur = db.execute(f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                             values)
        return int(cur.lastrowid or 0)

    def records(self, name: str | None = None, key: str | None = None) -> list[Record]:
        """The stored records, oldest first; ``name`` may use SQL ``LIKE`` wildcards (``"table1/%"``)."""
        where = [(sql, arg) for sql, arg in (("name LIKE ?", name), ("key = ?", key)) if arg is not None]
        sql = "SELECT * FROM records" + (" WHERE " + " AND ".join(s for s, _ in where) if where else "")
        with closing(self._connect()) as db:
            db.row_factory = sqlite3.Row
            rows = db.execute(sql + " ORDER BY id", [a for _, a in where]).fetchall()
        out = []
        for r in rows:
            d = {k: v for k, v in dict(r).items() if k == "id" or k in _COLUMNS}   # a newer schema's columns drop
            for c in ("terms", "history", "analysis"):
                d[c] = json.loads(d[c]) if d.get(c) else {}
            d["config"] = Experiment.from_stored(json.loads(d["config"]))
            d["message"] = d.get("message") or ""
            d["machine"] = d.get("machine") or ""
            out.append(Record(**d))
        return out

    def merge(self, other: "Store") -> list[str]:
        """Append the records of ``other`` that this store lacks (same key and creation time); return their names."""
        have = {(r.key, r.created) for r in self.records()}
        added = []
        for r in other.records():
            if (r.key, r.created) not in have:
                self.append(_as_row(r))
                added.append(r.name)
        return added

    def latest(self, experiment: Experiment) -> Record | None:
        """The newest record of exactly this config, or ``None``."""
        found = self.records(key=experiment.key)
        return found[-1] if found else None


def _as_row(r: Record) -> dict[str, Any]:
    return {**{c: getattr(r, c) for c in _COLUMNS}, "config": r.config.to_dict()}


# --- config files ------------------------------------------------------------------------------------------
def _merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win; tables (``params``, ``options``, ...) merge key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        for k, v in layer.items():
            out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def load_config(path: str | Path) -> list[Experiment]:
    """The experiments of a TOML file: each ``[[experiment]]`` merged deeply over ``[base]``, times ``[grid]``::

        [base]
        widths = [50, 50, 50]
        [grid]
        seed = [123, 234]             # one experiment per combination: "convection/adam/seed=123", ...
        [[experiment]]
        name = "convection/adam"
        problem = "convection"
        params = { beta = 40.0 }
        method = "adam"

    Every experiment is validated here; a ``ValueError`` names the file, the experiment and the field.
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
        for combo in itertools.product(*(grid[k] for k in keys)):
            d = _merge(base, entry, dict(zip(keys, combo)))
            label = d.get("name", f"experiment #{i + 1}")
            if keys and "name" in d:
                d["name"] = "/".join([str(d["name"]), *(f"{k}={_short(v)}" for k, v in zip(keys, combo))])
            try:
                out.append(Experiment.from_dict(d))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{path}: experiment {label!r}: {err}") from None
    return out


def _short(v: Any) -> str:
    return "x".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)


# --- running -------------------------------------------------------------------------------------------------
def _hessian_extremes(experiment: Experiment, pinn: Any, theta: torch.Tensor) -> dict[str, float]:
    r""":math:`\lambda_{\max}`, :math:`\lambda_{\min}`, :math:`\min|\lambda|` and :math:`\max|\lambda| / \min|\lambda|`
    (Rathore et al.'s Fig. 10 ratio, ``inf`` for a singular Hessian) of the dense float64 Hessian at ``theta`` on the
    run's own points. The records made before 2026-12-05 stored :math:`|\lambda_{\max}| / \min|\lambda|`, the same
    number whenever :math:`\lambda_{\max} \ge |\lambda_{\min}|` (every stored Fig. 10 record).
    """
    from .curvature import hessian

    exact = build(dataclasses.replace(experiment, dtype="float64"))
    exact.points = {k: v.to(torch.float64) for k, v in pinn.points.items()}
    lam = torch.linalg.eigvalsh(hessian(exact.loss, theta.to(torch.float64)))
    return {"lambda_max": float(lam.max()), "lambda_min": float(lam.min()), "min_abs_lambda": float(lam.abs().min()),
            "ratio_max_over_min_abs": float(lam.abs().max() / lam.abs().min()), "n_params": float(lam.numel())}


def _intra_alignment(pinn: Any) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """The alignment score of the per-term gradients, as a ``train(log=...)`` callback."""
    from .alignment import alignment_score, term_gradients

    return lambda theta, grad: alignment_score(term_gradients(pinn.terms, theta))


ANALYSES = {"hessian_extremes": _hessian_extremes}
LOGGERS = {"intra_alignment": _intra_alignment}


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).resolve().parent,
                          timeout=10).stdout


def _provenance() -> dict[str, str]:
    """The versions of pinnkit and torch and the git commit (``<commit>+dirty.<sha256(git diff HEAD)[:12]>``)."""
    from . import __version__

    try:
        commit = _git("rev-parse", "--short=12", "HEAD").strip() or "unknown"
        diff = _git("diff", "HEAD") if commit != "unknown" else ""
        if diff:
            commit += "+dirty." + hashlib.sha256(diff.encode()).hexdigest()[:12]
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {"pinnkit_version": __version__, "git_commit": commit, "torch_version": torch.__version__}


def machine(device: str | torch.device = "cpu") -> str:
    """The processor a run on ``device`` uses: for the CPU its architecture, model name and the instruction set
    torch's kernels use (``torch.backends.cpu.get_cpu_capability()``), which decide how float32 sums round; for a
    GPU its name.

    >>> machine("cpu").startswith(platform.machine())
    True
    """
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{platform.machine()} {model} ({torch.backends.cpu.get_cpu_capability()})".replace("  ", " ")


#: the provenance of the code this process runs, taken at import (when the run ends another commit may be out)
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
    """``$PINNKIT_CACHE``, else ``~/.cache/pinnkit``: checkpoints live outside the work tree."""
    env = os.environ.get("PINNKIT_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pinnkit"


def checkpoint_path(experiment: Experiment, directory: str | Path) -> Path:
    """Where the checkpoint of ``experiment`` lives (one file per config key)."""
    return Path(directory) / f"{experiment.key}.pt"


def run(experiment: Experiment, store: Store | str | Path | None = DEFAULT_STORE, *,
        checkpoints: str | Path | None = None, checkpoint_every: float = 300.0, stop_after: int | None = None,
        quiet: bool = True, resumable: bool | None = None) -> Record | None:
    """Train ``experiment`` (resuming from its checkpoint) and append its :class:`Record` to ``store``.

    A diverged run is recorded with ``status="diverged"`` (the last finite iterate's numbers) and why in
    ``message``, one that raises with ``status="error"`` and the exception in ``message``; neither raises.
    ``store=None`` only returns the record (and checkpoints only if ``resumable=True``). ``checkpoints`` defaults
    to ``cache_dir() / "checkpoints"``; ``stop_after`` interrupts after that many steps of this call (with a
    checkpoint) and returns ``None``.
    """
    from .training import TrainState, train

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
        row = _row(experiment, result.status, str(pinn.device), result.history, analysis, message=result.reason)
    except Exception as err:  # noqa: BLE001 - any failure becomes a record, so that no run is lost
        row = _row(experiment, "error", experiment.device, error=err, seconds=time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    new_id = store.append(row) if store is not None else 0
    if ckpt is not None and row["status"] != "error":   # an error keeps its checkpoint: fix the cause, run again
        ckpt.unlink(missing_ok=True)
    if store is None:
        return Record(id=0, **{**row, "config": experiment})
    return store.records(key=experiment.key)[-1] if new_id else None


@dataclass(frozen=True)
class Replay:
    """A stored run made again to ``steps``: its parameters ``theta`` after that many steps, and how many of the
    record's log points before ``steps`` the replay logged with the same loss, bit for bit (``matched`` of
    ``compared``; a record made on another processor, or by other code, may part from its replay by rounding).
    """

    name: str
    steps: int
    theta: torch.Tensor
    matched: int
    compared: int


def replay_path(name: str, steps: int, root: Path = REPLAYS) -> Path:
    """The file that keeps the parameters of the run named ``name`` after ``steps`` steps (``/`` becomes ``__``).

    >>> replay_path("table1/wave/lbfgs/seed=1", 150, Path("replays")).as_posix()
    'replays/table1__wave__lbfgs__seed=1__step=150.pt'
    """
    return root / f"{name.replace('/', '__')}__step={steps}.pt"


def replay(record: Record, steps: int, quiet: bool = True) -> Replay:
    """Make ``record``'s run again from its config, for its first ``steps`` steps (records keep no parameters), and
    compare the losses it logs with the record's. Nothing is stored.
    """
    from .training import train

    e = record.config
    if not 0 < steps <= e.steps:
        raise ValueError(f"steps must be in 1..{e.steps} (the run's length), got {steps}")
    threads = torch.get_num_threads()
    torch.set_num_threads(e.threads)
    try:
        pinn = build(e)
        result = train(pinn, e.method, e.steps, switch=e.switch, log_every=e.log_every, quiet=quiet, desc=e.name,
                       stop_after=steps if steps < e.steps else None, phase_options=e.phase_options,
                       log={k: LOGGERS[k](pinn) for k in e.log}, on_diverge="stop", **e.options)
    finally:
        torch.set_num_threads(threads)
    stored_loss = dict(zip(record.history.get("step", []), record.history.get("loss", [])))
    pairs = [(loss, stored_loss[s]) for s, loss in zip(result.history.step, result.history.loss) if s in stored_loss]
    return Replay(name=record.name, steps=steps, theta=result.theta.detach(), matched=sum(a == b for a, b in pairs),
                  compared=len(pairs))


def _row(experiment: Experiment, status: str, device: str, h: Any = None, analysis: Mapping[str, float] | None = None,
         error: BaseException | None = None, seconds: float = math.nan, message: str = "") -> dict[str, Any]:
    """The store row of a run from its :class:`~pinnkit.training.History` ``h`` (``message``: why it stopped, if it
    failed), or of a run that raised ``error``.
    """
    message = message if error is None else f"{type(error).__name__}: {error}"
    row = {"key": experiment.key, "name": experiment.name, "config": experiment.to_dict(), "status": status,
           "analysis": dict(analysis or {}), "device": device, "message": message, "machine": machine(device),
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **PROVENANCE}
    if h is None:
        return {**row, "loss": math.nan, "terms": {}, "l2re": math.nan, "iterations": 0, "seconds": seconds,
                "seconds_per_iteration": math.nan, "history": {}, "evals": None}
    return {**row, "loss": h.loss[-1], "terms": {k: v[-1] for k, v in h.terms.items()},
            "l2re": h.l2re[-1] if h.l2re else math.nan, "iterations": h.iteration[-1], "seconds": h.time[-1],
            "seconds_per_iteration": h.time[-1] / max(h.iteration[-1], 1), "evals": h.evals[-1] if h.evals else None,
            "history": {k: getattr(h, k) for k in ("step", "iteration", "phase", "loss", "terms", "l2re", "grad_norm",
                                                   "time", "extra", "evals", "stops")}}


@dataclass(frozen=True)
class Progress:
    """Where one experiment stands: ``state`` is ``"stored"`` (its newest record's ``status`` in ``status``),
    ``"running"`` (a checkpoint at step ``step`` of ``steps`` after ``minutes`` of optimizer time, in the phase
    named ``phase``) or ``"waiting"``; a record that a sweep would make again (:attr:`Record.retry`) counts as not
    stored.
    """

    name: str
    state: str
    steps: int
    step: int = 0
    phase: str = ""
    minutes: float = 0.0
    status: str = ""


def progress(experiments: Iterable[Experiment], store: str | Path = DEFAULT_STORE,
             checkpoints: str | Path | None = None) -> list[Progress]:
    """Where each of ``experiments`` stands (:class:`Progress`), read from ``store`` and the checkpoints (default
    ``cache_dir() / "checkpoints"``) without running anything: for checking on long background runs.
    """
    from .training import TrainState

    db = Store(store) if Path(store).is_file() else None
    directory = Path(checkpoints) if checkpoints is not None else cache_dir() / "checkpoints"
    out = []
    for e in experiments:
        r = db.latest(e) if db is not None else None
        ckpt = checkpoint_path(e, directory)
        if r is not None and not r.retry:
            out.append(Progress(e.name, "stored", e.steps, r.iterations or 0, status=r.status,
                                minutes=(r.seconds or 0.0) / 60))
        elif ckpt.is_file():
            st = TrainState.load(ckpt, map_location="cpu")
            phases = st.method.split("+")
            out.append(Progress(e.name, "running", e.steps, st.k, phases[min(st.phase, len(phases) - 1)],
                                st.elapsed / 60))
        else:
            out.append(Progress(e.name, "waiting", e.steps))
    return out


def _run_remote(config: dict[str, Any], checkpoints: str | None, threads: int | None,
                checkpoint_every: float = 300.0) -> dict[str, Any]:
    """A Ray task: run one experiment and return its row for the driver to write (checkpoints: the worker's)."""
    e = Experiment.from_dict(config)
    if threads is not None:
        e = dataclasses.replace(e, threads=threads)
    record = run(e, None, checkpoints=checkpoints, checkpoint_every=checkpoint_every, resumable=True)
    assert record is not None
    return _as_row(record)


def sweep(experiments: Iterable[Experiment], store: str | Path = DEFAULT_STORE, *, use_ray: bool = False,
          ray_address: str | None = None, threads_per_task: int = 1, gpus_per_task: float = 0.0,
          skip_done: bool = True, checkpoints: str | Path | None = None,
          checkpoint_every: float = 300.0) -> list[str]:
    """Run ``experiments`` into ``store`` in turn or as Ray tasks; return the names that ran, in finishing order.

    A failed run is recorded (:func:`run`) and the sweep goes on. With ``use_ray`` (``pip install pinnkit[sweep]``;
    ``ray_address`` joins a cluster) tasks return their rows and the driver appends each as it finishes.
    ``skip_done`` skips configs with a record that need not be made again (:attr:`Record.retry`).
    ``gpus_per_task > 0`` needs every experiment on ``device="cuda"`` or ``"auto"`` (else ``ValueError``).
    """
    todo = list(experiments)
    cpu = [e.name for e in todo if e.device == "cpu"] if gpus_per_task > 0 else []
    if cpu:
        raise ValueError(f"--gpus {gpus_per_task:g} gives each task a GPU, but {len(cpu)} experiment(s) run on "
                         f"device='cpu' (e.g. {cpu[0]!r}); set device = \"cuda\" in the config")
    db = Store(store)
    if skip_done:
        todo = [e for e in todo if (r := db.latest(e)) is None or r.retry]
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
    """The records at ``path`` (default: the repository's store) as :meth:`Store.records`; ``[]`` without a file
    there (never creates one).
    """
    return Store(path).records(name) if Path(path).is_file() else []


def _fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2e}"


def report(records: Sequence[Record]) -> str:
    r"""A markdown table of ``records`` (one row per run, "—" where an older record lacks a value), and the fit
    :math:`\lambda_{\max}/\min|\lambda| \propto n_{\rm res}^p` of the Fig. 10 runs; ``book/reproduction.md`` embeds it.
    """
    lines = ["| run | width | seed | dtype | device | commit | status | iterations | loss evaluations | loss | L2RE |"
             " ms per evaluation | lambda_max / min abs(lambda) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    def natural(r: Record) -> tuple[str, int]:  # n_res=256 before n_res=1024
        return re.sub(r"\d+", lambda m: m.group().zfill(10), r.name), r.id

    for r in sorted(records, key=natural):
        c, ratio = r.config, r.analysis.get("ratio_max_over_min_abs")
        per_eval = "—" if not r.evals else f"{1e3 * r.seconds / r.evals:.3g}"
        lines.append(f"| {r.name} | {'x'.join(map(str, c.widths))} | {c.seed} | {c.dtype} | {r.device} | "
                     f"{r.git_commit} | {r.status} | {r.iterations} | {'—' if r.evals is None else r.evals} | "
                     f"`{_fmt(r.loss)}` | `{_fmt(r.l2re)}` | {per_eval} | "
                     f"{'—' if ratio is None else '`' + _fmt(ratio) + '`'} |")
    fig10 = [r for r in records if r.name.startswith("fig10/") and "ratio_max_over_min_abs" in r.analysis]
    fit = _fig10_fit(fig10)
    if fit is not None:
        n = [r.config.n_res for r in fig10]
        lines += ["", f"Fig. 10 at the authors' setting ({len(fig10)} runs, n_res {min(n)}..{max(n)}): "
                      f"`lambda_max / min abs(lambda) ~ n_res^{fit.slope:.2f}`"]
    return "\n".join(lines)


def _fig10_fit(records: Sequence[Record]) -> PowerLaw | None:
    """The power law through the records' ``ratio_max_over_min_abs`` against ``n_res`` (None below two n_res)."""
    fig10 = [r for r in records if "ratio_max_over_min_abs" in r.analysis]
    if len({r.config.n_res for r in fig10}) < 2:
        return None
    return fit_power_law([r.config.n_res for r in fig10], [r.analysis["ratio_max_over_min_abs"] for r in fig10])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pinnkit.experiments {run,show,merge,progress} ...``."""
    parser = argparse.ArgumentParser(prog="python -m pinnkit.experiments", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the experiments of config files (resumes interrupted ones)")
    p_run.add_argument("configs", nargs="+")
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
    p_show.add_argument("--name", default=None, help="SQL LIKE pattern, e.g. 'table1/%%'")
    p_show.add_argument("--markdown", action="store_true", help="only the table book/reproduction.md embeds")
    p_prog = sub.add_parser("progress", help="where each run of config files stands: stored, running (its "
                            "checkpoint's step) or waiting")
    p_prog.add_argument("configs", nargs="+")
    p_prog.add_argument("--only", default=None, help="only experiments whose name contains this text")
    p_merge = sub.add_parser("merge", help="append the records of another store that this one lacks")
    p_merge.add_argument("source", help="the store to read (e.g. one that runs wrote outside the work tree)")
    for p in (p_run, p_show, p_merge, p_prog):
        p.add_argument("--store", default=str(DEFAULT_STORE), help=f"the results store (default {DEFAULT_STORE})")
    args = parser.parse_args(argv)
    if args.command == "show":
        if not Path(args.store).is_file():
            parser.error(f"no store at {args.store}; run experiments first or pass --store PATH")
        records = Store(args.store).records(name=args.name)
        failures = [] if args.markdown else [f"{r.name}: {r.status}: {r.message}" for r in records if r.message]
        print("\n".join([report(records), *failures]))
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
    if args.command == "progress":
        for g in progress(experiments, args.store):
            where = {"stored": f"stored ({g.status}), {g.minutes:.0f} min",
                     "running": f"step {g.step} of {g.steps} ({g.phase}), {g.minutes:.0f} min so far",
                     "waiting": "waiting"}[g.state]
            print(f"{g.name}: {where}")
        return 0
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
