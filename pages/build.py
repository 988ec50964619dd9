"""Build the static site: an index, one page per lesson, a search page and a comparison page.

    python -m pages                               # runs/, tuning_runs/, benchmarks/RESULTS.md -> site/
    python -m pages --runs my_runs --output my_site   # other folders, relative to the current one

Everything the pages show is copied into the output folder (figures, run reports, styles), so the folder can
be opened from disk or served as it is, with no network: no CDN, no web fonts.

The site is built whole in a hidden folder beside the output and swapped in at the end: a build that fails
leaves the old site as it was. A run or search whose files cannot be read is left out with a warning on
stderr, and the build goes on. The output is only ever a folder this builder made (or an empty one), never
a link: a user's own folder is refused, not emptied.
"""

import argparse
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import jinja2
from pygments.formatters import HtmlFormatter

from common import folders
from common.errors import UserError, printable
from common.run_report import SMOKE_NOTE, git_commit, html_table, markdown_to_html, read_run
from common.umask import follow_umask
from pages.glance import lesson_glance
from pages.lesson import read_lesson
from pages.results import copy_figure, readable, read_sections, section_html, warn
from tasks import LAUNCHERS

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# The course order (a network on a table, then text, images, images and text); new lessons follow, by name.
LESSON_ORDER = ("phone_price", "imdb", "cifar10", "captioning")
MARKER = ".pages-site"  # marks a folder this builder made, so a rebuild may replace it
# What reading a damaged or unreadable input raises (a cut-off JSON file, a history.csv without rows, a
# folder where a file should be): that input is left out, with a warning.
DAMAGED = (OSError, ValueError, UserError, TypeError, KeyError, IndexError, AttributeError)


def lesson_files(tasks=ROOT / "tasks"):
    files = {p.stem: p for p in sorted(Path(tasks).glob("*.py")) if not p.stem.startswith("_")
             and p.stem not in LAUNCHERS}  # launchers (tasks.distributed) start lessons, teach none
    return ([files[t] for t in LESSON_ORDER if t in files]
            + [p for t, p in files.items() if t not in LESSON_ORDER])


def finished_runs(runs, task):
    """The finished runs of `task`, the one whose metrics.json was written last first."""
    dated = []
    for metrics in (Path(runs) / task).glob("*/metrics.json"):
        try:
            dated.append((metrics.stat().st_mtime, metrics.parent))
        except OSError as error:  # e.g. a broken link
            warn(metrics, reason(error))
    return [path for _, path in sorted(dated, key=lambda pair: pair[0], reverse=True)]


def reason(error):
    """What was wrong with an input, in a few words."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON: {error}"
    return f"{type(error).__name__}: {error}"


def check_output(output, inputs=()):
    """`output` as a path the site may be swapped into: new, an empty folder, or a site this builder made.

    Refused: a link (the site is written as plain files and folders, never through a link), a file, a
    folder holding files this builder did not write (a rebuild replaces the whole folder), and a folder
    that holds the current one or an input (`inputs`: the runs, searches and results read).
    """
    output = Path(output)
    if output.is_symlink():
        raise UserError(f"--output {output} is a symbolic link; expected a plain folder for the site (it is "
                        "never written through a link), so name the folder itself.")
    if not output.exists():
        return output
    if not output.is_dir():
        raise UserError(f"--output {output} is a file; expected a folder for the site.")
    if not is_site(output) and any(output.iterdir()):
        raise UserError(f"--output {output} holds files this builder did not write; choose an empty or "
                        "new folder (a site built before can be rebuilt in place).")
    held = [Path.cwd(), *inputs]
    if any(output.resolve() == p.resolve() or output.resolve() in p.resolve().parents for p in held):
        raise UserError(f"--output {output} holds the current folder or the runs, searches or results the "
                        "site is built from; choose a folder of its own for the site.")
    return output


def is_site(folder):
    """Whether `folder` was made by this builder: its marker is a plain file (not a link) of ours."""
    marker = Path(folder) / MARKER
    try:
        return not marker.is_symlink() and marker.is_file() and marker.read_text().startswith("built by")
    except (OSError, UnicodeDecodeError):
        return False


def replace_output(staging, output):
    """Swap the complete site `staging` into `output` (checked again: the build took a while)."""
    check_output(output)
    folders.swap_in(staging, output)  # an earlier site (or an empty folder) goes only once the new one is in


class Site:
    """One build: where things come from, where they go, and the pages written so far."""

    def __init__(self, runs, tuning_runs, results, output):
        self.runs, self.tuning_runs, self.results, self.output = (Path(runs), Path(tuning_runs),
                                                                   Path(results), Path(output))
        try:
            self.results_text = self.results.read_text()
        except (OSError, UnicodeDecodeError) as error:
            raise UserError(f"--results {results} cannot be read ({reason(error)}); expected "
                            "benchmarks/RESULTS.md, a text file.") from None
        self.sections = read_sections(self.results_text)
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                                      undefined=jinja2.StrictUndefined)
        self.lessons = []
        self.built = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": git_commit()}

    def write(self, name, template, **context):
        html = self.env.get_template(template).render(lessons=self.lessons, built=self.built, page=name,
                                                      table=html_table, **context)
        (self.output / name).write_text(html)

    def results_html(self, name):
        return section_html(self.sections[name], self.results, self.output)

    def run_command(self, task, profile=None):
        flags = "" if self.runs == Path("runs") else f" --output-dir {self.runs.as_posix()}"
        return f"python -m tasks.{task}" + (f" --profile {profile}" if profile else "") + flags


def read_finished_run(run_path):
    """What the run folder says about itself, or None (with a warning naming the file) when its config.json
    or metrics.json is damaged or cannot be read."""
    current = run_path
    try:
        for name in ("config.json", "metrics.json"):
            current = run_path / name
            if not isinstance(json.loads(current.read_text()), dict):
                raise ValueError("not a JSON object")
        current = run_path
        return read_run(run_path)
    except DAMAGED as error:
        warn(getattr(error, "filename", None) or current, reason(error))
        return None


def copy_run(site, run):
    """The run's figures, extra pages and report.html copied under site/runs/<task>/<run-id>/."""
    run_path = run["path"]
    folder = Path("runs") / run["task"] / run["run_id"]
    copied = set()
    for relative in run["figures"] + run["pages"] + ["report.html"]:
        if (run_path / relative).is_file() and readable(run_path / relative):
            copy_figure(run_path / relative, run_path, site.output, folder.as_posix())
            copied.add(relative)
    run["url"] = folder.as_posix()
    run["report"] = (folder / "report.html").as_posix() if "report.html" in copied else None
    return run


