"""A griffe extension (named in mkdocs.yml) that shows doctests as code.

keras-psp's docstrings follow Keras': an `Example:` line, then doctest
lines (`>>>`, `...` and the expected output) at the docstring's own
indentation, which the test suite runs (`--doctest-modules`). Markdown
would read `>>>` as nested block quotes and `[a]\\n[b]` as a reference
link, so each such block becomes a fenced `pycon` code block (the docstring
on disk, and so the doctest, is unchanged).
"""

import griffe


def fence_doctests(text):
    """Wraps each block of doctest lines at indentation 0 in a ```pycon
    fence; a block runs from a `>>>` line to the next blank line."""
    out = []
    in_block = False
    for line in text.splitlines():
        if not in_block and line.startswith(">>>"):
            out.append("```pycon")
            in_block = True
        elif in_block and not line.strip():
            out.append("```")
            in_block = False
        out.append(line)
    if in_block:
        out.append("```")
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    def on_object(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
