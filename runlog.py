"""Run folders: settings and the command line, checkpoints, progress.csv, the learning curve, Ctrl-C,
devices. Pure plumbing, shared by the trainers (sppo.py, llm_demo.py), so that they can tell the
algorithm's story without it.

Promises kept here (and tested through sppo.py):
  * a checkpoint is written to a temporary file and renamed, so it is never half-written;
  * the first Ctrl-C finishes the current update, then the trainer saves; a second one stops at once;
  * --resume drops progress.csv rows newer than the checkpoint, so replayed updates are not listed twice;
  * --resume never moves a run backwards: an older copy never overwrites the folder's model.pt or newer rows,
    and a new run never appends to a folder that holds rows of another; a flag typed on --resume is either
    honoured (budgets, device, ...) or refused, never dropped;
  * every user-fixable problem is a ConfigError: one line, exit code 2, no traceback.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import signal
import sys

import torch


class ConfigError(ValueError):
    """Impossible settings or unusable files: reported as one line, exit code 2."""


def opt(default, help):
    """A settings field with its help string beside it (the command line is generated from them)."""
    return dataclasses.field(default=default, metadata={"help": help})


def parse_args(argv, cls, description: str | None = None):
    """The command line generated from a settings dataclass (sppo.py's Args, llm_demo.py's LLMArgs), so
    the defaults and the docs cannot drift apart. The settings it returns remember which flags were
    typed (see typed()): on --resume, only those may differ from the checkpoint's."""
    def parser(defaults: bool) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(description=description)
        for f in dataclasses.fields(cls):
            flag, default = "--" + f.name.replace("_", "-"), f.default if defaults else argparse.SUPPRESS
            if f.type == "bool":
                p.add_argument(flag, default=default, action=argparse.BooleanOptionalAction, help=f.metadata["help"])
            else:
                p.add_argument(flag, type=eval(f.type), default=default, help=f.metadata["help"] + f" (default: {f.default})")
        return p
    args = cls(**vars(parser(defaults=True).parse_args(argv)))
    # a second pass without defaults holds only what was typed; an attribute, not a field, so that
    # dataclasses.asdict (the settings saved in a checkpoint) does not change
    args.typed_flags = frozenset(vars(parser(defaults=False).parse_args(argv)))
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
    """The checks every trainer's settings share: a value among its choices, sizes >= 1, rates > 0.
    Each failure is one ConfigError naming the flag as the user typed it."""
    flag = lambda name: "--" + name.replace("_", "-")
    for name, allowed in choices.items():
        if getattr(args, name) not in allowed:
            raise ConfigError(f"{flag(name)} must be one of {', '.join(map(str, allowed))}, got '{getattr(args, name)}'")
    for name in positive_ints:
        if getattr(args, name) < 1:
            raise ConfigError(f"{flag(name)} must be a positive integer, got {getattr(args, name)}")
    for name in positive_floats:
        if not getattr(args, name) > 0:
            raise ConfigError(f"{flag(name)} must be > 0, got {getattr(args, name)}")


def read_checkpoint(path: str, keys: tuple[str, ...]) -> dict:
    """Load a checkpoint written by save_checkpoint, refusing anything that lacks `keys`."""
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint not found: {path}; pass the model.pt of an earlier run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        missing = set(keys) - set(ckpt)
    except Exception as e:  # unpickling errors, a truncated zip, foreign content: not a usable checkpoint
        raise ConfigError(f"cannot read checkpoint {path} (corrupt, or not written by this project: "
                          f"{type(e).__name__}); start a new run or pass another model.pt") from None
    if missing:
        # each program's checkpoints hold their own keys: name what the file is, so the advice fits it
        wrote = ("an SFT policy written by control_tasks.py sft" if "sft" in ckpt else
                 "an expert policy written by control_tasks.py expert" if "expert" in ckpt else
                 "a run of llm_demo.py (a language model)" if "policy" in ckpt else
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
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["progress"][key])
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


def progress_writer(f, columns: list[str]) -> csv.DictWriter:
    """progress.csv, opened for appending: the header once, then one row per update."""
    writer = csv.DictWriter(f, fieldnames=columns)
    if f.tell() == 0:
        writer.writeheader()
    return writer


def plot_progress(csv_path: str, png_path: str, title: str, x: str, curves: list[tuple[str, str]], ylabel: str,
                  twin: tuple[str, str] | None = None, unit_range: bool = False) -> None:
    """Learning curves from progress.csv: `curves` [(column, label)] on the left axis against column `x`,
    `twin` (column, label) on a 0..1 right axis; columns left empty (no critic, no success predicate)
    are not drawn."""
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
    ax.set_xlabel(x.replace("_", " ")), ax.set_ylabel(ylabel), ax.set_title(title)
    if unit_range:
        ax.set_ylim(-0.02, 1.02)
    if twin is not None and rows[0][twin[0]] != "":
        ax2 = ax.twinx()
        ax2.plot(xs, column(twin[0]), marker=".", color="tab:orange", label=twin[1])
        ax2.set_ylabel(twin[1]), ax2.set_ylim(-0.02, 1.02)
    fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88))
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
