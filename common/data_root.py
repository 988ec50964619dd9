"""Where data sets live, and a cache for what has to be extracted from them.

A data set is a folder of a data root (`mobile_price/`, `imdb/`, `cifar10/`, `flickr8k/`). The root is,
in this order:

1. `--data-dir` (an explicit choice: if the folder is not there, that is an error),
2. the environment variable `KERAS_TUTORIALS_DATA` (must exist when set),
3. the Keras cache, `~/.keras/datasets` (or `$KERAS_HOME/datasets`),
4. whatever fallback the loader has: the official download for online users (`download`: through
   `keras.utils.get_file` into the Keras cache, checked against the archive's published SHA-256), or a copy
   shipped in this repo (the phone-price CSVs are small enough).

Files read as they are (the phone-price CSVs, Flickr8k's caption file: the `required` files of a data set) are
checked against the `SHA256SUMS` beside them (when it lists them) every time they are found: they are small,
and they are what the lesson reads. Archives are never unpacked in place (the shared root is read-only):
`extract_once` checks an archive against its published SHA-256 (when the loader knows it) and its `SHA256SUMS`
line, unpacks it into `~/.cache/keras-tutorials/` (or `$KERAS_TUTORIALS_CACHE`) and reuses the result while
the archive keeps its path, size and modification time. The archive is not hashed again on reuse: what a
lesson reads then is the cache, which that check could not vouch for anyway; a changed archive is checked and
unpacked again. A cache folder is only ever replaced whole: it is built in a temporary folder beside it and
renamed into place when complete (`fill_once`), so a bad archive, a kill or a full disk leaves the cache as it
was.
"""

import functools
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

from common import folders
from common.errors import UserError, describe_os_error, printable
from common.progress import progress
from common.umask import follow_umask

ENV_DATA = "KERAS_TUTORIALS_DATA"
ENV_CACHE = "KERAS_TUTORIALS_CACHE"
MARKER = ".extracted"  # written last into a cache folder: what it was built from


def keras_cache_root():
    home = os.environ.get("KERAS_HOME") or Path.home() / ".keras"
    return Path(home) / "datasets"


def cache_root():
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "keras-tutorials")


def find_dataset(name, data_dir=None, required=(), fallback=None):
    """Return the folder of data set `name` that holds every file in `required`, each one checked against the
    folder's SHA256SUMS when it lists it.

    `fallback` is called (with no arguments) when no root has the data set; it returns a folder or None.
    Raises UserError naming every place that was searched, or a file that does not match its checksum.
    """
    searched = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise UserError(f"--data-dir {root} is not a folder; expected a data root with {name}/ in it.")
        candidates = [root]
    else:
        candidates = []
        env = os.environ.get(ENV_DATA)
        if env:
            if not Path(env).expanduser().is_dir():
                raise UserError(f"{ENV_DATA}={env} is not a folder; expected a data root with {name}/ in it.")
            candidates.append(Path(env).expanduser())
        candidates.append(keras_cache_root())
    for root in candidates:
        folder = root / name
        searched.append(str(folder))
        if folder.is_dir():
            missing = [f for f in required if not (folder / f).exists()]
            if missing:
                raise UserError(f"{folder} is missing {', '.join(missing)}; expected the {name} files there.")
            return _verified(folder, required)
    if fallback is not None and data_dir is None:
        folder = fallback()
        if folder is not None:
            return _verified(Path(folder), required)
    raise UserError(f"data set {name}/ not found (looked in {', '.join(searched)}); "
                    f"pass --data-dir or set {ENV_DATA} to a folder that holds {name}/.")


def _verified(folder, required):
    for name in required:
        verify_checksum(folder / name)
    return folder


def download(url, sha256, name):
    """Download `url` into the Keras cache's folder for data set `name` (where `find_dataset` looks next time)
    with `keras.utils.get_file`, checked against `sha256`, the archive's published hash; return that folder,
    or None when it cannot be downloaded (offline).

    A download that does not match is deleted (Keras leaves it in place) and refused in one sentence: a
    corrupted or altered archive is never read.
    """
    import keras

    filename = url.rsplit("/", 1)[-1]
    target = keras_cache_root() / name / filename
    try:  # get_file writes elsewhere (/tmp/.keras) when the cache is not there yet
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        pass  # not writable: get_file's own fallback, which it checks again on reuse
    try:
        path = keras.utils.get_file(filename, url, file_hash=sha256, cache_dir=str(keras_cache_root()),
                                    cache_subdir=name)
    except ValueError as error:
        if "hash" not in str(error):  # get_file's only other ValueErrors are about its arguments
            raise
        target.unlink(missing_ok=True)
        raise UserError(f"the download of {url} does not match its published SHA-256 {sha256} (a corrupted "
                        "or altered copy, deleted); run again to download it afresh, or pass "
                        "--data-dir.") from None
    except Exception as error:  # noqa: BLE001 (any network failure means: not available)
        print(f"could not download {url}: {printable(error)}", file=sys.stderr)
        return None
    return Path(path).parent


