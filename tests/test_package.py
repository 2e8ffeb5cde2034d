"""The package as installed: what `import pinnkit` loads, and its typing marker."""
import subprocess
import sys
from pathlib import Path

import pinnkit


def test_import_does_not_load_matplotlib_or_ipywidgets():
    code = "import sys, pinnkit; print(sorted(m for m in ('matplotlib', 'ipywidgets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_plots_load_on_first_use():
    code = "import sys, pinnkit as pk; pk.plots.training; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


def test_unknown_attribute_names_itself():
    try:
        pinnkit.no_such_thing  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("pinnkit.no_such_thing did not raise")


def test_py_typed_marker_ships():
    assert (Path(pinnkit.__file__).parent / "py.typed").is_file()
    pyproject = (Path(pinnkit.__file__).parents[1] / "pyproject.toml").read_text()
    assert 'pinnkit = ["py.typed"]' in pyproject
