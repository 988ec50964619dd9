"""A lesson script as readable parts: the docstring's prose, then the code, one part per `# %%` cell.

Cells follow the percent format (VS Code, PyCharm, jupytext): a line `# %% Title` opens a section; the
comment lines that start it are its prose (Markdown), the rest is its code. A script without cells is one
section. A section whose prose names a shared function as `models/cnn.py: fast_body` (a path from the repo
root, a colon, a function, class or `Class.method`) gets that function's source shown beside it.
"""

import ast
import dataclasses
import re
from pathlib import Path

from markupsafe import Markup
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from common.errors import UserError
from common.run_report import markdown_to_html

ROOT = Path(__file__).resolve().parents[1]
CELL = re.compile(r"^# ?%%(?P<title>.*)$")
REFERENCE = re.compile(r"(?P<path>[\w./-]+\.py):[ \t]*`?(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")


@dataclasses.dataclass
class Section:
    title: str
    prose: Markup
    code: Markup
    references: list  # [(label, highlighted source)]


@dataclasses.dataclass
class Lesson:
    task: str
    title: str
    intro: Markup
    sections: list
    path: Path = None  # the lesson file (the page's panel reads its compile call)


def highlight_python(code):
    return Markup(highlight(code, PythonLexer(), HtmlFormatter(cssclass="highlight")))


def read_lesson(path, root=ROOT):
    """The lesson at `path` (tasks/<task>.py) as a title, its docstring's prose and its sections."""
    path = Path(path)
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    doc = ast.get_docstring(tree) or ""
    title, _, intro = doc.partition("\n")
    after_doc = tree.body[0].end_lineno if doc else 0
    sections = [_section(title_, lines, path, root)
                for title_, lines in _cells(source.splitlines()[after_doc:])]
    return Lesson(path.stem, title.strip() or path.stem, Markup(markdown_to_html(intro)),
                  [s for s in sections if s.prose or s.code], path)


def _cells(lines):
    """(title, lines) per `# %%` cell; the lines before the first marker form an untitled cell."""
    cells = [["", []]]
    for line in lines:
        match = CELL.match(line)
        if match:
            cells.append([match["title"].replace("[markdown]", "").strip(), []])
        else:
            cells[-1][1].append(line)
    return cells


def _section(title, lines, path, root):
    while lines and not lines[0].strip():
        lines = lines[1:]
    prose = []
    while lines and lines[0].lstrip().startswith("#"):
        prose.append(re.sub(r"^\s*# ?", "", lines[0]))
        lines = lines[1:]
    text = "\n".join(prose)
    code = "\n".join(lines).strip("\n")
    references = []
    for match in REFERENCE.finditer(title + "\n" + text):
        label = f"{match['path']}: {match['name']}"
        if label not in (r[0] for r in references):
            references.append((label, highlight_python(function_source(root, match["path"], match["name"],
                                                                       where=path.name))))
    return Section(title, Markup(markdown_to_html(text)) if text.strip() else Markup(""),
                   highlight_python(code) if code.strip() else Markup(""), references)


def function_source(root, relative, name, where="a lesson"):
    """The source (decorators included) of a top-level function or class, or `Class.method`, in a file."""
    path = Path(root) / relative
    if not path.is_file():
        raise UserError(f"{where} names {relative}: {name}, but {relative} is not a file of this repository.")
    source = path.read_text()
    scope = ast.parse(source)
    node = None
    for part in name.split("."):
        node = next((n for n in getattr(scope, "body", []) if getattr(n, "name", None) == part and isinstance(
            n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))), None)
        if node is None:
            raise UserError(f"{where} names {relative}: {name}, but {relative} defines no {name}.")
        scope = node
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    lines = source.splitlines()[first - 1:node.end_lineno]
    indent = len(lines[0]) - len(lines[0].lstrip())  # a method: shown flush left
    return "\n".join(line[indent:] for line in lines)
