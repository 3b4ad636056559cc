"""A second simple task for the LLM demo, written as GSM8K-format JSONL: do the defaults hold off the built-in task?

llm_demo.py's defaults were chosen on its generated word problems (llm_tasks.py, difficulty 1). This script
writes a task of another kind -- bare arithmetic questions in words (sums, differences,
products, halves and doubles) -- as the files a user brings, so that
`python llm_demo.py --data-file ... --eval-file ...` is measured on data the defaults never saw:

    python benchmarks/llm_second_task.py          # -> results/llm/data/mixed_{train,test}.jsonl
    python llm_demo.py --data-file results/llm/data/mixed_train.jsonl --eval-file results/llm/data/mixed_test.jsonl

The files are small and committed, so the command above works without running this script.
"""
import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import llm_tasks  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "llm", "data")


def question(rng: random.Random) -> tuple[str, int]:
    """One question and its integer answer, from one of five templates."""
    kind = rng.randrange(5)
    if kind == 0:
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        return f"What is {a} plus {b}?", a + b
    if kind == 1:
        a = rng.randint(10, 60)
        b = rng.randint(1, a)
        return f"What is {a} minus {b}?", a - b
    if kind == 2:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return f"What is {a} times {b}?", a * b
    if kind == 3:
        n = 2 * rng.randint(1, 100)
        return f"What is half of {n}?", n // 2
    n = rng.randint(1, 100)
    return f"What is double {n}?", 2 * n


def make(n: int, seed: int, exclude: set = frozenset()) -> list:
    rng, seen, out = random.Random(seed), set(exclude), []
    while len(out) < n:
        q, ans = question(rng)
        if q not in seen:          # no question twice, and none shared between the two files
            seen.add(q)
            out.append(llm_tasks.Problem(q, str(ans)))
    return out


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    test = make(200, seed=1)
    train = make(1000, seed=2, exclude={p.question for p in test})
    for name, problems in (("mixed_train", train), ("mixed_test", test)):
        path = os.path.join(OUT, name + ".jsonl")
        llm_tasks.write_jsonl(problems, path)
        print(f"{path}: {len(problems)} problems")


if __name__ == "__main__":
    main()
