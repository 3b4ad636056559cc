"""Run folders: settings and the command line, checkpoints, progress.csv (and its TensorBoard mirror), the
progress display, the learning curve, Ctrl-C, devices. Pure plumbing, shared by the trainers (sppo.py,
llm_demo.py), so that they can tell the algorithm's story without it.

A run's folder, runs/<run_name>/:
    settings.json         every setting and each command that ran the run (a --resume appends its own)
    progress.csv          one row per update (sppo.py) or step (llm_demo.py)
    events.out.tfevents.* with --tensorboard: progress.csv's numbers, for `tensorboard --logdir runs`
    model.pt              the checkpoint (--resume it)
    learning_curve.png    drawn from progress.csv at the end
    policy/, results.json llm_demo.py: the trained model (a transformers folder) and the held-out scores

Promises kept here (and tested through sppo.py):
  * a checkpoint is written to a temporary file and renamed, so it is never half-written;
  * the first Ctrl-C finishes the current update, then the trainer saves; a second one stops at once;
  * --resume drops progress.csv rows newer than the checkpoint, so replayed updates are not listed twice;
  * --resume never moves a run backwards: an older copy never overwrites the folder's model.pt or newer rows,
    and a new run never appends to a folder that holds rows of another; a flag typed on --resume is either
    honoured (budgets, device, ...) or refused, never dropped;
  * every user-fixable problem is a ConfigError: one line, exit code 2, no traceback;
  * settings.json is written as a run starts, and a --resume adds its command to it, never replacing the first;
  * off a terminal, progress is a plain line on stdout (the first update, then every few seconds), flushed.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import json
import os
import shlex
import signal
import sys
import time
import warnings

import torch


class ConfigError(ValueError):
    """Impossible settings or unusable files: reported as one line, exit code 2."""


def opt(default, help, choices=None):
    """A settings field with its help string beside it (the command line is generated from them).
    `choices`: the values it accepts, which --help lists and check_settings enforces."""
    metadata = {"help": help} if choices is None else {"help": help, "choices": tuple(choices)}
    return dataclasses.field(default=default, metadata=metadata)


def help_line(f: dataclasses.Field) -> str:
    """A field's --help text: its help string, then its default as a user reads it. Booleans say on or off
    (argparse lists both forms, --flag and --no-flag, but not which one holds when neither is typed); an
    empty string means "not given", which the help string explains where it does something, so it shows
    "none" only where the help string does not already say what the default is."""
    text = f.metadata["help"]
    if f.type == "bool":
        text += " (default: on)" if f.default else " (default: off)"
    elif f.default == "":
        text += "" if "default" in text else " (default: none)"
    else:
        text += f" (default: {f.default})"
    return text.replace("%", "%%")   # argparse reads % as a format character


def parse_args(argv, cls, description: str | None = None):
    """The command line generated from a settings dataclass (sppo.py's Args, llm_demo.py's LLMArgs), so
    the defaults and the docs cannot drift apart. A field's choices (opt) are its metavar in --help,
    {sppo,ppo,...}; they are checked by check_settings, not argparse, so that a wrong value is one line
    naming the flag, as every other refusal is. The settings it returns remember which flags were typed
    (see typed()): on --resume, only those may differ from the checkpoint's; and the words typed, argv
    (see command_line()), for the run's settings.json."""
    def parser(defaults: bool) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(description=description)
        for f in dataclasses.fields(cls):
            flag, default = "--" + f.name.replace("_", "-"), f.default if defaults else argparse.SUPPRESS
            if f.type == "bool":
                action = p.add_argument(flag, default=default, action=argparse.BooleanOptionalAction)
            else:
                choices = f.metadata.get("choices")
                action = p.add_argument(flag, type=eval(f.type), default=default,
                                        metavar="{" + ",".join(map(str, choices)) + "}" if choices else None)
            action.help = help_line(f)   # set afterwards: Python 3.9-3.10's BooleanOptionalAction appends its own
        return p
    argv = [str(word) for word in (sys.argv[1:] if argv is None else argv)]
    args = cls(**vars(parser(defaults=True).parse_args(argv)))
    # a second pass without defaults holds only what was typed; attributes, not fields, so that
    # dataclasses.asdict (the settings saved in a checkpoint) does not change
    args.typed_flags = frozenset(vars(parser(defaults=False).parse_args(argv)))
    args.argv = argv
    return args


