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


def test_every_readme_command_line_parses():
    """Each `python sppo.py|control_tasks.py|llm_demo.py ...` line of the code blocks of README.md and
    results/README.md names only flags (and tasks) that exist: an example cannot drift from the code."""
    import shlex
    import sys
    sys.path.insert(0, REPO)
    import control_tasks
    import runlog
    import sppo
    readme = "".join(open(os.path.join(REPO, *path)).read() for path in (["README.md"], ["results", "README.md"]))
    lines = [line.split("#")[0].strip() for block in re.findall(r"```bash\n(.*?)```", readme, re.S)
             for line in block.replace("\\\n", " ").splitlines()]   # join continued lines
    checked = 0
    for line in lines:
        for cmd in line.split("&&"):
            words = [w for w in shlex.split(cmd.replace("<", "").replace(">", "")) if w != "..."]
            if "--help" in words:
                continue
            if words[:2] == ["python", "sppo.py"]:
                args = runlog.parse_args(words[2:], sppo.Args)
            elif words[:2] == ["python", "control_tasks.py"]:
                args = control_tasks.parser().parse_args(words[2:])
            elif "llm_demo.py" in words:
                import llm_demo
                args = runlog.parse_args(words[words.index("llm_demo.py") + 1:], llm_demo.LLMArgs)
            else:
                continue
            assert not getattr(args, "task", "") or args.task in control_tasks.TASKS, line
            checked += 1
    assert checked >= 10
