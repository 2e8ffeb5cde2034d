"""Experiments: configs, the SQLite results store, resumable runs, and the sequential and Ray sweeps."""
from __future__ import annotations

import dataclasses
import os
import sqlite3
from pathlib import Path

import pytest
import torch

from pinnkit.experiments import Experiment, Store, load_config, main, run, stored, sweep


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


def test_loss_at_reads_the_logged_history():
    rec = run(dataclasses.replace(TINY, analysis=()), store=None)
    h = rec.history
    assert rec.loss_at(h["iteration"][-1]) == rec.loss and rec.loss_at(0) == h["loss"][0]
    assert rec.loss_at(h["iteration"][1] + 1) == h["loss"][1]          # the last log point at or before
    with pytest.raises(ValueError, match="no log point"):
        rec.loss_at(-1)
