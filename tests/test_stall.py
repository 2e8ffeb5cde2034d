"""pinnkit.book.stall: stop reasons of torch L-BFGS steps, where a run froze, summaries of stored runs."""
import math
import statistics
from types import SimpleNamespace

import pytest
import torch

import pinnkit as pk
from pinnkit.book import stall
from pinnkit.training import LBFGS_REASONS, History


def test_frozen_step_is_the_start_of_the_final_run_of_tolerance_stops():
    h = History(stops={"step": list(range(6)), "phase": ["lbfgs"] * 6, "evals": [25, 3, 25, 2, 1, 1],
                       "reason": ["max_iter", "tolerance_change:loss", "max_iter", "tolerance_change:step",
                                  "tolerance_change:gd", "tolerance_change:gd"]})
    assert stall.frozen_step(h) == 3                       # the early tolerance stop at step 1 is not the freeze
    assert stall.tolerance_stops(h) == 4 and stall.tolerance_stops(History()) == 0
    h2 = History(stops={"step": [0, 1], "phase": ["lbfgs"] * 2, "evals": [1, 25], "reason": ["tolerance_change:gd",
                                                                                              "max_iter"]})
    assert stall.frozen_step(h2) is None and stall.frozen_step(History()) is None
    assert set(stall.ENDS_ON_TOLERANCE) | {"max_iter", "max_eval"} == set(LBFGS_REASONS)


def test_the_lbfgs_summaries_read_only_the_lbfgs_phases_of_the_stops():
    """Adam -> L-BFGS -> NNCG logs NNCG's steps in the same lists; the freeze is L-BFGS's."""
    h = History(stops={"step": [0, 1, 2, 3], "phase": ["lbfgs", "lbfgs", "nncg", "nncg"], "evals": [25, 1, 42, 3],
                       "reason": ["max_iter", "tolerance_change:gd", "max_iter:ascent:no_step",
                                  "max_iter:descent:step"]})
    assert stall.frozen_step(h) == 1 and stall.tolerance_stops(h) == 1
    assert stall.reason_counts(h) == {"max_iter": 1, "tolerance_change:gd": 1}
    h64 = History(stops={"step": [0], "phase": ["lbfgs64"], "evals": [1], "reason": ["tolerance_change:gd"]})
    assert stall.frozen_step(h64) == 0


def test_float32_lbfgs_freezes_on_a_tolerance_test_and_zero_tolerances_remove_it():
    """A real run: float32 L-BFGS on a small PINN ends its late steps on a tolerance test; in float64 with both
    tolerances at zero no step can end on one (only max_iter / max_eval)."""
    pinn = pk.PINN(pk.problems.Convection(beta=2.0), widths=[8], n_res=32, n_ic=8, n_bc=4, seed=0)
    run = pk.train(pinn, "lbfgs", 40, quiet=True, log_every=1)
    k = stall.frozen_step(run.history)
    assert k is not None and k < 40
    assert all(e <= 3 for e in run.history.stops["evals"][k + 1:])     # frozen steps cost one or a few evaluations
    p64 = pk.PINN(pk.problems.Convection(beta=2.0), widths=[8], n_res=32, n_ic=8, n_bc=4, seed=0, dtype=torch.float64)
    r64 = pk.train(p64, "lbfgs", 5, theta0=run.theta.double(), quiet=True, log_every=1, tolerance_grad=0,
                   tolerance_change=0)
    assert set(stall.reason_counts(r64.history)) <= {"max_iter", "max_eval"}


def test_frozen_iteration_of_a_stored_history():
    h = {"iteration": [0, 100, 200, 300, 400], "loss": [1.0, 0.5, 0.2, 0.2 * (1 + 1e-8), 0.2]}
    assert stall.frozen_iteration(h) == 200
    assert stall.frozen_iteration({"iteration": [0, 1], "loss": [1.0, 0.5]}) is None


def _rec(name, loss, l2re, evals=None, seconds=1.0, status="max_steps", history=None):
    return SimpleNamespace(name=name, loss=loss, l2re=l2re, evals=evals, seconds=seconds, status=status,
                           history=history or {})


