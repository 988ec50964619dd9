"""Which rows of benchmarks/RESULTS.md were measured with code that has changed since.

Every stamp in RESULTS.md names the commit its rows were measured at (a section's `- commit: X` line, or a
numbered stamp `[n] date; machine; versions; commit X; command`). A row is *current* when none of the files
that decide its numbers (the section's `CODE` paths below) changed between that commit and HEAD, *stale*
when some did (they are listed; a change to docstrings, comments or a recipe's "_why" only is not a change
of code), and *unverifiable* when its stamp says "+ local changes" (the code it ran
was never committed) or names a commit this clone does not have.

    python -m benchmarks.stale            # one line per stamp: section, stamp, commit, status
    python -m benchmarks.stale --stale    # only the stale and unverifiable ones (exit 1 if any)

The README and the lessons may quote a current row as it is; a stale row only with "measured at <commit>"
beside it (tests/stale_test.py checks the README's lessons table).
"""

import argparse
import ast
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"

# The files whose change can change a section's numbers: its lesson, data set and models, the shared core,
# and the benchmark script that measured it. (The versions of TensorFlow and Keras are in every stamp.)
SHARED = ("common/",)
LESSON_CODE = {
    "phone_price": ("tasks/phone_price.py", "datasets/mobile_price.py", "models/fnn.py",
                    "benchmarks/phone_price.py"),
    "imdb": ("tasks/imdb.py", "datasets/imdb.py", "models/text.py", "recipes/imdb_", "benchmarks/imdb.py"),
    "cifar10": ("tasks/cifar10.py", "datasets/cifar10.py", "models/cnn.py", "models/airbench.py",
                "twins/airbench94.py", "recipes/cifar10_", "benchmarks/cifar10.py",
                "benchmarks/cifar10_airbench.py"),
    "captioning": ("tasks/captioning.py", "datasets/flickr8k.py", "datasets/shapes.py",
                   "models/captioning.py", "models/encoders.py", "models/efficientnet_lite.py",
                   "recipes/captioning_", "benchmarks/captioning.py"),
}
CODE = {
    **{name: SHARED + paths for name, paths in LESSON_CODE.items()},
    "tuning_phone_price": SHARED + ("tuning/",) + LESSON_CODE["phone_price"],
    "tuning_imdb": SHARED + ("tuning/",) + LESSON_CODE["imdb"],
    "tuning_cifar10": SHARED + ("tuning/",) + LESSON_CODE["cifar10"],
    "frameworks": SHARED + ("tasks/", "datasets/", "models/", "twins/", "recipes/",
                            "benchmarks/frameworks.py", "benchmarks/stage_profile.py"),
    "backends": SHARED + ("tasks/", "datasets/", "models/", "benchmarks/backends.py"),
    "distribution": SHARED + ("tasks/", "datasets/", "models/", "benchmarks/distribution.py"),
    "stage_profile": SHARED + LESSON_CODE["cifar10"] + ("benchmarks/stage_profile.py",),
    "keras_speed": SHARED + LESSON_CODE["cifar10"] + ("benchmarks/stage_profile.py",
                                                      "benchmarks/keras_speed.py"),
}
SECTION = re.compile(r"<!-- (?P<name>\w+):begin -->(?P<body>.*?)<!-- (?P=name):end -->", re.S)
SECTION_COMMIT = re.compile(r"^- commit: (?P<commit>[0-9a-f]{7,40})(?P<local> \+ local changes)?", re.M)
STAMP = re.compile(r"^- \[(?P<stamp>\d+)\] [^\n]*?; commit (?P<commit>[0-9a-f]{7,40})"
                   r"(?P<local> \+ local changes)?; `(?P<command>[^`]*)`", re.M)


