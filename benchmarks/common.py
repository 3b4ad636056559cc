"""Shared by the benchmark scripts: where a figure came from (machine, commit, command)."""
import json
import os
import statistics
import platform
import subprocess
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO, "results")


def provenance() -> dict:
    """Machine, commit and exact command line, written beside every figure."""
    def git(*cmd):
        return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True).stdout.strip()
    # a copy of the tree sent to a GPU machine: its .git (if any) may be stale, so the sender names the commit
    commit = os.environ.get("SPPO_COMMIT")
    if not commit:
        commit = git("rev-parse", "--short", "HEAD") or "unknown"
        if commit != "unknown" and git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"):
            commit += "-dirty"                                                      # results/ is output
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"machine": f"{cpu}, {os.cpu_count()} cores", "python": platform.python_version(),
            "torch": torch.__version__, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "commit": commit, "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])}


def run_sppo(name: str, flags: list[str], budget: list[str], run_dir: str) -> tuple[str, list[dict]]:
    """`python sppo.py <flags> <budget>` in its own process, or `--resume` of the run in `run_dir` (under
    runs/) when an interrupted one left its checkpoint there. Returns the command and its progress.csv rows."""
    import csv
    ckpt = os.path.join(run_dir, "model.pt")
    cmd = (["--resume", ckpt] if os.path.exists(ckpt) else flags) + budget
    out = subprocess.run([sys.executable, "sppo.py", *cmd], cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    with open(os.path.join(run_dir, "progress.csv")) as f:
        return "python sppo.py " + " ".join(cmd), list(csv.DictReader(f))


def write_results(name: str, data: dict, markdown: str) -> None:
    """results/<name>.json (everything) and results/<name>.md (the table a person reads)."""
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, name + ".json"), "w") as f:
        json.dump(data, f, indent=2)
    p = data["provenance"]
    footer = (f"\n\nMachine: {p['machine']}; GPU: {p['gpu'] or 'none'}; torch {p['torch']}, Python {p['python']}; "
              f"commit {p['commit']}.\nCommand: `{p['command']}`\n")
    with open(os.path.join(RESULTS, name + ".md"), "w") as f:
        f.write(markdown.rstrip() + footer)
    print(markdown + footer)


def median_range(rows: list[dict], key: str) -> str:
    """'median (min–max)' of rows[key] over the solved rows: env steps in thousands, seconds to 0.1."""
    vals = [r[key] for r in rows if r["solved"]]
    if not vals:
        return "not solved"
    f = (lambda v: f"{v:.1f}") if key == "wall_s" else (lambda v: f"{v / 1000:.0f}k")
    return f"{f(statistics.median(vals))} ({f(min(vals))}–{f(max(vals))})"
