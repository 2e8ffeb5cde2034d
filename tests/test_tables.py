"""pinnkit.plots.tables: the HTML/text tables the chapters show instead of wide printed ones."""
from types import SimpleNamespace

import pytest
import torch

from pinnkit.plots import endpoint_summary, table
from pinnkit.plots import tables as pk_tables
from pinnkit.plots.tables import Table


def test_text_and_html_hold_every_cell():
    t = table(["a", "b"], [[1, "<x>"], [22, 3.5]])
    assert str(t).splitlines() == ["a     b", "1   <x>", "22  3.5"]
    html = t._repr_html_()
    assert html.count("<tr>") == 3 and "&lt;x&gt;" in html and "<x>" not in html


def test_ragged_rows_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="one per column"):
        Table(("a", "b"), (("1",),))


def test_endpoint_summary_columns():
    point = SimpleNamespace(loss=0.25, grad_norm=1e-11, index=2, min_eig=-3e-2, label="saddle")
    e = SimpleNamespace(name="newton", seed=1, start="init", point=point, tangent_align=1e-12,
                        run=SimpleNamespace(theta=torch.tensor([1.0, -3e4])))
    t = endpoint_summary([e])
    assert t.header[:3] == ("method", "seed", "loss") and t.rows == (
        ("newton", "1", "2.5e-01", "1.0e-11", "2", "-3.0e-02", "1.0e-12", "3e+04", "saddle"),)
    assert "start" in endpoint_summary([SimpleNamespace(**{**vars(e), "start": "zero"})]).header


def test_tuning_table_lines_up_the_rates_and_marks_the_choice():
    adam = SimpleNamespace(lrs=(1e-2, 3e-2), losses=(0.35, 0.16), best=3e-2)
    soap = SimpleNamespace(lrs=(3e-2, 1e-1), losses=(0.022, 0.014), best=1e-1)
    t = pk_tables.tuning_table({"adam": adam, "soap": soap})
    assert [r[0] for r in t.rows] == ["1e-02", "3e-02", "1e-01", "chosen"]
    assert t.rows[0] == ("1e-02", "3.5e-01", "") and t.rows[1] == ("3e-02", "1.6e-01", "2.2e-02")
    assert t.rows[-1] == ("chosen", "lr 3e-02", "lr 1e-01")


def test_spread_table_is_median_min_max_over_seeds():
    spread = SimpleNamespace(lr=0.1, loss=[3.0, 1.0, 2.0], l2re=[0.5] * 3, intra=[-0.5, 0.25, 0.0], inter=[1.0] * 3,
                             inter_grad=[0.0] * 3, intra_precond=[0.0] * 3, imbalance=[2.0, 3.0, 4.0])
    study = SimpleNamespace(traces={"soap": ()}, summary=lambda m: spread)
    t = pk_tables.spread_table(study)
    assert t.header == ("median [min, max] over seeds", "soap (lr 1e-01)")
    assert t.rows[0] == ("final loss", "2.0e+00 [1.0e+00, 3.0e+00]")
    assert t.rows[2] == ("intra-step A(g_i)", "+0.00 [-0.50, +0.25]") and t.rows[-1][1] == "3 [2, 4]"
