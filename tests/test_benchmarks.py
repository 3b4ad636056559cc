"""The benchmark runner (benchmarks/runner.py): finished runs are skipped, interrupted ones resumed, what a
run wrote is read back, and every results/<name>.md ends with where its figures came from. Scripts stand
in for sppo.py where only the runner's bookkeeping is under test; one real sppo.py run checks the rest."""
import csv
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from benchmarks import runner  # noqa: E402
from benchmarks.runner import RESULTS, Run, launch, load_json, run_all, save_json  # noqa: E402

# a stand-in for sppo.py: writes runs/<--run-name>/progress.csv and model.pt (or continues the run of
# --resume <folder>/model.pt), one row per call, recording its flags; --fail exits with an error
FAKE = '''
import json, os, sys
argv = sys.argv[1:]
if "--fail" in argv:
    sys.exit("boom: the last line of stderr")
folder = (os.path.dirname(argv[argv.index("--resume") + 1]) if "--resume" in argv
          else os.path.join("runs", argv[argv.index("--run-name") + 1]))
os.makedirs(folder, exist_ok=True)
new = not os.path.exists(os.path.join(folder, "model.pt"))
with open(os.path.join(folder, "progress.csv"), "a") as f:
    f.write(("step,flags\\n" if new else "") + f"{1 if new else 2},{' '.join(argv)}\\n")
open(os.path.join(folder, "model.pt"), "w").close()
if "--data" in argv:
    json.dump({"data": open(argv[argv.index("--data") + 1]).read()}, open(os.path.join(folder, "results.json"), "w"))
print("training...")
print("summary: done")
'''


@pytest.fixture
def fake(tmp_path):
    path = tmp_path / "fake_sppo.py"
    path.write_text(FAKE)
    return str(path)


def test_run_all_skips_runs_whose_result_exists_and_keeps_the_order(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({"value": "from an earlier sitting"}))
    runs = [Run(name, [], result=str(tmp_path / f"{name}.json")) for name in ("a", "b", "c")]
    measured, then = [], []

    def measure(run):
        measured.append(run.name)
        return {"value": run.name * 2}
    got = run_all(runs, measure, jobs=2, then=lambda run, result: then.append((run.name, result["value"])))
    assert sorted(measured) == ["a", "c"] and sorted(then) == [("a", "aa"), ("c", "cc")]
    assert [g["value"] for g in got] == ["aa", "from an earlier sitting", "cc"]
    assert json.loads((tmp_path / "c.json").read_text()) == {"value": "cc"}
    assert not list(tmp_path.glob("*.tmp"))
    assert run_all(runs, measure) == got and len(measured) == 2   # all finished now: nothing runs again


def test_launch_resumes_an_interrupted_run_from_its_checkpoint(tmp_path, fake):
    folder = str(tmp_path / "runs" / "r")
    run = Run("r", ["--run-name", folder, "--lr", "1"], script=fake, budget=["--total-steps", "10"], run_dir=folder)
    first = launch(run)
    assert first.command == f"python {fake} --run-name {folder} --lr 1 --total-steps 10"
    assert first.rows == [{"step": "1", "flags": f"--run-name {folder} --lr 1 --total-steps 10"}]
    again = launch(run)   # model.pt is there: the flags are the checkpoint's, the budget is repeated
    resume = os.path.join(folder, "model.pt")
    assert again.command == f"python {fake} --resume {resume} --total-steps 10"
    assert [r["step"] for r in again.rows] == ["1", "2"] and again.rows[1]["flags"] == f"--resume {resume} --total-steps 10"
    assert again.summary == "summary: done" and again.results is None and again.process_s > 0


def test_launch_in_a_temporary_folder_reads_results_and_reports_failures(tmp_path, fake, monkeypatch):
    data = os.path.join("results", "llm", "data", "mixed_test.jsonl")   # a file of the repository, relative
    out = launch(Run("t", ["--data", data], script=fake))
    assert out.command == f"python {fake} --run-name bench --data {os.path.join(REPO, data)}"
    with open(os.path.join(REPO, data)) as f:
        assert out.results == {"data": f.read()}
    assert out.rows[0]["step"] == "1"
    with pytest.raises(SystemExit, match="t: .*fake_sppo.py failed: boom: the last line of stderr"):
        launch(Run("t", ["--fail"], script=fake))
    failed = launch(Run("t", ["--fail"], script=fake), check=False)
    assert failed.error == "boom: the last line of stderr" and failed.rows == []


