"""One module per lesson, plus launchers that start a lesson rather than teach one."""

# Modules of tasks/ that are not lessons: pages and run_all.py leave them out.
LAUNCHERS = ("distributed",)
