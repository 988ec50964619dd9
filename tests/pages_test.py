"""The lesson pages: built from a real smoke run, every link and image resolves, the HTML is well formed, and
a real browser (headless Chromium) renders each page with every image loaded."""

import html
import html.parser
import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from common.config import build_config, shown
from common.errors import UserError
from common.run_report import save_model_summary, write_run_report
from pages import build, glance, lesson
from tasks import phone_price
from tests import help_test

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ["phone_price", "imdb", "cifar10", "captioning"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


def write_png(path, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_results(folder):
    """A small RESULTS.md in the benchmark writers' format, with one figure present and one missing."""
    write_png(folder / "plots" / "phone_price_compare_activation.png")
    write_png(folder / "plots" / "cifar10_fast_quick_learning_curves.png", seed=1)
    text = """# Benchmark results

<!-- phone_price:begin -->
## Phone price (`tasks/phone_price.py`, profile quick)

- date: 2031-01-02
- machine: Test CPU, 2 cores, no GPU
- commit: abc1234
- command: `python -m benchmarks.phone_price`

| model | test accuracy |
|---|---|
| FNN | 0.9800 +- 0.0016 |
<!-- phone_price:end -->

<!-- tuning_phone_price:begin -->
## Tuning: phone price

![activation](plots/phone_price_compare_activation.png)
![gone](plots/not_there.png)
<!-- tuning_phone_price:end -->

<!-- frameworks:begin -->
## Frameworks: Keras backends vs PyTorch native

| model | implementation | train examples/s |
|---|---|---|
| phone_price fnn | Keras jax | 88188.3 |
<!-- frameworks:end -->
"""
    (folder / "RESULTS.md").write_text(text)
    return folder / "RESULTS.md"


def write_search(root):
    """A search folder as tuning.search and tuning.report leave it."""
    folder = root / "phone_price" / "compare-activation-smoke"
    folder.mkdir(parents=True)
    (folder / "search.json").write_text(json.dumps({"task": "phone_price", "tuner": "grid",
                                                    "profile": "smoke", "compare": "activation",
                                                    "objective": "val_accuracy"}))
    (folder / "compare.md").write_text("| activation | seeds |\n|---|---|\n| relu | 1 |\n")
    (folder / "best.json").write_text('{"task": "phone_price", "activation": "relu"}\n')
    write_png(folder / "compare_curves.png", seed=2)
    return folder


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One real phone-price smoke run (the repo's embedded data), with its report as finish_run writes it."""
    runs = tmp_path_factory.mktemp("lesson") / "runs"
    code = phone_price.main(["--profile", "smoke", "--data-dir", str(ROOT / "datasets" / "data"),
                             "--output-dir", str(runs), "--run-id", "pages-smoke"])
    assert code == 0
    run = runs / "phone_price" / "pages-smoke"
    import keras

    save_model_summary(keras.saving.load_model(run / "model.keras"), run)
    write_run_report(run, command="python -m tasks.phone_price --profile smoke --run-id pages-smoke")
    return runs


@pytest.fixture(scope="module")
def site(smoke_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("site")
    results = write_results(base / "benchmarks")
    tuning_runs = base / "tuning_runs"
    write_search(tuning_runs)
    output = base / "site"
    build.build_site(runs=smoke_run, tuning_runs=tuning_runs, results=results, output=output)
    return output


class PageParser(html.parser.HTMLParser):
    """Links, resources and ids of a page; fails on a closing tag that does not match the open one."""

    def __init__(self):
        super().__init__()
        self.stack, self.links, self.resources, self.ids, self.images = [], [], [], set(), 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag == "img":
            self.images += 1
        if attrs.get("src"):
            self.resources.append(attrs["src"])
        if tag == "link" and attrs.get("href"):
            self.resources.append(attrs["href"])
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()


def parse(path):
    parser = PageParser()
    parser.feed(path.read_text())
    parser.close()
    assert parser.stack == ["html"] or not parser.stack, f"{path.name}: unclosed {parser.stack}"
    return parser


def pages_of(site):
    return sorted(site.rglob("*.html"))


@pytest.mark.slow
def test_every_page_is_built(site):
    names = {p.name for p in site.glob("*.html")}
    assert names == {"index.html", "search.html", "comparison.html", *(f"{t}.html" for t in LESSONS)}
    assert (site / "style.css").is_file() and ".highlight" in (site / "pygments.css").read_text()


def test_html_is_well_formed_and_every_link_and_image_resolves(site):
    checked = 0
    for page in pages_of(site):
        parsed = parse(page)
        for url in parsed.resources:
            assert not urllib.parse.urlsplit(url).scheme, f"{page.name} loads {url} from outside the site"
        for url in parsed.resources + parsed.links:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme:  # a link to another site may leave; nothing loaded from one (checked above)
                continue
            target = (page.parent / urllib.parse.unquote(parts.path)).resolve() if parts.path else page
            assert target.is_file() and site.resolve() in target.parents, f"{page.name}: {url} is missing"
            if parts.fragment:
                assert parts.fragment in parse(target).ids, f"{page.name}: {url} names no element"
            checked += 1
    assert checked > 40  # the pages link to one another, their figures, styles and the run report


def test_lesson_page_shows_docstring_code_results_and_the_newest_run(site):
    page = (site / "phone_price.html").read_text()
    assert "Phone price classification with a feed-forward network" in page
    assert '<span class="nf">train</span>' in page  # highlighted by Pygments
    assert "2031-01-02" in page and "abc1234" in page and "python -m benchmarks.phone_price" in page
    assert "pages-smoke" in page and "Smoke profile" in page and "smoke: not a measurement" in page
    assert "runs/phone_price/pages-smoke/learning_curves.png" in page
    assert "runs/phone_price/pages-smoke/baseline/learning_curves.png" in page
    assert 'href="runs/phone_price/pages-smoke/report.html"' in page
    assert "Param #" in page  # the model summary, uncropped
    cifar = (site / "cifar10.html").read_text()
    assert "No finished run of this lesson" in cifar and "python -m tasks.cifar10 --profile smoke" in cifar
    assert "results/plots/cifar10_fast_quick_learning_curves.png" in cifar  # a benchmark figure


def test_search_and_comparison_pages(site):
    search = (site / "search.html").read_text()
    assert "results/plots/phone_price_compare_activation.png" in search
    assert "plots/not_there.png" in search and "is not in this checkout" in search
    assert "tuning/phone_price/compare-activation-smoke/compare_curves.png" in search
    assert "compare.md" in search and "best.json" in search
    comparison = (site / "comparison.html").read_text()
    assert "Keras backends vs PyTorch native" in comparison and "88188.3" in comparison
    assert "Tuning" not in comparison


@pytest.fixture(scope="module")
def repository_site(smoke_run, tmp_path_factory):
    """The site of the real benchmarks/RESULTS.md and its plots (and the smoke run of phone_price)."""
    base = tmp_path_factory.mktemp("repository")
    build.build_site(runs=smoke_run, tuning_runs=base / "none", output=base / "site")
    return base / "site"


def test_the_repository_results_render(repository_site):
    """The real benchmarks/RESULTS.md and its plots: every lesson has its section, every figure is there."""
    for task in LESSONS:
        assert "No section for this lesson" not in (repository_site / f"{task}.html").read_text(), task
    for page in pages_of(repository_site):
        parsed = parse(page)
        for url in parsed.resources:
            assert (page.parent / url).is_file(), f"{page.name}: {url}"
    assert "No search found" in (repository_site / "search.html").read_text()


# ------------------------------------------------------------------------------------------- at a glance
PANEL_ROWS = ["Model", "Data", "Loss", "Optimizer", "Time", "Result"]


def panel(page):
    """{row label: its text} of the page's at-a-glance panel, and where the panel starts in the page."""
    text = page.read_text()
    start = text.index('<table class="glance">')
    table = text[start:text.index("</table>", start)]
    rows = {th: html.unescape(re.sub(r"<[^>]+>", " ", td)).strip()
            for th, td in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", table, re.DOTALL)}
    return rows, start


@pytest.mark.parametrize("task", LESSONS)
def test_the_first_screen_of_every_lesson_shows_model_data_loss_optimizer_time_and_result(
        repository_site, task):
    rows, start = panel(repository_site / f"{task}.html")
    text = (repository_site / f"{task}.html").read_text()
    assert start < text.index('<div class="highlight">'), "the panel comes before any code"
    assert list(rows) == PANEL_ROWS and all(rows.values()), rows
    config = build_config(help_test.config_class(task))  # what `python -m tasks.<task>` resolves
    assert re.search(r"\d[\d,]* parameters", rows["Model"]) and "models/" in rows["Model"]
    if getattr(config, "model", None):
        assert rows["Model"].startswith(config.model)
    assert re.search(r"\d[\d,]* (training|labelled|photos)", rows["Data"])  # the data set and its size
    loss_shown = rows["Loss"].lower()
    assert "crossentropy" in loss_shown and getattr(config, "loss", "crossentropy") in loss_shown
    assert rows["Optimizer"].startswith(config.optimizer) and f"{config.epochs} epochs" in rows["Optimizer"]
    assert f"learning rate {shown(config.learning_rate)}" in rows["Optimizer"]
    assert re.search(r"\d(\.\d+)? (s|min)\b", rows["Time"]) and "cores" in rows["Time"]  # on which machine
    assert re.search(r"0\.\d{4}", rows["Result"])  # a measured score, as RESULTS.md writes it
    assert re.search(r"\d{4}-\d\d-\d\d, commit [0-9a-f]{7}", rows["Result"])  # the row's date and commit


def test_the_panel_reads_the_results_row_and_the_newest_run(site):
    rows, _ = panel(site / "phone_price.html")
    assert "0.9800 +- 0.0016" in rows["Result"] and "2031-01-02, commit abc1234" in rows["Result"]
    assert "newest run pages-smoke (smoke profile" in rows["Result"] and "not a measurement" in rows["Result"]
    assert "fnn test_accuracy" in rows["Result"]
    assert "newest run pages-smoke, smoke profile:" in rows["Time"]
    assert "parameters (fnn, run pages-smoke)" in rows["Model"]  # the test RESULTS.md has no params column
    assert "val_fraction 0.15" in rows["Data"] and "split_seed 42" in rows["Data"]
    assert rows["Loss"] == "sparse_categorical_crossentropy"
    assert rows["Optimizer"].startswith("adam, learning rate 0.01") and "cosine schedule" in rows["Optimizer"]
    cifar, _ = panel(site / "cifar10.html")  # no section in that RESULTS.md, no run
    assert cifar["Result"] == "no row of benchmarks/RESULTS.md measures the default run yet"
    assert cifar["Time"].startswith("not measured yet") and "widths 64,256,256" in cifar["Model"]
    assert "every setting of this run" in (site / "cifar10.html").read_text().lower()


SECTION = """- date: 2030-01-01
- machine: Test CPU, 2 cores, no GPU
- commit: 1234567
- wall time of one whole lesson run: 20.0 s

| model | profile | test accuracy | best val acc. | params | wall time (min) | decoding | stamp | command |
|---|---|---|---|---|---|---|---|---|
| fast (64,128,128) | quick | 0.8500 | 0.86 | 100 | 10.0 | greedy | [1] | `python -m x --model fast` |
| fast (64,256,256) | quick | 0.8700 | 0.88 | 200 | 14.0 | greedy | [2] | `python -m x --model fast` |
| fast (64,256,256) | quick | 0.8800 | 0.88 | 200 | 14.0 | beam3 | [2] | `python -m x --model fast` |
| fast (64,256,256) | quick | 0.9100 | 0.91 | 200 | 15.0 | greedy | [2] | `python -m x --config r.json` |
| fast (64,256,256) | full | 0.9000 | 0.90 | 200 | 30.0 | greedy | [2] | `python -m x --profile full` |
| vgg (64,256,256) | quick | 0.8000 | 0.80 | 300 | 20.0 | greedy | [2] | `python -m x --model vgg` |

| summary | test accuracy |
|---|---|
| all | 0.8 |

Stamps:

- [1] 2030-01-02; Old CPU, 2 cores, no GPU; Python 3.11; commit aaaaaaa; `python -m benchmarks.x`
- [2] 2030-01-03; New CPU, 4 cores, no GPU; Python 3.11; commit bbbbbbb; `python -m benchmarks.x`
"""


def test_the_rows_of_the_default_run_are_found_in_a_results_section():
    tables, bullets = glance.read_section(SECTION)
    assert [len(t.rows) for t in tables] == [6, 1] and bullets["commit"] == "1234567"
    assert tables[0].stamps["2"] == {"date": "2030-01-03", "machine": "New CPU, 4 cores, no GPU",
                                     "commit": "bbbbbbb"}
    assert tables[1].stamps == tables[0].stamps  # the first stamp list after each table
    table = glance.lesson_table(tables)
    config = SimpleNamespace(model="fast", widths=(64, 256, 256), profile="quick")
    rows = glance.default_rows(table, config)  # not: other widths, a recipe file, another profile or model
    assert [(row[2], row[6]) for row in rows] == [("0.8700", "greedy"), ("0.8800", "beam3")]
    lines = glance.result_lines(table, rows, bullets)
    assert lines[0] == ("decoding greedy: test accuracy 0.8700 (row 'fast (64,256,256)', 2030-01-03, "
                        "commit bbbbbbb)")
    assert lines[1].startswith("decoding beam3: test accuracy 0.8800")
    assert glance.measured_time(table, rows[0], {}) == "wall time of 'fast (64,256,256)': 14.0 min"
    assert glance.measured_time(table, rows[0], bullets) == "wall time of one whole lesson run: 20.0 s"
    assert glance.default_rows(table, SimpleNamespace(profile="quick")) == table.rows[:1]  # no model field
    assert glance.default_rows(None, config) == []


def test_the_loss_of_a_lesson_without_a_loss_setting_is_read_from_its_compile_call(tmp_path):
    path = tmp_path / "lesson_x.py"
    path.write_text('def train(model, other):\n    other.compile(loss="mse")\n    model.compile(\n'
                    '        optimizer="adam",\n'
                    '        loss=masked_crossentropy,  # next-word cross-entropy\n    )\n')
    assert glance.compile_loss(path) == "masked_crossentropy (next-word cross-entropy)"


def test_rebuild_empties_its_own_folder_and_refuses_any_other(site, tmp_path, smoke_run, cli):
    results = write_results(tmp_path / "benchmarks")
    output = tmp_path / "site"
    build.build_site(runs=smoke_run, tuning_runs=tmp_path, results=results, output=output)
    (output / "stale.html").write_text("old")
    build.build_site(runs=tmp_path / "no-runs", tuning_runs=tmp_path, results=results, output=output)
    assert not (output / "stale.html").exists()
    assert "No finished run" in (output / "phone_price.html").read_text()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code, _, err = cli(build.main, ["--results", str(results), "--output", str(other)])
    assert code == 2 and "did not write" in err and (other / "notes.txt").is_file()
    code, _, err = cli(build.main, ["--results", str(tmp_path / "nope.md"),
                                    "--output", str(tmp_path / "new")])
    assert code == 2 and "does not exist" in err and not (tmp_path / "new").exists()


# -------------------------------------------------------------------------------------------- lesson sources
CELLS = '''"""A lesson.

It teaches one thing.
"""

import math

# %% Model
# The network is `models/fnn.py: build_fnn`; its parameter count is
# models/fnn.py: fnn_parameter_count.
model = None

# %% [markdown]
# Only prose here.

# %% Training
x = math.pi
'''


def test_cells_become_sections_with_the_shared_functions_they_name(tmp_path):
    path = tmp_path / "lesson_x.py"
    path.write_text(CELLS)
    parsed = lesson.read_lesson(path)
    assert parsed.title == "A lesson." and "It teaches one thing." in parsed.intro
    assert [s.title for s in parsed.sections] == ["", "Model", "", "Training"]
    setup, model, prose_only, training = parsed.sections
    assert "import" in setup.code and not setup.prose
    assert "The network is" in model.prose and "model" in model.code and "network" not in model.code
    assert [label for label, _ in model.references] == ["models/fnn.py: build_fnn",
                                                        "models/fnn.py: fnn_parameter_count"]
    assert "build_fnn" in model.references[0][1] and "hidden_units" in model.references[0][1]
    assert "Only prose here." in prose_only.prose and not prose_only.code
    assert "pi" in training.code


def test_a_script_without_cells_is_one_section(tmp_path):
    path = tmp_path / "plain.py"
    path.write_text('"""Title.\n\nBody."""\n\nimport os\n\n\ndef f():\n    return os.sep\n')
    parsed = lesson.read_lesson(path)
    assert (len(parsed.sections) == 1 and "def" in parsed.sections[0].code
            and "Body" not in parsed.sections[0].code)


def test_function_source_finds_functions_classes_and_methods():
    source = lesson.function_source(ROOT, "models/captioning.py", "BahdanauAttention.call")
    assert source.startswith("def call(") and "class" not in source
    assert lesson.function_source(ROOT, "models/cnn.py", "fast_body").startswith("def fast_body(")
    assert lesson.function_source(ROOT, "common/training.py", "rounded_binary_accuracy").startswith("@keras")
    with pytest.raises(UserError, match="defines no fastbody"):
        lesson.function_source(ROOT, "models/cnn.py", "fastbody")
    with pytest.raises(UserError, match="not a file"):
        lesson.function_source(ROOT, "models/nope.py", "f")


def test_every_shipped_lesson_renders():
    for path in build.lesson_files():
        parsed = lesson.read_lesson(path)
        assert parsed.title and parsed.sections, path.name


# ---------------------------------------------------------------------------------------------- real browser
def find_browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


PROBE = """<script>window.addEventListener("load", function () {
  var broken = [];
  for (var i = 0; i < document.images.length; i++) {
    var image = document.images[i];
    if (!image.complete || image.naturalWidth === 0) broken.push(image.getAttribute("src"));
  }
  document.body.setAttribute("data-images", String(document.images.length));
  document.body.setAttribute("data-broken", JSON.stringify(broken));
});</script>"""


def open_in_browser(browser, page, screenshot, profile):
    """Load `page` in headless Chromium: the DOM after the load event, and a screenshot of the window."""
    probe = page.with_name(page.stem + ".probe.html")  # beside the page, so its relative links still work
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    try:
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--window-size=1200,1400", f"--screenshot={screenshot}",
             "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    finally:
        probe.unlink()
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_a_real_browser_renders_every_page_with_every_image(site, tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium: install Debian's chromium package (.ci/run does where apt-get can)")
    for page in pages_of(site):
        shot = tmp_path / f"{page.stem}.png"
        dom = open_in_browser(browser, page, shot, tmp_path / "profile")
        images = int(_attribute(dom, "data-images"))
        assert images == parse(page).images, page.name
        assert json.loads(_attribute(dom, "data-broken")) == [], f"{page.name}: images that did not load"
        pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
        assert pixels.var() > 0, f"{page.name}: blank screenshot"


def _attribute(dom, name):
    start = dom.index(f'{name}="') + len(name) + 2
    return html.unescape(dom[start:dom.index('"', start)])


def test_the_docs_are_pages_of_the_site_with_their_links_and_figures(site):
    """README.md links to docs/*.md for the depth: `make pages` renders each as site/docs/<name>.html, links
    between them point at the pages, their figures are copied, and the index lists them."""
    sources = sorted(p.stem for p in (ROOT / "docs").glob("*.md"))
    assert sources and all((site / "docs" / f"{name}.html").is_file() for name in sources)
    index = (site / "index.html").read_text()
    assert all(f'href="docs/{name}.html"' in index for name in sources)
    for name in sources:
        page = PageParser()
        page.feed((site / "docs" / f"{name}.html").read_text())
        for target in page.links + page.resources:
            if "://" in target or target.startswith("#"):
                continue
            path = (site / "docs" / target.split("#")[0]).resolve()
            assert path.exists(), f"docs/{name}.html links to {target}, which the site lacks"
    glossary = (site / "docs" / "glossary.html").read_text()
    assert "held-out" in glossary and 'href="../index.html"' in glossary
    results = (site / "docs" / "results.html").read_text()
    assert "rows: imdb/" not in results, "docs/results.md's rows comments are for writers, not for the page"