def test_records_summary_groups_seeds_and_counts_failures():
    stops = {"step": [0, 1, 2], "phase": ["lbfgs"] * 3, "evals": [25, 1, 1],
             "reason": ["max_iter", "tolerance_change:gd", "tolerance_change:gd"]}
    hist = {"step": [0, 1, 2, 3], "iteration": [0, 20, 40, 60], "stops": stops}
    recs = [_rec("t/conv/lbfgs/seed=1", 1e-2, 0.7, evals=27, seconds=2.7, history=hist),
            _rec("t/conv/lbfgs/seed=2", 4e-2, 0.2, evals=27, seconds=5.4, history=hist),
            _rec("t/conv/lbfgs/seed=3", 2e-2, 0.9, evals=27, seconds=8.1, history=hist),
            _rec("t/conv/adam/seed=1", math.nan, math.nan, status="error")]
    text = stall.records_summary(recs).splitlines()
    row = next(line for line in text if line.startswith("t/conv/lbfgs "))
    assert "2.0e-02 [1.0e-02, 4.0e-02]" in row and "7.0e-01 [2.0e-01, 9.0e-01]" in row
    cols = row.split()
    assert cols[1] == "3" and cols[-5] == "2" and cols[-4] == "27" and cols[-3] == "200"   # 2 failed; 200 ms/eval
    assert cols[-2] == "20" and cols[-1] == "6/9"          # frozen from iteration 20; 6 of 9 steps on a tolerance
    assert any("t/conv/adam" in line and "raised" in line for line in text)


def test_records_rows_are_the_summary_cells():
    stops = {"step": [0, 1], "phase": ["lbfgs"] * 2, "evals": [25, 1], "reason": ["max_iter", "tolerance_change:gd"]}
    hist = {"step": [0, 1, 2], "iteration": [0, 20, 40], "stops": stops}
    recs = [_rec("t/w/lbfgs/seed=1", 1e-2, 0.7, evals=26, seconds=2.6, history=hist),
            _rec("t/w/lbfgs/seed=2", 3e-2, 0.1, evals=26, seconds=2.6, history=hist),
            _rec("t/w/lbfgs/seed=3", math.nan, math.nan, status="error"),
            _rec("t/w/adam/seed=1", math.nan, math.nan, status="error")]
    header, rows = stall.records_rows(recs)
    assert header[:2] == ["runs", "seeds"] and len(header) == 10
    assert rows[0] == ["t/w/adam", "0", "", "", "", "", "", "", "", "1"]          # only a raised run
    assert rows[1] == ["t/w/lbfgs", "2", "2.0e-02 [1.0e-02, 3.0e-02]", "4.0e-01 [1.0e-01, 7.0e-01]", "1", "26", "100",
                       "20", "2/4", "1"]
    text = stall.records_summary(recs).splitlines()
    assert any(line.startswith("t/w/lbfgs ") and line.endswith("(1 raised)") for line in text)


def test_late_change_reads_the_last_stretch_of_the_log():
    h = {"iteration": [0, 100, 200, 300, 400], "loss": [8.0, 4.0, 2.0, 1.0, 1.0]}
    assert stall.late_change(h) == 0.0                     # flat over the last quarter (300 -> 400)
    assert stall.late_change(h, 0.5) == 0.5                # 2.0 at iteration 200 -> 1.0
    assert stall.late_change({"iteration": [0, 10], "loss": [1.0, 2.0]}, 1.0) == -1.0   # a rise is negative
    with pytest.raises(ValueError, match="fraction"):
        stall.late_change(h, 0.0)


def test_precision_pairs_match_problem_method_and_seed_across_families():
    def rec(name, dtype, status="max_steps"):
        return SimpleNamespace(name=name, status=status, config=SimpleNamespace(dtype=dtype))
    a32, a64 = rec("authors/conv/lbfgs/seed=2", "float32"), rec("f64/conv/lbfgs/seed=2", "float64")
    b32, b64 = rec("authors/conv/lbfgs/seed=1", "float32"), rec("f64/conv/lbfgs/seed=1", "float64")
    only32 = rec("authors/conv/adam/seed=1", "float32")
    raised = rec("f64/conv/adam/seed=1", "float64", status="error")
    pairs = stall.precision_pairs([a32, a64, b64, b32, only32, raised, rec("misc", "float32")])
    assert pairs == {("conv", "lbfgs"): [(1, b32, b64), (2, a32, a64)]}


def test_l2re_by_method_groups_family_problem_and_method_seeds_ascending():
    def rec(name, l2re, status="max_steps"):
        return SimpleNamespace(name=name, status=status, l2re=l2re)
    records = [rec("a/conv/lbfgs/seed=2", 0.2), rec("a/conv/lbfgs/seed=1", 0.1), rec("a/reac/adam/seed=1", 0.3),
               rec("b/conv/lbfgs/seed=1", 0.4), rec("a/conv/adam/seed=1", 9.0, status="error"),
               rec("a/conv/adam", 0.5), rec("a/conv/adam+lbfgs/mu=1/seed=1", 0.6)]
    assert stall.l2re_by_method(records) == {("a", "conv"): {"lbfgs": [0.1, 0.2]}, ("a", "reac"): {"adam": [0.3]},
                                             ("b", "conv"): {"lbfgs": [0.4]}}


