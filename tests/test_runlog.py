"""What a run tells the person who started it, and what it leaves in its folder (runlog.py, through both
trainers): progress they can see in a log, the bar that ends where the run did, settings.json, --help with
every choice and default, the opt-in TensorBoard mirror, and a 0/1 task reported as a success rate.

sppo.py runs in-process through main(argv) with the test's tmp_path as the working directory (CartPole, a
few updates), except where the test is about the process itself (stdout to a pipe, as in a log); the LLM
demo runs on the tiny random model of tests/tiny_lm.py."""
import csv
import dataclasses
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

import pytest

import llm_demo
import runlog
import sppo
from tiny_lm import make_tiny_lm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--num-episodes", "8", "--save-every", "1"]            # CartPole: ~200-400 env steps per update at first
LLM_TINY = ["--n-train", "40", "--n-eval", "4", "--eval-k", "2", "--batch-size", "8", "--group-size", "4",
            "--max-new-tokens", "6", "--log-every", "0", "--device", "cpu"]
# a plain progress line: "<n>/<total> <unit>s (<pct>%), <rate> <unit>s/s, <s> s; <postfix>"
PROGRESS = re.compile(r"^\d+/\d+ (env )?steps \([\d.]+%\), [\d.e+-]+ (env )?steps/s, \d+ s; ")


def sppo_run(tmp_path, monkeypatch, *args):
    monkeypatch.chdir(tmp_path)
    return sppo.main([str(a) for a in args])


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_lm(str(tmp_path_factory.mktemp("tiny_lm")))


# ------------------------------------------------------------------------------------------------
# Progress you can see
# ------------------------------------------------------------------------------------------------
def test_a_run_writing_to_a_pipe_prints_progress_while_it_runs(tmp_path):
    """stdout a pipe, stderr too (a log file, nohup, a scheduler): tqdm would stay silent until the end. The
    first update's line must arrive while the run is still going (a 1M-step budget, not solved), flushed,
    not held in a pipe's buffer until exit."""
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "sppo.py"), *TINY, "--no-stop-when-solved",
                             "--run-name", "live"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=dict(os.environ, PYTHONPATH=REPO))
    first = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=300)
    try:
        assert first and PROGRESS.match(first[0]), f"no progress line within 300 s: {first}"
        assert proc.poll() is None, "the line came only when the run had ended"
        assert "/1000000 env steps" in first[0] and "update 1, ret " in first[0]
    finally:
        proc.send_signal(signal.SIGINT)   # Ctrl-C: finishes the update, saves, and says so
        out, err = proc.communicate(timeout=300)
    lines = (first[0] + out).strip().splitlines()
    assert proc.returncode == 130, err
    assert lines[-2].startswith("watch it: python control_tasks.py watch ")   # what to do next with the run
    done = len(rows(tmp_path / "runs" / "live" / "progress.csv"))
    if lines[-3] == f"interrupted at update {done}":   # that update's line is out already: only the reason follows
        assert PROGRESS.match(lines[-4]) and f"update {done}, " in lines[-4]
    else:
        assert PROGRESS.match(lines[-3]) and lines[-3].endswith(f"; interrupted at update {done}")
    assert lines[-1].startswith("sppo on CartPole-v1: interrupted (Ctrl-C)")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_bar_of_a_run_that_stops_early_ends_at_its_real_count(monkeypatch):
    """On a terminal: a run solved at 4% of its budget closes its bar at 100% of the steps it took, saying
    why, instead of leaving it frozen at 4%."""
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with runlog.ProgressDisplay(1_000_000, unit="env step") as bar:
        bar.update(40_000)
        bar.set_postfix(update=12, last20="480.0")
        bar.end("solved at update 12")
    final = screen.getvalue().split("\r")[-1]
    assert "100%" in final and "40000/40000" in final and "solved at update 12" in final, final


def test_off_a_terminal_a_line_at_the_first_update_then_every_few_seconds(capsys):
    def show(every_s):
        with runlog.ProgressDisplay(100, unit="step", every_s=every_s) as bar:
            for step in range(1, 4):
                bar.update(1)
                bar.set_postfix(reward=f"{step / 10:.2f}")
            bar.write("  a sample")
        return capsys.readouterr().out.splitlines()

    hourly = show(every_s=3600)   # the first update's line, then none for an hour; the last count at the end
    assert [line.split(" (")[0] for line in hourly] == ["1/100 steps", "  a sample", "3/100 steps"]
    assert hourly[0].endswith("; reward 0.10") and hourly[2].endswith("; reward 0.30")
    assert [line.split(" (")[0] for line in show(every_s=0)] == ["1/100 steps", "2/100 steps", "3/100 steps", "  a sample"]


