"""Nothing saved is lost: --resume never moves a run backwards, a second Ctrl-C says what was kept, a run
folder is never shared by two runs, and a flag typed on --resume is either honoured or refused.

Both trainers run in-process through main(argv) with the test's tmp_path as the working directory (a run
writes runs/<name>/ there): sppo.py on CartPole with budgets of a few updates, llm_demo.py on the tiny
random LM of tests/tiny_lm.py."""
import csv
import shutil

import pytest
import torch

import llm_demo
import runlog
import sppo
from tiny_lm import make_tiny_lm

TINY = ["--num-episodes", 8, "--save-every", 1]           # CartPole: ~350 env steps per update at the start
TIMING = {"wall_time", "steps_per_s", "gen_tokens_per_s", "peak_mem_gb"}
LLM_TINY = ["--n-train", 40, "--n-eval", 4, "--eval-k", 2, "--batch-size", 8, "--group-size", 4,
            "--max-new-tokens", 6, "--log-every", 0, "--device", "cpu", "--save-every", 1]


def run(main, tmp_path, monkeypatch, *args):
    monkeypatch.chdir(tmp_path)
    return main([str(a) for a in args])


def sppo_run(tmp_path, monkeypatch, *args):
    return run(sppo.main, tmp_path, monkeypatch, *args)


def llm_run(tmp_path, monkeypatch, *args):
    return run(llm_demo.main, tmp_path, monkeypatch, *args)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_timing(rs):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rs]


