"""Exercise 1 of notebooks/04_probes_and_exercises.ipynb, solved: three critics, and a verdict on their runs."""
import statistics

# sppo.Args settings, as the command line's flags set them
CONFIGS = {
    "default": {},                     # the critic learns from the first update, at --critic-lr 3e-3
    "frozen": {"critic_lr": 1e-8},     # --critic-lr 1e-8: V(s0) stays where it started, near 0.5 (0 is refused)
    "warm-up": {"critic_warmup": 2},   # --critic-warmup 2: the first 2 updates train the critic alone
}


def verdict(finals: dict) -> tuple[str, bool]:
    """finals: {config: [final success rate of each seed]} -> (the config with the highest mean, whether its
    lead over the runner-up is larger than twice the standard error of that difference)."""
    mean = {name: statistics.mean(runs) for name, runs in finals.items()}
    se = {name: statistics.stdev(runs) / len(runs) ** 0.5 for name, runs in finals.items()}
    best, second = sorted(finals, key=mean.get, reverse=True)[:2]
    return best, mean[best] - mean[second] > 2 * (se[best] ** 2 + se[second] ** 2) ** 0.5