def test_another_process_than_the_main_one_shows_nothing(capsys):
    with runlog.ProgressDisplay(10, enabled=False) as bar:
        bar.update(3), bar.set_postfix(reward="0.5"), bar.write("x"), bar.end("done")
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------------------------
# settings.json: every setting and each command that ran the run
# ------------------------------------------------------------------------------------------------
def test_settings_json_holds_the_command_and_every_setting_and_keeps_them_on_resume(tmp_path, monkeypatch, capsys):
    first = [*TINY, "--total-steps", "600", "--seed", "3", "--run-name", "r"]
    assert sppo_run(tmp_path, monkeypatch, *first) == 0
    path = tmp_path / "runs" / "r" / "settings.json"
    saved = json.loads(path.read_text())
    ckpt_args = runlog.read_checkpoint(str(tmp_path / "runs" / "r" / "model.pt"), ("args",))["args"]
    assert saved["settings"] == ckpt_args                                    # every field, as trained
    assert set(saved["settings"]) == {f.name for f in dataclasses.fields(sppo.Args)}
    assert sppo.Args(**saved["settings"]).seed == 3                         # it rebuilds the settings
    assert [c["command"] for c in saved["commands"]] == [shlex.join(["python", "sppo.py", *first])]
    assert saved["commands"][0]["at"] == {"update": 0}
    updates = len(rows(tmp_path / "runs" / "r" / "progress.csv"))

    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", "--total-steps", "1200") == 0
    resumed = json.loads(path.read_text())
    assert resumed["commands"][0] == saved["commands"][0]                   # the original, untouched
    assert resumed["commands"][1]["command"] == "python sppo.py --resume runs/r/model.pt --total-steps 1200"
    assert resumed["commands"][1]["at"] == {"update": updates}
    assert resumed["commands"][1]["changed"] == {"total_steps": [600, 1200]}
    assert resumed["settings"] == {**saved["settings"], "total_steps": 1200, "resume": "runs/r/model.pt"}


def test_settings_built_in_python_are_written_as_the_flags_that_give_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert sppo.train(sppo.Args(total_steps=300, num_episodes=8, run_name="py", norm_adv=False)) == 0
    command = json.loads((tmp_path / "runs" / "py" / "settings.json").read_text())["commands"][0]["command"]
    assert command == "python sppo.py --num-episodes 8 --total-steps 300 --no-norm-adv --run-name py"


def test_the_llm_demo_writes_settings_json_and_a_progress_line_per_step_off_a_terminal(tmp_path, monkeypatch, capsys, tiny):
    monkeypatch.chdir(tmp_path)
    argv = ["--model", tiny, "--steps", "2", *LLM_TINY, "--run-name", "r"]
    assert llm_demo.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    progress = [line for line in out if PROGRESS.match(line)]
    assert [line.split(" (")[0] for line in progress[:1]] == ["1/2 steps"] and progress[-1].startswith("2/2 steps")
    saved = json.loads((tmp_path / "runs" / "r" / "settings.json").read_text())
    assert saved["commands"][0]["command"] == shlex.join(["python", "llm_demo.py", *argv])
    assert saved["commands"][0]["at"] == {"step": 0}
    assert set(saved["settings"]) == {f.name for f in dataclasses.fields(llm_demo.LLMArgs)}


# ------------------------------------------------------------------------------------------------
# --help: the choices, and every default as a user reads it
# ------------------------------------------------------------------------------------------------
def help_text(cls, capsys):
    with pytest.raises(SystemExit):
        runlog.parse_args(["--help"], cls)
    return " ".join(capsys.readouterr().out.split())   # argparse wraps lines at the terminal's width


def test_help_lists_the_choices_and_the_default_of_every_flag(capsys):
    text = help_text(sppo.Args, capsys)
    for shown in ("--algo {sppo,ppo,grpo,rloo,reinforce}", "--ratio {token,seq,joint}",
                  "--reward {return,success,shaped}", "--backend {auto,torch,gymnasium}",
                  "--norm-adv, --no-norm-adv", "--stop-when-solved, --no-stop-when-solved"):
        assert shown in text, shown
    assert re.search(r"--no-norm-adv standardise [^()]*\(default: on\)", text)
    assert re.search(r"--no-compile run the rollout.*?\(default: off\)", text)
    assert re.search(r"--no-tensorboard .*?\(default: off\)", text)
    assert "(default: )" not in text and "(default: none)" in text
    assert text.count("(default:") == len(dataclasses.fields(sppo.Args))   # run-name: its help says it, once
    llm = help_text(llm_demo.LLMArgs, capsys)
    for shown in ("--algo {sppo,ppo,grpo,rloo,reinforce}", "--dtype {auto,float32,bfloat16}", "--difficulty {1,2,3,4,5}"):
        assert shown in llm, shown
    assert re.search(r"--no-norm-adv standardise .*? --no-norm-adv\) \(default: on\)", llm)


def test_a_declared_choice_is_checked_with_one_line_naming_the_flag():
    @dataclass
    class Settings:
        mode: str = runlog.opt("a", "a | b", choices=("a", "b"))

    runlog.check_settings(Settings(), {})
    with pytest.raises(runlog.ConfigError, match=r"^--mode must be one of a, b, got 'c'$"):
        runlog.check_settings(Settings(mode="c"), {})


