"""The lessons as pages: `python -m pages` (or `make pages`) builds a static, offline site into site/.

Each lesson page opens with a panel of what the default run does and gives (model, data, loss, optimizer,
time, result: `pages/glance.py`, from the lesson's resolved settings, its RESULTS.md rows and its newest run),
then shows the lesson's docstring and code (section by section where the script has `# %%` cells, with the
source of every shared function a section names), its measured results from benchmarks/RESULTS.md, and the
figures and metrics of its newest finished run. A search page and a framework comparison page gather the
rest of RESULTS.md and every search under tuning_runs/. Nothing imports this package: it only reads what the
lessons, runs and benchmarks wrote (it imports each lesson to resolve its settings, and runs nothing).
"""
