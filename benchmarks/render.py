"""Every section of RESULTS.md again from what is recorded, measuring nothing.

    python -m benchmarks.render

Rows files are rendered by their own scripts (`render_recorded`), the sections written whole by one run get
their older mark as `benchmarks/common.py: LAST_CHANGE` gives it now. This module sits above the scripts it
renders: they import benchmarks/common.py, and nothing imports this one.
"""

from benchmarks import backends, captioning, cifar10, common, imdb


def render_all():
    """Every section from what is recorded: rows files through their scripts' renderers, whole sections'
    older marks."""
    for script in (imdb, cifar10, captioning, backends):
        script.render_recorded()
    for name in common.SECTION_LESSONS:
        body = common.read_section(name)
        if body is not None:
            common.write_section(name, common.marked(name, body))


if __name__ == "__main__":
    render_all()