def lesson_page(site, lesson):
    """The lesson's page; returns what the index says about it (title, newest run)."""
    task = lesson.task
    results = site.results_html(task)[0] if task in site.sections else None
    # The lesson's benchmark figures that no section of RESULTS.md shows (searches have their own page).
    plots = site.results.parent / "plots"
    figures = [copy_figure(p, site.results.parent, site.output) for p in sorted(plots.glob(f"{task}_*.png"))
               if "compare" not in p.name and f"plots/{p.name}" not in site.results_text and readable(p)]
    # The newest run that can be read (a damaged one is named in a warning and passed over).
    run = next(filter(None, map(read_finished_run, finished_runs(site.runs, task))), None)
    run = copy_run(site, run) if run else None
    # The first screen: model, data, loss, optimizer, time and result of the default run (pages/glance.py).
    glance = lesson_glance(lesson, site.sections.get(task), run)
    site.write(f"{task}.html", "lesson.html", lesson=lesson, results=results, benchmark_figures=figures,
               run=run, smoke_note=SMOKE_NOTE, glance=glance,
               tuning=f"tuning_{task}" if f"tuning_{task}" in site.sections else None,
               smoke_command=site.run_command(task, "smoke"), quick_command=site.run_command(task))
    return {"task": task, "title": lesson.title, "run": run}


def searches(site):
    """Every search folder (holding search.json) under --tuning-runs, with its report files copied."""
    found = []
    for meta_path in sorted(site.tuning_runs.rglob("search.json")):
        folder = meta_path.parent
        relative = folder.relative_to(site.tuning_runs).as_posix()
        target = f"tuning/{relative}"
        current = meta_path
        try:  # everything read first: a damaged file leaves the search out, with a warning naming it
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            tables = []
            for current in sorted(folder.glob("*.md")):
                tables.append((current.name, markdown_to_html(current.read_text())))
            current = folder / "best.json"
            best = current.read_text() if current.is_file() else None
        except DAMAGED as error:
            warn(getattr(error, "filename", None) or current, reason(error))
            continue
        report = folder / "report.html"
        found.append({
            "name": relative,
            # (fields an older or hand-written search.json may lack: shown as unknown)
            "meta": {"task": "?", "tuner": "?", "profile": "?", "objective": "?", "compare": None, **meta},
            "tables": tables,
            "figures": [copy_figure(p, folder, site.output, target) for p in sorted(folder.glob("*.png"))
                        if readable(p)],
            "best": best,
            "report": (copy_figure(report, folder, site.output, target)
                       if report.is_file() and readable(report) else None),
        })
    return found


def search_page(site):
    sections, embedded = [], []
    for name in (n for n in site.sections if n.startswith("tuning_")):
        body, images = site.results_html(name)
        sections.append((name, body))
        embedded += images
    plots = site.results.parent / "plots"
    extra = [copy_figure(p, site.results.parent, site.output)
             for p in sorted(plots.glob("*compare*.png")) if p not in embedded]
    site.write("search.html", "search.html", sections=sections, extra_figures=extra, searches=searches(site),
               tuning_runs=site.tuning_runs.as_posix())


