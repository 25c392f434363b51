""".dockerignore: Docker's documented examples, checked by walking real directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from containerlab.build import dockerignore
from containerlab.build.dockerignore import load, walk
from containerlab.errors import BuildError

TREE = [
    "Dockerfile",
    "README.md",
    "README-secret.md",
    "CHANGES.md",
    "main.go",
    "temp",
    "tempa",
    "tempab",
    "temporary.txt",
    "somedir/temporary.txt",
    "somedir/temp/inner.txt",
    "somedir/keep.txt",
    "somedir/subdir/temporary.txt",
    "somedir/subdir/x.go",
    "somedir/subdir/deeper/temp1",
    "docs/guide.md",
    "docs/img/a.png",
    "arr[0].txt",
]


def make(tmp_path: Path, ignore: str, files: list[str] = TREE) -> Path:
    for rel in files:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    (tmp_path / ".dockerignore").write_text(ignore)
    return tmp_path


def context(tmp_path: Path, ignore: str) -> set[str]:
    root = make(tmp_path, ignore)
    return set(walk(root, load(root)))


ALL = set(TREE) | {".dockerignore"}

# (the .dockerignore, what the build context loses) - the examples of Docker's docs.
CASES = [
    ("# comment\n", set()),
    ("*/temp*\n", {"somedir/temporary.txt", "somedir/temp/inner.txt"}),
    ("*/*/temp*\n", {"somedir/subdir/temporary.txt"}),
    ("temp?\n", {"tempa"}),
    ("**/*.go\n", {"main.go", "somedir/subdir/x.go"}),
    ("*.md\n!README.md\n", {"README-secret.md", "CHANGES.md"}),
    ("*.md\n!README*.md\nREADME-secret.md\n", {"CHANGES.md", "README-secret.md"}),
    ("*.md\nREADME-secret.md\n!README*.md\n", {"CHANGES.md"}),
    ("/somedir/subdir\n", {p for p in TREE if p.startswith("somedir/subdir/")}),
    ("./docs\n", {"docs/guide.md", "docs/img/a.png"}),
    ("docs/../main.go\n", {"main.go"}),
    ("  tempab  \n", {"tempab"}),
    (
        "**/temp*\n",
        {p for p in TREE if p.rsplit("/", 1)[-1].startswith("temp")} | {"somedir/temp/inner.txt"},
    ),
    ("somedir/**\n", {p for p in TREE if p.startswith("somedir/")}),
    ("temp[a-z]*\n", {"tempa", "tempab", "temporary.txt"}),
    ("arr[[]0].txt\n", {"arr[0].txt"}),
    ("Dockerfile\n.dockerignore\n", {"Dockerfile", ".dockerignore"}),
]


@pytest.mark.parametrize(("ignore", "lost"), CASES)
def test_documented_examples(tmp_path: Path, ignore: str, lost: set[str]) -> None:
    assert context(tmp_path, ignore) == ALL - lost


def test_include_only_with_star_then_exceptions(tmp_path: Path) -> None:
    assert context(tmp_path, "*\n!README.md\n!docs\n") == {
        "README.md",
        "docs/guide.md",
        "docs/img/a.png",
    }


def test_an_ignored_directory_is_walked_for_its_exceptions(tmp_path: Path) -> None:
    root = make(tmp_path, "somedir\n!somedir/subdir/x.go\n")
    assert set(walk(root, load(root))) == ALL - {p for p in TREE if p.startswith("somedir/")} | {
        "somedir/subdir/x.go"
    }
    with_dirs = list(walk(root, load(root), include_dirs=True))
    assert (
        "somedir" in with_dirs and "somedir/subdir" in with_dirs and "somedir/temp" not in with_dirs
    )
    assert (
        with_dirs.index("somedir")
        < with_dirs.index("somedir/subdir")
        < with_dirs.index("somedir/subdir/x.go")
    )


def test_walk_is_sorted_and_deterministic(tmp_path: Path) -> None:
    root = make(tmp_path, "")
    first = list(walk(root, load(root)))
    assert first == list(walk(root, load(root)))
    assert (
        first.index("README.md")
        < first.index("somedir/keep.txt")
        < first.index("somedir/subdir/x.go")
    )


def test_no_dockerignore_ignores_nothing(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    matcher = load(tmp_path)
    assert matcher.patterns == () and not matcher.ignored("a")
    assert list(walk(tmp_path, matcher)) == ["a"]


def test_symlinks_are_entries_not_followed(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "f").write_text("f")
    (tmp_path / "link").symlink_to("real")
    assert list(walk(tmp_path, load(tmp_path))) == ["link", "real/f"]


def test_matcher_directly() -> None:
    m = dockerignore.parse(
        "\ufeff# c\n#not a pattern either\n node_modules\n!node_modules/keep\n*.pyc\n"
    )
    assert m.ignored("node_modules/x/y.js")
    assert not m.ignored("node_modules/keep")
    assert m.ignored("a/b.pyc") is False  # * does not cross /
    assert m.ignored("b.pyc", is_dir=False)
    assert not m.ignored(".")
    assert [p.line for p in m.patterns] == [3, 4, 5]


def test_bad_patterns_name_the_line() -> None:
    with pytest.raises(BuildError, match=r"^\.dockerignore:2: illegal exclusion pattern"):
        dockerignore.parse("a\n!\n")
    with pytest.raises(BuildError, match=r"^\.dockerignore:1: bad pattern 'a\[b'"):
        dockerignore.parse("a[b\n")
