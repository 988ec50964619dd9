"""The rows of benchmarks/RESULTS.md, each with an id that prose names when it quotes the row's numbers.

    python -m benchmarks.rows              # every id, with the start of its row
    python -m benchmarks.rows nbsvm        # the ids that contain "nbsvm"

An id is `<section>/<key>@<commit>`, derived from what RESULTS.md holds, so no benchmark has to be rerun:
- section: the name of the section's `<!-- name:begin -->` marker (imdb, cifar10, tuning_phone_price, ...);
- key, for a table row: the slug of its first cell, followed by the slugs of its cells under a `KEY_COLUMNS`
  header where the table has one (backends: task, backend, model, metric; captioning: run and decoding);
  `imdb/bigru_pool-imdb_bigru_nbsvm_teacher-epochs-3@7eddb2f`, `captioning/flickr8k-beam3@0eaffd0`;
- key, for a line outside a table (a bullet, a heading, a paragraph): the slug of its first words, at most
  `LINE_WORDS`, up to its first "(" or its first ": " after two words or more;
  `phone_price/wall-time-of-one-whole-lesson@42962ea`;
- commit: the commit of the row's own stamp (its `stamp` cell, or the section's `- commit:` line). A row that
  sums up other rows (a `rows` cell, as in IMDB's table of what the unlabelled reviews add) and a line of a
  section with several stamps have none: `imdb/soft-labels-from-nbsvm-3-epochs`.

Re-rendering a section or adding rows keeps every id (stamp numbers such as [4] are not part of it); a row
measured again gets a new commit, so prose that names the old row is checked against its new numbers only
once it names the new id. A slug is lower case, words joined by "-"; dots stay between letters or digits.
"""

import re
import sys
from dataclasses import dataclass, field

from benchmarks import stale

RESULTS = stale.RESULTS
KEY_COLUMNS = ("backend", "model", "metric", "decoding", "implementation", "workers")
LINE_WORDS = 6
SEPARATOR = re.compile(r"\|[-| :]+\|")
STAMP_CELL = re.compile(r"\[(\d+)\](?: older)?")
STAMP_LINE = re.compile(r"- \[(\d+)\] .*?; commit ([0-9a-f]{7,40})")
# Lines that are no rows: comments, figures, stamps and the facts of a section's own stamp.
SKIPPED_LINE = re.compile(r"<!--|!\[|- \[\d+\] |Stamps:|- (?:date|machine|versions|commit|command):"
                          r"|- \*\*older")


@dataclass
class Row:
    """One row of RESULTS.md: a table row, or a line outside a table.

    Attributes:
        id: `<section>/<key>` or `<section>/<key>@<commit>` (see the module docstring).
        section: the section's name.
        text: the row as it reads, a table row after its table's header and separator line (so that a number
            takes the unit of its column).
        commits: the commits its numbers were measured at, where RESULTS.md says: its own stamp's, or those of
            the rows it sums up.
    """

    id: str
    section: str
    text: str
    commits: set = field(default_factory=set)


def slug(text):
    """`text` as an id's words: lower case, code marks and apostrophes dropped, "(s)" an "s", every other run
    of characters that is not a letter, digit or underscore one "-" (a dot stays between two letters or
    digits)."""
    text = text.lower().replace("`", "").replace("'", "").replace("(s)", "s")
    text = re.sub(r"(?<![a-z0-9])\.|\.(?![a-z0-9])", " ", text)
    return re.sub(r"[^a-z0-9_.]+", "-", text).strip("-")


def line_key(line):
    """The key of a line outside a table (see the module docstring)."""
    text = re.sub(r"^(#+|[-*]|\d+\.)\s+", "", line.strip())
    cut = len(text)
    paren = text.find("(")
    if paren >= 0:
        cut = paren
    for colon in re.finditer(r":\s", text[:cut]):
        if len(text[:colon.start()].split()) >= 2:
            cut = colon.start()
            break
    return "-".join(slug(text[:cut]).split("-")[:LINE_WORDS])


def _cells(line):
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _table_key(cells, header):
    keyed = [cells[0]] + [cell for name, cell in zip(header[1:], cells[1:]) if name in KEY_COLUMNS]
    return "-".join(slug(cell) for cell in keyed if slug(cell))


def _table_row(name, line, header, single):
    """(Row, its own stamp number or None, the stamp numbers it refers to) of one table row; `header`: (the
    table's lower-case column names, its header and separator lines); `single`: the section's commit."""
    names, header_lines = header
    cells = _cells(line)
    row = Row(f"{name}/{_table_key(cells, names)}", name, header_lines + "\n" + line)
    by_column = dict(zip(names, cells))
    own = STAMP_CELL.fullmatch(by_column.get("stamp", ""))
    own = own.group(1) if own else None
    if single:
        row.id, row.commits = row.id + f"@{single}", {single}
        return row, None, []
    return row, own, STAMP_CELL.findall(by_column.get("rows", "")) or ([own] if own else [])


def _take_commits(pending, stamps):
    """The rows of a table take their commits from the stamp list after it."""
    for row, own, refs in pending:
        row.commits = {stamps[ref] for ref in refs if ref in stamps}
        if own in stamps:
            row.id += f"@{stamps[own]}"


def section_rows(name, body):
    """[Row] of one section's body."""
    single = stale.SECTION_COMMIT.search(body)
    single = single.group("commit") if single else None
    found, pending, stamps, header = [], [], {}, ([], "")
    lines = body.splitlines()
    for i, line in enumerate(lines):
        stamp = STAMP_LINE.match(line)
        if stamp:
            stamps[stamp.group(1)] = stamp.group(2)
            continue
        if stamps and line.strip():  # the stamp list has ended
            _take_commits(pending, stamps)
            pending, stamps = [], {}
        if line.startswith("|"):
            if i + 1 < len(lines) and SEPARATOR.fullmatch(lines[i + 1].strip()):
                header = ([cell.lower() for cell in _cells(line)], line + "\n" + lines[i + 1])
            elif not SEPARATOR.fullmatch(line.strip()):
                row, own, refs = _table_row(name, line, header, single)
                found.append(row)
                if refs:
                    pending.append((row, own, refs))
        elif line.strip() and not SKIPPED_LINE.match(line.strip()) and line_key(line):
            found.append(Row(f"{name}/{line_key(line)}" + (f"@{single}" if single else ""), name, line,
                             {single} if single else set()))
    _take_commits(pending, stamps)
    return found


def rows(text=None):
    """[Row] of every section of RESULTS.md (`text`, or the file), in order."""
    text = RESULTS.read_text() if text is None else text
    return [row for section in stale.SECTION.finditer(text)
            for row in section_rows(section.group("name"), section.group("body"))]


def by_id(text=None):
    """{id: [Row]}: almost always one row an id; rows of one commit with the same key (the per-layer
    parameter counts of two models, say) share it."""
    found = {}
    for row in rows(text):
        found.setdefault(row.id, []).append(row)
    return found


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    for row in rows():
        if not argv or any(word in row.id for word in argv):
            shown = row.text.splitlines()[-1].strip()
            print(f"{row.id}\n    {shown[:150]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

