"""The what-works benchmark: its time budget (train's max_seconds), the lbfgs64 preset, the config and the table."""
import math
import time
from pathlib import Path

import pytest
import torch

import pinnkit as pk
from pinnkit.book import benchmark
from pinnkit.experiments import Experiment, Store, load_config, run

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "what_works.toml"


class _Slow:
    """A stepper whose every step takes at least 50 ms (it sleeps) and halves theta."""

    def __init__(self, terms_fn, theta):
        self.theta = theta.clone()

    def step(self):
        time.sleep(0.05)
        self.theta = self.theta * 0.5

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_max_seconds_stops_after_the_first_step_that_spends_the_budget():
    pk.STEPPERS["_slow"] = _Slow
    try:
        f = lambda t: (t ** 2).sum()  # noqa: E731
        run_ = pk.train(f, "_slow", steps=1000, theta0=torch.ones(2), quiet=True, log_every=1, max_seconds=0.2)
        h = run_.history
        assert run_.status == "max_seconds" and run_.steps <= 4 and h.step[-1] == run_.steps
        assert h.time[-2] < 0.2 <= h.time[-1]                       # the step that crossed the budget was the last
        assert float(f(run_.theta)) == h.loss[-1]                   # and its iterate is logged
        assert pk.train(f, "_slow", steps=2, theta0=torch.ones(2), quiet=True, max_seconds=60).status == "max_steps"
        with pytest.raises(ValueError, match="max_seconds must be a positive"):
            pk.train(f, "_slow", steps=2, theta0=torch.ones(2), quiet=True, max_seconds=0)
    finally:
        del pk.STEPPERS["_slow"]


class _Busy(_Slow):
    """A stepper whose every step spends at least 50 ms of this process's CPU time."""

    def step(self):
        c0 = time.process_time()
        while time.process_time() - c0 < 0.05:
            pass
        self.theta = self.theta * 0.5


def test_a_cpu_budget_counts_the_processs_cpu_time_not_the_wall_clock():
    pk.STEPPERS["_slow"], pk.STEPPERS["_busy"] = _Slow, _Busy
    try:
        f = lambda t: (t ** 2).sum()  # noqa: E731
        kw = dict(steps=12, theta0=torch.ones(2), quiet=True, log_every=1, max_seconds=0.2, budget_clock="cpu")
        sleeper = pk.train(f, "_slow", **kw)                 # 12 x 50 ms of sleep: no CPU time, no stop
        assert sleeper.status == "max_steps" and sleeper.history.time[-1] >= 0.6
        busy = pk.train(f, "_busy", **kw)
        cpu = busy.history.extra["cpu_time"]
        assert busy.status == "max_seconds" and busy.steps <= 4 and cpu[-2] < 0.2 <= cpu[-1]
        assert len(cpu) == len(busy.history.step) and cpu == sorted(cpu)
        saved = []                                           # a resumed run keeps what it has spent
        part = pk.train(f, "_busy", stop_after=2, checkpoint=saved.append, **kw)
        assert part.status == "interrupted" and saved[-1].cpu >= 0.1
        resumed = pk.train(f, "_busy", resume=saved[-1], **kw)
        assert resumed.status == "max_seconds" and resumed.steps <= 4
        with pytest.raises(ValueError, match="budget_clock must be"):
            pk.train(f, "_busy", steps=1, theta0=torch.ones(2), quiet=True, budget_clock="gpu")
    finally:
        del pk.STEPPERS["_slow"], pk.STEPPERS["_busy"]


def test_lbfgs64_is_lbfgs_with_zero_tolerances_in_float64():
    pinn = pk.PINN("convection", widths=[8], n_res=32, n_ic=16, n_bc=8, dtype=torch.float64)
    a = pk.train(pinn, "lbfgs64", steps=5, quiet=True)
    b = pk.train(pinn, "lbfgs", steps=5, quiet=True, tolerance_grad=0.0, tolerance_change=0.0)
    assert torch.equal(a.theta, b.theta) and a.history.loss == b.history.loss
    assert a.history.stops["reason"] == b.history.stops["reason"] and set(a.history.stops["phase"]) == {"lbfgs64"}
    with pytest.raises(ValueError, match="dtype=torch.float64"):
        pk.train(pk.PINN("convection", widths=[4], n_res=16, n_ic=4, n_bc=4), "lbfgs64", steps=1, quiet=True)


def test_the_config_gives_every_method_the_same_budget_on_every_problem_over_three_seeds():
    exps = load_config(CONFIG)
    cells: dict[tuple[str, str], list[Experiment]] = {}
    for e in exps:
        problem, method, _ = benchmark.parse_name(e.name)
        cells.setdefault((problem, method), []).append(e)
    problems = {p for p, _ in cells}
    methods = {m for _, m in cells}
    assert problems == {"convection", "reaction", "wave", "poisson2d"} and len(methods) == 9
    assert len(cells) == len(problems) * len(methods) and all(len(v) >= 3 for v in cells.values())
    assert {e.options["max_seconds"] for e in exps} == {30.0} and {e.options["budget_clock"] for e in exps} == {"cpu"}
    for (_, method), runs in cells.items():
        assert {e.seed for e in runs} == {0, 1, 2} and all(e.method == method for e in runs)
        float64 = method in ("lbfgs64", "engd", "lm", "ssbfgs", "ssbroyden")
        assert {e.dtype for e in runs} == {"float64" if float64 else "float32"}
    # the same network and points for every method of a problem
    for problem in problems:
        shapes = {(e.widths, e.n_res, e.n_ic, e.n_bc, e.sampling, tuple(e.params.items()))
                  for (p, _), runs in cells.items() if p == problem for e in runs}
        assert len(shapes) == 1, problem


def test_table_and_curves_read_stored_runs(tmp_path):
    store = tmp_path / "ww.sqlite"
    for seed in (0, 1):
        e = Experiment(name=f"what-works/convection/adam/seed={seed}", problem="convection", params={"beta": 1.0},
                       widths=(4,), n_res=16, n_ic=4, n_bc=4, method="adam", steps=4, seed=seed, log_every=2,
                       options={"lr": 1e-2, "max_seconds": 60.0, "budget_clock": "cpu"})
        run(e, store)
    records = Store(store).records("what-works/%")
    (row,) = benchmark.table(records)
    errs = sorted(r.l2re for r in records)
    assert (row.problem, row.method, row.seeds, row.dtype, row.failed) == ("convection", "adam", 2, "float32", 0)
    assert row.low == errs[0] and row.high == errs[1] and math.isclose(row.median, sum(errs) / 2)
    (runs,) = benchmark.curves(records).values()
    assert len(runs) == 2 and all(len(t) == len(e) == 3 and e[-1] in errs for t, e in runs)
    cpu = sorted(r.history["extra"]["cpu_time"] for r in records)
    assert sorted(t for t, _ in runs) == cpu                   # the budget's clock, CPU seconds
    assert "| adam (float32) |" in benchmark.markdown([row])
    with pytest.raises(ValueError, match="not a benchmark record name"):
        benchmark.parse_name("table1/convection/adam")
