"""Experiments: configs, the SQLite results store, resumable runs, and the sequential and Ray sweeps."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sqlite3
from pathlib import Path

import pytest
import torch

from pinnkit.experiments import Experiment, Store, load_config, main, progress, replay, run, stored, sweep


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Checkpoints of the tests' runs go to a temporary cache, never to the user's ~/.cache/pinnkit."""
    monkeypatch.setenv("PINNKIT_CACHE", str(tmp_path / "cache"))

ROOT = Path(__file__).resolve().parents[1]

TINY = Experiment(name="tiny/convection/adam+lbfgs", problem="convection", params={"beta": 1.0}, widths=(6,),
                  n_res=32, n_ic=8, n_bc=4, method="adam+lbfgs", steps=14, switch=8,
                  phase_options={"adam": {"lr": 1e-2}}, dtype="float64", log_every=2,
                  analysis=("hessian_extremes",))


def test_config_round_trip_and_key():
    assert Experiment.from_dict(TINY.to_dict()) == TINY
    assert dataclasses.replace(TINY, seed=1).key != TINY.key
    with pytest.raises(TypeError, match="valid"):
        Experiment.from_dict({**TINY.to_dict(), "learning_rate": 1.0})
    with pytest.raises(ValueError, match="dtype"):
        dataclasses.replace(TINY, dtype="float16")
    with pytest.raises(ValueError, match="analysis"):
        dataclasses.replace(TINY, analysis=("spectrum",))


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_configs_load(path):
    exps = load_config(path)
    assert exps and len({e.key for e in exps}) == len(exps)


def test_the_table2_control_is_table2_with_gradient_descent_in_place_of_nncg():
    """Up to the switch to NNCG the control runs are the Table 2 runs (so they start from the same iterate)."""
    table2 = {(e.problem, e.seed): e for e in load_config(ROOT / "configs" / "rathore_table2_authors.toml")}
    control = load_config(ROOT / "configs" / "rathore_table2_control.toml")
    assert sorted((c.problem, c.seed) for c in control) == sorted(table2)
    same = ("params", "widths", "n_res", "n_ic", "n_bc", "sampling", "activation", "steps", "switch", "options",
            "dtype", "log_every")
    for c in control:
        e = table2[c.problem, c.seed]
        assert all(getattr(c, f) == getattr(e, f) for f in same) and e.method == "adam+lbfgs+nncg"
        assert c.method == "adam+lbfgs+gd_armijo" and dict(c.phase_options) == {"adam": e.phase_options["adam"]}


def test_paper_settings_in_configs():
    first = {e.name: e for e in load_config(ROOT / "configs" / "rathore_table1_seed123.toml")}
    assert len(first) == 9 and {e.sampling for e in first.values()} == {"grid"}
    authors = {e.name: e for name in ("rathore_table1", "rathore_table1_wave", "rathore_table1_float64")
               for e in load_config(ROOT / "configs" / f"{name}.toml")}
    assert len(authors) == 30 + 9 + 15 and {e.sampling for e in authors.values()} == {"authors"}
    assert {e.seed for e in authors.values()} == {123, 234, 345, 456, 567}
    for e in [*first.values(), *authors.values()]:  # 41,000 iterations, an L-BFGS step counting 20
        phases = e.method.split("+")
        adam = e.switch if phases == ["adam", "lbfgs"] else (e.steps if phases == ["adam"] else 0)
        lbfgs = e.steps - adam
        assert adam + 20 * lbfgs == 41_000 and e.widths == (50, 50, 50) and e.n_res == 10_000
    fig10 = load_config(ROOT / "configs" / "rathore_fig10.toml")
    assert [e.n_res for e in fig10] == [2 ** k for k in range(8, 14)]
    assert {(e.seed, e.sampling, e.widths, e.switch, e.steps) for e in fig10} == {(345, "random", (32,), 11_000,
                                                                                   12_500)}