# ------------------------------------------------------------------------------------------------
# --tensorboard: opt-in, refused in one line without the package
# ------------------------------------------------------------------------------------------------
def test_tensorboard_without_the_package_is_refused_in_one_line_before_anything_is_built(tmp_path, monkeypatch, capsys, tiny):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # import fails as if not installed
    for main, argv in ((sppo.main, [*TINY, "--total-steps", "300"]), (llm_demo.main, ["--model", tiny, *LLM_TINY])):
        monkeypatch.chdir(tmp_path)
        assert main([*argv, "--tensorboard", "--run-name", "tb"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --tensorboard needs the package 'tensorboard'"), err
        assert "pip install tensorboard" in err[0]
        assert not (tmp_path / "runs").exists()


def events(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_tensorboard_mirrors_progress_csv_and_a_replayed_update_is_not_listed_twice(tmp_path, monkeypatch, capsys):
    pytest.importorskip("tensorboard", reason="tensorboard is an optional extra (pip install tensorboard), "
                                              "not in requirements.txt")
    import shutil
    run_dir = tmp_path / "runs" / "tb"
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--total-steps", "600", "--tensorboard", "--run-name", "tb") == 0
    shutil.copy(run_dir / "model.pt", tmp_path / "early.pt")
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/tb/model.pt", "--total-steps", "1200") == 0
    shutil.copy(tmp_path / "early.pt", run_dir / "model.pt")      # a crash after those rows: they are replayed
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/tb/model.pt", "--total-steps", "1500") == 0
    table = rows(run_dir / "progress.csv")
    scalars = events(run_dir)
    numeric = [c for c in sppo.COLUMNS if c != "update" and table[0][c] != ""]
    assert sorted(scalars) == sorted(numeric)
    for column in numeric:   # step = the update; each once, with progress.csv's value
        assert [s for s, _ in scalars[column]] == [int(r["update"]) for r in table], column
        assert [v for _, v in scalars[column]] == pytest.approx([float(r[column]) for r in table], rel=1e-6), column


def test_tensorboard_turned_on_at_a_resume_gets_the_earlier_rows_too(tmp_path, monkeypatch, capsys, tiny):
    pytest.importorskip("tensorboard", reason="tensorboard is an optional extra (pip install tensorboard), "
                                              "not in requirements.txt")
    monkeypatch.chdir(tmp_path)
    assert llm_demo.main(["--model", tiny, "--steps", "1", *LLM_TINY, "--run-name", "r"]) == 0
    assert llm_demo.main(["--resume", "runs/r/model.pt", "--steps", "2", "--tensorboard"]) == 0
    scalars = events(tmp_path / "runs" / "r")
    assert [s for s, _ in scalars["reward"]] == [1, 2]
    assert [v for _, v in scalars["reward"]] == pytest.approx([float(r["reward"]) for r in rows(tmp_path / "runs" / "r" / "progress.csv")])
    assert "value" not in scalars or len(scalars["value"]) == 2


# ------------------------------------------------------------------------------------------------
# The learning curve and the summary say what they report
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def plots(monkeypatch):
    """Every plot_progress call of sppo.py, recorded (and drawn)."""
    calls = []
    real = runlog.plot_progress
    monkeypatch.setattr(sppo, "plot_progress", lambda *a, **kw: (calls.append(kw), real(*a, **kw)))
    return calls


def test_a_0_1_task_reports_its_success_rate_once(tmp_path, monkeypatch, capsys, plots):
    """A --task's return IS its 0/1 outcome: one curve, labelled success rate, and a summary in percent."""
    assert sppo_run(tmp_path, monkeypatch, "--task", "mountaincar", "--horizon", "20", *TINY, "--total-steps", "400",
                    "--run-name", "t") == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert re.search(r"; last-20 success rate \d+%; saved runs/t$", out[-1]) and "mean return" not in out[-1], out[-1]
    assert all("success " in line and "ret " not in line for line in out if PROGRESS.match(line))
    assert [name for name, _ in plots[0]["curves"]] == ["success_rate"] and plots[0].get("twin") is None
    assert plots[0]["ylabel"] == "success rate" and plots[0]["unit_range"]


def test_cartpoles_curve_draws_gymnasiums_solve_threshold(tmp_path, monkeypatch, capsys, plots):
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--total-steps", "300", "--run-name", "c") == 0
    assert re.search(r"; last-20 mean return [\d.]+; saved runs/c$", capsys.readouterr().out.strip().splitlines()[-1])
    assert plots[0]["threshold"][0] == 475 and plots[0]["ylabel"] == "episode return"
    assert [name for name, _ in plots[0]["curves"]] == ["mean_return", "last20_return"]
    assert (tmp_path / "runs" / "c" / "learning_curve.png").stat().st_size > 0


def test_idle_cores_leaves_the_busy_cores_to_their_jobs(monkeypatch):
    monkeypatch.setattr(runlog.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(runlog.os, "getloadavg", lambda: (2.6, 1.0, 1.0))
    assert runlog.idle_cores() == 5                  # 8 cores, about 3 busy
    assert runlog.idle_cores(n_proc=2) == 2          # shared by two processes
    monkeypatch.setattr(runlog.os, "getloadavg", lambda: (11.0, 1.0, 1.0))
    assert runlog.idle_cores() == 1                  # never fewer than one
