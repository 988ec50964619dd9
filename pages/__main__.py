"""`python -m pages [--runs DIR] [--tuning-runs DIR] [--results FILE] [--output DIR]`"""

from common.errors import run_cli
from pages.build import main

run_cli(main)
