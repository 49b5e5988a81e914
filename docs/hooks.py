"""MkDocs hooks of the keras-psp site (named in mkdocs.yml).

1. The site takes in files that live outside `docs/`, at their paths in the
   repository, so that links between them work on the site as on GitHub:
   RESULTS.md, BENCHMARKS.md, CHANGELOG.md, the reports and plots under
   `results/`, and the notebooks (rendered by mkdocs-jupyter, each listed
   in the nav's "Notebooks" section).
2. A page under `docs/` links to such a file by its path in the
   repository (`../../RESULTS.md` from `docs/guide/`), so that the link
   works on GitHub too; the site serves the file at that path relative to
   `docs/`, and the link is rewritten to it. A link that works on the site
   only (`../RESULTS.md` from `docs/guide/`) is a warning.
3. The API reference is complete: every public name (each name in
   `keras_psp.__all__` and in its subpackages' `__all__`, and the public
   functions and classes of public modules that have no `__all__`) must be
   rendered on a reference page, under any public path that leads to the
   same object, and must have a docstring; so must each public module.
   Each one that is not is a warning, and `mkdocs build --strict` fails on
   it.

The package is read as mkdocstrings reads it (griffe, without importing it),
so the check needs no Keras backend.
"""

import logging
import posixpath
import re
from pathlib import Path

import griffe
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "keras_psp"
# Files outside docs/ that the site serves, as globs relative to ROOT.
EXTERNAL = (
    "RESULTS.md",
    "BENCHMARKS.md",
    "CHANGELOG.md",
    "results/**/*.md",
    "results/**/*.png",
    "notebooks/*.ipynb",
)

log = logging.getLogger("mkdocs.plugins.keras_psp")
_rendered_ids = set()


def on_config(config):
    # The "Notebooks" section of the nav lists every notebook in notebooks/,
    # in file order, each under its own title (its first heading).
    for section in config["nav"] or []:
        if isinstance(section, dict) and "Notebooks" in section:
            section["Notebooks"] = [
                path.relative_to(ROOT).as_posix()
                for path in sorted(ROOT.glob("notebooks/*.ipynb"))
            ]
    return config


@event_priority(100)  # before mkdocs-jupyter turns notebooks into pages
def on_files(files, config):
    for pattern in EXTERNAL:
        for path in sorted(ROOT.glob(pattern)):
            uri = path.relative_to(ROOT).as_posix()
            if files.get_file_from_path(uri) is None:
                files.append(
                    File(
                        uri,
                        src_dir=str(ROOT),
                        dest_dir=config["site_dir"],
                        use_directory_urls=config["use_directory_urls"],
                    )
                )
    return files


# An inline Markdown link's target, without its #anchor.
_LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?\)")


def _external_uris():
    return {
        path.relative_to(ROOT).as_posix()
        for pattern in EXTERNAL
        for path in ROOT.glob(pattern)
    }


def on_page_markdown(markdown, page, config, files):
    source = Path(page.file.abs_src_path or "")
    docs = Path(config["docs_dir"]).resolve()
    if not source.resolve().is_relative_to(docs):
        return markdown  # RESULTS.md and the like: repository paths already
    external = _external_uris()
    page_dir = posixpath.dirname(page.file.src_uri)
    docs_name = docs.relative_to(ROOT).as_posix()

    def rewrite(match):
        target = match.group(2)
        if "://" in target or target.startswith(("/", "mailto:")):
            return match.group(0)
        in_repository = posixpath.normpath(
            posixpath.join(docs_name, page_dir, target)
        )
        if in_repository in external:
            site_target = posixpath.relpath(in_repository, page_dir or ".")
            return f"{match.group(1)}{site_target}{match.group(3) or ''})"
        in_site = posixpath.normpath(posixpath.join(page_dir, target))
        if in_site in external and not (docs / in_site).exists():
            here = posixpath.join(docs_name, page_dir)
            log.warning(
                f"Doc file '{page.file.src_uri}' links to '{target}', which "
                f"works on the site only: link to "
                f"'{posixpath.relpath(in_site, here)}' (its path in the "
                f"repository) instead"
            )
        return match.group(0)

    return _LINK.sub(rewrite, markdown)


def on_pre_build(config):
    _rendered_ids.clear()


def on_page_content(html, page, config, files):
    # mkdocstrings gives each rendered object a heading whose id is the
    # path it was rendered under (`keras_psp.apply_psp`).
    _rendered_ids.update(re.findall(rf'id="({PACKAGE}(?:\.\w+)*)"', html))
    return html


def public_objects(package):
    """The public modules and names of `package`, as {public path: object}.

    A module's public names are its `__all__`, or, without one, the
    functions and classes it defines whose names do not start with `_`.
    Subpackages and modules are followed when they are public names
    themselves or packages below a public package.
    """
    found = {}

    def visit(module):
        found[module.path] = module
        exports = module.exports
        if exports is None:
            names = [
                name
                for name, member in module.members.items()
                if not name.startswith("_")
                and not member.is_alias
                and (member.is_function or member.is_class)
            ]
        else:
            names = [str(name) for name in exports]
        for name in names:
            member = module[name]
            target = member.final_target if member.is_alias else member
            if target.is_module and name in target.members:
                # `from .x import x` in a package: griffe sees the
                # submodule x, Python the function x that replaced it.
                target = target[name]
                target = target.final_target if target.is_alias else target
            if target.is_module:
                if target.path.startswith(module.path + "."):
                    visit(target)
            else:
                found[f"{module.path}.{name}"] = target
        for name, member in module.members.items():
            if (
                not name.startswith("_")
                and not member.is_alias
                and member.is_package
                and member.path not in found
            ):
                visit(member)

    visit(package)
    return found


def _target_path(package, path):
    if path == PACKAGE:
        return package.path
    try:
        obj = package[path.removeprefix(PACKAGE + ".")]
    except (KeyError, griffe.AliasResolutionError):
        return None
    try:
        return (obj.final_target if obj.is_alias else obj).path
    except griffe.AliasResolutionError:
        return None


def on_post_build(config):
    package = griffe.load(PACKAGE, search_paths=[str(ROOT)])
    documented = {_target_path(package, path) for path in _rendered_ids}
    for path, obj in sorted(public_objects(package).items()):
        if not (obj.docstring and obj.docstring.value.strip()):
            log.warning(f"{path} is public and has no docstring")
        if obj.path not in documented:
            log.warning(
                f"{path} is public and on no API reference page: add "
                f"'::: {path}' to a page under docs/api/"
            )
