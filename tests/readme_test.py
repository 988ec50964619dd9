"""README.md stays a short start-here page that points into docs/, and one name per idea holds across both.

- README.md has at most MAX_WORDS words (`text.split()` over the whole file, code blocks included);
- its start-here commands are the Makefile's (`make test` is what CI, `.ci/run`, calls);
- its lessons table has a row for every lesson in tasks/ and no cell over MAX_CELL_WORDS words;
- every link to docs/ resolves to a file there (and a `#anchor` to one of its headings);
- docs/glossary.md gives each idea one name and lists the names it replaces on a `Replaces:` line; neither
  the README nor docs/ uses a replaced name in prose. Inside `inline code` and code blocks an older spelling
  is a flag, file or identifier (`--lossless-holdout`, `--data-dir`) and is allowed.
"""

import re
from pathlib import Path

import pytest

from tasks import LAUNCHERS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
GLOSSARY = DOCS / "glossary.md"
MAX_WORDS = 1500
MAX_CELL_WORDS = 20
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
SEPARATOR = re.compile(r"\|[-| :]+\|")


def without_code(text):
    """`text` without its code blocks and inline code."""
    text = re.sub(r"^```.*?^```[^\n]*$", " ", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", " ", text)


def prose(text):
    """`text` without code and link targets: what a reader takes as words."""
    return LINK.sub("]", without_code(text))


def section(text, heading):
    """The lines under `heading` (a line of its own) up to the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    lines = text.splitlines()
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines))
                if re.match(rf"#{{1,{len(level)}}} ", lines[i])), len(lines))
    return lines[start:end]


def table_rows(lines):
    """[[cell, ...], ...] of the first Markdown table in `lines`, header and separator left out."""
    rows = []
    for line in lines:
        if line.startswith("|"):
            rows.append(line.strip().strip("|").split("|"))
        elif rows:
            break
    assert len(rows) > 2 and SEPARATOR.fullmatch("|" + "|".join(rows[1]) + "|"), "no table found"
    return rows[2:]


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def replaced_names(glossary_text):
    """{replaced name: the entry that replaces it} from the glossary's `Replaces:` lines."""
    names, entry = {}, None
    for line in glossary_text.splitlines():
        if line.startswith("## "):
            entry = line[3:].strip()
        elif line.startswith("Replaces:"):
            names.update({name: entry for name in re.findall(r'"([^"]+)"', line)})
    return names


def uses(text, name):
    """Where `name` stands as a word (or phrase) of `text`, any case."""
    words = r"\s+".join(re.escape(word) for word in name.split())
    return [m.group(0) for m in re.finditer(rf"(?<![\w-]){words}(?![\w-])", text, flags=re.I)]


def test_the_readme_has_at_most_1500_words():
    words = len(README.read_text().split())
    assert words <= MAX_WORDS, f"README.md has {words} words; at most {MAX_WORDS}: move detail into docs/"


def test_the_readme_starts_with_the_makefile_commands():
    text = README.read_text()
    makefile = (ROOT / "Makefile").read_text()
    start = "\n".join(section(text, "## Start here"))
    for command in ("make setup", "make run", "make test"):
        assert re.search(rf"^{command}\b", start, flags=re.M), f"'{command}' missing from Start here"
        assert re.search(rf"^{command.split()[1]}:", makefile, flags=re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # CI calls the README's test command
    assert "`make pages`" in start and "site/index.html" in start and "report.html" in start


def test_every_lesson_has_a_row_and_no_cell_is_long():
    rows = table_rows(section(README.read_text(), "## Lessons"))
    long_cells = [f"{len(cell.split())} words: {cell.strip()}" for row in rows for cell in row
                  if len(cell.split()) > MAX_CELL_WORDS]
    assert not long_cells, f"lessons table cells over {MAX_CELL_WORDS} words:\n" + "\n".join(long_cells)
    listed = {m for row in rows for m in re.findall(r"`tasks/(\w+)\.py`", row[0])}
    lessons = {p.stem for p in (ROOT / "tasks").glob("*.py")} - {"__init__", *LAUNCHERS}
    assert listed == lessons
    assert all("python -m benchmarks." in row[3] for row in rows), "a row without the command measuring it"


@pytest.mark.parametrize("path", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_every_link_to_a_file_of_the_repo_resolves(path):
    broken = []
    for target in LINK.findall(without_code(path.read_text())):
        if re.match(r"[a-z]+:", target):  # a web address
            continue
        file, _, anchor = target.partition("#")
        resolved = (path.parent / file).resolve() if file else path
        if not resolved.is_file():
            broken.append(target)
        elif anchor and resolved.suffix == ".md":
            headings = {slug(line.lstrip("#")) for line in resolved.read_text().splitlines()
                        if line.startswith("#")}
            if anchor not in headings:
                broken.append(target)
    assert not broken, f"{path.name}: links that lead nowhere: {broken}"


def test_the_readme_links_each_doc():
    linked = {Path(t.partition("#")[0]).name for t in LINK.findall(README.read_text())
              if t.startswith("docs/") and t.partition("#")[0].endswith(".md")}
    assert linked == {p.name for p in DOCS.glob("*.md")}, "every docs/*.md page linked from the README"


def test_the_glossary_gives_every_entry_its_replaced_names():
    text = GLOSSARY.read_text()
    entries = re.split(r"^## ", text, flags=re.M)[1:]
    assert len(entries) >= 10
    without = [entry.splitlines()[0] for entry in entries
               if sum(line.startswith("Replaces:") for line in entry.splitlines()) != 1]
    assert not without, f"glossary entries without exactly one 'Replaces:' line: {without}"
    names = replaced_names(text)
    for required in ("holdout", "heldout", "anchor", "dir"):
        assert required in names
    headings = {entry.splitlines()[0].strip().lower() for entry in entries}
    assert not headings & {name.lower() for name in names}, "a name both used and replaced"


@pytest.mark.parametrize("path", [README, *sorted(p for p in DOCS.glob("*.md") if p != GLOSSARY)],
                         ids=lambda p: p.name)
def test_no_replaced_name_in_prose(path):
    text = prose(path.read_text())
    found = [f"'{use}' (glossary: {entry})" for name, entry in replaced_names(GLOSSARY.read_text()).items()
             for use in uses(text, name)]
    assert not found, f"{path.name} uses names the glossary replaced: " + ", ".join(found)


def test_prose_leaves_code_out_and_uses_match_whole_words():
    text = "a holdout, `--lossless-holdout`, ngram_reference, the n-gram\nreference\n```\nheldout\n```\n"
    assert uses(prose(text), "holdout") == ["holdout"]
    assert uses(prose(text), "heldout") == []
    assert uses(prose(text), "n-gram reference") == ["n-gram\nreference"]
    assert uses("the data-dir and --data-dir", "dir") == []