def typed(args) -> frozenset:
    """The settings the user gave: the flags typed on the command line (parse_args records them), or,
    for settings built in Python (a notebook, control_tasks.py), the fields that differ from their defaults."""
    if hasattr(args, "typed_flags"):
        return args.typed_flags
    return frozenset(f.name for f in dataclasses.fields(args) if getattr(args, f.name) != f.default)


def as_flag(name: str, value) -> str:
    """A setting as the flag that gives it: --algo grpo, --no-stop-when-solved, --run-name ''."""
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return flag if value else "--no-" + flag[2:]
    return f"{flag} {value if value != '' else repr('')}"


def plural(n: int, noun: str) -> str:
    """'1 step', '2 steps', '1 env step': the count and its noun, in the number the count asks for."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def command_line(program: str, args) -> str:
    """The command that gives these settings, as a shell takes it: `python <program>` and the words typed
    (parse_args records them), or, for settings built in Python (a notebook, control_tasks.py), the flags of
    the fields that differ from their defaults, in the dataclass's order."""
    words = getattr(args, "argv", None)
    if words is None:
        words = []
        for f in dataclasses.fields(args):
            if f.name in typed(args):
                value, flag = getattr(args, f.name), "--" + f.name.replace("_", "-")
                words += ([flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)])
    return shlex.join(["python", program, *words])


def write_settings(run_dir: str, command: str, settings, at: dict, resumed: bool) -> str:
    """settings.json in the run's folder, written as a run starts: every setting the run trains with (after a
    --task or a --resume filled them in) and the command that started it, with where it started (`at`, e.g.
    {"update": 0}) and when. A --resume (`resumed`) appends its own command, with the settings it changed
    ({name: [before, after]}: budgets, device, ...), so the first command and its settings are never lost:

        {"commands": [{"command": "python sppo.py --total-steps 20000", "started": "...", "at": {"update": 0}},
                      {"command": "python sppo.py --resume runs/r/model.pt --total-steps 40000", "started": "...",
                       "at": {"update": 6}, "changed": {"total_steps": [20000, 40000], ...}}],
         "settings": {"env": "CartPole-v1", "algo": "sppo", ...}}

    JSON, not YAML (rl-zoo's args.yml): the standard library writes and reads it, no new dependency, and
    Args(**json.load(f)["settings"]) rebuilds the settings. Written to a temporary file, then renamed.
    Returns its path."""
    path = os.path.join(run_dir, "settings.json")
    now = dataclasses.asdict(settings)
    entry = {"command": command, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "at": at}
    commands = []
    if resumed:   # the earlier commands, if the folder holds them (a copied checkpoint may come without)
        try:
            with open(path) as f:
                earlier = json.load(f)
            commands = list(earlier["commands"])
            entry["changed"] = {k: [earlier["settings"].get(k), v] for k, v in now.items()
                                if earlier["settings"].get(k) != v and k != "resume"}   # the command names --resume
        except (OSError, ValueError, KeyError, TypeError):
            pass
    # laid out by hand for reading: one command per line, one setting per line (still JSON)
    text = ('{\n  "commands": [\n' + ",\n".join("    " + json.dumps(c) for c in commands + [entry])
            + '\n  ],\n  "settings": {\n' + ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in now.items())
            + "\n  }\n}\n")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return path


