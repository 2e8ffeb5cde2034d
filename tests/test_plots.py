"""pinnkit.plots: the one home of every figure; each function draws what it says and follows one return convention."""
import ast
import pathlib

import matplotlib
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import pinnkit as pk
from pinnkit import alignment as al
from pinnkit import curvature as C
from pinnkit import landscape as L
from pinnkit import plots
from pinnkit import stationary as st
from pinnkit.book import alignment_study as AS
from pinnkit.book import stationary_survey as SS
from pinnkit.book.regression import Regression

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

F64 = torch.float64
PINNKIT = pathlib.Path(pk.__file__).parent


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def quadratic(P=6, seed=0):
    """f(theta) = 1/2 (theta - c)^T A (theta - c), eigenvalues 7, 3, 1.5, 0.5, 0.25, -2."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(P, P, generator=g, dtype=F64))
    A = Q @ torch.diag(torch.tensor([7.0, 3.0, 1.5, 0.5, 0.25, -2.0], dtype=F64)[:P]) @ Q.T
    c = torch.randn(P, generator=g, dtype=F64)
    return (lambda th: 0.5 * (th - c) @ A @ (th - c)), c


def test_only_pinnkit_plots_imports_matplotlib():
    """One home: the analysis modules return results; only pinnkit.plots draws them."""
    offenders = []
    for path in PINNKIT.rglob("*.py"):
        if path.parent.name == "plots":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(PINNKIT)}:{node.lineno}" for n in names if n.startswith("matplotlib")]
    assert not offenders, f"matplotlib imported outside pinnkit.plots: {offenders}"
    for name in ("alignment", "conditioning", "curvature", "features", "landscape", "newton", "stationary"):
        module = getattr(pk, name)
        assert not [f for f in vars(module) if f.startswith("plot_")], name


def test_every_public_plot_is_exported_and_documented():
    for name in plots.__all__:
        obj = getattr(plots, name)
        assert name == "EXPLORER_DIRECTIONS" or (obj.__doc__ and f":func:`{name}`" in plots.__doc__), name


# --- spectra ----------------------------------------------------------------------------------------------------
def test_sorted_eigenvalues_by_magnitude_with_negatives_hollow():
    ax = plots.plot_sorted_eigenvalues({"a": torch.tensor([4.0, -1.0, 1e-3], dtype=F64)}, rcut=1e-2, band=(0.5, 2.0))
    assert isinstance(ax, Axes)
    xs, ys = ax.lines[0].get_data()
    assert list(xs) == [1, 2, 3] and ys.tolist() == pytest.approx([1.0, 0.25, 2.5e-4])
    assert ax.lines[1].get_data()[0].tolist() == [2]                 # the negative eigenvalue, open circle
    raw = plots.plot_sorted_eigenvalues({"a": C.Eigen(torch.tensor([-1.0, 4.0], dtype=F64), None)}, normalize=False)
    assert raw.lines[0].get_data()[1].tolist() == [4.0, 1.0] and raw.get_ylabel() == "|λ_i|"


def test_spectra_state_and_share_sigma():
    a = C.SpectralDensity.from_eigenvalues(torch.tensor([0.1, 1.0, 100.0], dtype=F64))
    b = C.SpectralDensity.from_eigenvalues(torch.tensor([0.5, 2.0], dtype=F64))
    ax = plots.plot_spectra({"a": a, "b": b}, sigma="shared")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [f"a ($\\sigma$ = {a.sigma:.2g})", f"b ($\\sigma$ = {a.sigma:.2g})"]
    with pytest.raises(ValueError, match="shared"):
        plots.plot_spectra({"a": a}, sigma="same")


def test_density_curves_leave_the_far_tail_blank():
    sd = C.SpectralDensity.from_eigenvalues(torch.tensor([-3.0, 0.1, 1.0, 100.0], dtype=F64), sigma=0.5)
    ax = plots.plot_density(sd, label="sd")
    y = ax.lines[0].get_data()[1]
    assert ax.get_xscale() == "symlog" and ax.get_yscale() == "log"
    assert bool(torch.isnan(torch.as_tensor(y)).any()) and float(torch.nanmean(torch.as_tensor(y))) > 0
    log = sd.log_density(sigma=0.2)
    ax = plots.plot_log_density(log, label="sd")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["sd, $\\lambda > 0$", "sd, $\\lambda < 0$"]
    assert ax.lines[1].get_linestyle() == "--"


def test_lanczos_convergence_draws_j_ritz_values_at_step_j():
    A = torch.diag(torch.arange(1.0, 11.0, dtype=F64))
    ax = plots.plot_lanczos_convergence(A, 10, 10, eigenvalues=torch.diag(A))
    ritz = [ln for ln in ax.lines if ln.get_marker() == "."]
    assert [len(ln.get_data()[0]) for ln in ritz] == list(range(1, 11))
    tops = [max(ln.get_data()[1]) for ln in ritz]
    assert all(b >= a - 1e-9 for a, b in zip(tops, tops[1:]))              # interlacing: the largest only grows
    assert sorted(ritz[-1].get_data()[1]) == pytest.approx(list(range(1, 11)), abs=1e-8)   # n steps: exact


def test_power_law_fit_is_drawn_over_its_range_with_its_slope():
    x = torch.tensor([1.0, 2.0, 4.0, 8.0], dtype=F64)
    fit = pk.features.fit_power_law(x, 3 * x ** 2)
    ax = plots.plot_power_law(x, 3 * x ** 2, fit, xlabel="K", ylabel="κ", base=2)
    xs = ax.lines[1].get_data()[0]
    assert float(min(xs)) == pytest.approx(1.0) and float(max(xs)) == pytest.approx(8.0)
    assert "slope 2.00" in ax.get_legend().get_texts()[1].get_text()


# --- landscape --------------------------------------------------------------------------------------------------
def test_slices_and_explorer():
    f, c = quadratic()
    d = L.hessian_directions(f, c, k=2)
    s = L.slice_2d(f, c, d, span=1.0, n=5)
    assert "λ=7" in plots.plot_slice_2d(s).get_xlabel()
    assert isinstance(plots.plot_slice_2d(s, kind="surface"), Axes)
    assert isinstance(plots.plot_slice_1d(L.slice_1d(f, c, d, n=5)), Axes)
    show = plots.explorer({"quad": (f, c)}, n=5)
    fig, axes = plt.subplots(1, 2)
    for ax, kind in zip(axes, (plots.EXPLORER_DIRECTIONS[0], plots.EXPLORER_DIRECTIONS[-1])):
        show("quad", kind, 0.5, ax=ax)
    assert "λ=7" in axes[1].get_xlabel() and "filter" in axes[0].get_xlabel()
    with pytest.raises(ValueError, match="valid: quad"):
        show("cubic", kind, 0.5)
    with pytest.raises(ValueError, match="log=False"):
        plots.plot_slice_2d(L.slice_2d(lambda th: f(th) - 1.0, c, d, n=3), log=True)
    with pytest.raises(ValueError, match="contour"):
        plots.plot_slice_2d(s, kind="heatmap")


def test_relative_log_plot_on_a_shared_scale():
    f, c = quadratic()
    d = L.hessian_directions(f, c, k=2)
    s = L.slice_2d(lambda th: f(th) - 5.0, c, d, span=1.0, n=5)      # negative values: relative makes them plottable
    ax = plots.plot_slice_2d(s, relative=True, vrange=(1e-3, 10.0))
    assert "at the centre" in ax.figure.axes[1].get_ylabel()
    with pytest.raises(ValueError, match="log=False"):
        plots.plot_slice_2d(s, log=True)                             # the plain loss is negative somewhere


# --- stationary points ------------------------------------------------------------------------------------------
def test_saddle_slices_follow_the_quadratic_model():
    f, c = quadratic()
    fig = plots.plot_saddle_slices(f, c, radius=0.5, n=7)
    assert isinstance(fig, Figure)
    t, line = fig.axes[0].lines[0].get_data()
    _, model = fig.axes[0].lines[1].get_data()
    torch.testing.assert_close(torch.as_tensor(line), torch.as_tensor(model))   # exact for a quadratic
    assert "-2" in fig.axes[0].lines[1].get_label()


def test_index_against_loss_and_endpoint_fits():
    starts = lambda m: [("init", m.theta0), ("u=0", st.zero_output(m))]
    E = SS.survey(lambda s: Regression(widths=[4], n=6, seed=s), [0], {"gn": ("gauss_newton", 30, {"residual": True})},
                  starts=starts, grad_tol=1e-8, global_below=1e-12)
    fig = plots.plot_index_vs_loss([e.point for e in E], groups=[e.start for e in E])
    assert isinstance(fig, Figure) and [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["init (1)",
                                                                                                         "u=0 (1)"]
    with pytest.raises(ValueError, match="one entry per point"):
        plots.plot_index_vs_loss([e.point for e in E], groups=["a"])
    ax = plots.plot_endpoint_fits(Regression(widths=[4], n=6, seed=0), E, seed=0)
    assert isinstance(ax, Axes) and ax.lines[-1].get_label() == "target" and len(ax.lines) == len(E) + 1


# --- alignment ----------------------------------------------------------------------------------------------------
def test_alignment_figures():
    fig = plots.plot_score_geometry((2, 3), points=7)
    assert isinstance(fig, Figure)
    two = fig.axes[0].lines[0].get_data()[1]
    assert two[0] == pytest.approx(1.0) and two[-1] == pytest.approx(-1.0)      # two vectors: the cosine, 0..180°
    e = torch.eye(2, dtype=F64)
    fig = plots.plot_vectors({"orthogonal": {"a": e[0], "b": e[1]}})
    assert "A = 0.00" in fig.axes[0].get_title()
    W, b = torch.diag(torch.tensor([1.0, 100.0], dtype=F64)), torch.tensor([0.0, 0.02], dtype=F64)
    terms = lambda th: {"one": 0.5 * ((W @ th) ** 2).sum(), "two": 0.5 * ((W @ th - b) ** 2).sum()}
    r = lambda th: torch.cat([W @ th, W @ th - b]) / 2 ** 0.5
    pre = al.preconditioned_alignment(terms, r, torch.tensor([1.0, 1e-4], dtype=F64), dampings=(1e-14, 1e6))
    fig = plots.plot_preconditioned({"p": pre})
    assert fig.axes[0].lines[0].get_data()[1].tolist() == pytest.approx(list(pre.newton))


def test_alignment_along_training():
    make = lambda s: pk.PINN("convection", widths=[4], n_res=16, n_ic=4, n_bc=4, dtype=F64, seed=s)
    fixed = AS.Tuning(method="adam", lrs=(1e-3,), losses=(0.0,), best=1e-3)
    study = AS.study(make, ("adam",), (1e-3,), 4, seeds=(0, 1), tune_seed=9, log_every=1, tunings={"adam": fixed})
    fig = plots.plot_study(study, smooth=1)
    assert len(fig.axes) == 6 and len(fig.axes[0].lines) == 2                # one line per seed; legend in the 6th
    pinn = make(0)
    run = pk.train(pinn, "adam", 4, lr=1e-3, log_every=1, log={"intra": al.IntraStep(pinn.terms), "inter": al.InterStep()})
    fig = plots.plot_alignment_history({"adam": run})
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "L2RE", "intra-step alignment", "inter-step alignment"]


# --- training -----------------------------------------------------------------------------------------------------
def test_solution_is_drawn_on_the_pinns_own_evaluation_grid():
    pinn = pk.PINN("convection", widths=[4], n_res=16, n_ic=4, n_bc=4, dtype=F64, eval_shape=(17, 9))
    fig = plots.plot_solution(pinn, pinn.theta0, title="init")
    assert fig.axes[0].collections[0].get_array().shape == (17, 9)
    assert "L2RE" in fig._suptitle.get_text()
    run = pk.train(pinn, "adam+lbfgs", 3, switch=2, log_every=1)
    fig = plots.plot_history({"run": run}, metrics=("loss", "grad_norm"))
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "gradient norm"]
    assert any(ln.get_linestyle() == ":" for ln in fig.axes[0].lines)           # the Adam -> L-BFGS switch
    with pytest.raises(ValueError, match="iteration"):
        plots.plot_history({"run": run}, x="time")
    fig = plots.plot_history({"run": run}, metrics=("loss", "grad_norm", "residual"), ncols=2)   # 2 rows of 2
    assert [ax.get_visible() for ax in fig.axes] == [True, True, True, False]
    assert fig.axes[2].get_position().y0 < fig.axes[0].get_position().y0        # the third panel: second row
    with pytest.raises(ValueError, match="ncols"):
        plots.plot_history({"run": run}, ncols=0)
