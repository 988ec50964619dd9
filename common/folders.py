"""Folders replaced whole: a complete new folder is swapped in; a reader sees the old one or the new one."""

import os
import shutil
import tempfile
from pathlib import Path


def swap_in(new, target):
    """Put the complete folder `new` at `target` (a sibling on the same file system): the old `target` is set
    aside under a temporary name, `new` renamed into place, and only then the old one removed. A kill at any
    instant leaves either the old folder or the new one at `target` (and at worst a hidden one beside it)."""
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.replace(target, aside / target.name)
    os.replace(new, target)
    shutil.rmtree(aside, ignore_errors=True)