def comparison_page(site):
    lessons = {lesson["task"] for lesson in site.lessons}
    names = [n for n in site.sections if not n.startswith("tuning_") and n not in lessons]
    site.write("comparison.html", "comparison.html",
               sections=[(name, site.results_html(name)[0]) for name in names])


DOCS = ROOT / "docs"
# Links between the docs and to the repo's files, as the site lays them out: docs/x.md -> docs/x.html; an
# image beside the docs or under benchmarks/plots is copied into the site.
DOC_LINK = re.compile(r'(href|src)="(?P<target>[^"#:]+)(?P<anchor>#[^"]*)?"')
# The `<!-- rows: ... -->` comments that tie a doc's numbers to RESULTS.md rows (tests/numbers_test.py) are
# for writers: GitHub hides them, and the site, which shows raw HTML as text, leaves them out (not when quoted
# as code).
ROWS_COMMENT = re.compile(r"(?<!`) ?<!--\s*rows:.*?-->\n?", re.S)


def doc_pages(site):
    """docs/*.md as site/docs/<name>.html (the depth the README links to), with their figures; returns the
    pages' names and titles, for the index."""
    written = []
    (site.output / "docs").mkdir(exist_ok=True)
    for path in sorted(DOCS.glob("*.md")):
        if not readable(path):
            continue
        text = path.read_text(encoding="utf-8")
        title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), path.stem)

        def link(match, base=path.parent):
            target = match.group("target")
            if target.endswith(".md") and (base / target).resolve().parent == DOCS.resolve():
                target = target[:-3] + ".html"
            elif match.group(1) == "src" and (base / target).is_file() and readable(base / target):
                target = "../" + copy_figure(base / target, ROOT, site.output, "repo")
            return f'{match.group(1)}="{target}{match.group("anchor") or ""}"'

        body = DOC_LINK.sub(link, markdown_to_html(ROWS_COMMENT.sub("", text)))
        html = site.env.get_template("doc.html").render(lessons=site.lessons, built=site.built, page="",
                                                        title=title, body=body, source=path.name,
                                                        table=html_table, root="../")
        (site.output / "docs" / f"{path.stem}.html").write_text(html)
        written.append({"name": path.stem, "title": title})
    return written


def build_site(runs="runs", tuning_runs="tuning_runs", results=ROOT / "benchmarks" / "RESULTS.md",
               output="site"):
    """Write the whole site into `output` and return the paths of its pages.

    Args:
        runs: root of the run folders (`<runs>/<task>/<run-id>/`); missing means no run yet.
        tuning_runs: root of the search folders; missing means no search yet.
        results: benchmarks/RESULTS.md (its `plots/` figures are read beside it).
        output: the site folder; replaced whole (only once the new site is complete) if an earlier build
            made it.
    """
    if not Path(results).is_file():
        raise UserError(f"--results {results} does not exist; expected benchmarks/RESULTS.md.")
    output = check_output(output, inputs=[Path(runs), Path(tuning_runs), Path(results)])
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        follow_umask(staging, folder=True)  # mkdtemp's 0700 would hide the site from a web server
        (staging / MARKER).write_text("built by python -m pages; rebuilding replaces this folder\n")
        site = Site(runs, tuning_runs, results, staging)
        shutil.copy2(HERE / "static" / "style.css", site.output / "style.css")
        (site.output / "pygments.css").write_text(HtmlFormatter(style="default").get_style_defs(".highlight"))
        lessons = [read_lesson(path) for path in lesson_files()]
        site.lessons = [{"task": lesson.task, "title": lesson.title} for lesson in lessons]
        summaries = [lesson_page(site, lesson) for lesson in lessons]
        search_page(site)
        comparison_page(site)
        docs = doc_pages(site)
        site.write("index.html", "index.html", summaries=summaries, docs=docs)
        pages = sorted(output / page.name for page in staging.glob("*.html"))
        replace_output(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return pages


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pages", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs", help="root of the run folders (default: runs)")
    parser.add_argument("--tuning-runs", default="tuning_runs",
                        help="root of the searches (default: tuning_runs)")
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"),
                        help="the measured results (default: benchmarks/RESULTS.md of this repository)")
    parser.add_argument("--output", default="site", help="the site folder (default: site)")
    args = parser.parse_args(argv)
    pages = build_site(args.runs, args.tuning_runs, args.results, args.output)
    print(f"{len(pages)} pages in {printable(args.output)}/; open "
          f"{printable(Path(args.output) / 'index.html')}")
    return 0
