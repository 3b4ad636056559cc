"""How many CPU threads should the LLM demo use? The quick look, timed at each --threads, alone and beside
a second copy of itself (a machine someone else is also using).

Each run is `python llm_demo.py --steps 2 --n-eval 16 --threads T` in a fresh process; the table gives the
training seconds (2 steps of 16 responses), the two evaluations and the whole process. "beside a second run"
starts two identical runs at once and reports the slower one: what a user sees when the cores are shared.
PyTorch's default on a CPU is one thread per core; on a shared machine those threads wait on each other
(OpenMP spins), which is what this measures.

    python benchmarks/llm_threads.py                 # threads 1 .. all cores, alone and shared (~15 min on 2 cores)
    python benchmarks/llm_threads.py --threads 1 2
"""
import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
from benchmarks.runner import Run, launch, provenance, write_results  # noqa: E402

QUICK = ["--steps", "2", "--n-eval", "16"]


def measure(threads: int, shared: bool) -> dict:
    """One quick look at --threads `threads` (two at once if shared; the slower one is kept)."""
    run = Run(f"threads{threads}", [*QUICK, "--threads", str(threads)], script="llm_demo.py")
    with ThreadPoolExecutor(2 if shared else 1) as pool:
        outs = list(pool.map(lambda _: launch(run), range(2 if shared else 1)))
    out = max(outs, key=lambda o: o.process_s)
    r = out.results
    return {"threads": threads, "shared": shared, "train_s": r["train_wall_s"], "eval_after_s": r["eval_after_s"],
            "process_s": out.process_s, "command": out.command}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", nargs="+", type=int, default=list(range(1, (os.cpu_count() or 1) + 1)))
    a = p.parse_args()
    rows = [measure(t, shared) for shared in (False, True) for t in a.threads]
    md = ["# LLM demo: CPU threads", "",
          f"`python llm_demo.py {' '.join(QUICK)} --threads T` in a fresh process on {os.cpu_count()} cores; "
          "'shared': two such runs at once, the slower one shown.", "",
          "| threads | machine | training s (2 steps) | evaluation after s | whole process s |", "|---:|---|---:|---:|---:|"]
    md += [f"| {r['threads']} | {'shared' if r['shared'] else 'alone'} | {r['train_s']:.1f} | {r['eval_after_s']:.1f} | "
           f"{r['process_s']:.0f} |" for r in rows]
    write_results("llm/threads", {"provenance": provenance(), "runs": rows}, "\n".join(md))


if __name__ == "__main__":
    main()