def resumed_settings(saved, given, may_change: tuple[str, ...], run_dir: str):
    """--resume: the checkpoint's settings `saved`, with the flags typed in `given` that may change without
    changing the run (`may_change`: budgets, device, stopping rule, ...) applied. Any other typed flag must
    agree with the checkpoint: one that would quietly train another run is refused, naming both values."""
    for name in sorted(typed(given) - set(may_change) - {"resume"}):
        value, trained = getattr(given, name), getattr(saved, name)
        if value == trained:
            continue
        if name == "run_name":   # the run's folder is the checkpoint's own; its name may be typed as it is
            if value == os.path.basename(os.path.abspath(run_dir)):
                continue
            raise ConfigError(f"{as_flag(name, value)} contradicts the checkpoint, whose run lives in {run_dir}; "
                              "drop the flag to continue it there")
        raise ConfigError(f"{as_flag(name, value)} contradicts the checkpoint (trained with {as_flag(name, trained)}); "
                          "drop the flag to continue it, or start a new run")
    return dataclasses.replace(saved, resume=given.resume, **{name: getattr(given, name) for name in may_change
                                                             if name in typed(given)})


def idle_cores(n_proc: int = 1) -> int:
    """The CPU threads one of `n_proc` processes should use when none were asked for: the cores this process
    may run on, less the ones other work keeps busy (the 1-minute load average), shared among the processes,
    and at least 1. Why not torch's default (every core): OpenMP's threads spin while they wait for each
    other, so on cores another job also uses, all-core torch runs several times slower than on one thread
    (results/llm/threads.md: a 2-step LLM run takes 74 s on one thread beside a second run, 384 s on two
    threads; alone, two threads take 46 s and one 69 s). The load average trails by about a minute: two runs
    started at the same moment both see idle cores."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = round(os.getloadavg()[0])
    except (AttributeError, OSError):   # (Windows has no load average)
        busy = 0
    return max(1, (cores - busy) // max(n_proc, 1))


def pick_device(name: str) -> torch.device:
    """--device as a torch.device this machine has. Every kind is checked the same way, through its torch
    backend (torch.cuda, torch.mps, torch.xpu, ...): available, and the index below its device count. A
    kind torch names but cannot compute on here (meta, hpu, ...) is refused before anything is built."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown --device '{name}'; use cpu, cuda or auto") from None
    if device.type == "meta":
        raise ConfigError("--device meta holds shapes, not numbers: nothing can be trained on it; use cpu, cuda or auto")
    backend = getattr(torch, device.type, None)
    available = getattr(backend, "is_available", None) or getattr(getattr(torch.backends, device.type, None),
                                                                  "is_available", None)
    count = 0
    if available is not None and available():
        count = backend.device_count() if hasattr(backend, "device_count") else 1
    if count == 0:
        raise ConfigError(f"--device {name} but this machine has no {device.type} device; use --device cpu"
                          + (" or cuda" if torch.cuda.is_available() else ""))
    if device.index is not None and device.index >= count:
        have = f"{device.type}:0" if count == 1 else f"{device.type}:0 to {device.type}:{count - 1}"
        raise ConfigError(f"--device {name} but this machine has {count} {device.type} device(s) ({have}); "
                          "use one of them or --device cpu")
    return device


def check_settings(args, choices: dict, positive_ints=(), positive_floats=()) -> None:
    """The checks every trainer's settings share: a value among its choices (`choices`, and those its
    field declares with opt), sizes >= 1, rates > 0, and the tensorboard package where --tensorboard asks
    for it. Each failure is one ConfigError naming the flag as the user typed it."""
    flag = lambda name: "--" + name.replace("_", "-")
    declared = {f.name: f.metadata["choices"] for f in dataclasses.fields(args) if "choices" in f.metadata}
    for name, allowed in {**declared, **choices}.items():
        if getattr(args, name) not in allowed:
            raise ConfigError(f"{flag(name)} must be one of {', '.join(map(str, allowed))}, got '{getattr(args, name)}'")
    for name in positive_ints:
        if getattr(args, name) < 1:
            raise ConfigError(f"{flag(name)} must be a positive integer, got {getattr(args, name)}")
    for name in positive_floats:
        if not getattr(args, name) > 0:
            raise ConfigError(f"{flag(name)} must be > 0, got {getattr(args, name)}")
    if getattr(args, "tensorboard", False):   # refused before anything is built, not after the first update
        summary_writer()


