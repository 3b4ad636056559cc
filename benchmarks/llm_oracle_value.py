"""SPPO with an oracle baseline: is a per-prompt V what the demo's SPPO lacks on the suite's multiply task?

On multiply the critic's held-out calibration is about 0 at every setting tried (benchmarks/llm_suite.py):
V(prompt) is one constant there, while GRPO's eight samples give each prompt a baseline of its own. This
runs llm_demo.py unchanged but for the baseline of the advantage, A = R - V*(prompt), where V* is a fixed
table: each training problem's pass rate under the untrained policy, (right + 1/2) / (n + 1) over n samples
at the training temperature and response limit (smoothed as llm_demo.start_critic_at smooths the first
batch's rate). The critic still trains beside it, and its calibration is printed as always, but it sets no
advantage. Under --norm-adv (the default) the batch's mean is taken out again, so what the table adds is
each problem's difficulty against the others in its batch, not its level. The table is stale by design:
it is the base policy's, and the policy moves away from it.

The table is estimated once per task (minutes on a CPU) and kept in results/llm/oracle_value/<task>.json
with the command that made it; later runs read it. The suite runs this as its `sppo-oracle-v` setting:

    python benchmarks/llm_oracle_value.py --data-file results/llm/data/multiply_train.jsonl \\
        --eval-file results/llm/data/multiply_test.jsonl --seed 1        # llm_demo.py's flags
    python benchmarks/llm_oracle_value.py --data-file ... --table-only   # only the table (before parallel runs)
    python benchmarks/llm_suite.py --tasks multiply --algos sppo-oracle-v
"""
import contextlib
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import llm_demo  # noqa: E402
import llm_models  # noqa: E402
from benchmarks.runner import RESULTS, load_json, provenance, save_json  # noqa: E402
from objective import Baselines, estimate  # noqa: E402

SAMPLES = 8    # per training problem: a base pass rate of 5% is then 0 right in 8 for two problems in three
CHUNK = 64     # prompts per generate call


def task_name(a: llm_demo.LLMArgs) -> str:
    """The table's name: the training file's stem (multiply_train.jsonl -> multiply), else arith-d<N>."""
    if a.data_file:
        return os.path.basename(a.data_file).removesuffix(".jsonl").removesuffix("_train")
    return f"{a.dataset}-d{a.difficulty}" if a.dataset == "arithmetic" else a.dataset


@torch.no_grad()
def pass_rates(policy: llm_models.Policy, prompts: list, answers: list, a: llm_demo.LLMArgs,
               samples: int = SAMPLES) -> list[float]:
    """Each prompt's smoothed pass rate under `policy`: (right + 1/2) / (samples + 1), in [0, 1]. prompts:
    token-id lists; answers: their answer strings. Sampled at a.temperature, a.max_new_tokens, seed 0."""
    torch.manual_seed(0)
    right = torch.zeros(len(prompts), dtype=torch.float64)
    for _ in range(samples):
        for i in range(0, len(prompts), CHUNK):
            batch = llm_demo.rollout(policy, prompts[i:i + CHUNK], answers[i:i + CHUNK], a.temperature, a.max_new_tokens)
            right[i:i + CHUNK] += batch.rewards.cpu()
    return ((right + 0.5) / (samples + 1)).tolist()


def table_for(a: llm_demo.LLMArgs) -> dict[str, float]:
    """question -> V* for the task's training problems: read from results/llm/oracle_value/, else estimated
    with the untrained a.model and saved there."""
    path = os.path.join(RESULTS, "llm", "oracle_value", task_name(a) + ".json")
    if os.path.exists(path):
        return load_json(path)["values"]
    train_set, _ = llm_demo.load_problems(a)
    policy = llm_models.load(a.model, torch.device("cpu"), torch.float32)
    prompts, answers = llm_demo.encode_problems(a, policy, train_set, "training")
    rates = pass_rates(policy, prompts, answers, a, SAMPLES)
    values = {p.question: v for p, v in zip(train_set, rates)}   # a repeated question: its last estimate
    save_json(path, {"task": task_name(a), "model": a.model, "samples": SAMPLES, "temperature": a.temperature,
                     "max_new_tokens": a.max_new_tokens, "mean": sum(rates) / len(rates),
                     "values": values, "provenance": provenance()}, 1)
    return values


@contextlib.contextmanager
def oracle(values: dict[str, float]):
    """Inside, llm_demo's SPPO reads its baseline from `values` (question -> V*) instead of the critic."""
    setup, critic_advantages = llm_demo.setup, llm_demo.compute_advantages
    by_prompt = {}

    def setup_and_index(a):
        run = setup(a)
        missing = [q for q in run.train_questions if q not in values]
        if missing:
            raise llm_demo.ConfigError(f"{len(missing)} training problem(s) are not in the oracle table (the first: "
                                       f"{missing[0]!r}); delete results/llm/oracle_value/{task_name(a)}.json to estimate "
                                       "it again for these settings")
        for ids, question in zip(run.train_prompts, run.train_questions):
            by_prompt[tuple(ids)] = values[question]
        return run

    def oracle_advantages(a, batch, critic):   # main() admits --algo sppo alone
        value = torch.tensor([by_prompt[tuple(ids[m.bool()].tolist())] for ids, m in zip(batch.prompt_ids, batch.prompt_mask)],
                             device=batch.rewards.device)
        return estimate(a.algo, batch.rewards, Baselines(prompt_value=value)), value

    llm_demo.setup, llm_demo.compute_advantages = setup_and_index, oracle_advantages
    try:
        yield
    finally:
        llm_demo.setup, llm_demo.compute_advantages = setup, critic_advantages


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    table_only = "--table-only" in argv   # estimate (or find) the task's table, and stop
    argv = [x for x in argv if x != "--table-only"]
    a = llm_demo.parse_args(argv, llm_demo.LLMArgs, __doc__.split("\n")[0])
    if a.algo != "sppo":
        print("error: the oracle baseline replaces SPPO's V(prompt); run it with --algo sppo", file=sys.stderr)
        return 2
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        values = table_for(a)
    except llm_demo.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if table_only:
        print(f"{len(values)} problems, mean V* {sum(values.values()) / len(values):.3f}")
        return 0
    with oracle(values):
        return llm_demo.main(argv)


if __name__ == "__main__":
    sys.exit(main())
