"""benchmarks/RESULTS.md, section by section, as HTML whose figures are copied into the site.

Each section of RESULTS.md sits between `<!-- name:begin -->` and `<!-- name:end -->` (written by
benchmarks/common.py): `phone_price`, `tuning_phone_price`, `frameworks`, ... A lesson page shows the section
named after its task, the search page the `tuning_*` ones, the comparison page the rest.
"""

import re
import shutil
import sys
from pathlib import Path

from markupsafe import Markup

from common.errors import printable
from common.run_report import markdown_to_html

SECTION = re.compile(r"<!-- (?P<name>[\w-]+):begin -->\n(?P<body>.*?)\n<!-- (?P=name):end -->", re.DOTALL)
IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)")


def read_sections(text):
    """{name: Markdown text} of RESULTS.md's `text`, in file order."""
    return {m["name"]: m["body"] for m in SECTION.finditer(text)}


def section_html(markdown_text, results_path, site, figures="results"):
    """The section as HTML; each image it embeds is copied to site/<figures>/ (a missing one is named in
    a note instead of leaving a broken image). Returns (HTML, the source paths of the images embedded)."""
    folder = Path(results_path).resolve().parent
    embedded = []

    def copy(match):
        source = (folder / match["src"]).resolve()
        if not source.is_file():
            return f"*(figure `{match['src']}` is not in this checkout)*"
        if not readable(source):
            return f"*(figure `{match['src']}` could not be read)*"
        embedded.append(source)
        return f"![{match['alt']}]({copy_figure(source, folder, site, figures)})"

    return Markup(markdown_to_html(IMAGE.sub(copy, markdown_text))), embedded


def copy_figure(source, base, site, figures="results"):
    """Copy `source` (a file under `base`, or elsewhere) into site/<figures>/ and return its site URL."""
    source = Path(source)
    try:
        relative = source.resolve().relative_to(Path(base).resolve())
    except ValueError:
        relative = Path(source.name)
    target = Path(site) / figures / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)
    return (Path(figures) / relative).as_posix()


def warn(path, reason):
    """One line on stderr naming an input the site is built without."""
    print(f"warning: {printable(path)} skipped ({printable(reason)}); the site is built without it.",
          file=sys.stderr)


def readable(source):
    """Whether `source` can be read; if not, a warning names it and the caller leaves it out (the file is
    opened here, so that a copy that fails later is about the site folder, and stops the build)."""
    try:
        with open(source, "rb"):
            return True
    except OSError as error:
        warn(source, error.strerror or error)
        return False
