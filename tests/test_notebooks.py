"""The course notebooks run top to bottom in quick mode (SPPO_QUICK=1 shrinks every budget).

Each notebook is executed on a copy, in a fresh kernel of this Python, from the notebooks/ folder as a
student's `jupyter lab` would; a cell that raises fails the test. The committed notebooks (with their
full-budget outputs) are never rewritten here.
"""
import os
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["01_credit_assignment.ipynb", "02_control_benchmark.ipynb", "03_llm_sppo.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_quick_mode(name, monkeypatch):
    monkeypatch.setenv("SPPO_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)   # the kernel draws inline, as in jupyter lab
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_has_outputs(name):
    """Browsed on the web, a notebook shows its figures: every committed code cell was run, and each
    notebook carries at least one picture."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), "run the notebook with full budgets and save it"
    assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs)


@pytest.mark.parametrize("name", NAMES)
def test_readme_figure_matches_the_notebook(name):
    """README's (or results/README.md's) picture of each notebook is the one its committed outputs hold
    (python notebooks/export_figures.py writes them)."""
    import sys
    sys.path.insert(0, str(NOTEBOOKS))
    from export_figures import readme_figure
    path = NOTEBOOKS / name
    assert (NOTEBOOKS / "figures" / f"{path.stem}.png").read_bytes() == readme_figure(path)
    shown = (NOTEBOOKS.parent / "README.md").read_text() + (NOTEBOOKS.parent / "results" / "README.md").read_text()
    assert f"notebooks/figures/{path.stem}.png" in shown   # the front page, or the results page (../notebooks/...)
