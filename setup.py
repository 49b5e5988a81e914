"""Builds keras-psp; its metadata is in setup.cfg.

The README is the package's long description. Its links to the
repository's files are relative, so that they work on GitHub and in a
checkout; on PyPI they would not resolve, so here they become links to the
files in the repository (setup.cfg's `Source` URL).
"""

import configparser
import re
from pathlib import Path

import setuptools

ROOT = Path(__file__).resolve().parent


def long_description():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    urls = {
        name.strip(): url.strip()
        for name, url in (
            line.split("=", 1)
            for line in config["metadata"]["project_urls"].strip().splitlines()
        )
    }
    files = urls["Source"].rstrip("/") + "/blob/main/"
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.sub(
        r"\]\((?![a-z][a-z0-9+.-]*:|#)([^)\s]+)\)",
        lambda match: f"]({files}{match.group(1)})",
        text,
    )


setuptools.setup(
    long_description=long_description(),
    long_description_content_type="text/markdown",
)
