"""The one benchmark runner: each script in benchmarks/ declares its runs; this runs them and keeps the results.

A run is one command, `python sppo.py <flags>` or `python llm_demo.py <flags>` (`Run`). `launch` runs it,
in a fresh temporary folder or, for a long run that may be stopped, in its own folder under runs/ (where
the next launch resumes it from its checkpoint), and reads what it wrote: progress.csv, results.json.
`run_all` runs a list of them, N at once, skipping those whose result file exists, so a benchmark can be
built up over several sittings. `write_results` writes results/<name>.{json,md} with `provenance()`
(machine, commit, command) under the table; `figure` and `band` draw the curves of several seeds.

SPPO_RESULTS=<folder> writes everything there instead of results/ (the tests use it).
"""
import contextlib
import csv
import importlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.environ.get("SPPO_RESULTS") or os.path.join(REPO, "results")


@dataclass
class Run:
    """`python <script> <flags> <budget>`: one run of a benchmark."""
    name: str
    flags: list[str]
    script: str = "sppo.py"        # llm_demo.py, or any script (a path relative to the repository)
    budget: list[str] = field(default_factory=list)   # flags a --resume repeats (the rest are the checkpoint's)
    run_dir: str = ""              # the run's folder, which its flags name (--run-name), under runs/ of the
                                   # repository: resumed from its model.pt. Empty: a temporary folder
    result: str = ""               # JSON file of the finished run: where it exists the run is not run again
    in_process: bool = False       # the script's main() in this process: one Python start-up for a grid
                                   # (one at a time: it changes the working folder)
    info: dict = field(default_factory=dict)   # what the benchmark declares about the run (task, seed, ...)


@dataclass
class Output:
    """What one launch left: its command, progress.csv, results.json, stdout and the process's seconds."""
    command: str
    progress: str = ""             # progress.csv as written
    results: dict | None = None    # results.json (llm_demo.py)
    stdout: str = ""
    process_s: float = 0.0
    error: str = ""                # the last line of stderr where the command failed

    @property
    def rows(self) -> list[dict]:
        return list(csv.DictReader(io.StringIO(self.progress)))

    @property
    def summary(self) -> str:
        return (self.stdout.strip().splitlines() or [""])[-1]


def launch(run: Run, check: bool = True, scratch: str | None = None) -> Output:
    """Run one command and read its run folder. check: a failure stops the benchmark (else Output.error);
    scratch: the parent of the temporary folder (default: the system's)."""
    resume = os.path.join(run.run_dir, "model.pt") if run.run_dir else ""
    args = (["--resume", resume] if resume and os.path.exists(resume) else run.flags) + run.budget
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        if run.run_dir:
            cwd, folder = REPO, run.run_dir
        else:   # the run writes runs/bench in the temporary folder; the repository's files by their full path
            cwd, folder = tmp, os.path.join(tmp, "runs", "bench")
            args = ["--run-name", "bench", *(os.path.join(REPO, a) if a.startswith("results/") else a for a in args)]
        out = Output(f"python {run.script} " + " ".join(args))
        t0 = time.perf_counter()
        if run.in_process:
            out.stdout, out.error = main_in_process(run.script, args, cwd)
        else:
            proc = subprocess.run([sys.executable, os.path.join(REPO, run.script), *args], cwd=cwd,
                                  capture_output=True, text=True)
            out.stdout = proc.stdout
            if proc.returncode != 0:
                out.error = (proc.stderr.strip().splitlines() or ["?"])[-1]
        out.process_s = time.perf_counter() - t0
        if out.error:
            if check:
                raise SystemExit(f"{run.name}: {run.script} failed: {out.error}")
            return out
        with open(os.path.join(folder, "progress.csv")) as f:
            out.progress = f.read()
        if os.path.exists(os.path.join(folder, "results.json")):
            with open(os.path.join(folder, "results.json")) as f:
                out.results = json.load(f)
    return out


def main_in_process(script: str, args: list[str], cwd: str) -> tuple[str, str]:
    """`<script>.main(args)` with cwd as the working folder: (its stdout, an error or "")."""
    back, printed = os.getcwd(), io.StringIO()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(io.StringIO()):
            code = importlib.import_module(os.path.splitext(script)[0]).main(args)
    finally:
        os.chdir(back)
    return printed.getvalue(), f"exited with {code}" if code else ""


def run_all(runs: list[Run], measure=launch, jobs: int = 1, then=None) -> list:
    """Each run's result: read from run.result where that file exists, else measure(run) (a JSON-able dict),
    saved there. `jobs` runs at once (one CPU core each); then(run, result) after each new one."""
    todo = [r for r in runs if not (r.result and os.path.exists(r.result))]
    if any(r.result for r in runs):
        print(f"{len(runs) - len(todo)} of {len(runs)} runs done; running {len(todo)} with {jobs} at once", flush=True)
    lock, t0 = threading.Lock(), time.time()

    def one(run):
        result = measure(run)
        with lock:
            if run.result:
                save_json(run.result, result)   # written last: its presence means "finished"
            if then:
                then(run, result)
        return result

    if jobs == 1:   # in the main thread: an in-process run's signal handlers need it
        fresh = [one(r) for r in todo]
    else:
        with ThreadPoolExecutor(jobs) as pool:
            fresh = list(pool.map(one, todo))
    if todo and any(r.result for r in runs):
        print(f"{time.time() - t0:.0f} s", flush=True)
    done = dict(zip(map(id, todo), fresh))
    return [done[id(r)] if id(r) in done else load_json(r.result) for r in runs]


def load_json(path: str):
    with open(path) as f:
        return json.load(f)


def save_json(path: str, data, indent: int | None = 1) -> None:
    """Write to a temporary file, then rename: an interruption never leaves half a file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(data, f, indent=indent)
    os.replace(path + ".tmp", path)


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


def write_results(name: str, data, markdown: str, indent: int = 2, prov: dict | None = None) -> None:
    """results/<name>.json (everything) and results/<name>.md (the table a person reads, and under it the
    provenance: `prov`, else data["provenance"])."""
    save_json(os.path.join(RESULTS, name + ".json"), data, indent)
    p = prov or data["provenance"]
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


def mean_std(xs: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    m = sum(xs) / len(xs)
    return m, (sum((x - m) ** 2 for x in xs) / max(1, len(xs) - 1)) ** 0.5


@contextlib.contextmanager
def figure(path: str, ncols: int = 1, figsize=(6, 4), **kw):
    """The axes of a new figure, saved to `path` when the block ends."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, ncols, figsize=figsize, **kw)
    yield axes
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def band(ax, x, ys, label: str) -> None:
    """Seeds' curves ys [seeds, len(x)]: their mean, in a band from their minimum to their maximum, in the
    colour of the method the label names ("sppo (3 seeds)": runlog.COLOURS), the same in every figure."""
    import numpy as np
    from runlog import colour   # the repository's top level: every benchmark script puts it on sys.path
    line, = ax.plot(x, np.nanmean(ys, 0), label=label, color=colour(label))
    ax.fill_between(x, np.nanmin(ys, 0), np.nanmax(ys, 0), color=line.get_color(), alpha=0.2)
