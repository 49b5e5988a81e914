import argparse
import os
import re
import subprocess
import sys

import pytest

from applications import arguments
from tests.helpers import in_pytorch_pass

# Backend-independent: one pass runs it (the other passes would only repeat
# it, and CI's time is short).
pytestmark = in_pytorch_pass("argument parsing")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
PROGRAMS = (
    "train",
    "reproduce",
    "search",
    "quickstart",
    "benchmark",
    "convert_applications",
    "convert_keras_hub",
    "find_strength",
)
# Prints the program's --help, then whether TensorFlow was imported.
HELP = """
import runpy
import sys


sys.argv = [sys.argv[1], "--help"]
try:
    runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit:
    pass
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("program", PROGRAMS)
def test_help_shows_every_default_fast_and_quiet(program):
    result = subprocess.run(
        [sys.executable, "-c", HELP, f"applications.{program}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no start-up logs
    text = result.stdout
    assert text.startswith(f"usage: python -m applications.{program} ")
    assert text.rstrip().endswith("tensorflow imported: False")
    assert "(default: None)" not in text
    # Defaults as they are typed (`mnist fashion_mnist`), not as Python
    # prints a list or a string.
    assert not re.search(r"default: [\[('\"]", text), text
    options = text[text.index("options:") :]
    # Every option that takes a value says its default, as "default".
    entries = re.split(r"\n  (?=-)", options)[1:]
    for entry in entries:
        flag = entry.split()[0].rstrip(",")
        takes_value = re.match(r"--?[\w-]+ [A-Z{]", entry) is not None
        if takes_value and flag not in ("-h", "--help"):
            assert "default" in entry, entry
    # The docstring says how long the default run takes.
    assert re.search(r"takes\s+about|took", text), program


# Each program's parser given a path it cannot use: the error line, then
# whether TensorFlow was imported (the check comes before).
PATHS = """
import importlib
import sys

for program, option in [
    ("train", "--run-dir"),
    ("train", "--data-dir"),
    ("reproduce", "--runs-dir"),
    ("reproduce", "--out"),
    ("reproduce", "--data-dir"),
    ("search", "--runs-dir"),
    ("search", "--out"),
    ("search", "--data-dir"),
    ("quickstart", "--data-dir"),
    ("benchmark", "--out"),
    ("convert_applications", "--output"),
    ("convert_keras_hub", "--output"),
]:
    module = importlib.import_module(f"applications.{program}")
    parse = getattr(module, "parse_args", None)
    if program == "train":
        from applications import config

        parse = config.parse_args
    path = sys.argv[1] if option != "--data-dir" else sys.argv[2]
    try:
        parse([option, path])
    except SystemExit as exit:
        print(program, option, exit.code, flush=True)
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


def test_every_path_error_is_an_argparse_error_before_tensorflow(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    result = subprocess.run(
        [sys.executable, "-c", PATHS, "/proc/x", str(a_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = result.stdout.splitlines()
    assert lines[-1] == "tensorflow imported: False"
    assert len(lines) == 13 and all(line.endswith(" 2") for line in lines[:-1])
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 12
    for line, error in zip(lines, errors, strict=False):
        program, option, _ = line.split()
        assert f"error: argument {option}: " in error
        if option == "--data-dir":
            assert error.endswith(f"{a_file} is not a directory")
        elif program in (
            "benchmark",
            "convert_applications",
            "convert_keras_hub",
        ):
            assert error.endswith(
                "cannot write /proc/x: /proc is not writable (No such file "
                "or directory)"
            ), error
        else:
            assert error.endswith(
                "cannot create /proc/x in /proc (No such file or directory)"
            ), error
    assert os.listdir(tmp_path) == ["file"]


def test_argument_types():
    assert arguments.positive_int("3") == 3
    assert arguments.seed("0") == 0
    assert arguments.momentum("0.9") == 0.9
    assert arguments.non_negative_float("1e-3") == 1e-3
    assert arguments.non_negative_float("3e38") == 3e38
    assert arguments.positive_float("1e-2") == 1e-2
    assert arguments.fraction("0") == 0 and arguments.fraction("0.5") == 0.5
    assert arguments.tail_index("0.5") == 0.5
    assert arguments.tail_index("2") == 2
    for function, text in [
        (arguments.positive_int, "0"),
        (arguments.positive_int, "2.5"),
        (arguments.seed, "-1"),
        (arguments.momentum, "1"),
        (arguments.momentum, "x"),
        (arguments.non_negative_float, "inf"),
        (arguments.non_negative_float, "4e38"),
        (arguments.non_negative_float, "-0.5"),
        (arguments.positive_float, "0"),
        (arguments.positive_float, "nan"),
        (arguments.fraction, "1"),
        (arguments.fraction, "-0.1"),
        (arguments.tail_index, "0.4"),
        (arguments.tail_index, "2.1"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError):
            function(text)


def test_options_without_help_say_their_default():
    parser = arguments.parser("applications.example", "doc")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--name", default=None, help="a name (default: x)")
    parser.add_argument("--flag", action="store_true")
    text = parser.format_help()
    assert "--count COUNT  default: 4" in text
    assert "(default: x)" in text and "(default: None)" not in text
    assert "(default: False)" not in text