def test_nncg_phase_of_a_real_run_and_its_errors():
    """The phase summary of an actual Adam -> L-BFGS -> NNCG run agrees with the stepper's own diagnostics."""
    pinn = pk.PINN(pk.problems.Reaction(rho=1.0), widths=[6], n_res=32, n_ic=8, n_bc=4, seed=0, dtype=torch.float64)
    run = pk.train(pinn, "adam+lbfgs+nncg", 16, switch=(6, 4), lr=1e-2, quiet=True, log_every=1, rank=5, cg_iters=10)
    h = {"step": run.history.step, "phase": run.history.phase, "loss": run.history.loss, "l2re": run.history.l2re,
         "stops": run.history.stops}
    rec = SimpleNamespace(name="t/reaction/adam+lbfgs+nncg/mu=1e-2/seed=0", status=run.status, message=None,
                          history=h)
    p = stall.nncg_phase(rec)
    diag = run.stepper.diagnostics
    assert (p.problem, p.mu, p.seed, p.steps, p.logged) == ("reaction", "1e-2", 0, 6, 6)
    assert p.accepted == sum(d.t > 0 for d in diag) and p.loss_end == pytest.approx(diag[-1].loss_after, rel=1e-12)
    assert p.ascent == sum(not d.descent for d in diag) and p.capped == sum(d.exit == "max_iter" for d in diag)
    assert p.gain == pytest.approx(diag[0].loss_before / diag[-1].loss_after, rel=1e-12) and p.gain >= 1
    with pytest.raises(ValueError, match=r"\[/mu=M\]/seed=N"):
        stall.nncg_phase(SimpleNamespace(name="t/reaction/adam+lbfgs+nncg/mu=1e-2", status="max_steps", history=h))
    with pytest.raises(ValueError, match="no 'nncg' phase"):
        stall.nncg_phase(SimpleNamespace(name="t/r/m/mu=1/seed=0", status="diverged", history={"phase": ["adam"]}))


def test_the_control_phase_is_summarised_as_nncg_is():
    """Gradient descent with the Armijo search in place of NNCG (Table 2's control): steps taken, evaluations."""
    pinn = pk.PINN(pk.problems.Reaction(rho=1.0), widths=[6], n_res=32, n_ic=8, n_bc=4, seed=0, dtype=torch.float64)
    run = pk.train(pinn, "adam+lbfgs+gd_armijo", 16, switch=(6, 4), lr=1e-2, quiet=True, log_every=1)
    h = {"step": run.history.step, "phase": run.history.phase, "loss": run.history.loss, "l2re": run.history.l2re,
         "stops": run.history.stops}
    p = stall.nncg_phase(SimpleNamespace(name="t/reaction/adam+lbfgs+gd_armijo/seed=3", status=run.status,
                                         message=None, history=h), phase="gd_armijo")
    gd = [k for k, ph in enumerate(h["stops"]["phase"]) if ph == "gd_armijo"]
    assert (p.problem, p.mu, p.seed, p.steps, p.logged, p.ascent, p.capped) == ("reaction", "", 3, 6, 6, 0, 0)
    assert p.accepted == sum(h["stops"]["t"][k] > 0 for k in gd) and p.accepted > 0
    assert p.evals == statistics.median(h["stops"]["evals"][k] for k in gd) and math.isnan(p.hvps)
    assert p.gain == pytest.approx(h["loss"][h["phase"].index("gd_armijo")] / h["loss"][-1], rel=1e-12)
    assert p.gain >= 1


def test_phase_l2re_counts_steps_from_the_switch_and_ends_at_the_final_error():
    """The L2RE along an actual run's NNCG phase: keyed 0, 1, ... from the switch, the last one the final model's."""
    pinn = pk.PINN(pk.problems.Reaction(rho=1.0), widths=[6], n_res=32, n_ic=8, n_bc=4, seed=0, dtype=torch.float64)
    run = pk.train(pinn, "adam+lbfgs+nncg", 16, switch=(6, 4), lr=1e-2, quiet=True, log_every=1, rank=5, cg_iters=10)
    h = {"step": run.history.step, "phase": run.history.phase, "l2re": run.history.l2re}
    at = stall.phase_l2re(h)
    assert list(at) == list(range(7))                     # the switch (step 10) and the 6 NNCG steps
    assert at[6] == pytest.approx(pinn.l2re(run.theta), rel=1e-12)
    assert at[0] == h["l2re"][h["phase"].index("nncg")] and stall.phase_l2re(h, "adam")[0] == h["l2re"][0]
    with pytest.raises(ValueError, match="no 'gd_armijo' phase"):
        stall.phase_l2re(h, "gd_armijo")
