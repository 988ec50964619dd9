"""Files and folders made by `tempfile` get the mode an ordinary `open` or `mkdir` would have given them.

`tempfile.mkstemp` makes a file 0600 and `mkdtemp` a folder 0700, whatever the user's umask: a run's files,
a shared data cache or a built site written through them would be hidden from a web server or a colleague
running as another user. A leaf: the run folders (common/runs.py), the data caches (common/data_root.py,
common/images.py) and the pages all call it.
"""

import os


def current_umask():
    """The process's umask (read by setting it and putting it back: there is no other portable way)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path, folder=False):
    """Give a file made by `tempfile.mkstemp` (0600) or a folder made by `mkdtemp` (0700) the mode an ordinary
    `open`/`mkdir` would have given it under the user's umask, so that a web server or a colleague running as
    another user can read what the user shares (the pages' report copies, a shared cache)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~current_umask())