def test_write_results_ends_the_table_with_its_provenance(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "RESULTS", str(tmp_path))
    monkeypatch.setenv("SPPO_COMMIT", "abc1234")
    monkeypatch.setattr(sys, "argv", [os.path.join(REPO, "benchmarks", "x.py"), "--seeds", "1"])
    prov = runner.provenance()
    assert prov["commit"] == "abc1234" and prov["command"] == "python benchmarks/x.py --seeds 1"
    prov.update(machine="M, 2 cores", gpu=None, torch="2.0", python="3.11")
    runner.write_results("sub/x", {"provenance": prov, "rows": [1, 2]}, "| a |\n|---|\n")
    assert (tmp_path / "sub" / "x.md").read_text() == (
        "| a |\n|---|\n\nMachine: M, 2 cores; GPU: none; torch 2.0, Python 3.11; commit abc1234.\n"
        "Command: `python benchmarks/x.py --seeds 1`\n")
    assert json.loads((tmp_path / "sub" / "x.json").read_text()) == {"provenance": prov, "rows": [1, 2]}


def test_summaries():
    assert runner.mean_std([0.5]) == (0.5, 0.0)
    m, s = runner.mean_std([1.0, 2.0, 6.0])
    assert m == 3.0 and s == pytest.approx(7 ** 0.5)
    rows = [{"solved": True, "env_steps": 40_000, "wall_s": 2.0}, {"solved": False, "env_steps": None, "wall_s": None},
            {"solved": True, "env_steps": 60_000, "wall_s": 3.5}, {"solved": True, "env_steps": 45_400, "wall_s": 1.25}]
    assert runner.median_range(rows, "env_steps") == "45k (40k–60k)"
    assert runner.median_range(rows, "wall_s") == "2.0 (1.2–3.5)"
    assert runner.median_range(rows[1:2], "wall_s") == "not solved"


def test_a_real_sppo_run_through_the_runner(tmp_path):
    """The ablation's path: sppo.py's main in this process, in a temporary folder, read back from progress.csv."""
    from benchmarks import cartpole_ablation
    cwd = os.getcwd()
    r = cartpole_ablation.run(["--num-episodes", "8", "--minibatches", "1", "--epochs", "1"], seed=6, budget=600)
    assert os.getcwd() == cwd
    assert r == {"seed": 6, "solved": False, "env_steps": None, "wall_s": None}
    out = launch(Run("tiny", ["--env", "CartPole-v1", "--num-episodes", "8", "--minibatches", "1", "--epochs", "1",
                              "--total-steps", "600"], in_process=True))
    rows = out.rows
    assert int(rows[-1]["env_steps"]) >= 600 and int(rows[0]["episodes"]) == 8
    assert float(rows[-1]["last20_return"]) < 475


def test_suite_goals_say_which_part_is_missed_and_by_how_much():
    """benchmarks/llm_suite.py's goal table: a run below its start is named with its loss; the TRL goal
    reports its two parts (gain, wall-clock) separately, each with its shortfall; the +40 goal its gap."""
    from benchmarks import llm_suite
    rec = lambda algo, seed, before, after, wall: {"algo": algo, "seed": seed, "accuracy_before": before,
                                                   "accuracy_after": after, "train_wall_s": wall}
    groups = {("arith-d1", "sppo"): [rec("sppo", 1, 0.05, 0.40, 100.0), rec("sppo", 2, 0.05, 0.03, 100.0)],
              ("arith-d1", "trl-grpo"): [rec("trl-grpo", 1, 0.05, 0.25, 80.0)]}
    lines = llm_suite.goals(groups)
    below = [line for line in lines if "below its start" in line]
    assert below == ["| no default run below its start | arith-d1 | 1 of 2 below (sppo s2, -2.0 points) | no |"]
    # mean gain (0.35 - 0.02) / 2 = 0.165 against TRL's 0.20: 3.5 points short; 100 s against 80 s: 25.0% more
    assert ("| +16.5 vs +20.0 points (2 and 1 seed); 100 vs 80 s | gain no, 3.5 points short; wall-clock no, 25.0% more |"
            in [line for line in lines if "TRL" in line][0])
    assert "| +16.5 points (2 seeds) | no, 23.5 points short |" in [line for line in lines if "+40" in line][0]
    groups[("arith-d1", "sppo")] = [rec("sppo", 1, 0.05, 0.50, 70.0)]
    assert "gain yes; wall-clock yes" in [line for line in llm_suite.goals(groups) if "TRL" in line][0]


def test_suite_declares_its_own_seeds_unless_told_others():
    """--seeds picks among a setting's seeds or adds seeds beyond them (4 and 5 where a goal was within the
    seeds' spread); each run's file names its task, label and seed, and its flags are the task's and label's."""
    from benchmarks import llm_suite
    names = lambda seeds: [r.name for r in llm_suite.declare(["multiply"], ["sppo", "ppo"], seeds)]
    assert names([]) == ["multiply__sppo__1", "multiply__sppo__2", "multiply__sppo__3", "multiply__ppo__1"]
    assert names([4, 5]) == ["multiply__sppo__4", "multiply__sppo__5", "multiply__ppo__4", "multiply__ppo__5"]
    run = llm_suite.declare(["arith-d2"], ["sppo-skip"], [2])[0]
    assert run.info["flags"] == ["--difficulty", "2", "--flat-batches", "skip"] and run.info["seed"] == 2


