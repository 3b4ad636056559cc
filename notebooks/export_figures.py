"""Write each notebook's README picture to notebooks/figures/<notebook>.png.

The picture is the first image that the cell tagged `readme-figure` drew when the notebook was last run
and saved with its outputs, so README shows exactly what the committed notebook shows. Run it after
re-running a notebook with full budgets:
    python notebooks/export_figures.py
"""
import base64
import pathlib
import sys

import nbformat

HERE = pathlib.Path(__file__).resolve().parent


def readme_figure(path: pathlib.Path) -> bytes:
    """The PNG bytes of the tagged cell's first image output."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if "readme-figure" in cell.metadata.get("tags", []):
            for out in cell.get("outputs", []):
                if "image/png" in out.get("data", {}):
                    return base64.b64decode(out["data"]["image/png"])
            sys.exit(f"error: {path.name}: its readme-figure cell has no image; run the notebook and save it first")
    sys.exit(f"error: {path.name} has no cell tagged readme-figure")


def main() -> int:
    (HERE / "figures").mkdir(exist_ok=True)
    for path in sorted(HERE.glob("[0-9][0-9]_*.ipynb")):
        out = HERE / "figures" / f"{path.stem}.png"
        out.write_bytes(readme_figure(path))
        print(f"{path.name} -> {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
