"""Build the static site: an index, one page per lesson, a search page and a comparison page.

    python -m pages                               # runs/, tuning_runs/, benchmarks/RESULTS.md -> site/
    python -m pages --runs my_runs --output my_site   # other folders, relative to the current one

Everything the pages show is copied into the output folder (figures, run reports, styles), so the folder can
be opened from disk or served as it is, with no network: no CDN, no web fonts.
"""

import argparse
import json
import shutil
import time
from pathlib import Path

import jinja2
from pygments.formatters import HtmlFormatter

from common.errors import UserError
from common.run_report import SMOKE_NOTE, git_commit, html_table, markdown_to_html, read_run
from pages.lesson import read_lesson
from pages.results import copy_figure, read_sections, section_html
from tasks import LAUNCHERS

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# The course order (a network on a table, then text, images, images and text); new lessons follow, by name.
LESSON_ORDER = ("phone_price", "imdb", "cifar10", "captioning")
MARKER = ".pages-site"  # marks a folder this builder made, so a rebuild may empty it


def lesson_files(tasks=ROOT / "tasks"):
    files = {p.stem: p for p in sorted(Path(tasks).glob("*.py")) if not p.stem.startswith("_")
             and p.stem not in LAUNCHERS}  # launchers (tasks.distributed) start lessons, teach none
    return ([files[t] for t in LESSON_ORDER if t in files]
            + [p for t, p in files.items() if t not in LESSON_ORDER])


def newest_run(runs, task):
    """The finished run of `task` whose metrics.json was written last, or None."""
    finished = [p.parent for p in (Path(runs) / task).glob("*/metrics.json")]
    return max(finished, key=lambda p: (p / "metrics.json").stat().st_mtime, default=None)


def prepare_output(output):
    """Empty `output` for a rebuild, refusing any folder this builder did not make."""
    output = Path(output)
    if output.exists():
        if not output.is_dir():
            raise UserError(f"--output {output} is a file; expected a folder for the site.")
        if any(output.iterdir()) and not (output / MARKER).exists():
            raise UserError(f"--output {output} holds files this builder did not write; choose an empty or "
                            "new folder (a site built before can be rebuilt in place).")
        shutil.rmtree(output)
    output.mkdir(parents=True)
    (output / MARKER).write_text("built by python -m pages; rebuilding empties this folder\n")


class Site:
    """One build: where things come from, where they go, and the pages written so far."""

    def __init__(self, runs, tuning_runs, results, output):
        self.runs, self.tuning_runs, self.results, self.output = (Path(runs), Path(tuning_runs),
                                                                   Path(results), Path(output))
        self.sections = read_sections(self.results)
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


def copy_run(site, run_path):
    """The run's figures, extra pages and report.html copied under site/runs/<task>/<run-id>/."""
    run = read_run(run_path)
    folder = Path("runs") / run["task"] / run["run_id"]
    for relative in run["figures"] + run["pages"] + ["report.html"]:
        if (run_path / relative).is_file():
            copy_figure(run_path / relative, run_path, site.output, folder.as_posix())
    run["url"] = folder.as_posix()
    run["report"] = (folder / "report.html").as_posix() if (run_path / "report.html").is_file() else None
    return run


def lesson_page(site, lesson):
    """The lesson's page; returns what the index says about it (title, newest run)."""
    task = lesson.task
    results = site.results_html(task)[0] if task in site.sections else None
    # The lesson's benchmark figures that no section of RESULTS.md shows (searches have their own page).
    plots = site.results.parent / "plots"
    shown = site.results.read_text()
    figures = [copy_figure(p, site.results.parent, site.output) for p in sorted(plots.glob(f"{task}_*.png"))
               if "compare" not in p.name and f"plots/{p.name}" not in shown]
    run_path = newest_run(site.runs, task)
    run = copy_run(site, run_path) if run_path else None
    site.write(f"{task}.html", "lesson.html", lesson=lesson, results=results, benchmark_figures=figures,
               run=run, smoke_note=SMOKE_NOTE,
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
        found.append({
            "name": relative, "meta": json.loads(meta_path.read_text()),
            "tables": [(p.name, markdown_to_html(p.read_text())) for p in sorted(folder.glob("*.md"))],
            "figures": [copy_figure(p, folder, site.output, target) for p in sorted(folder.glob("*.png"))],
            "best": (folder / "best.json").read_text() if (folder / "best.json").is_file() else None,
            "report": (copy_figure(folder / "report.html", folder, site.output, target)
                       if (folder / "report.html").is_file() else None),
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


def build_site(runs="runs", tuning_runs="tuning_runs", results=ROOT / "benchmarks" / "RESULTS.md",
               output="site"):
    """Write the whole site into `output` and return the paths of its pages.

    Args:
        runs: root of the run folders (`<runs>/<task>/<run-id>/`); missing means no run yet.
        tuning_runs: root of the search folders; missing means no search yet.
        results: benchmarks/RESULTS.md (its `plots/` figures are read beside it).
        output: the site folder; emptied first if an earlier build made it.
    """
    if not Path(results).is_file():
        raise UserError(f"--results {results} does not exist; expected benchmarks/RESULTS.md.")
    prepare_output(output)
    site = Site(runs, tuning_runs, results, output)
    shutil.copy2(HERE / "static" / "style.css", site.output / "style.css")
    (site.output / "pygments.css").write_text(HtmlFormatter(style="default").get_style_defs(".highlight"))
    lessons = [read_lesson(path) for path in lesson_files()]
    site.lessons = [{"task": lesson.task, "title": lesson.title} for lesson in lessons]
    summaries = [lesson_page(site, lesson) for lesson in lessons]
    search_page(site)
    comparison_page(site)
    site.write("index.html", "index.html", summaries=summaries)
    return sorted(site.output.glob("*.html"))


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
    print(f"{len(pages)} pages in {args.output}/; open {Path(args.output) / 'index.html'}")
    return 0
