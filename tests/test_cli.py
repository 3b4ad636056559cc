"""The command line of sppo.py, run as a user runs it: `python /abs/path/sppo.py ...` in a subprocess.

sppo.py writes to runs/<run_name> relative to the current directory, so every run gets its own
pytest tmp_path as cwd and nothing lands in the repository. Budgets are tiny: an interpreter start
(torch, gymnasium, matplotlib) costs ~3-5 s here, more than the training itself.
"""
import csv
import dataclasses
import importlib.util
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import gymnasium as gym
import numpy as np
import pytest
import torch

import control_tasks
import envs
import sppo

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "sppo.py")
HEADER = ("update,episodes,env_steps,wall_time,mean_return,success_rate,policy_loss,value_loss,entropy,"
          "approx_kl,clip_frac,adv_std").split(",")
TIMING = {"wall_time", "steps_per_s"}       # the only columns allowed to differ between identical runs
TINY = ["--total-steps", "2000", "--num-episodes", "8", "--group-size", "4"]
SUMMARY = re.compile(r"^(?P<algo>\w+) on (?P<env>\S+): (?P<status>.+) after (?P<updates>\d+) updates, "
                     r"(?P<episodes>\d+) episodes, (?P<steps>\d+) env steps, [\d.]+ s; "
                     r"last-20 mean return (?P<last20>-?[\d.]+|nan); saved (?P<dir>.+)$")


def child_env():
    """The environment of a child run: REPO on PYTHONPATH (python /abs/sppo.py finds it anyway)."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))


def run_cli(cwd, *args, timeout=600):
    """python sppo.py ARGS in cwd; returns the CompletedProcess (text stdout/stderr)."""
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=child_env())


def run_all(jobs):
    """Several independent runs [(cwd, args), ...], two at a time (2 CPU cores; each run uses 1 thread)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda job: run_cli(job[0], *job[1]), jobs))