def extract_once(archive, subdir, sha256=None, check=None):
    """Unpack a tar archive into the cache folder `subdir` (once) and return that folder.

    The archive is checked against `sha256` (its published hash) when given, and against SHA256SUMS, then
    unpacked beside the cache folder; `check(folder)`, when given, is called on that unpacked folder and
    raises UserError if it is not what the loader expects. Only a complete extraction that passes `check`
    replaces what was there, so a truncated archive, or a well-formed one holding something else, never costs
    a good cache.
    """
    archive = Path(archive)

    def unpack(folder):
        if sha256 is not None:
            verify_sha256(archive, sha256)
        verify_checksum(archive)
        try:
            with tarfile.open(archive) as tar:
                # Members are read as the extraction reaches them, so the bar costs no second pass.
                tar.extractall(folder, members=progress(tar, f"extracting {archive.name}", unit="file"),
                               filter="data")
        except (tarfile.TarError, OSError, EOFError) as error:
            if isinstance(error, OSError) and describe_os_error(error):
                raise  # an unwritable cache or a full disk: said as such by the CLI
            raise UserError(f"could not extract {archive} ({printable(error)}); expected a readable tar "
                            "archive (the cache was left as it was).") from None
        if check is not None:
            check(folder)

    return fill_once(cache_root() / subdir, _archive_stamp(archive), unpack)


def fill_once(target, stamp, fill):
    """Return the cache folder `target`, built by `fill(folder)` unless it was already built with `stamp`.

    `fill` writes into a fresh temporary folder beside `target`, which replaces `target` only once `fill` has
    returned: an exception or a kill leaves the previous `target` untouched. A lock file serialises two
    processes building the same folder (the second then finds it built).
    """
    from filelock import FileLock

    target = Path(target)
    if _stamp_of(target) == stamp:  # built: read it, even from a read-only cache
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if _stamp_of(target) == stamp:
            return target
        stale_folders = [*target.parent.glob(f".{target.name}.partial-*"),
                         *target.parent.glob(f".{target.name}.old-*")]
        for stale in stale_folders:  # left by a killed process
            shutil.rmtree(stale, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        try:
            follow_umask(partial, folder=True)  # mkdtemp's 0700 would hide a shared cache from other users
            fill(partial)
            (partial / MARKER).write_text(stamp)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        folders.swap_in(partial, target)  # the old folder aside, the new one in, the old one removed
    return target


def _stamp_of(folder):
    try:
        return (Path(folder) / MARKER).read_text()
    except OSError:
        return None


def verify_checksum(path):
    """If a SHA256SUMS file lies beside `path` and lists it, the file must match (checked before
    extracting)."""
    path = Path(path)
    sums = path.parent / "SHA256SUMS"
    if not sums.is_file():
        return
    expected = {line.split()[-1].lstrip("*"): line.split()[0] for line in sums.read_text().splitlines()
                if len(line.split()) >= 2}
    if path.name not in expected:
        return
    if sha256_of(path) != expected[path.name]:
        raise UserError(f"{path} does not match its checksum in {sums} (a truncated or altered copy); "
                        "copy the file again.")


def verify_sha256(path, sha256):
    """`path` must be the published file (e.g. a download that a kill cut short is not)."""
    if sha256_of(path) != sha256:
        raise UserError(f"{path} does not match its published SHA-256 {sha256} (a truncated or altered "
                        "copy); delete it to download it again, or copy the file again.")


def sha256_of(path):
    """The file's SHA-256, hashed once per process while its size and modification time stay the same (the
    checksum check and the run's data fingerprint both ask)."""
    stat = os.stat(path)
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _sha256_of(path, size, mtime_ns):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _archive_stamp(archive):
    stat = archive.stat()
    return f"{archive.resolve()} {stat.st_size} {int(stat.st_mtime)}"