def stamps(text):
    """Every stamp of RESULTS.md: dicts of section, stamp ("" for a section's single commit line), commit,
    local (True when the code had uncommitted changes) and command."""
    found = []
    for section in SECTION.finditer(text):
        body, name = section.group("body"), section.group("name")
        for match in SECTION_COMMIT.finditer(body):
            command = re.search(r"^- command: `([^`]*)`", body, re.M)
            found.append(dict(section=name, stamp="", commit=match.group("commit"),
                              local=bool(match.group("local")), command=command.group(1) if command else ""))
        for match in STAMP.finditer(body):
            found.append(dict(section=name, stamp=match.group("stamp"), commit=match.group("commit"),
                              local=bool(match.group("local")), command=match.group("command")))
    return found


@functools.cache  # many stamps name the same commit
def _changed_files(commit, head, root):
    """Every file that differs between `commit` and `head`, or None if the commit is unknown."""
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=root, capture_output=True)
    if known.returncode != 0:
        return None
    result = subprocess.run(["git", "diff", "--name-only", commit, head, "--"], cwd=root,
                            capture_output=True, text=True, check=True)
    return tuple(result.stdout.split())


@functools.cache
def _same_code(commit, head, path, root):
    """Whether `path` differs between the two commits in its prose only: a Python file whose syntax tree,
    docstrings dropped, is the same (comments are not in the tree), or a recipe whose settings are the same
    (its "_about" and "_why" keys dropped). Any other change, or a file missing on either side, is code."""
    if not path.endswith((".py", ".json")):
        return False
    texts = []
    for rev in (commit, head):
        shown = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
        if shown.returncode != 0:
            return False
        texts.append(shown.stdout)
    try:
        if path.endswith(".py"):
            return len({ast.dump(_without_docstrings(ast.parse(text))) for text in texts}) == 1
        if path.endswith(".json"):
            settings = [json.loads(text) for text in texts]
            return len({json.dumps({k: v for k, v in s.items() if not k.startswith("_")}, sort_keys=True)
                        for s in settings}) == 1
    except (SyntaxError, ValueError, AttributeError):
        return False
    return False


def _without_docstrings(tree):
    """The tree with the docstring of the module and of every class and function removed."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and (
                    isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
    return tree


def changed_since(commit, paths, root=ROOT):
    """The files under `paths` whose code differs between `commit` and HEAD (`_same_code`), or None if the
    commit is unknown."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout
    head = head.strip()
    changed = _changed_files(commit, head, str(root))
    if changed is None:
        return None
    return sorted(f for f in changed if f.startswith(paths) and not _same_code(commit, head, f, str(root)))


def status(stamp, root=ROOT):
    """("current" | "stale" | "unverifiable", the reason) for one stamp."""
    if stamp["local"]:
        return "unverifiable", "measured with uncommitted changes (+ local changes)"
    paths = CODE.get(stamp["section"])
    if paths is None:
        return "unverifiable", f"no code paths are known for section {stamp['section']}"
    changed = changed_since(stamp["commit"], paths, root)
    if changed is None:
        return "unverifiable", f"commit {stamp['commit']} is not in this clone"
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        return "stale", f"{len(changed)} file(s) changed since: {shown}"
    return "current", "no file of its code changed since"


def report(root=ROOT):
    """[(stamp dict, status, reason)] for every stamp of RESULTS.md."""
    return [(s, *status(s, root)) for s in stamps((Path(root) / "benchmarks" / "RESULTS.md").read_text())]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stale", action="store_true", help="list only stale and unverifiable stamps; "
                        "exit 1 when there are any")
    args = parser.parse_args(argv)
    rows = report()
    shown = [r for r in rows if not args.stale or r[1] != "current"]
    for stamp, state, reason in shown:
        label = f"{stamp['section']}" + (f" [{stamp['stamp']}]" if stamp["stamp"] else "")
        print(f"{label:<24} {stamp['commit']:<9} {state:<12} {reason}")
    counts = {state: sum(1 for _, s, _ in rows if s == state)
              for state in ("current", "stale", "unverifiable")}
    print(", ".join(f"{n} {state}" for state, n in counts.items()))
    return 1 if args.stale and shown else 0


if __name__ == "__main__":
    sys.exit(main())