def test_suite_task_files_are_what_their_generators_write(tmp_path):
    """The committed JSONL tasks are reproducible: --write-data writes the same bytes, and no held-out problem
    is a training one with other words (the key of a problem is its numbers)."""
    from benchmarks import llm_suite
    llm_suite.write_data(str(tmp_path))
    for name in llm_suite.GENERATORS:
        for split in ("train", "test"):
            ours = (tmp_path / f"{name}_{split}.jsonl").read_bytes()
            assert ours == open(os.path.join(RESULTS, "llm", "data", f"{name}_{split}.jsonl"), "rb").read(), (name, split)
        keys = [{llm_suite.numbers(json.loads(line)["question"]) for line in open(tmp_path / f"{name}_{split}.jsonl")}
                for split in ("train", "test")]
        assert not keys[0] & keys[1] and len(keys[1]) == 200, name


def test_suite_json_is_the_issues_list_one_record_per_run():
    """results/llm/suite.json: a list, one record per run, each with the fields the suite promises and
    `algo` one of the five algorithms; one setting (variant) per algorithm, so a mean over `algo` is a mean
    over seeds of one setting. The candidate settings are kept apart, in suite_variants.json."""
    from benchmarks import llm_suite
    runs = json.load(open(os.path.join(RESULTS, "llm", "suite.json")))
    variants = json.load(open(os.path.join(RESULTS, "llm", "suite_variants.json")))
    assert isinstance(runs, list) and runs and isinstance(variants, list)
    for r in runs:
        assert {"task", "algo", "seed", "flags", "accuracy_before", "accuracy_after", "train_wall_s"} <= set(r)
        assert r["algo"] in ("sppo", "ppo", "grpo", "rloo", "trl-grpo") and r["variant"] in llm_suite.MAIN
        assert r["task"] in llm_suite.TASKS and 0 <= r["accuracy_after"] <= 1
    assert len({(r["algo"], r["variant"]) for r in runs}) == len({r["algo"] for r in runs})
    # a record is what its label says: at the defaults (--norm-adv, --flat-batches hold) a step whose batch
    # had no right answer gave every response a zero advantage (under standardize or --no-norm-adv, not)
    for r in runs:
        if r["algo"] == "sppo":
            assert all(p["zero_adv_frac"] == 1 for p in r["reward_curve"] if p["reward"] == 0), (r["task"], r["seed"])
    assert all(r["variant"] not in llm_suite.MAIN and r["variant"] in llm_suite.ALGOS for r in variants)
    for r in runs + variants:   # each record's flags are its task's and label's (a changed default's records say so)
        assert r["flags"] == [*llm_suite.TASKS[r["task"]], *llm_suite.ALGOS[r["variant"]][1]], (r["task"], r["variant"])
    seen = [(r["task"], r["variant"], r["seed"]) for r in runs + variants]
    assert len(seen) == len(set(seen))


def test_oracle_value_sets_sppos_baseline_from_the_base_policys_pass_rates(tmp_path, monkeypatch):
    """benchmarks/llm_oracle_value.py: the table holds one smoothed pass rate (right + 1/2) / (n + 1) per
    training problem, estimated once and read back after; inside the run the logged V is the table's, not the
    critic's (which starts at the first batch's rate); llm_demo is itself again afterwards."""
    import llm_demo
    from benchmarks import llm_oracle_value as oracle
    from tiny_lm import make_tiny_lm
    monkeypatch.setattr(oracle, "RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(oracle, "SAMPLES", 2)
    monkeypatch.chdir(tmp_path)
    model = make_tiny_lm(str(tmp_path / "tiny"))
    args = ["--model", model, "--n-train", "8", "--n-eval", "2", "--steps", "2", "--batch-size", "4", "--max-new-tokens",
            "4", "--eval-k", "1", "--threads", "1", "--log-every", "0", "--run-name", "o"]
    setup = llm_demo.setup
    assert oracle.main(args) == 0
    table = load_json(str(tmp_path / "results" / "llm" / "oracle_value" / "arithmetic-d1.json"))
    assert len(table["values"]) == 8 and set(table["values"].values()) <= {(k + 0.5) / 3 for k in range(3)}
    with open(tmp_path / "runs" / "o" / "progress.csv") as f:
        logged = [float(r["value"]) for r in csv.DictReader(f)]
    # the tiny random model never answers right: every V* is 0.5 / 3, where the critic would say 0.5 / 5
    assert logged == pytest.approx([0.5 / 3] * 2)
    assert llm_demo.setup is setup and llm_demo.compute_advantages.__module__ == "llm_demo"
    table["values"] = {"another question": 0.5}
    save_json(str(tmp_path / "results" / "llm" / "oracle_value" / "arithmetic-d1.json"), table)
    assert oracle.main([*args[:-1], "o2"]) == 2   # a table of other problems: one clear line, no traceback
