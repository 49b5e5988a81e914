"""The README's usage code runs, and CI runs the README's commands."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_opens_with_the_two_commands_that_ci_runs():
    setup, tests = _blocks("bash")[0].strip().splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    install = setup.split(" && python applications/")[0]
    for step in install.split(" && "):
        assert step in ci.splitlines()
    assert tests in ci.splitlines()


def test_usage_example_runs():
    code, training = _blocks("python")
    # The training example needs CIFAR-10 and hours: check it parses.
    compile(training, "README.md", "exec")
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    model = namespace["model"]
    assert "psp_loss" in [metric.name for metric in model.metrics]