def checkpoint_file(path: str) -> str:
    """A run's folder stands for its model.pt (`--resume runs/<run>`); any other path is itself."""
    return os.path.join(path, "model.pt") if path and os.path.isdir(path) else path


def load_quietly(path: str, **kw) -> dict:
    """torch.load on the CPU, weights only, with torch's own warnings silenced: on a damaged or foreign
    file they come before our one-line error (e.g. "Detected pickle protocol 42") and say nothing a user
    can act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True, **kw)


def read_checkpoint(path: str, keys: tuple[str, ...]) -> dict:
    """Load a checkpoint written by save_checkpoint, refusing anything that lacks `keys`."""
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint not found: {path}; pass the model.pt of an earlier run")
    try:
        ckpt = load_quietly(path)
        missing = set(keys) - set(ckpt)
    except Exception as e:  # unpickling errors, a truncated zip, foreign content: not a usable checkpoint
        raise ConfigError(f"cannot read checkpoint {path} (corrupt, or not written by this project: "
                          f"{type(e).__name__}); start a new run or pass another model.pt") from None
    if missing:
        # each program's checkpoints hold their own keys: name what the file is, so the advice fits it
        wrote = ("an SFT policy written by control_tasks.py sft" if "sft" in ckpt else
                 "an expert policy written by control_tasks.py expert" if "expert" in ckpt else
                 "a run of llm_demo.py (a language model)" if "policy" in ckpt or "policy_dir" in ckpt else
                 "a run of sppo.py (a control policy)" if "actor" in ckpt else None)
        if wrote is None:
            raise ConfigError(f"checkpoint {path} lacks {', '.join(sorted(missing))}; it was not written by this project")
        if "actor" in keys and "actor" in ckpt:   # a policy alone where a run to resume was asked for
            raise ConfigError(f"checkpoint {path} is {wrote}: a policy without the optimizer and progress of a run "
                              f"to resume; start a new run from it with --init {path}")
        wanted = ("a control policy (a model.pt of sppo.py or a checkpoint of control_tasks.py)" if "actor" in keys
                  else "a model.pt of llm_demo.py")
        raise ConfigError(f"checkpoint {path} is {wrote}, not {wanted}")
    return ckpt


def save_checkpoint(path: str, **state) -> None:
    """Write to a temporary file, then rename: an interruption never leaves a half-written model.pt."""
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


class StopOnCtrlC:
    """The first Ctrl-C asks the loop to stop after the current update (so the checkpoint it then
    saves is consistent with progress.csv); a second one interrupts at once."""

    def __init__(self):
        self.requested = False

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing this update, then saving (press again to stop at once, keeping only the last "
              "checkpoint)", file=sys.stderr)

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)


def keep_rows_up_to(csv_path: str, last_update: int, columns: list[str], key: str = "update") -> int:
    """On --resume: drop progress.csv rows newer than the checkpoint (a run killed between checkpoints
    wrote them), so the replayed updates are not listed twice. Rewritten atomically. Returns how many
    rows were dropped."""
    if not os.path.isfile(csv_path):
        return 0
    with open(csv_path, newline="") as f:
        every = list(csv.DictReader(f))
    rows = [r for r in every if int(r[key]) <= last_update]
    with open(csv_path + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(csv_path + ".tmp", csv_path)
    return len(every) - len(rows)


def check_finite(quantities: dict) -> None:
    """Raise FloatingPointError("<what> is NaN" or "... is infinite") for the first of `quantities`
    ({what: a tensor, or an iterable of tensors such as a network's parameters}) holding a value that
    is not finite. The trainers check losses before backward, gradient norms before the optimizer
    step and weights after it, so that a diverging run stops at its first non-finite number instead of
    training on, and saving, NaN."""
    for what, x in quantities.items():
        tensors = [t.detach() for t in ([x] if isinstance(x, torch.Tensor) else x)]
        # one sum per tensor, one host sync for all: a NaN or an inf anywhere makes its tensor's sum non-finite
        # (isfinite().all() over a 135M-weight model costs ~10x more); a sum of huge finite values may
        # overflow, so only the tensors it flags are checked element by element
        if not tensors or bool(torch.isfinite(torch.stack([t.sum().float() for t in tensors])).all()):
            continue
        bad = [t for t in tensors if not bool(torch.isfinite(t).all())]
        if bad:
            raise FloatingPointError(f"{what} is {'NaN' if any(bool(t.isnan().any()) for t in bad) else 'infinite'}")


def logged(csv_path: str, key: str = "update") -> list[int]:
    """The `key` column of a progress.csv, one entry per row ([] without the file)."""
    if not os.path.isfile(csv_path):
        return []
    with open(csv_path, newline="") as f:
        return [int(r[key]) if (r.get(key) or "").isdigit() else 0 for r in csv.DictReader(f)]


def checkpoint_progress(path: str, key: str = "update") -> int | None:
    """How far the checkpoint at `path` is (its progress[key]); None if it cannot be read. Memory-mapped:
    only the progress is read, not the weights."""
    try:
        return int(load_quietly(path, mmap=True)["progress"][key])
    except Exception:
        return None


def run_folder(resume: str, run_name: str, ckpt: dict | None = None, key: str = "update") -> str:
    """The run's folder: the resumed checkpoint's own, or runs/<run_name> -- refused if a run lives there
    (a model.pt, or the progress.csv rows of a run stopped before its first checkpoint).

    A resume never moves a run backwards. Resuming the folder's model.pt drops only the rows written after
    it (keep_rows_up_to); any other checkpoint file (`ckpt`, a copy kept from earlier) is refused where it
    would overwrite the folder's model.pt or drop progress.csv rows newer than itself. Elsewhere the trainer
    saves it as model.pt first, so that from then on the folder's model.pt is the run's checkpoint."""
    if not resume:
        run_dir = os.path.join("runs", run_name)
        if os.path.exists(os.path.join(run_dir, "model.pt")):
            raise ConfigError(f"{run_dir} already holds a run; choose another --run-name or --resume {run_dir}/model.pt")
        rows = len(logged(os.path.join(run_dir, "progress.csv"), key))
        if rows:   # appending would draw two runs as one curve
            raise ConfigError(f"{run_dir} holds progress.csv ({rows} rows) but no model.pt: a run stopped before its first "
                              f"checkpoint, with nothing to resume; delete {run_dir} to start it again, or choose another --run-name")
        return run_dir
    folder = os.path.dirname(resume)
    model, csv_path = os.path.join(folder, "model.pt"), os.path.join(folder, "progress.csv")
    if os.path.isfile(model) and os.path.samefile(model, resume):
        return os.path.dirname(os.path.abspath(resume))
    try:
        done = int(ckpt["progress"][key])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"checkpoint {resume} holds no progress ({key}); it is damaged: start a new run") from None
    branch = (f"or branch from {key} {done}: copy {resume} as model.pt, with progress.csv, into a new folder and "
              "--resume that")
    if os.path.exists(model):
        theirs = checkpoint_progress(model, key)
        held = "a checkpoint" if theirs is None else f"{key} {theirs}" + (", newer" if theirs > done else "")
        raise ConfigError(f"{model} ({held}) would be overwritten by resuming {resume} ({key} {done}); continue the run "
                          f"with --resume {model}, {branch}")
    last = max(logged(csv_path, key), default=0)
    if last > done:
        raise ConfigError(f"{csv_path} has rows up to {key} {last}, newer than {resume} ({key} {done}), which resuming "
                          f"it would drop; keep them and {branch[3:]}")
    return os.path.dirname(os.path.abspath(resume))


def diverged_status(what: str, ckpt_path: str, csv_path: str, columns: list[str], key: str,
                    suggest_clip: float | None) -> str:
    """After a non-finite number (`what`: where and which quantity): progress.csv is cut back to the rows
    of the last checkpoint, which stays the run's; returns the error line's text (with --max-grad-norm
    suggest_clip, where gradients were not clipped)."""
    saved = checkpoint_progress(ckpt_path, key) if os.path.isfile(ckpt_path) else None
    keep_rows_up_to(csv_path, saved or 0, columns, key)
    kept = ("nothing was saved (no checkpoint was due yet)" if saved is None else
            f"{ckpt_path} keeps {key} {saved}, the last finite checkpoint, and progress.csv its rows")
    return (f"{what}: training diverged; {kept}; try a lower --lr or --critic-lr"
            + ("" if suggest_clip is None else f", or clip gradients with --max-grad-norm {suggest_clip:g}"))


def stopped_status(ckpt_path: str, run_dir: str, key: str = "update") -> str:
    """The status of a run stopped mid-update by a second Ctrl-C: what was kept, and how to go on."""
    done = checkpoint_progress(ckpt_path, key) if os.path.isfile(ckpt_path) else None
    if done is not None:
        return f"stopped (second Ctrl-C; {ckpt_path} holds {key} {done}, the last checkpoint: --resume it to continue)"
    return (f"stopped (second Ctrl-C) before the first checkpoint, with nothing saved to resume (delete {run_dir} "
            f"to start again; its progress.csv lists the unsaved {key}s)")


def random_state(device: torch.device) -> dict:
    """The generators a run samples from, saved with every checkpoint so that --resume replays it."""
    return {"rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore(ckpt: dict, path: str, device: torch.device, optimizer, nets: dict, progress: dict) -> dict:
    """Load a checkpoint's weights (nets: checkpoint key -> module, None for absent ones), optimizer and
    random state; return its progress with the keys of `progress`. A checkpoint whose contents do not
    fit its own settings is refused as damaged."""
    try:
        for key, net in nets.items():
            if net is not None:
                net.load_state_dict(ckpt[key])
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"])
        if device.type == "cuda" and ckpt.get("cuda_rng") is not None:   # actions are sampled on the GPU
            torch.cuda.set_rng_state(ckpt["cuda_rng"], device)
        return {k: ckpt["progress"][k] for k in progress}
    except (RuntimeError, ValueError, KeyError, TypeError) as e:   # shapes or contents do not fit its settings
        raise ConfigError(f"checkpoint {path} does not fit its own settings ({type(e).__name__}); "
                          "it is damaged: start a new run") from None


def summary_writer():
    """torch's TensorBoard SummaryWriter class; a ConfigError naming the package where it is missing
    (tensorboard is an optional extra, not in requirements.txt)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the package 'tensorboard', which is not installed: "
                          "pip install tensorboard (or drop --tensorboard; progress.csv has the same numbers)") from None
    return SummaryWriter


class ProgressLog:
    """progress.csv, opened for appending: the header once, then one row per update (`key`: its counter
    column, update or step). With `tensorboard`, every row's numbers also go to TensorBoard event files
    beside it (tag: the column's name, step: the row's `key`; empty cells, such as a critic's columns
    without a critic, are skipped), so that `tensorboard --logdir runs` shows every run by its folder's name.

    --resume: keep_rows_up_to has cut progress.csv back to the checkpoint; TensorBoard is told to hide the
    events past it (purge_step), which the resumed run writes again. A run that turns --tensorboard on at a
    resume gets its earlier rows copied from progress.csv first, so its event files hold the whole run.

    writerow(row), flush(), close(), or use it as a context manager."""

    def __init__(self, csv_path: str, columns: list[str], key: str = "update", tensorboard: bool = False):
        self.columns, self.key, self.events = columns, key, None
        self.file = open(csv_path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=columns)
        if self.file.tell() == 0:
            self.writer.writeheader()
        if tensorboard:
            folder = os.path.dirname(os.path.abspath(csv_path))
            earlier = glob.glob(os.path.join(folder, "events.out.tfevents.*"))
            done = logged(csv_path, key)
            self.events = summary_writer()(folder, purge_step=max(done) + 1 if earlier and done else None)
            if not earlier and done:   # --tensorboard turned on at a resume: the rows written without it
                with open(csv_path, newline="") as f:
                    for row in csv.DictReader(f):
                        self._mirror(row)

    def _mirror(self, row: dict) -> None:
        for name in self.columns:
            if name != self.key and row.get(name) not in ("", None):
                self.events.add_scalar(name, float(row[name]), int(row[self.key]))

    def writerow(self, row: dict) -> None:
        self.writer.writerow(row)
        if self.events is not None:
            self._mirror(row)

    def flush(self) -> None:
        self.file.flush()
        if self.events is not None:
            self.events.flush()

    def close(self) -> None:
        self.file.close()
        if self.events is not None:
            self.events.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


PROGRESS_EVERY_S = 10.0   # a plain progress line (not on a terminal) at least this often


class ProgressDisplay:
    """How far a run is, for the person waiting on it. On a terminal (stderr is one): tqdm's bar, redrawn
    in place. Anywhere else (a log file, a pipe, a job scheduler, a notebook), a plain line on stdout at the
    first update and then every PROGRESS_EVERY_S seconds: tqdm turns itself off there and would print
    nothing until the run ends, and a bar redrawn with \\r would be one endless line in a log. A line reads

        45000/1000000 env steps (4.5%), 3750 env steps/s, 12 s; update 12, ret 123.4, last20 150.2

    (the trainer's postfix after the semicolon). It speaks the few words of tqdm the trainers use --
    update(n), set_postfix(**values), write(text) -- plus end(note): a run that stops before its budget
    (solved, a second budget, Ctrl-C) closes the bar at the count it reached, with the reason, instead of
    leaving it frozen at 4% of a budget it will never use. `enabled` False (other processes than the
    main one) shows nothing. A plain line is printed when the postfix is set, after each update's count."""

    def __init__(self, total: int, initial: int = 0, unit: str = "step", enabled: bool = True,
                 every_s: float = PROGRESS_EVERY_S):
        from tqdm import tqdm
        self.total, self.initial, self.n, self.unit, self.every_s = total, initial, initial, unit, every_s
        self.enabled, self.postfix, self.started = enabled, {}, time.perf_counter()
        self.terminal = enabled and sys.stderr.isatty()
        self.bar = tqdm(total=total, initial=initial, unit=" " + unit) if self.terminal else None   # "12.3 env step/s"
        self.last_line, self.shown = None, initial   # when the last plain line was printed, at which count

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)

    def set_postfix(self, **values) -> None:
        self.postfix = values
        if self.bar is not None:
            self.bar.set_postfix(values)   # as a mapping: in the trainer's order (keywords would be sorted)
        elif self.enabled and (self.last_line is None or time.perf_counter() - self.last_line >= self.every_s):
            self._line()

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)   # above the bar, which is redrawn below it
        elif self.enabled:
            print(text, flush=True)

    def _line(self, note: str = "") -> None:
        elapsed = time.perf_counter() - self.started
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        line = (f"{self.n}/{self.total} {self.unit}s ({self.n / max(self.total, 1):.1%}), "
                + (f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}") + f" {self.unit}s/s, {elapsed:.0f} s")
        if self.postfix:
            line += "; " + ", ".join(f"{k} {v}" for k, v in self.postfix.items())
        print(line + (f"; {note}" if note else ""), flush=True)
        self.last_line, self.shown = time.perf_counter(), self.n

    def end(self, note: str) -> None:
        """The loop is over: `note` says why (e.g. "solved at update 12"). A bar short of its total is
        closed at the count reached; a plain display prints its last line."""
        if self.bar is not None:
            if self.n < self.total:
                self.bar.total = self.n
            self.bar.set_postfix_str(", ".join([*(f"{k}={v}" for k, v in self.postfix.items()), note]))
        elif self.enabled and self.n == self.shown and self.last_line is not None:
            print(note, flush=True)   # that count's line is already out (a one-update run): only the reason
        elif self.enabled:
            self._line(note)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and self.last_line is not None and self.n != self.shown:
            self._line()   # the last count, where end() was not called

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def plot_progress(csv_path: str, png_path: str, title: str, x: str, curves: list[tuple[str, str]], ylabel: str,
                  twin: tuple[str, str] | None = None, unit_range: bool = False, xlabel: str | None = None,
                  threshold: tuple[float, str] | None = None) -> None:
    """Learning curves from progress.csv: `curves` [(column, label)] on the left axis (`ylabel`; 0..1 with
    unit_range) against column `x` (labelled `xlabel`, or the column's name), `twin` (column, label) on a
    0..1 right axis, `threshold` (value, label) a dashed horizontal line on the left axis; columns left
    empty (no critic, no success predicate) are not drawn."""
    # a Figure without pyplot writes the PNG without touching the process's backend (a notebook
    # calling train() keeps drawing inline)
    from matplotlib.figure import Figure
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    xs = [int(r[x]) for r in rows]
    column = lambda name: [float(r[name]) for r in rows]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, label in curves:
        if rows[0][name] != "":
            ax.plot(xs, column(name), marker=".", label=label)
    if threshold is not None:
        ax.axhline(threshold[0], linestyle="--", color="gray", label=threshold[1])
    ax.set_xlabel(xlabel or x.replace("_", " ")), ax.set_ylabel(ylabel), ax.set_title(title)
    if unit_range:
        ax.set_ylim(-0.02, 1.02)
    if twin is not None and rows[0][twin[0]] != "":
        ax2 = ax.twinx()
        ax2.plot(xs, column(twin[0]), marker=".", color="tab:green", label=twin[1])
        ax2.set_ylabel(twin[1]), ax2.set_ylim(-0.02, 1.02)
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88), fontsize="small")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)