def test_grid_expansion(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[base]\nproblem = "convection"\n[grid]\nseed = [1, 2]\nwidths = [[4], [6]]\n'
                   '[[experiment]]\nname = "a"\n')
    names = sorted(e.name for e in load_config(cfg))
    assert names == ["a/seed=1/widths=4", "a/seed=1/widths=6", "a/seed=2/widths=4", "a/seed=2/widths=6"]
    cfg.write_text('[grid]\nseed = 1\n[[experiment]]\nname = "a"\nproblem = "convection"\n')
    with pytest.raises(ValueError, match="non-empty list"):
        load_config(cfg)


def test_run_writes_a_record(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    rec = run(TINY, store)
    assert rec is not None and rec.key == TINY.key and rec.config == TINY
    assert rec.iterations == 8 + 20 * 6 and rec.status in ("max_steps", "converged")
    assert rec.l2re == pytest.approx(rec.history["l2re"][-1]) and rec.loss == pytest.approx(sum(rec.terms.values()))
    assert rec.analysis["n_params"] == TINY.widths[0] * 4 + 1 == 25
    assert rec.analysis["ratio_max_over_min_abs"] >= 1.0
    assert rec.torch_version == torch.__version__ and rec.device == "cpu" and rec.git_commit
    assert store.latest(TINY) == rec and store.records(name="tiny/%") == [rec]


def test_a_replay_makes_the_stored_run_again_and_says_where_it_parts():
    """The first steps of a stored run made again: the same losses, bit for bit, and the parameters at that step."""
    rec = run(TINY, None)
    again = replay(rec, 10)                  # 8 Adam steps and 2 L-BFGS steps
    assert (again.matched, again.compared) == (5, 5) and again.steps == 10   # log points 0, 2, ..., 8
    from pinnkit.experiments import build
    assert float(build(TINY).loss(again.theta)) == pytest.approx(rec.history["loss"][5], rel=1e-12)
    assert torch.equal(replay(rec, 14).theta, replay(rec, 14).theta)
    # negative control: a record of another run parts from its "replay" at the first log point
    other = dataclasses.replace(rec, history={**rec.history, "loss": [x * (1 + 1e-9) for x in rec.history["loss"]]})
    assert replay(other, 4).matched == 0
    with pytest.raises(ValueError, match=r"1\.\.14"):
        replay(rec, 15)


def test_the_replay_tool_keeps_parameters_that_load_with_weights_only(tmp_path, monkeypatch, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("replay_tool", ROOT / "tools" / "replay.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rec = run(TINY, None)
    monkeypatch.setattr(tool, "ROOT", tmp_path)
    monkeypatch.setattr(tool.experiments, "stored", lambda name: [rec])
    monkeypatch.setattr(tool.experiments, "_provenance", lambda: {"git_commit": "0123abcd"})
    assert tool.main([rec.name, "10"]) == 0
    kept = torch.load(tool.path_of(rec.name, 10), weights_only=True)
    assert kept["git_commit"] == "0123abcd" and (kept["matched"], kept["compared"], kept["steps"]) == (5, 5, 10)
    assert torch.equal(kept["theta"], replay(rec, 10).theta)
    monkeypatch.setattr(tool.experiments, "_provenance", lambda: {"git_commit": "0123abcd+dirty.0"})
    assert tool.main([rec.name, "10"]) == 1 and "commit the code first" in capsys.readouterr().out


def test_float32_run_with_float64_analysis(tmp_path):
    e = dataclasses.replace(TINY, dtype="float32", steps=3, switch=2, name="tiny/f32")
    rec = run(e, tmp_path / "f.sqlite")
    assert rec.analysis["n_params"] == 25 and rec.analysis["min_abs_lambda"] > 0


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    whole = run(TINY, tmp_path / "a.sqlite")
    ckpt = tmp_path / "ckpt"
    assert run(TINY, tmp_path / "b.sqlite", checkpoints=ckpt, stop_after=5) is None      # inside Adam
    assert len(list(ckpt.glob("*.pt"))) == 1
    assert run(TINY, tmp_path / "b.sqlite", checkpoints=ckpt, stop_after=5) is None      # inside L-BFGS
    resumed = run(TINY, tmp_path / "b.sqlite", checkpoints=ckpt)
    assert resumed is not None and not list(ckpt.glob("*.pt"))
    assert resumed.history["loss"] == whole.history["loss"]
    assert resumed.history["step"] == whole.history["step"]
    assert resumed.loss == whole.loss and resumed.l2re == whole.l2re
    # negative control: a different config does not pick up the checkpoint of another
    other = dataclasses.replace(TINY, seed=3)
    assert run(other, None).loss != whole.loss


def test_an_interrupted_writer_leaves_finished_records_intact(tmp_path):
    store = Store(tmp_path / "r.sqlite")
    run(dataclasses.replace(TINY, analysis=()), store)
    db = sqlite3.connect(store.path)
    db.execute("BEGIN")
    db.execute("INSERT INTO records (key, name, config, created) VALUES ('x', 'half', '{}', 'now')")
    db.close()  # never committed: a crash in the middle of a write
    assert [r.name for r in store.records()] == [TINY.name]


def test_sequential_sweep_skips_done(tmp_path):
    exps = [dataclasses.replace(TINY, analysis=(), seed=s, name=f"tiny/{s}") for s in (0, 1)]
    assert sweep(exps, tmp_path / "s.sqlite") == ["tiny/0", "tiny/1"]
    assert sweep(exps, tmp_path / "s.sqlite") == []
    assert len(Store(tmp_path / "s.sqlite").records()) == 2


def test_ray_sweep(tmp_path):
    """The Ray path on a local Ray instance (CI installs the sweep extra and sets PINNKIT_REQUIRE_RAY=1)."""
    if os.environ.get("PINNKIT_REQUIRE_RAY") != "1":
        pytest.importorskip("ray")
    exps = [dataclasses.replace(TINY, analysis=(), seed=s, name=f"ray/{s}") for s in (0, 1)]
    ran = sweep(exps, tmp_path / "ray.sqlite", use_ray=True, threads_per_task=1)
    assert sorted(ran) == ["ray/0", "ray/1"]
    recs = {r.name: r for r in Store(tmp_path / "ray.sqlite").records()}
    assert sorted(recs) == ["ray/0", "ray/1"]
    local = run(exps[0], None)
    assert recs["ray/0"].loss == pytest.approx(local.loss, rel=1e-10)


def test_command_line(tmp_path, capsys, monkeypatch):
    import pinnkit.experiments as E

    monkeypatch.setenv("PINNKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(E.PROVENANCE, "git_commit", "0123456789ab")   # a clean tree
    cfg = tmp_path / "c.toml"
    cfg.write_text('[[experiment]]\nname = "cli"\nproblem = "convection"\nwidths = [4]\nn_res = 16\nn_ic = 4\n'
                   'n_bc = 2\nsteps = 3\nlog_every = 1\n')
    store = str(tmp_path / "cli.sqlite")
    assert main(["run", str(cfg), "--store", store]) == 0
    assert main(["show", "--store", store]) == 0
    assert "cli" in capsys.readouterr().out
    assert main(["progress", str(cfg), "--store", store]) == 0
    assert capsys.readouterr().out == "cli: stored (max_steps), 0 min\n"
    # a dirty tree is refused unless asked for; the record then names the diff's hash
    monkeypatch.setitem(E.PROVENANCE, "git_commit", "0123456789ab+dirty.feedfacecafe")
    with pytest.raises(SystemExit):
        main(["run", str(cfg), "--store", store, "--again"])
    assert "uncommitted changes" in capsys.readouterr().err
    assert main(["run", str(cfg), "--store", store, "--again", "--allow-dirty"]) == 0
    assert Store(store).records()[-1].git_commit.endswith("+dirty.feedfacecafe")
    # show on a missing store is an error, not an empty new file
    with pytest.raises(SystemExit):
        main(["show", "--store", str(tmp_path / "none.sqlite")])
    assert not (tmp_path / "none.sqlite").exists()


def test_stored_reads_an_existing_store_and_never_creates_one(tmp_path):
    missing = tmp_path / "nowhere" / "store.sqlite"
    assert stored(path=missing) == [] and not missing.parent.exists()
    from pinnkit.experiments import REPOSITORY_STORE
    assert REPOSITORY_STORE.is_file()                      # committed with the repository: the book reads it
    names = {r.name for r in stored("fig10/%")}
    assert len(names) == 6 and all(n.startswith("fig10/") for n in names)


def test_provenance_is_that_of_the_loaded_code(monkeypatch):
    """The commit is taken when the code is imported: a run that ends after a new commit must not claim it."""
    import pinnkit.experiments as E

    monkeypatch.setattr(E, "_provenance", lambda: pytest.fail("provenance asked when the run ended"))
    rec = run(dataclasses.replace(TINY, analysis=(), steps=2, switch=1), store=None)
    assert rec.git_commit == E.PROVENANCE["git_commit"] and rec.torch_version == torch.__version__
    # the processor, with the instruction set torch's CPU kernels use (it decides how float32 sums round)
    assert rec.machine == E.machine("cpu") and torch.backends.cpu.get_cpu_capability() in rec.machine


def test_a_merged_record_keeps_its_machine(tmp_path):
    a, b = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    rec = run(dataclasses.replace(TINY, analysis=(), steps=2, switch=1), b)
    assert rec is not None and rec.machine
    a.merge(b)
    assert a.records()[0].machine == rec.machine


def test_loss_at_reads_the_logged_history():
    rec = run(dataclasses.replace(TINY, analysis=()), store=None)
    h = rec.history
    assert rec.loss_at(h["iteration"][-1]) == rec.loss and rec.loss_at(0) == h["loss"][0]
    assert rec.loss_at(h["iteration"][1] + 1) == h["loss"][1]          # the last log point at or before
    assert rec.l2re_at(h["iteration"][-1]) == rec.l2re and rec.l2re_at(h["iteration"][1] + 1) == h["l2re"][1]
    with pytest.raises(ValueError, match="no log point"):
        rec.loss_at(-1)


# --- no run is lost; a store that lasts ----------------------------------------------------------------------
def test_key_hashes_only_what_changes_the_result():
    assert dataclasses.replace(TINY, name="other", threads=2).key == TINY.key
    assert dataclasses.replace(TINY, dtype="float32").key != TINY.key
    assert dataclasses.replace(TINY, sampling="authors").key != TINY.key


def test_failed_and_diverged_runs_are_recorded_and_a_sweep_goes_on(tmp_path):
    store = tmp_path / "s.sqlite"
    bad = dataclasses.replace(TINY, name="bad", params={"beta": "not a number"}, analysis=())
    wild = dataclasses.replace(TINY, name="wild", method="adam", steps=6, switch=None, phase_options={},
                               options={"lr": 1e30}, dtype="float32", analysis=())
    good = dataclasses.replace(TINY, name="good", analysis=())
    assert sweep([bad, wild, good], store) == ["bad", "wild", "good"]
    recs = {r.name: r for r in Store(store).records()}
    assert recs["bad"].status == "error" and "ValueError" in recs["bad"].message and recs["bad"].failed
    assert recs["wild"].status == "diverged" and recs["wild"].failed and math.isfinite(recs["wild"].loss)
    assert recs["wild"].message.startswith("loss became ") and " at step " in recs["wild"].message
    assert recs["good"].status == "max_steps" and not recs["good"].failed
    assert recs["good"].evals == recs["good"].history["evals"][-1] > 0
    # a run that raised is tried again; one that diverged and says why is a result, kept like the good one
    assert recs["bad"].retry and not recs["wild"].retry and not recs["good"].retry
    assert sweep([bad, wild, good], store) == ["bad"]
    old = dataclasses.replace(recs["wild"], message="")          # a divergence recorded before reasons were stored
    assert old.retry


def test_store_migrates_an_old_file_and_refuses_a_newer_one(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE records (
        id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, name TEXT NOT NULL, config TEXT NOT NULL,
        loss REAL, terms TEXT, l2re REAL, iterations INTEGER, seconds REAL, seconds_per_iteration REAL,
        status TEXT, history TEXT, analysis TEXT, pinnkit_version TEXT, git_commit TEXT, torch_version TEXT,
        device TEXT, created TEXT NOT NULL);""")
    config = {**TINY.to_dict(), "retired_field": 1}          # a field this version no longer knows loads leniently
    db.execute("INSERT INTO records (key, name, config, loss, terms, l2re, iterations, seconds, "
               "seconds_per_iteration, status, history, analysis, pinnkit_version, git_commit, torch_version, "
               "device, created) VALUES ('oldkey', 'old', ?, 1.0, '{}', 0.5, 10, 1.0, 0.1, 'max_steps', '{}', '{}', "
               "'0.1.0', 'abc', '2.2', 'cpu', 'then')", (json.dumps(config),))
    db.commit()
    db.close()
    (rec,) = Store(path).records()
    assert rec.key == TINY.key and rec.evals is None and rec.message == "" and rec.config == TINY
    assert rec.machine == ""                                  # not recorded then
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 3
    newer = sqlite3.connect(path)
    newer.execute("PRAGMA user_version = 99")
    newer.commit()
    newer.close()
    with pytest.raises(ValueError, match="newer than this pinnkit"):
        Store(path)


def test_merge_appends_what_is_missing(tmp_path):
    a, b = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    rec = run(dataclasses.replace(TINY, analysis=()), b)
    assert a.merge(b) == [rec.name] and a.merge(b) == []
    (copied,) = a.records()
    assert (copied.key, copied.loss, copied.history) == (rec.key, rec.loss, rec.history)


def test_config_tables_merge_deeply_and_every_experiment_is_validated(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[base]\nproblem = "convection"\noptions = { lr = 1e-2, history_size = 5 }\n'
                   '[[experiment]]\nname = "a"\noptions = { lr = 1e-3 }\n')
    (e,) = load_config(cfg)
    assert e.options == {"lr": 1e-3, "history_size": 5}
    cfg.write_text('[[experiment]]\nname = "ok"\nproblem = "convection"\n'
                   '[[experiment]]\nname = "typo"\nproblem = "convection"\nmethod = "adamm"\n')
    with pytest.raises(ValueError, match=r"c.toml: experiment 'typo': .*method.*unknown optimizer 'adamm'"):
        load_config(cfg)
    cfg.write_text('[[experiment]]\nname = "x"\nproblem = "convection"\nwidth = 5\n')
    with pytest.raises(ValueError, match=r"experiment 'x': unknown experiment field\(s\) \['width'\]"):
        load_config(cfg)


def test_run_without_a_store_writes_no_checkpoint_and_restores_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("PINNKIT_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    rec = run(dataclasses.replace(TINY, analysis=(), threads=threads + 1), None, stop_after=None)
    assert rec is not None and not (tmp_path / "cache").exists() and torch.get_num_threads() == threads


def test_gpus_need_cuda_experiments(tmp_path):
    with pytest.raises(ValueError, match="device='cpu'"):
        sweep([TINY], tmp_path / "g.sqlite", gpus_per_task=1)


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path):
    """A real process, killed mid-run: nothing half-written in the store, and the resumed run equals one that was
    never interrupted (Adam's state and the history come back from the checkpoint)."""
    import signal
    import subprocess
    import sys
    import time

    cache = tmp_path / "cache"
    cfg = tmp_path / "k.toml"
    cfg.write_text('[[experiment]]\nname = "killed"\nproblem = "convection"\nparams = { beta = 1.0 }\n'
                   'widths = [16, 16]\nn_res = 256\nn_ic = 32\nn_bc = 16\nmethod = "adam+lbfgs"\nsteps = 4000\n'
                   'switch = 3900\nlog_every = 100\nseed = 3\n')
    (exp,) = load_config(cfg)
    store = tmp_path / "k.sqlite"
    env = {**os.environ, "PINNKIT_CACHE": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "pinnkit.experiments", "run", str(cfg), "--store", str(store),
                             "--checkpoint-every", "0.2", "--allow-dirty"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = cache / "checkpoints" / f"{exp.key}.pt"
    deadline = time.monotonic() + 600
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ckpt.exists(), "the run wrote no checkpoint before it ended: " + proc.stderr.read().decode()[-500:]
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert Store(store).records() == []                     # killed: no record, and no broken one
    resumed = run(exp, store, checkpoints=cache / "checkpoints")
    whole = run(exp, tmp_path / "whole.sqlite", checkpoints=tmp_path / "other")
    assert resumed.loss == whole.loss and resumed.history["loss"] == whole.history["loss"]
    assert resumed.evals == whole.evals and resumed.history["stops"] == whole.history["stops"]
    assert not ckpt.exists() and len(Store(store).records()) == 1


def test_store_closes_every_connection_it_opens(tmp_path, monkeypatch):
    opened, connect = [], sqlite3.connect

    class Tracked(sqlite3.Connection):
        closed = False

        def close(self):
            self.closed = True
            super().close()

    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: opened.append(connect(*a, factory=Tracked, **k))
                        or opened[-1])
    store = Store(tmp_path / "s.sqlite")
    rec = run(dataclasses.replace(TINY, analysis=(), steps=2, switch=1), store)
    assert store.records() == [rec] and Store(tmp_path / "t.sqlite").merge(store) == [rec.name]
    assert len(opened) >= 5 and all(db.closed for db in opened)


def test_show_prints_one_table_and_the_failures_messages(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    sweep([dataclasses.replace(TINY, name="bad", params={"beta": "not a number"}, analysis=())], store)
    assert main(["show", "--store", str(store)]) == 0
    plain = capsys.readouterr().out
    assert main(["show", "--store", str(store), "--markdown"]) == 0
    markdown = capsys.readouterr().out
    assert plain.startswith(markdown.rstrip("\n")) and markdown.startswith("| run | width |")
    assert "bad: error: ValueError" in plain and "ValueError" not in markdown


def test_the_fig10_fit_lives_in_the_book():
    import pinnkit.experiments as E
    from pinnkit.book.experiments_study import fig10_fit

    assert not hasattr(E, "fig10_fit")
    fit = fig10_fit(stored("fig10/%"))
    assert fit is not None and f"n_res^{fit.slope:.2f}`" in E.report(stored())
    assert fig10_fit(stored("fig10/%")[:1]) is None


def test_progress_reads_the_store_and_the_checkpoints_without_running(tmp_path, capsys):
    """A stored run, one interrupted inside L-BFGS (its checkpoint's step and phase), one not started."""
    store, ckpt = tmp_path / "p.sqlite", tmp_path / "ckpt"
    a, b, c = (dataclasses.replace(TINY, analysis=(), seed=s, name=f"tiny/{s}") for s in (0, 1, 2))
    run(a, store, checkpoints=ckpt)
    assert run(b, store, checkpoints=ckpt, stop_after=10) is None
    got = progress([a, b, c], store, ckpt)
    assert [(p.name, p.state) for p in got] == [("tiny/0", "stored"), ("tiny/1", "running"), ("tiny/2", "waiting")]
    assert got[0].status == "max_steps" and (got[1].step, got[1].phase, got[1].steps) == (10, "lbfgs", 14)
    assert len(Store(store).records()) == 1                      # nothing ran
    assert progress([a], tmp_path / "none.sqlite", ckpt)[0].state == "waiting"
