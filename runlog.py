"""Run folders: settings and the command line, checkpoints, progress.csv, the learning curve, Ctrl-C,
devices. Pure plumbing, shared by the trainers (sppo.py, llm_demo.py), so that they can tell the
algorithm's story without it.

Promises kept here (and tested through sppo.py):
  * a checkpoint is written to a temporary file and renamed, so it is never half-written;
  * the first Ctrl-C finishes the current update, then the trainer saves; a second one stops at once;
  * --resume drops progress.csv rows newer than the checkpoint, so replayed updates are not listed twice;
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
    the defaults and the docs cannot drift apart."""
    parser = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, default=f.default, action=argparse.BooleanOptionalAction, help=f.metadata["help"])
        else:
            parser.add_argument(flag, type=eval(f.type), default=f.default, help=f.metadata["help"] + f" (default: {f.default})")
    return cls(**vars(parser.parse_args(argv)))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} but no CUDA device is available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown --device '{name}'; use cpu, cuda or auto") from None


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
        raise ConfigError(f"checkpoint {path} lacks {', '.join(sorted(missing))}; it was not written by this project")
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
        print("\nCtrl-C: finishing this update, then saving (press again to stop at once)", file=sys.stderr)

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self._previous)


def keep_rows_up_to(csv_path: str, last_update: int, columns: list[str], key: str = "update") -> None:
    """On --resume: drop progress.csv rows newer than the checkpoint (a run killed between checkpoints
    wrote them), so the replayed updates are not listed twice. Rewritten atomically."""
    if not os.path.isfile(csv_path):
        return
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r[key]) <= last_update]
    with open(csv_path + ".tmp", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(csv_path + ".tmp", csv_path)


def run_folder(resume: str, run_name: str) -> str:
    """The run's folder: the resumed checkpoint's own, or runs/<run_name> -- refused if a run lives there."""
    if resume:
        return os.path.dirname(os.path.abspath(resume))
    run_dir = os.path.join("runs", run_name)
    if os.path.exists(os.path.join(run_dir, "model.pt")):
        raise ConfigError(f"{run_dir} already holds a run; choose another --run-name or --resume {run_dir}/model.pt")
    return run_dir


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
