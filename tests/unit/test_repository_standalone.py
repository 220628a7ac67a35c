"""The repository stands alone: no tracked file reaches into a developer's machine or out of the checkout.

A fresh clone must run its tests with nothing beside it, and a citation must point at something
a reader can open (an upstream project's file and version, or a doc under docs/). Every tracked
text file is scanned for three kinds of problem:

- an absolute path into someone's machine or checkout (home directories, work trees, mounts,
  temporary checkouts); system paths such as /proc, /etc, /usr or /var are fine;
- a relative path that climbs out of the repository (`../` that resolves above the root, or a
  `Path(__file__)` parent chain longer than the file is deep), or a `../` path naming nothing
  in the repository;
- a citation of a research note that does not ship with the repository.

The patterns below are spelled so that this file does not match them itself (`/wor[k]/`):
the scan covers this file too.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import PurePosixPath

import pytest

from tests.paths import REPO_ROOT

# Top-level directories that only exist on someone's machine or CI runner, never in a deployment.
_DEVELOPER_ROOTS = ("wor[k]", "workspaces?", "hom[e]", "User[s]", "mn[t]", "medi[a]", "root")
DEVELOPER_PATH = re.compile(
    r"(?<![\w.$}\-])"  # not part of a URL, a relative path or a shell variable expansion
    r"(?:/(?:" + "|".join(_DEVELOPER_ROOTS) + r")/"
    r"|/private/var/folder[s]/"  # macOS per-user temporary directories
    r"|/tmp/(?:tmp[\w.]*|pytest-of-[\w-]+)/"  # mktemp / tempfile / pytest checkouts
    r"|[A-Za-z]:\\+User[s]\\+)"  # Windows profiles
)
#: (file, text) pairs where a matching path is not a developer's: it lives inside a container build.
ALLOWED_PATHS = frozenset({("Containerfile", "/" + "root/.cache/pip")})

_NOTE_NAMES = (
    "[\\w-]+-anchor[s]",
    "engine-metric[s]",
    "engine-knob[s]",
    "canary-judg[e]",
    "fleet-integratio[n]",
    "litestar-styl[e]",
)
NOTE_CITATION = re.compile(r"\b(?:" + "|".join(_NOTE_NAMES) + r")\.md\b")
NOTE_FOLDER = re.compile(r"\bshared/(?:referenc[e]|fixture[s])\b|\breferenc[e] §")

RELATIVE_UP = re.compile(r"(?<![\w.])(?:\.\./)+[\w.\-]+[\w.\-/]*")
FILE_PARENTS = re.compile(
    r"Path\(__file__\)(?:\.resolve\(\))?(?P<chain>(?:\.parent\b)*)(?:\.parents\[(?P<index>\d+)\])?"
)
#: A `../` probe that escapes towards a system directory is a path-traversal test input, not a checkout.
SYSTEM_DIRECTORIES = frozenset({"etc", "proc", "dev", "sys", "usr", "var"})
#: Third-party bundles committed as published (scripts/update-docs-assets.sh): their `../` are module
#: specifiers inside the bundle, not paths on disk.
VENDORED = ("performance_agent/static/",)


def tracked_files() -> list[str]:
    """Every file git tracks, as repository-relative POSIX paths."""
    listing = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True, text=True
    ).stdout
    return sorted(name for name in listing.split("\0") if name)


def _levels_up(match: re.Match[str]) -> int:
    chain = match.group("chain").count(".parent")
    index = match.group("index")
    return chain + (int(index) + 1 if index is not None else 0)


def _climbs_out(start: list[str], target: str) -> bool:
    """Whether `target` resolved from directory `start` (a list of parts) goes above the repository root."""
    parts = list(start)
    for part in PurePosixPath(target).parts:
        if part == "..":
            if not parts:
                first = next((p for p in PurePosixPath(target).parts if p != ".."), "")
                return first not in SYSTEM_DIRECTORIES
            parts.pop()
        elif part != ".":
            parts.append(part)
    return False


def _relative_problem(path: str, target: str, known: frozenset[str]) -> str | None:
    """Why a `../` path written in `path` is wrong, or None when it stays inside the repository.

    A Markdown link resolves from the document's folder and must name a tracked file or folder. In
    code, scripts and config a relative path may be read from the file's folder or from the
    repository root (the working directory of every make target), so it must stay inside from both.
    """
    here = [*PurePosixPath(path).parent.parts]
    if path.endswith(".md"):
        if _climbs_out(here, target):
            return f"climbs out of the repository: {target}"
        resolved = PurePosixPath(*here, target.rstrip("/"))
        parts: list[str] = []
        for part in resolved.parts:
            if part == "..":
                parts.pop()
            elif part != ".":
                parts.append(part)
        name = "/".join(parts)
        return None if name in known else f"names nothing in the repository: {target} (resolves to {name or '.'})"
    if _climbs_out(here, target) or _climbs_out([], target):
        return f"climbs out of the repository: {target}"
    return None


def problems_in(path: str, text: str, known: frozenset[str]) -> list[str]:
    """Every line of `text` (the content of tracked file `path`) that reaches outside the repository."""
    depth = len(PurePosixPath(path).parts)
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path}:{number}"
        for match in DEVELOPER_PATH.finditer(line):
            if not any(path == allowed and allowed_text in line for allowed, allowed_text in ALLOWED_PATHS):
                found.append(f"{where}: path on a developer's machine: {line[match.start() : match.start() + 60]}")
        for match in FILE_PARENTS.finditer(line):
            if _levels_up(match) > depth:
                found.append(f"{where}: Path(__file__) climbs {_levels_up(match)} levels from depth {depth}")
        for match in () if path.startswith(VENDORED) else RELATIVE_UP.finditer(line):
            problem = _relative_problem(path, match.group(0), known)
            if problem is not None:
                found.append(f"{where}: {problem}")
        for match in NOTE_CITATION.finditer(line):
            if not any(name.startswith("docs/") and name.endswith("/" + match.group(0)) for name in known):
                found.append(f"{where}: cites a note that does not ship: {match.group(0)}")
        found.extend(f"{where}: cites a note folder outside the repository" for _ in NOTE_FOLDER.finditer(line))
    return found


def _known_paths(files: list[str]) -> frozenset[str]:
    """Tracked files and every directory holding one: what a `../` path may name."""
    known = set(files)
    for name in files:
        known.update(str(parent) for parent in PurePosixPath(name).parents if str(parent) != ".")
    return frozenset(known)


def test_no_tracked_file_reaches_outside_the_repository() -> None:
    files = tracked_files()
    assert "README.md" in files
    known = _known_paths(files)
    problems: list[str] = []
    for name in files:
        try:
            text = (REPO_ROOT / name).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):
            continue  # binary, or deleted in the work tree but not yet from the index
        problems.extend(problems_in(name, text, known))
    assert not problems, "\n".join(problems)


def test_every_fixture_page_is_tracked_with_its_sources() -> None:
    files = tracked_files()
    pages = [name for name in files if name.startswith("tests/fixtures/metrics/") and name.endswith(".prom")]
    assert pages
    sources = (REPO_ROOT / "tests" / "fixtures" / "metrics" / "SOURCES.md").read_text(encoding="utf-8")
    for page in pages:
        assert f"`{PurePosixPath(page).name}`" in sources, page


KNOWN = _known_paths(["README.md", "docs/api.md", "docs/sources.md", "tests/paths.py", "tests/unit/test_a.py"])
HOME = "/" + "home/alice/src/performance-agent/tests"
WORK = "/" + "work/" + "shared/" + "fixtures/metrics"


@pytest.mark.parametrize(
    ("path", "line", "reason"),
    [
        ("tests/unit/test_a.py", f'PAGES = Path("{WORK}")', "developer's machine"),
        ("docs/api.md", f"Clone into {HOME} first.", "developer's machine"),
        ("README.md", "see /" + "Users/bob/performance-agent", "developer's machine"),
        ("tests/unit/test_a.py", 'd = "/' + 'tmp/tmp.x81Ab/p/tests"', "developer's machine"),
        ("tests/unit/test_a.py", 'd = "/' + 'tmp/pytest-of-ci/pytest-3/x"', "developer's machine"),
        ("Makefile", "\tcd /" + "root/checkout && make", "developer's machine"),
        ("README.md", "C:" + "\\Users\\bob\\agent", "developer's machine"),
        ("tests/unit/test_a.py", "ROOT = Path(__file__)" + ".resolve().parents[3]", "climbs 4 levels"),
        ("tests/paths.py", "ROOT = Path(__file__)" + ".parent.parent.parent", "climbs 3 levels"),
        ("tests/unit/test_a.py", 'NOTES = "..' + "/.." + "/.." + '/shared/notes.md"', "climbs out"),
        ("README.md", "[notes](.." + "/shared/x.md)", "climbs out"),
        ("docs/api.md", "[gone](.." + "/docs/nothing.md)", "names nothing"),
        ("docs/api.md", "Facts from `engine-" + "knobs.md` §1.2.", "does not ship"),
        ("docs/api.md", "see rollout-" + "anchors.md §4.4", "does not ship"),
        ("docs/api.md", "from `shared/" + "reference/x.md`", "note folder"),
        ("performance_agent/x.py", "Facts from `.." + "/shared/x.md`.", "climbs out"),
        ("docs/api.md", "as the refer" + "ence §3 lists", "note folder"),
    ],
)
def test_the_scan_catches(path: str, line: str, reason: str) -> None:
    problems = problems_in(path, line, KNOWN)
    assert any(reason in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("tests/unit/test_a.py", 'open("/proc/self/status")'),
        ("docs/api.md", "the database is /var/lib/performance-agent/agent.db"),
        ("docs/api.md", "the image installs into /opt/venv and reads /etc/ssl/certs"),
        ("tests/unit/test_a.py", 'db = "/tmp/agent.db"'),
        ("docs/api.md", "https://github.com/foo/bar/blob/main/home/x.md and https://x.org/work/y"),
        ("tests/unit/test_a.py", 'value = "$HOME/work/x" if f"{base}/home/y" else ""'),
        ("Containerfile", "RUN --mount=type=cache,target=/" + "root/.cache/pip \\"),
        ("tests/paths.py", "REPO_ROOT = Path(__file__).resolve().parent.parent"),
        ("tests/unit/test_a.py", "ROOT = Path(__file__).resolve().parents[2]"),
        ("docs/api.md", "[readme](.." + "/README.md#supported-engines) and [tests](.." + "/tests/)"),
        ("tests/unit/test_a.py", 'probe = "..' + '/../../../etc/passwd"'),
        ("scripts/x.sh", 'cd "$(dirname "$0")/.."'),
        ("docs/api.md", "listed in [sources.md](sources.md) with vLLM `docs/usage/metrics.md` @044a0565"),
        ("docs/api.md", "at 100% the pre-rollout baseline is the reference."),
    ],
)
def test_the_scan_leaves_alone(path: str, line: str) -> None:
    assert problems_in(path, line, KNOWN) == []


def test_a_note_shipped_under_docs_may_be_cited() -> None:
    known = _known_paths(["docs/engine-" + "knobs.md"])
    assert problems_in("README.md", "see docs/engine-" + "knobs.md", known) == []
    assert problems_in("README.md", "see engine-" + "knobs.md", KNOWN) != []