# One colour per method in every figure of the project (results/*.png, the notebooks), so that a reader who
# learned "SPPO is red" in one picture can read the next without its legend. matplotlib's default colours,
# in the order the control benchmark's figures first gave them (its labels sorted: grpo, ppo, rloo, sppo).
# token/seq/joint are SPPO's ratio granularities (the ratio ablation): token is the benchmark's SPPO itself.
COLOURS = {
    "sppo": "tab:red",
    "sppo-standardize": "tab:pink",   # the LLM suite's ablation: --flat-batches standardize
    "ppo": "tab:orange",
    "grpo": "tab:blue",
    "rloo": "tab:green",
    "reinforce": "tab:brown",
    "trl-grpo": "tab:purple",
    "token": "tab:red",
    "seq": "tab:cyan",
    "joint": "tab:olive",
}


def colour(label: str) -> str | None:
    """The colour of the method a figure label names: "sppo", "sppo (3 seeds)", "sppo-s2", "GRPO (G = 8)"
    -> COLOURS' entry for the longest name the label starts with (case ignored), followed by the label's end,
    a space, "(" or ":" (or "-" after a method's name: "sppo-mixed", but not "token-level PPO"); None where
    the label names no method (the caller keeps matplotlib's cycle)."""
    label = label.lower()
    for name in sorted(COLOURS, key=len, reverse=True):
        after = label[len(name):len(name) + 1]
        if label.startswith(name) and (after in ("", " ", "(", ":") or
                                       (after == "-" and name not in ("token", "seq", "joint"))):
            return COLOURS[name]
    return None