def interrupt_after(cwd, args, rows, timeout=600):
    """Start python sppo.py ARGS, wait until its progress.csv holds `rows` data rows, send SIGINT
    (Ctrl-C), wait for the exit. Returns (exit code, stdout, stderr, the rows seen before the signal)."""
    proc = subprocess.Popen([sys.executable, SCRIPT, *map(str, args)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    run_name = args[args.index("--run-name") + 1]
    csv_path = os.path.join(cwd, "runs", run_name, "progress.csv")
    try:
        deadline = time.monotonic() + timeout
        def complete_rows():   # a row still being written (no newline yet) does not count
            if not os.path.exists(csv_path):
                return []
            return [r for r in read_csv(csv_path)[1] if None not in r.values()]
        while len(complete_rows()) < rows:
            assert proc.poll() is None, ("the run ended before it was interrupted", proc.communicate())
            assert time.monotonic() < deadline, f"fewer than {rows} progress rows after {timeout} s"
            time.sleep(0.05)
        seen = complete_rows()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, stdout, stderr, seen


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def assert_ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr


def summary(stdout):
    """The one-line summary that must be the last line of stdout, parsed."""
    m = SUMMARY.match(stdout.strip().splitlines()[-1])
    assert m, f"last stdout line is not the summary:\n{stdout}"
    return m


def load_ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One finished 2-update SPPO run on CartPole (checkpoint after every update), for the tests that
    need a real checkpoint. Returns (cwd, run_dir). Tests copy it before changing anything."""
    cwd = tmp_path_factory.mktemp("tiny")
    proc = run_cli(cwd, "--env", "CartPole-v1", "--total-steps", 400, "--num-episodes", 8, "--save-every", 1,
                   "--seed", 1, "--run-name", "tiny")
    assert_ok(proc)
    run_dir = cwd / "runs" / "tiny"
    assert len(read_csv(run_dir / "progress.csv")[1]) >= 2
    return cwd, run_dir


# ------------------------------------------------------------------------------------------------
# Smoke: every algorithm, ratio and outcome type runs end to end and writes its files
# ------------------------------------------------------------------------------------------------
SMOKE = ([(algo, env, ()) for env in ("CartPole-v1", "Pendulum-v1")
          for algo in ("sppo", "ppo", "grpo", "rloo", "reinforce")]
         + [("sppo", "CartPole-v1", ("--ratio", ratio)) for ratio in ("token", "seq", "joint")]
         + [(algo, "Pendulum-v1", ("--reward", "success")) for algo in ("sppo", "ppo")]
         + [(algo, env, ("--backend", "gymnasium")) for algo, env in (("sppo", "CartPole-v1"), ("grpo", "Pendulum-v1"))])


@pytest.mark.parametrize("algo, env_id, extra", SMOKE, ids=["-".join([a, e, *(f"{x[i][2:]}={x[i + 1]}" for i in range(0, len(x), 2))]) for a, e, x in SMOKE])
def test_smoke(tmp_path, algo, env_id, extra):
    proc = run_cli(tmp_path, "--algo", algo, "--env", env_id, *TINY, *extra, "--run-name", "smoke")
    assert_ok(proc)
    run_dir = tmp_path / "runs" / "smoke"
    header, rows = read_csv(run_dir / "progress.csv")
    assert header[:len(HEADER)] == HEADER
    assert len(rows) >= 1
    assert (run_dir / "model.pt").is_file() and (run_dir / "learning_curve.png").stat().st_size > 0
    assert not (run_dir / "model.pt.tmp").exists()

    m = summary(proc.stdout)
    assert (m["algo"], m["env"], m["status"]) == (algo, env_id, "budget reached")
    assert int(m["updates"]) == len(rows) and int(m["steps"]) == int(rows[-1]["env_steps"]) >= 2000

    # bookkeeping columns
    assert [int(r["update"]) for r in rows] == list(range(1, len(rows) + 1))
    assert [int(r["episodes"]) for r in rows] == [8 * (i + 1) for i in range(len(rows))]
    steps = [int(r["env_steps"]) for r in rows]
    assert all(a < b for a, b in zip(steps, steps[1:]))
    for r in rows:
        for k in ("mean_return", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac", "adv_std"):
            assert torch.isfinite(torch.tensor(float(r[k]))), (k, r)
        assert 0 <= float(r["clip_frac"]) <= 1 and float(r["approx_kl"]) >= 0
        if algo in ("grpo", "rloo", "reinforce"):
            assert float(r["value_loss"]) == 0                  # no critic
        # both envs have a success predicate: the success rate is always reported
        assert 0 <= float(r["success_rate"]) <= 1
        if env_id == "Pendulum-v1":
            assert int(r["env_steps"]) % 200 == 0               # Pendulum only truncates, at 200 steps

    ckpt = load_ckpt(run_dir / "model.pt")
    assert {"args", "actor", "critic", "optimizer", "progress", "rng"} <= set(ckpt)
    assert ckpt["progress"]["update"] == len(rows)
    assert (ckpt["critic"] is None) == (algo in ("grpo", "rloo", "reinforce"))
    assert ckpt["args"]["algo"] == algo and ckpt["args"]["env"] == env_id


# ------------------------------------------------------------------------------------------------
# Reproducibility and learning
# ------------------------------------------------------------------------------------------------
def test_same_seed_same_run_other_seed_other_run(tmp_path):
    common = ["--env", "CartPole-v1", "--total-steps", 1500, "--num-episodes", 8]
    for proc in run_all([(tmp_path, [*common, "--seed", seed, "--run-name", name])
                         for name, seed in (("a", 3), ("b", 3), ("c", 4))]):
        assert_ok(proc)
    a, b, c = (read_csv(tmp_path / "runs" / n / "progress.csv")[1] for n in "abc")
    assert len(a) >= 2
    assert without_timing(a) == without_timing(b)
    assert without_timing(a) != without_timing(c)
    wa, wb = (load_ckpt(tmp_path / "runs" / n / "model.pt")["actor"] for n in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


LEARN_SEED, LEARN_STEPS, LEARN_BOUND = 1, 60_000, 150.0
# Default settings (B=32, seq ratio, normalised advantages, 4 minibatches, 8 epochs). Measured here,
# CPU, 1 thread: mean of the last 3 rows' mean_return, seeds 1-10 (all stop early, "solved", after
# 32k-70k steps): 307, 370, 358, 368, 350, 304, 321, 317, 305, 471. First row (a near-uniform random
# policy): 19-26. (The last 3 rows average over the climb to "solved", hence well below 475.)
# The bound is far below every seed seen and ~7x a random policy (~22).


def test_sppo_learns_cartpole(tmp_path):
    t0 = time.perf_counter()
    proc = run_cli(tmp_path, "--env", "CartPole-v1", "--total-steps", LEARN_STEPS, "--seed", LEARN_SEED,
                   "--run-name", "learn")
    assert_ok(proc)
    rows = read_csv(tmp_path / "runs" / "learn" / "progress.csv")[1]
    first, last3 = float(rows[0]["mean_return"]), sum(float(r["mean_return"]) for r in rows[-3:]) / 3
    print(f"learning: {len(rows)} updates, {rows[-1]['env_steps']} steps, train {float(rows[-1]['wall_time']):.1f} s, "
          f"process {time.perf_counter() - t0:.1f} s; first {first:.1f}, last-3 mean {last3:.1f}")
    assert first < 45                   # starts near a random policy (~22) ...
    assert last3 > LEARN_BOUND          # ... and ends far above it


# ------------------------------------------------------------------------------------------------
# Bad input: exit code 2, one "error:" line on stderr, no traceback, nothing written
# ------------------------------------------------------------------------------------------------
def no_predicate_env():
    """An installed classic-control id without a success predicate (CartPole-v0 in gymnasium 1.x)."""
    ids = [k for k, spec in gym.registry.items()
           if "classic_control" in str(spec.entry_point) and "/" not in k and k not in envs.SUCCESS]
    return sorted(ids)[0] if ids else None


def write_random_bytes(path):
    # pickle's PROTO opcode and an unknown protocol first: torch then warns before it fails, and that
    # warning must not reach the user (CI once drew such bytes from os.urandom); the rest is seeded noise
    path.write_bytes(b"\x80\x2a" + random.Random(0).randbytes(4094))


def write_foreign_checkpoint(path):
    torch.save({"weights": torch.zeros(3)}, path)            # a valid torch file, not from sppo.py


def write_sft_checkpoint(path):
    """What control_tasks.py sft writes (settings, a policy, what it measured), here with an untrained
    precision-cartpole policy: near-uniform, so its episodes end after a few dozen steps."""
    torch.manual_seed(0)
    actor = sppo.Actor(4, gym.spaces.Discrete(2), 64)
    torch.save({"args": dataclasses.asdict(sppo.Args(task="precision-cartpole", env="CartPole-v1")),
                "actor": actor.state_dict(), "sft": {"demos": 1}}, path)


def write_llm_checkpoint(path):
    """The keys llm_demo.py saves in its model.pt."""
    torch.save({"args": {"model": "tiny"}, "policy": {}, "critic": None, "optimizer": {}, "progress": {},
                "rng": torch.get_rng_state()}, path)


def absent_device():
    """A device kind torch knows that this machine lacks (none on a machine with all of them)."""
    return next((kind for kind in ("mps", "xpu", "mtia") if not getattr(torch, kind).is_available()), None)


# (id, arguments, substrings the one-line message must contain); {ckpt} is a path in the test's cwd
BAD = [
    ("unknown-env", ["--env", "CartPole-v9"], ["CartPole-v9", "CartPole-v1"]),
    ("no-cuda", ["--device", "cuda"], ["cuda", "--device cpu"]),
    ("num-episodes-negative", ["--num-episodes", "-3"], ["--num-episodes"]),
    ("clip-eps-0", ["--clip-eps", "0"], ["--clip-eps"]),
    ("clip-eps-negative", ["--clip-eps", "-0.1"], ["--clip-eps", "-0.1"]),
    ("grpo-group-1", ["--algo", "grpo", "--group-size", "1"], ["--group-size"]),
    ("rloo-not-multiple", ["--algo", "rloo", "--num-episodes", "10", "--group-size", "4"], ["10", "4"]),
    ("unknown-algo", ["--algo", "dpo"], ["--algo", "dpo"]),
    ("compile-gymnasium-env", ["--env", "CartPole-v1", "--backend", "gymnasium", "--compile"], ["--compile", "native"]),
    ("success-without-predicate", ["--reward", "success", "--env", "<no predicate>"], ["--reward return"]),
    ("resume-missing", ["--resume", "{ckpt}"], ["{ckpt}"]),
    ("resume-random-bytes", ["--resume", "{ckpt}"], ["{ckpt}"]),
    ("resume-foreign", ["--resume", "{ckpt}"], ["{ckpt}"]),
    ("resume-truncated", ["--resume", "{ckpt}"], ["{ckpt}"]),
    # one seed rule for both backends
    ("seed-negative-gymnasium", ["--env", "CartPole-v1", "--backend", "gymnasium", "--seed", "-1"], ["--seed", "2**32 - 1", "-1"]),
    ("seed-negative-native", ["--env", "CartPole-v1", "--seed", "-1"], ["--seed", "-1"]),
    ("seed-above-32-bits", ["--env", "LunarLander-v3", "--seed", str(2**32)], ["--seed", str(2**32)]),
    # every device checked the same way
    ("device-meta", ["--device", "meta"], ["--device meta"]),
    ("device-kind-absent", ["--device", "<absent>"], ["--device <absent>", "--device cpu"]),
    ("device-index-absent", ["--device", "cuda:<count>"], ["--device cuda:<count>", "--device cpu"]),
    # gymnasium's own reason, and the pip extra where there is one
    ("old-mujoco-version", ["--env", "Hopper-v3"], ["gymnasium-robotics", "Hopper-v5 is installed"]),
    ("ale-without-ale-py", ["--env", "ALE/Pong-v5"], ["Namespace ALE not found", 'pip install "gymnasium[atari]"']),
    ("module-not-importable", ["--env", "no_such_module_xyz:Foo-v0"], ["'no_such_module_xyz'", "PYTHONPATH"]),
    ("image-observations", ["--env", "CarRacing-v3"], ["Box(0, 255, (96, 96, 3), uint8)", "Discrete"]),
    # checkpoints: the real cause
    ("init-from-another-env", ["--env", "Pendulum-v1", "--init", "{tiny}"], ["env 'CartPole-v1', not 'Pendulum-v1'"]),
    ("resume-an-sft-policy", ["--resume", "{ckpt}"], ["SFT policy", "--init {ckpt}"]),
    ("init-from-an-llm-run", ["--init", "{ckpt}"], ["llm_demo.py", "not a control policy"]),
    ("resume-an-llm-run", ["--resume", "{ckpt}"], ["llm_demo.py"]),
]


@pytest.mark.parametrize("case, args, expect", BAD, ids=[b[0] for b in BAD])
def test_bad_input(tmp_path, tiny_run, case, args, expect):
    ckpt = tmp_path / "model.pt"
    if case == "no-cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    if case == "success-without-predicate":
        env_id = no_predicate_env()
        if env_id is None:
            pytest.skip("every installed classic-control id has a success predicate")
        args = [a.replace("<no predicate>", env_id) for a in args]
        expect = expect + [env_id]
    if case == "resume-random-bytes":
        write_random_bytes(ckpt)
    if case == "resume-foreign":
        write_foreign_checkpoint(ckpt)
    if case == "resume-truncated":
        data = (tiny_run[1] / "model.pt").read_bytes()
        ckpt.write_bytes(data[:len(data) // 2])
    if case == "resume-an-sft-policy":
        write_sft_checkpoint(ckpt)
    if case in ("init-from-an-llm-run", "resume-an-llm-run"):
        write_llm_checkpoint(ckpt)
    if case == "ale-without-ale-py" and importlib.util.find_spec("ale_py") is not None:
        pytest.skip("ale-py is installed here")
    if case == "device-kind-absent" and absent_device() is None:
        pytest.skip("this machine has every device kind tried")
    fill = {"{ckpt}": str(ckpt), "{tiny}": str(tiny_run[1] / "model.pt"), "<absent>": str(absent_device()),
            "<count>": str(torch.cuda.device_count())}   # cuda:<count> is one past the last GPU, or cuda:0 on none
    args, expect = ([_fill(a, fill) for a in x] for x in (args, expect))
    before = sorted(os.listdir(tmp_path))

    proc = run_cli(tmp_path, *args, "--total-steps", 100)
    assert proc.returncode == 2, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for e in expect:
        assert e in lines[0], (e, lines[0])
    assert sorted(os.listdir(tmp_path)) == before                # no runs/ folder, no files


def _fill(text, fill):
    for key, value in fill.items():
        text = text.replace(key, value)
    return text


@pytest.mark.parametrize("args", [["--num-episodes", "x"], ["--no-such-flag"]])
def test_argparse_errors(tmp_path, args):
    proc = run_cli(tmp_path, *args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert any(line.startswith("usage:") for line in proc.stderr.splitlines())
    assert any("error:" in line for line in proc.stderr.splitlines())
    assert os.listdir(tmp_path) == []


def test_existing_run_is_not_overwritten(tiny_run):
    cwd, run_dir = tiny_run
    before = {p: (run_dir / p).read_bytes() for p in ("progress.csv", "model.pt")}
    proc = run_cli(cwd, "--env", "CartPole-v1", "--total-steps", 100, "--run-name", "tiny")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--resume" in lines[0], proc.stderr
    assert {p: (run_dir / p).read_bytes() for p in before} == before


# ------------------------------------------------------------------------------------------------
# Resume and Ctrl-C
# ------------------------------------------------------------------------------------------------
def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path, tiny_run):
    # the tiny run: 2+ updates of SPPO on CartPole, seed 1, --total-steps 400, checkpoint every update
    shutil.copytree(tiny_run[1], tmp_path / "runs" / "part")
    first = read_csv(tmp_path / "runs" / "part" / "progress.csv")[1]
    assert len(first) >= 2

    resumed_proc, full_proc = run_all([
        (tmp_path, ["--resume", os.path.join("runs", "part", "model.pt"), "--total-steps", 1500]),
        (tmp_path, ["--env", "CartPole-v1", "--total-steps", 1500, "--num-episodes", 8, "--save-every", 1,
                    "--seed", 1, "--run-name", "full"])])
    assert_ok(resumed_proc)
    assert_ok(full_proc)
    assert summary(resumed_proc.stdout)["status"] == "budget reached"

    header, resumed = read_csv(tmp_path / "runs" / "part" / "progress.csv")
    full = read_csv(tmp_path / "runs" / "full" / "progress.csv")[1]
    assert header[:len(HEADER)] == HEADER
    assert resumed[:len(first)] == first                         # the old rows, untouched
    assert len(resumed) > len(first)                             # new rows appended ...
    assert [int(r["update"]) for r in resumed] == list(range(1, len(resumed) + 1))   # ... numbered on
    assert without_timing(resumed) == without_timing(full)       # the same run as without the break
    assert float(resumed[-1]["wall_time"]) >= float(first[-1]["wall_time"])
    a, b = load_ckpt(tmp_path / "runs" / "part" / "model.pt"), load_ckpt(tmp_path / "runs" / "full" / "model.pt")
    for net in ("actor", "critic"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
    assert a["progress"]["update"] == len(resumed)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resume_on_cuda_continues_exactly_like_an_uninterrupted_run(tmp_path):
    """On CUDA the actions are drawn by the GPU's generator, which torch.get_rng_state() does not hold:
    the checkpoint must carry the CUDA RNG state too, or the resumed run samples other actions."""
    common = ["--env", "CartPole-v1", "--num-episodes", 8, "--save-every", 1, "--seed", 1, "--device", "cuda"]
    assert_ok(run_cli(tmp_path, *common, "--total-steps", 400, "--run-name", "part"))
    resumed_proc, full_proc = run_all([
        (tmp_path, ["--resume", os.path.join("runs", "part", "model.pt"), "--total-steps", 1500, "--device", "cuda"]),
        (tmp_path, [*common, "--total-steps", 1500, "--run-name", "full"])])
    assert_ok(resumed_proc)
    assert_ok(full_proc)
    resumed = read_csv(tmp_path / "runs" / "part" / "progress.csv")[1]
    full = read_csv(tmp_path / "runs" / "full" / "progress.csv")[1]
    assert len(resumed) == len(full) >= 3
    assert without_timing(resumed) == without_timing(full)
    assert load_ckpt(tmp_path / "runs" / "part" / "model.pt")["cuda_rng"] is not None


def test_ctrl_c_saves_and_exits_130(tmp_path):
    code, stdout, stderr, rows_before = interrupt_after(
        tmp_path, ["--env", "CartPole-v1", "--total-steps", 100_000_000, "--no-stop-when-solved",
                   "--save-every", 1000, "--run-name", "long"], rows=2)
    assert code == 130, (code, stdout, stderr)
    assert "Traceback" not in stderr, stderr
    assert "interrupted" in summary(stdout)["status"]
    run_dir = tmp_path / "runs" / "long"
    rows = read_csv(run_dir / "progress.csv")[1]
    assert rows[:len(rows_before)] == rows_before and len(rows) >= 2
    ckpt = load_ckpt(run_dir / "model.pt")           # saved on Ctrl-C despite --save-every 1000
    assert ckpt["progress"]["update"] == len(rows) == int(rows[-1]["update"])
    assert ckpt["progress"]["env_steps"] == int(rows[-1]["env_steps"])
    assert not (run_dir / "model.pt.tmp").exists()
    assert (run_dir / "learning_curve.png").is_file()


def test_resume_after_ctrl_c_replays_the_uninterrupted_run(tmp_path):
    """Ctrl-C, then --resume, must give the same rows as a run that was never interrupted (as a resume
    after a finished budget does). The signal almost always lands inside an update (rollout or
    gradient steps), so the checkpoint written on Ctrl-C must hold the state of the last COMPLETED
    update -- weights, optimizer and RNG -- not a half-done one that progress.csv does not show."""
    common = ["--env", "CartPole-v1", "--num-episodes", 8, "--no-stop-when-solved", "--seed", 1]
    with ThreadPoolExecutor(max_workers=1) as pool:
        full = pool.submit(run_cli, tmp_path, *common, "--total-steps", 4000, "--run-name", "full")
        code, stdout, stderr, _ = interrupt_after(
            tmp_path, [*common, "--total-steps", 100_000_000, "--save-every", 1000, "--run-name", "cut"], rows=2)
        assert code == 130, (code, stdout, stderr)
        assert_ok(full.result())
    full_rows = read_csv(tmp_path / "runs" / "full" / "progress.csv")[1]
    k = load_ckpt(tmp_path / "runs" / "cut" / "model.pt")["progress"]["update"]
    assert k < len(full_rows), "interrupted too late for the reference run; raise its --total-steps"
    # resume for exactly one more update: stop as soon as the uninterrupted run's update k+1 is reached
    proc = run_cli(tmp_path, "--resume", os.path.join("runs", "cut", "model.pt"),
                   "--total-steps", full_rows[k]["env_steps"])
    assert_ok(proc)
    resumed = read_csv(tmp_path / "runs" / "cut" / "progress.csv")[1]
    assert [int(r["update"]) for r in resumed] == list(range(1, len(resumed) + 1))
    diverged = [i + 1 for i, (a, b) in enumerate(zip(without_timing(resumed), without_timing(full_rows))) if a != b]
    assert not diverged, (f"interrupted after update {k}; the resumed run differs from the uninterrupted one "
                          f"from update {diverged[0]} on:\n{resumed[diverged[0] - 1]}\n{full_rows[diverged[0] - 1]}")
    assert len(resumed) == k + 1


def test_resume_after_a_crash_does_not_duplicate_rows(tmp_path, tiny_run):
    """A run killed hard (SIGKILL, OOM, power cut) between two checkpoints (--save-every N > 1) leaves
    progress.csv with rows newer than model.pt. Resuming from that model.pt must not log those updates
    a second time. The crash is built deterministically: an older model.pt is put back after a resume."""
    run_dir = tmp_path / "runs" / "crash"
    shutil.copytree(tiny_run[1], run_dir)
    old_ckpt = (run_dir / "model.pt").read_bytes()                     # checkpoint at update n
    assert_ok(run_cli(tmp_path, "--resume", run_dir / "model.pt", "--total-steps", 1500))   # rows n+1.. k
    n_logged = len(read_csv(run_dir / "progress.csv")[1])
    (run_dir / "model.pt").write_bytes(old_ckpt)                       # the crash: model.pt still at n
    assert_ok(run_cli(tmp_path, "--resume", run_dir / "model.pt", "--total-steps", 1500))
    rows = read_csv(run_dir / "progress.csv")[1]
    updates = [int(r["update"]) for r in rows]
    assert updates == list(range(1, len(rows) + 1)), f"update column after resume: {updates}"
    assert len(rows) == n_logged


def test_missing_extra_names_the_pip_extra(monkeypatch):
    """box2d is a requirement now, so a missing extra is simulated: gymnasium's DependencyNotInstalled
    becomes one EnvError naming the pip extra."""
    import gymnasium as gym

    import envs

    def refuse(*args, **kwargs):
        raise gym.error.DependencyNotInstalled("Box2D is not installed")

    monkeypatch.setattr(gym, "make_vec", refuse)
    with pytest.raises(envs.EnvError, match=r'pip install "gymnasium\[box2d\]"'):
        envs.make_env("LunarLander-v3", 2)


def test_missing_package_is_one_line(monkeypatch):
    """Any ImportError while building a gymnasium env (phys2d/ ids import jax) becomes one EnvError."""
    import gymnasium as gym

    import envs

    def needs_jax(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'jax'", name="jax")

    monkeypatch.setattr(gym, "make_vec", needs_jax)
    with pytest.raises(envs.EnvError, match=r"needs the package 'jax', which is not installed: pip install \"gymnasium\[jax\]\""):
        envs.make_env("Acrobot-v1", 2, backend="gymnasium")


def test_resume_from_a_tampered_checkpoint_is_one_line(tmp_path, tiny_run):
    """A checkpoint that loads but whose weights do not fit its own settings: exit 2, one line."""
    ckpt = load_ckpt(tiny_run[1] / "model.pt")
    ckpt["actor"] = {k: v[..., :1] for k, v in ckpt["actor"].items()}    # wrong shapes
    torch.save(ckpt, tmp_path / "model.pt")
    proc = run_cli(tmp_path, "--resume", str(tmp_path / "model.pt"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:") and "damaged" in proc.stderr


# ------------------------------------------------------------------------------------------------
# Clear refusals, with the real reason: devices, spaces, env ids, checkpoints, the gif stage
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["mps", "xpu", "mtia", "hpu", "privateuseone", "meta", "cuda:<count>", "cpu:1",
                                  "garbage", "cuda:-1"])
def test_every_device_is_checked_the_same_way(name):
    """Any device this machine lacks -- another kind, an index past the last, meta, a name torch does not
    know -- is one ConfigError naming it, before anything is built on it."""
    from runlog import ConfigError, pick_device
    name = name.replace("<count>", str(torch.cuda.device_count()))
    kind = name.split(":")[0]
    if kind in ("mps", "xpu", "mtia") and getattr(torch, kind).is_available():
        pytest.skip(f"this machine has a {kind} device")
    with pytest.raises(ConfigError) as refused:
        pick_device(name)
    assert f"'{name}'" in str(refused.value) or f"--device {name} " in str(refused.value), str(refused.value)
    assert pick_device("cpu") == torch.device("cpu") and pick_device("auto").type in ("cpu", "cuda")


def test_a_gpu_index_past_the_last_is_refused(monkeypatch):
    """--device cuda:7 on a one-GPU machine (simulated: torch.cuda reports one device) used to pass the
    check and fail later in a traceback."""
    from runlog import ConfigError, pick_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ConfigError) as refused:
        pick_device("cuda:7")
    assert str(refused.value) == "--device cuda:7 but this machine has 1 cuda device(s) (cuda:0); use one of them or --device cpu"
    assert pick_device("cuda:0") == torch.device("cuda:0") and pick_device("cuda") == torch.device("cuda")


class SpacesProbe(gym.Env):
    """An env with the given spaces that records the actions it is given."""

    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space, self.actions = observation_space, action_space, []

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        self.actions.append(action)
        return self.observation_space.sample(), 1.0, False, False, {}


@pytest.fixture
def probe_env():
    """register(observation_space, action_space) -> the id of a SpacesProbe env with them (5 steps long)."""
    ids = []

    def register(observation_space, action_space):
        env_id = f"SpacesProbe{len(ids)}-v0"
        gym.register(env_id, entry_point=lambda: SpacesProbe(observation_space, action_space), max_episode_steps=5)
        ids.append(env_id)
        return env_id
    yield register
    for env_id in ids:
        del gym.registry[env_id]


S = gym.spaces
VECTOR, DISCRETE = S.Box(-1.0, 1.0, (3,)), S.Discrete(2)
REFUSED_SPACES = [   # (case, observation space, action space, what the message names)
    ("act-multidiscrete", VECTOR, S.MultiDiscrete([3, 3]), "acts in MultiDiscrete([3 3])"),
    ("act-multibinary", VECTOR, S.MultiBinary(4), "acts in MultiBinary(4)"),
    ("act-int-box", VECTOR, S.Box(0, 5, (2,), np.int64), "acts in Box(0, 5, (2,), int64)"),
    ("act-text", VECTOR, S.Text(5), "acts in Text("),
    ("act-tuple", VECTOR, S.Tuple((DISCRETE, DISCRETE)), "acts in Tuple("),
    ("obs-image", S.Box(0, 255, (8, 8, 3), np.uint8), DISCRETE, "observes Box(0, 255, (8, 8, 3), uint8)"),
    ("obs-2d-box", S.Box(-1.0, 1.0, (2, 3)), DISCRETE, "observes Box(-1.0, 1.0, (2, 3), float32)"),
    ("obs-dict", S.Dict({"a": VECTOR}), DISCRETE, "observes Dict("),
    ("obs-tuple", S.Tuple((VECTOR, VECTOR)), DISCRETE, "observes Tuple("),
    ("obs-multibinary", S.MultiBinary(4), DISCRETE, "observes MultiBinary(4)"),
    ("obs-text", S.Text(5), DISCRETE, "observes Text("),
]


@pytest.mark.parametrize("case, obs_space, action_space, named", REFUSED_SPACES, ids=[r[0] for r in REFUSED_SPACES])
def test_unsupported_spaces_are_refused_by_type(probe_env, case, obs_space, action_space, named):
    """Spaces are checked by type, not by shape: MultiDiscrete actions have a shape of one dimension, but a
    Gaussian's float actions are not theirs. Anything but Discrete and (float) Box is one EnvError."""
    env_id = probe_env(obs_space, action_space)
    with pytest.raises(envs.EnvError) as refused:
        envs.make_env(env_id, 2)
    message = str(refused.value)
    assert "\n" not in message and env_id in message and named in message, message


def test_discrete_observations_and_shaped_or_shifted_actions_are_carried(probe_env, tmp_path, monkeypatch, capsys):
    """Discrete observations arrive one-hot; Discrete actions 0..n-1 reach the env shifted to its `start`;
    a Box action of any shape is the Gaussian's flat sample, reshaped. sppo.py trains on both."""
    shifted = envs.make_env(probe_env(S.Discrete(5, start=3), S.Discrete(3, start=-1)), 2, seed=0)
    obs = shifted.reset(seed=0)
    assert obs.shape == (2, 5) and shifted.single_observation_space.shape == (5,)
    assert obs.sum(1).tolist() == [1.0, 1.0] and set(obs.flatten().tolist()) <= {0.0, 1.0}
    shifted.step(torch.tensor([0, 2]))
    assert [int(e.unwrapped.actions[-1]) for e in shifted.env.envs] == [-1, 1]

    box_id = probe_env(S.Discrete(4), S.Box(-1.0, 1.0, (2, 3)))
    shaped = envs.make_env(box_id, 2, seed=0)
    actions = torch.arange(12.0).view(2, 6)
    shaped.reset(seed=0)
    shaped.step(actions)
    for i, e in enumerate(shaped.env.envs):
        assert np.array_equal(e.unwrapped.actions[-1], actions[i].view(2, 3).numpy())

    monkeypatch.chdir(tmp_path)
    assert sppo.main(["--env", box_id, "--total-steps", "40", "--num-episodes", "4", "--run-name", "probe"]) == 0
    assert "budget reached" in capsys.readouterr().out


@pytest.mark.parametrize("backend", ["torch", "gymnasium"])
def test_make_env_has_one_seed_rule_for_both_backends(backend):
    """A negative seed: the native env took it, gymnasium's ended in numpy's ValueError."""
    with pytest.raises(envs.EnvError, match=r"^seed must be an integer from 0 to 2\*\*64 - 1, got -1$"):
        envs.make_env("CartPole-v1", 2, seed=-1, backend=backend)


def test_module_colon_id_imports_the_module_as_gymnasium_does():
    env = envs.make_env("gymnasium.envs.classic_control.cartpole:CartPole-v1", 2, backend="gymnasium")
    assert env.env_id == "CartPole-v1"   # the registered id: success predicates are found by it
    assert env.reset(seed=0).shape == (2, 4)
    assert envs.spec("gymnasium.envs.classic_control.cartpole:CartPole-v1").id == "CartPole-v1"


def test_module_colon_id_on_the_command_line(tmp_path):
    proc = run_cli(tmp_path, "--env", "gymnasium.envs.classic_control.cartpole:CartPole-v1", "--total-steps", 300,
                   "--num-episodes", 8, "--run-name", "m")
    assert_ok(proc)
    assert summary(proc.stdout)["status"] == "budget reached"


def test_a_namespace_registered_on_import_is_imported(tmp_path, monkeypatch):
    """ALE/ ids exist once ale_py is imported (gymnasium 1.x no longer imports plugins): make_env imports
    the package of such a namespace where it is installed. Shown with a stand-in package."""
    (tmp_path / "probe_namespace_pkg.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('ProbeNS/Cart-v0', entry_point='gymnasium.envs.classic_control.cartpole:CartPoleEnv', "
        "max_episode_steps=5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(envs._NAMESPACES, "ProbeNS", ("probe_namespace_pkg", "probe-extra"))
    try:
        env = envs.make_env("ProbeNS/Cart-v0", 2)
        assert env.env_id == "ProbeNS/Cart-v0" and env.reset(seed=0).shape == (2, 4)
    finally:
        gym.registry.pop("ProbeNS/Cart-v0", None)


def test_an_import_error_keeps_gymnasiums_reason():
    """Hopper-v3 needs mujoco-py: gymnasium raises an ImportError naming no module ('pip install None'
    before); its own words are kept, with the newest installed version of the env."""
    with pytest.raises(envs.EnvError) as refused:
        envs.make_env("Hopper-v3", 1)
    message = str(refused.value)
    assert "None" not in message and "gymnasium-robotics" in message and "Hopper-v5 is installed" in message


@pytest.mark.parametrize("argv, expect", [
    (["eval", "--checkpoint", "{sft}", "--task", "pendulum"],
     "was trained on --task precision-cartpole, not on --task pendulum (Pendulum-v1)"),
    (["gif", "--checkpoint", "{sft}", "--task", "mountaincar"], "was trained on --task precision-cartpole"),
    (["eval", "--checkpoint", "{llm}"], "a run of llm_demo.py (a language model), not a control policy"),
    (["sft", "--task", "pendulum", "--expert", "{llm}"], "a run of llm_demo.py"),
    (["eval", "--checkpoint", "{sft}", "--seed", "-1"], "--seed must be an integer from 0 to 2**32 - 1, got -1"),
])
def test_stage_checkpoints_are_refused_with_the_real_cause(tmp_path, monkeypatch, capsys, argv, expect):
    monkeypatch.chdir(tmp_path)
    write_sft_checkpoint(tmp_path / "sft.pt")
    write_llm_checkpoint(tmp_path / "llm.pt")
    argv = [a.replace("{sft}", "sft.pt").replace("{llm}", "llm.pt") for a in argv]
    assert control_tasks.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0], err


@pytest.mark.parametrize("out, expect", [("missing/episode.gif", "the folder missing does not exist"),
                                         ("episode.txt", "extension"), ("episode", "extension"),
                                         (".", "is a folder")])
def test_gif_checks_its_output_path_before_rendering(tmp_path, monkeypatch, capsys, out, expect):
    monkeypatch.chdir(tmp_path)
    write_sft_checkpoint(tmp_path / "sft.pt")

    def too_early(*args, **kwargs):
        raise AssertionError("the policy was loaded and rendered before --out was checked")
    monkeypatch.setattr(control_tasks, "load_actor", too_early)
    monkeypatch.setattr(gym, "make", too_early)
    assert control_tasks.main(["gif", "--checkpoint", "sft.pt", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --out ") and expect in err[0], err


def test_gif_turns_the_image_librarys_errors_into_one_line(tmp_path, monkeypatch, capsys):
    from PIL import Image
    monkeypatch.chdir(tmp_path)
    write_sft_checkpoint(tmp_path / "sft.pt")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Image.Image, "save", disk_full)
    assert control_tasks.main(["gif", "--checkpoint", "sft.pt", "--out", "episode.gif"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: cannot write episode.gif: [Errno 28] No space left on device"], err


def test_gif_on_a_headless_machine_prints_no_error_line(tmp_path):
    """Without a display SDL (pygame, which draws the frames) printed "error: XDG_RUNTIME_DIR is invalid
    or not set in the environment." although the GIF was written."""
    write_sft_checkpoint(tmp_path / "sft.pt")
    env = {k: v for k, v in child_env().items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "SDL_VIDEODRIVER")}
    proc = subprocess.run([sys.executable, os.path.join(REPO, "control_tasks.py"), "gif", "--checkpoint", "sft.pt",
                           "--out", "episode.gif"], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    assert not [line for line in proc.stderr.splitlines() if line.startswith("error:")], proc.stderr
    assert proc.stdout.startswith("wrote episode.gif") and (tmp_path / "episode.gif").stat().st_size > 0
