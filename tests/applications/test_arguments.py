import argparse
import os
import re
import subprocess
import sys

import keras
import pytest

from applications import arguments

# Backend-independent: the TensorFlow pass runs it (the other passes would
# only repeat it, and CI's time is short).
pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent argument parsing: runs in the TensorFlow pass",
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))
PROGRAMS = (
    "train",
    "reproduce",
    "search",
    "quickstart",
    "benchmark",
    "convert_applications",
    "convert_keras_hub",
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