def files(folder):
    """Every file of a run folder, byte for byte: what a refused command must leave as it was."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.fixture
def cartpole_run(tmp_path, monkeypatch):
    """runs/r: 3 updates (early.pt: a copy of model.pt at update 3), then resumed to 5 updates."""
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--total-steps", 1000, "--run-name", "r") == 0
    r = tmp_path / "runs" / "r"
    assert ckpt(r / "model.pt")["progress"]["update"] == 3
    shutil.copy(r / "model.pt", r / "early.pt")
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", "--total-steps", 3000) == 0
    assert ckpt(r / "model.pt")["progress"]["update"] == 5 and len(rows(r / "progress.csv")) == 5
    return r


# ------------------------------------------------------------------------------------------------
# An older copy never overwrites a newer run
# ------------------------------------------------------------------------------------------------
def test_resuming_an_older_copy_beside_model_pt_is_refused_and_changes_nothing(tmp_path, monkeypatch, capsys, cartpole_run):
    before = files(cartpole_run)
    capsys.readouterr()
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r/early.pt", "--total-steps", 5000) == 2
    assert error_line(capsys) == (
        "error: runs/r/model.pt (update 5, newer) would be overwritten by resuming runs/r/early.pt (update 3); continue "
        "the run with --resume runs/r/model.pt, or branch from update 3: copy runs/r/early.pt as model.pt, with "
        "progress.csv, into a new folder and --resume that")
    assert files(cartpole_run) == before
    # the advice, followed: early.pt as model.pt with progress.csv in a new folder continues from update 3 exactly
    # as the original run did (its first 5 rows), and the original folder stays as it was
    branch = tmp_path / "runs" / "branch"
    branch.mkdir()
    shutil.copy(cartpole_run / "early.pt", branch / "model.pt")
    shutil.copy(cartpole_run / "progress.csv", branch / "progress.csv")
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/branch/model.pt", "--total-steps", 3000) == 0
    assert without_timing(rows(branch / "progress.csv")) == without_timing(rows(cartpole_run / "progress.csv"))
    assert files(cartpole_run) == before


def test_an_older_copy_never_overwrites_another_runs_model_pt(tmp_path, monkeypatch, capsys, cartpole_run):
    """The copy moved into another run's folder: that run's model.pt (even an older one) is not its to replace."""
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--total-steps", 300, "--seed", 2, "--run-name", "other") == 0
    other = tmp_path / "runs" / "other"
    shutil.copy(cartpole_run / "early.pt", other / "early.pt")
    before = files(other)
    capsys.readouterr()
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/other/early.pt") == 2
    assert error_line(capsys).startswith("error: runs/other/model.pt (update 2) would be overwritten by resuming "
                                         "runs/other/early.pt (update 3); continue the run with --resume runs/other/model.pt")
    assert files(other) == before


def test_an_older_copy_never_drops_newer_rows_of_progress_csv(tmp_path, monkeypatch, capsys, cartpole_run):
    """No model.pt beside the copy, but progress.csv goes further than it: resuming would cut it back."""
    (cartpole_run / "model.pt").unlink()
    before = files(cartpole_run)
    capsys.readouterr()
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r/early.pt") == 2
    assert error_line(capsys).startswith("error: runs/r/progress.csv has rows up to update 5, newer than runs/r/early.pt "
                                         "(update 3), which resuming it would drop; keep them and branch from update 3")
    assert files(cartpole_run) == before


def test_a_copy_alone_in_its_folder_continues_there_and_becomes_its_model_pt(tmp_path, monkeypatch, capsys, cartpole_run):
    """Nothing to overwrite: the copy continues where it lies; its folder's model.pt is saved at once (so a second
    Ctrl-C before the next checkpoint still leaves a model.pt to --resume), and the copy itself is not written."""
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(cartpole_run / "early.pt", alone / "early.pt")
    copy = (alone / "early.pt").read_bytes()
    interrupt_update(monkeypatch, sppo, at=1)   # the first update after the resume is interrupted mid-way
    assert sppo_run(tmp_path, monkeypatch, "--resume", "alone/early.pt", "--total-steps", 3000) == 130
    assert "holds update 3, the last checkpoint: --resume it to continue" in capsys.readouterr().out
    assert ckpt(alone / "model.pt")["progress"]["update"] == 3 and (alone / "early.pt").read_bytes() == copy
    monkeypatch.undo()
    assert sppo_run(tmp_path, monkeypatch, "--resume", "alone/model.pt", "--total-steps", 3000) == 0
    assert [int(r["update"]) for r in rows(alone / "progress.csv")] == [4, 5]
    assert (alone / "early.pt").read_bytes() == copy


def test_resuming_model_pt_drops_the_rows_after_it_and_says_so(tmp_path, monkeypatch, capsys, cartpole_run):
    """The run's own model.pt, with rows written after it (a kill between checkpoints): those updates are replayed,
    their rows dropped, not silently."""
    shutil.copy(cartpole_run / "early.pt", cartpole_run / "model.pt")   # model.pt at update 3, rows up to 5
    capsys.readouterr()
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", "--total-steps", 1000) == 0
    err = capsys.readouterr().err
    assert "note: dropped 2 row(s) of" in err and "after update 3, the checkpoint's" in err
    assert [int(r["update"]) for r in rows(cartpole_run / "progress.csv")] == [1, 2, 3]


# ------------------------------------------------------------------------------------------------
# A second Ctrl-C says what was kept; a folder with rows but no checkpoint is nobody's to append to
# ------------------------------------------------------------------------------------------------
def interrupt_update(monkeypatch, module, at: int):
    """Raise KeyboardInterrupt (a second Ctrl-C) inside update number `at` (1-based) of this process."""
    real, calls = module.update, []

    def update(*a, **kw):
        calls.append(1)
        if len(calls) == at:
            raise KeyboardInterrupt
        return real(*a, **kw)
    monkeypatch.setattr(module, "update", update)


def test_second_ctrl_c_before_the_first_checkpoint_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    interrupt_update(monkeypatch, sppo, at=3)
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--save-every", 10, "--total-steps", 5000, "--run-name", "r") == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("sppo on CartPole-v1: stopped (second Ctrl-C) before the first checkpoint, with nothing "
                           "saved to resume (delete runs/r to start again; its progress.csv lists the unsaved updates) "
                           "after 2 updates"), last
    assert "holds" not in last and not (tmp_path / "runs" / "r" / "model.pt").exists()


def test_second_ctrl_c_after_a_checkpoint_names_the_update_it_holds(tmp_path, monkeypatch, capsys):
    interrupt_update(monkeypatch, sppo, at=4)
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--save-every", 2, "--total-steps", 5000, "--run-name", "r") == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert ("stopped (second Ctrl-C; runs/r/model.pt holds update 2, the last checkpoint: --resume it to continue) "
            "after 3 updates") in last, last
    assert ckpt(tmp_path / "runs" / "r" / "model.pt")["progress"]["update"] == 2


def test_a_folder_with_rows_but_no_checkpoint_is_not_appended_to(tmp_path, monkeypatch, capsys):
    interrupt_update(monkeypatch, sppo, at=3)
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--save-every", 10, "--total-steps", 5000, "--run-name", "r") == 130
    r = tmp_path / "runs" / "r"
    before = files(r)
    capsys.readouterr()
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--total-steps", 1000, "--run-name", "r") == 2
    assert error_line(capsys) == ("error: runs/r holds progress.csv (2 rows) but no model.pt: a run stopped before its "
                                  "first checkpoint, with nothing to resume; delete runs/r to start it again, or choose "
                                  "another --run-name")
    assert files(r) == before
    # a run stopped inside its first update left progress.csv with its header alone: nothing to lose there
    interrupt_update(monkeypatch, sppo, at=1)
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--total-steps", 1000, "--run-name", "h") == 130
    monkeypatch.undo()
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--total-steps", 1000, "--run-name", "h") == 0
    assert [int(r["update"]) for r in rows(tmp_path / "runs" / "h" / "progress.csv")] == [1, 2, 3]


# ------------------------------------------------------------------------------------------------
# Flags typed on --resume: honoured (how far, where, when to stop or save) or refused
# ------------------------------------------------------------------------------------------------
def settings_of_resume(tmp_path, monkeypatch, resume_args):
    """The settings train() continues a run with: a finished 2-update run (--device auto), resumed with
    resume_args, stopped at build() (before anything is written)."""
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--total-steps", 300, "--device", "auto", "--run-name", "r") == 0
    seen = []

    def build(args, device):
        seen.append(args)
        raise runlog.ConfigError("stop here")
    monkeypatch.setattr(sppo, "build", build)
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", *resume_args) == 2
    return seen[0]


@pytest.mark.parametrize("flags, changed", [
    ([], {}),                                                 # nothing typed: the saved settings, budgets included
    (["--total-steps", 2_000_000], {"total_steps": 2_000_000}),
    (["--total-episodes", 40], {"total_episodes": 40}),
    (["--no-stop-when-solved"], {"stop_when_solved": False}),
    (["--save-every", 5], {"save_every": 5}),
    (["--threads", 2], {"threads": 2}),
    (["--compile"], {"compile": True}),
    (["--device", "cpu"], {"device": "cpu"}),
    (["--algo", "sppo", "--env", "CartPole-v1", "--seed", 1, "--num-episodes", 8, "--run-name", "r"], {}),  # as saved
])
def test_resume_honours_budgets_device_stopping_and_saving(tmp_path, monkeypatch, flags, changed):
    args = settings_of_resume(tmp_path, monkeypatch, flags)
    saved = sppo.Args(**ckpt(tmp_path / "runs" / "r" / "model.pt")["args"])
    assert saved.total_steps == 300 and saved.save_every == 1 and saved.device == "auto"
    for name, value in vars(saved).items():
        if name != "resume":
            assert getattr(args, name) == changed.get(name, value), name


@pytest.mark.parametrize("flags, message", [
    (["--algo", "grpo"], "--algo grpo contradicts the checkpoint (trained with --algo sppo)"),
    (["--env", "Pendulum-v1"], "--env Pendulum-v1 contradicts the checkpoint (trained with --env CartPole-v1)"),
    (["--task", "mountaincar"], "--task mountaincar contradicts the checkpoint (trained with --task '')"),
    (["--seed", 2], "--seed 2 contradicts the checkpoint (trained with --seed 1)"),
    (["--lr", 0.01], "--lr 0.01 contradicts the checkpoint (trained with --lr 0.003)"),
    (["--num-episodes", 16], "--num-episodes 16 contradicts the checkpoint (trained with --num-episodes 8)"),
    (["--no-norm-adv"], "--no-norm-adv contradicts the checkpoint (trained with --norm-adv)"),
    (["--ratio", "token"], "--ratio token contradicts the checkpoint (trained with --ratio seq)"),
    (["--hidden", 32], "--hidden 32 contradicts the checkpoint (trained with --hidden 64)"),
    (["--backend", "gymnasium"], "--backend gymnasium contradicts the checkpoint (trained with --backend auto)"),
    (["--total-steps", 5000, "--epochs", 4], "--epochs 4 contradicts the checkpoint (trained with --epochs 8)"),
])
def test_resume_refuses_a_flag_that_contradicts_the_checkpoint(tmp_path, monkeypatch, capsys, flags, message):
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--total-steps", 300, "--run-name", "r") == 0
    before = files(tmp_path / "runs" / "r")
    capsys.readouterr()
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", *flags) == 2
    assert error_line(capsys) == f"error: {message}; drop the flag to continue it, or start a new run"
    assert files(tmp_path / "runs" / "r") == before


def test_resume_refuses_another_run_name(tmp_path, monkeypatch, capsys):
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--total-steps", 300, "--run-name", "r") == 0
    capsys.readouterr()
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", "--run-name", "elsewhere") == 2
    assert error_line(capsys) == ("error: --run-name elsewhere contradicts the checkpoint, whose run lives in runs/r; "
                                  "drop the flag to continue it there")


def test_typed_flags_are_recorded_outside_the_saved_settings():
    args = runlog.parse_args(["--algo", "sppo", "--no-stop-when-solved", "--total-steps", "10"], sppo.Args)
    assert runlog.typed(args) == {"algo", "stop_when_solved", "total_steps"}
    assert "typed_flags" not in __import__("dataclasses").asdict(args)
    # settings built in Python: what differs from the defaults
    assert runlog.typed(sppo.Args(total_steps=10, resume="x")) == {"total_steps", "resume"}


def solved(path):
    """Mark the checkpoint's last 20 episodes as CartPole's best (500), as a run that stopped solved has them."""
    state = ckpt(path)
    state["progress"]["recent_returns"] = [500.0] * 20
    torch.save(state, path)


def test_a_solved_run_resumed_with_a_larger_budget_trains_on_with_no_stop_when_solved(tmp_path, monkeypatch, capsys):
    assert sppo_run(tmp_path, monkeypatch, *TINY, "--total-steps", 300, "--run-name", "r") == 0
    r = tmp_path / "runs" / "r"
    solved(r / "model.pt")
    capsys.readouterr()
    # under the stopping rule: not one more update, and the summary says how to go on
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", "--total-steps", 2_000_000) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert ("sppo on CartPole-v1: solved already (last-20 mean return 500.0 >= 475; --no-stop-when-solved trains on) "
            "after 2 updates, 16 episodes, 643 env steps") in last, last
    assert len(rows(r / "progress.csv")) == 2 and ckpt(r / "model.pt")["progress"]["update"] == 2
    # the README's command with --no-stop-when-solved: trains on to the new budget
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", "--total-steps", 1500,
                    "--no-stop-when-solved") == 0
    assert ": budget reached after" in capsys.readouterr().out
    state = ckpt(r / "model.pt")
    assert state["progress"]["env_steps"] >= 1500 and state["progress"]["update"] == len(rows(r / "progress.csv")) >= 3
    assert state["args"]["stop_when_solved"] is False and state["args"]["total_steps"] == 1500


# ------------------------------------------------------------------------------------------------
# The same rules for llm_demo.py
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_lm(str(tmp_path_factory.mktemp("tiny_lm")))


def test_llm_resume_of_an_older_copy_is_refused_and_flags_are_honoured_or_refused(tmp_path, monkeypatch, capsys, tiny):
    assert llm_run(tmp_path, monkeypatch, "--model", tiny, *LLM_TINY, "--steps", 1, "--run-name", "r") == 0
    r = tmp_path / "runs" / "r"
    shutil.copy(r / "model.pt", r / "early.pt")
    assert llm_run(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", "--steps", 2) == 0
    before = files(r)
    capsys.readouterr()
    assert llm_run(tmp_path, monkeypatch, "--resume", "runs/r/early.pt", "--steps", 3) == 2
    assert error_line(capsys).startswith("error: runs/r/model.pt (step 2, newer) would be overwritten by resuming "
                                         "runs/r/early.pt (step 1); continue the run with --resume runs/r/model.pt")
    for flags, message in ((["--algo", "grpo"], "--algo grpo contradicts the checkpoint (trained with --algo sppo)"),
                           (["--model", "other"], f"--model other contradicts the checkpoint (trained with --model {tiny})"),
                           (["--steps", 3, "--temperature", 1.0],
                            "--temperature 1.0 contradicts the checkpoint (trained with --temperature 0.7)")):
        assert llm_run(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", *flags) == 2
        assert error_line(capsys) == f"error: {message}; drop the flag to continue it, or start a new run"
    assert files(r) == before
    # honoured: the budget, the saving and printing rhythm, the memory levers; untyped: the saved settings
    assert llm_run(tmp_path, monkeypatch, "--resume", "runs/r/model.pt", "--steps", 3, "--save-every", 2,
                   "--micro-batch", 2, "--log-every", 1, "--algo", "sppo") == 0
    saved = ckpt(r / "model.pt")
    assert saved["progress"]["step"] == 3 and [int(x["step"]) for x in rows(r / "progress.csv")] == [1, 2, 3]
    assert {k: saved["args"][k] for k in ("steps", "save_every", "micro_batch", "log_every", "n_eval", "device")} == \
        {"steps": 3, "save_every": 2, "micro_batch": 2, "log_every": 1, "n_eval": 4, "device": "cpu"}


def test_llm_second_ctrl_c_says_what_was_kept_and_the_folder_is_not_reused(tmp_path, monkeypatch, capsys, tiny):
    interrupt_update(monkeypatch, llm_demo, at=2)
    assert llm_run(tmp_path, monkeypatch, "--model", tiny, *LLM_TINY, "--save-every", 5, "--steps", 3,
                   "--run-name", "r") == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == ("sppo: stopped (second Ctrl-C) before the first checkpoint, with nothing saved to resume (delete "
                    "runs/r to start again; its progress.csv lists the unsaved steps) after 1 step")
    monkeypatch.undo()
    before = files(tmp_path / "runs" / "r")
    assert llm_run(tmp_path, monkeypatch, "--model", tiny, *LLM_TINY, "--steps", 1, "--run-name", "r") == 2
    assert error_line(capsys).startswith("error: runs/r holds progress.csv (1 rows) but no model.pt")
    assert files(tmp_path / "runs" / "r") == before

    interrupt_update(monkeypatch, llm_demo, at=2)
    assert llm_run(tmp_path, monkeypatch, "--model", tiny, *LLM_TINY, "--steps", 3, "--run-name", "s") == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == ("sppo: stopped (second Ctrl-C; runs/s/model.pt holds step 1, the last checkpoint: --resume it to "
                    "continue) after 1 step")


# ------------------------------------------------------------------------------------------------
# What a newcomer tried: the run's folder for its model.pt, a --task beside a contradicting --env
# ------------------------------------------------------------------------------------------------
def test_resume_takes_the_run_folder_for_its_model_pt(cartpole_run, tmp_path, monkeypatch):
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r", "--total-steps", 5000) == 0
    assert ckpt(cartpole_run / "model.pt")["progress"]["update"] > 5


def test_llm_resume_takes_the_run_folder(tmp_path, monkeypatch, tiny):
    assert llm_run(tmp_path, monkeypatch, "--model", tiny, *LLM_TINY, "--steps", 1, "--run-name", "r") == 0
    assert llm_run(tmp_path, monkeypatch, "--resume", "runs/r", "--steps", 2) == 0
    assert ckpt(tmp_path / "runs" / "r" / "model.pt")["progress"]["step"] == 2


def test_a_task_with_another_env_typed_is_refused(tmp_path, monkeypatch, capsys):
    assert sppo_run(tmp_path, monkeypatch, "--task", "pendulum", "--env", "CartPole-v1", "--total-episodes", 16) == 2
    assert error_line(capsys) == "error: --task pendulum runs on Pendulum-v1, not --env CartPole-v1; drop one of them"
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_hub_id_fails_at_once(tmp_path, monkeypatch, capsys):
    import llm_models
    monkeypatch.setattr(llm_models, "hub_reachable", lambda timeout_s=3.0: False)
    # (unpatched, transformers would retry the hub for about a minute before this line)
    assert llm_run(tmp_path, monkeypatch, "--model", "nobody/no-such-model", *LLM_TINY, "--steps", 1) == 2
    assert "cannot load --model 'nobody/no-such-model'" in error_line(capsys)


# ------------------------------------------------------------------------------------------------
# A resume with nothing to do leaves the folder as it was
# ------------------------------------------------------------------------------------------------
def test_a_resume_past_its_budget_rewrites_nothing(cartpole_run, tmp_path, monkeypatch, capsys):
    before = files(cartpole_run)
    capsys.readouterr()
    assert sppo_run(tmp_path, monkeypatch, "--resume", "runs/r") == 0   # the budget it was given is spent
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "budget reached already (raise --total-steps or --total-episodes to train on)" in last
    after = files(cartpole_run)
    after.pop("learning_curve.png"), before.pop("learning_curve.png")   # redrawn from the same rows
    assert after == before   # model.pt, settings.json and progress.csv as they were


def test_an_llm_resume_past_its_steps_is_refused_and_rewrites_nothing(tmp_path, monkeypatch, capsys, tiny):
    assert llm_run(tmp_path, monkeypatch, "--model", tiny, *LLM_TINY, "--steps", 1, "--run-name", "r") == 0
    before = files(tmp_path / "runs" / "r")
    capsys.readouterr()
    assert llm_run(tmp_path, monkeypatch, "--resume", "runs/r") == 2
    assert error_line(capsys) == ("error: runs/r/model.pt has done 1 of --steps 1 already: nothing to train; raise "
                                  "--steps to train on (its score is in runs/r/results.json)")
    assert files(tmp_path / "runs" / "r") == before


def test_counts_take_the_number_they_ask_for():
    assert [runlog.plural(n, "step") for n in (0, 1, 2)] == ["0 steps", "1 step", "2 steps"]
    assert runlog.plural(1, "env step") == "1 env step"


def test_a_one_update_run_prints_its_last_progress_line_once(capsys):
    bar = runlog.ProgressDisplay(total=100, unit="env step")   # not a terminal under pytest: plain lines
    bar.update(100)
    bar.set_postfix(update=1, ret="9.0")
    bar.end("budget reached at update 1")
    bar.close()
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and out[0].startswith("100/100 env steps (100.0%)") and out[1] == "budget reached at update 1"
