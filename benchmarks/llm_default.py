"""The default `python llm_demo.py`, timed as a user runs it: held-out accuracy before -> after and wall-clock.

Runs the real command (plus any flags after --) in a fresh process in a temporary folder, times the whole
process (imports, model load, both evaluations and training), and writes results/llm/<name>.{json,md}
with the run's results.json, the machine, the commit and the command.

    python benchmarks/llm_default.py                    # the default run, ~15 min on 2 CPU cores
    python benchmarks/llm_default.py --name grpo -- --algo grpo --group-size 8
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the repository
from benchmarks.runner import Run, launch, provenance, write_results  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", default="default", help="results/llm/<name>.{json,md}")
    args, extra = p.parse_known_args()
    extra = [e for e in extra if e != "--"]
    out = launch(Run("default", extra, script="llm_demo.py"))
    res, process_s, summary = out.results, out.process_s, out.summary
    label = "python llm_demo.py" + (" " + " ".join(extra) if extra else "")
    a, k = res["args"], res["args"]["eval_k"]
    md = [f"# `{label}`", "",
          f"{a['n_eval']} held-out problems ({a['dataset']}, difficulty {a['difficulty']}), Avg@{k} at temperature "
          f"{a['temperature']} and greedy, before and after {a['steps']} steps of {a['batch_size']} responses.", "",
          "| | before | after |", "|---|---:|---:|",
          f"| Avg@{k} | {res['accuracy_before']:.1%} | {res['accuracy_after']:.1%} |",
          f"| greedy | {res['greedy_before']:.1%} | {res['greedy_after']:.1%} |", "",
          f"- whole process (imports, model load, two evaluations, training, saving): {process_s:.0f} s",
          f"- training loop: {res['train_wall_s']:.0f} s; evaluation after training: {res['eval_after_s']:.0f} s; "
          f"model load: {res['load_s']:.1f} s",
          f"- generated training tokens: {res['gen_tokens']:,}; peak memory: {res['peak_mem_gb']:.1f} GB"]
    if res.get("critic_pearson") is not None:
        md.append(f"- critic calibration on the held-out problems (V(prompt) against the pass rate of {k} samples): "
                  f"Pearson {res['critic_pearson']:.2f}, Spearman {res['critic_spearman']:.2f}")
    md += ["", f"Summary line: `{summary}`"]
    write_results(f"llm/{args.name}", {"provenance": provenance(), "process_s": process_s, "summary": summary,
                                       "results": res}, "\n".join(md), indent=1)


if __name__ == "__main__":
    main()
