"""The front door stays true: .ci/run runs exactly the README's test command, and the README's
quick-start block holds the two set-up commands in order (run first, tests second)."""
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quick_start_commands() -> list[str]:
    readme = open(os.path.join(REPO, "README.md")).read()
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_quick_start_has_run_then_test_command():
    run_cmd, test_cmd = quick_start_commands()[:2]
    assert run_cmd.endswith("python sppo.py --env CartPole-v1") and "pip install -r requirements.txt" in run_cmd
    assert "pytest" in test_cmd and "pip install" in test_cmd


def test_ci_runs_exactly_the_readme_test_command():
    ci = open(os.path.join(REPO, ".ci", "run")).read().splitlines()
    assert quick_start_commands()[1] in ci
