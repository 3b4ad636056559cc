"""The course notebooks run top to bottom in quick mode (SPPO_QUICK=1 shrinks every budget).

Each notebook is executed on a copy, in a fresh kernel of this Python, from the notebooks/ folder as a
student's `jupyter lab` would; a cell that raises fails the test. The committed notebooks (with their
full-budget outputs) are never rewritten here.
"""
import ast
import os
import pathlib
import re

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NAMES = ["01_credit_assignment.ipynb", "02_control_benchmark.ipynb", "03_llm_sppo.ipynb", "04_probes_and_exercises.ipynb"]


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


NAN = re.compile(r"(?<![A-Za-z_])nan(?![A-Za-z_])", re.IGNORECASE)
PERCENT = re.compile(r"\d+(?:\.\d+)?\s?%")
# run first in the kernel: every title, axis label and legend label a figure gets, kept for the last cell
RECORD_LABELS = """
import matplotlib.artist, matplotlib.axes, matplotlib.figure
_labels_drawn = []
def _recording(setter):
    def set_and_record(self, text, *args, **kwargs):
        _labels_drawn.append(str(text))
        return setter(self, text, *args, **kwargs)
    return set_and_record
for _cls, _name in ((matplotlib.axes.Axes, "set_title"), (matplotlib.axes.Axes, "set_xlabel"),
                    (matplotlib.axes.Axes, "set_ylabel"), (matplotlib.figure.FigureBase, "suptitle"),
                    (matplotlib.artist.Artist, "set_label")):
    setattr(_cls, _name, _recording(getattr(_cls, _name)))
"""


def output_text(nb) -> str:
    """Everything the code cells printed or displayed as text (streams, text/plain, rendered Markdown)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            parts.append(out.get("text", ""))
            parts += [out.get("data", {}).get(kind, "") for kind in ("text/plain", "text/markdown")]
    return "\n".join(parts)


def untold_percentages(nb) -> list[str]:
    """Percentages typed in a Markdown cell that no code output prints: a number the run does not back."""
    told = output_text(nb)
    return [p for cell in nb.cells if cell.cell_type == "markdown"
            for p in PERCENT.findall(cell.source) if p not in told]


@pytest.mark.parametrize("name", NAMES)
def test_quick_mode_runs_and_tells_no_nan_and_types_no_number(name, monkeypatch):
    """Top to bottom in quick mode, without an error; and, as in a full run: no NaN printed, displayed or in a figure's title, axis or legend, and
    no percentage in the text that the code does not print."""
    monkeypatch.setenv("SPPO_QUICK", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(RECORD_LABELS))
    nb.cells.append(nbformat.v4.new_code_cell("print(repr(_labels_drawn))"))
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    labels = ast.literal_eval(nb.cells.pop().outputs[0]["text"])
    assert len(labels) > 10, "the label recorder saw no figure"
    assert not [t for t in labels if NAN.search(t)], "a figure's text says nan"
    nb.cells.pop(0)
    assert not NAN.search(output_text(nb)), "an output prints nan"
    assert not untold_percentages(nb)


@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_tells_no_nan_and_types_no_number(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert not NAN.search(output_text(nb))
    assert not untold_percentages(nb)
