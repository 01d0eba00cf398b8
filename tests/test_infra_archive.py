"""Function source archives: deterministic, content-addressed, and holding what Cloud Functions loads."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from infra import archive


def fake_repo(root: Path) -> Path:
    for package in ("functions", "shared"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "functions" / "main.py").write_text("from functions.hello import hello\n__all__ = ['hello']\n")
    (root / "functions" / "hello.py").write_text("def hello(request):\n    return 'hi'\n")
    (root / "shared" / "config.py").write_text("X = 1\n")
    (root / "shared" / "__pycache__").mkdir()
    (root / "shared" / "__pycache__" / "config.cpython-311.pyc").write_bytes(b"\0")
    (root / "shared" / "tests").mkdir()
    (root / "shared" / "tests" / "test_x.py").write_text("")
    (root / "shared" / "stale.pyc").write_bytes(b"\0")
    return root


def test_archive_contents(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    built = archive.build_archive("fns", tmp_path / "out", "flask==3.1.3\n", repo_root=repo)
    with zipfile.ZipFile(built.path) as zf:
        names = zf.namelist()
        assert names == sorted(names)
        assert set(names) == {
            "main.py",
            "requirements.txt",
            "functions/__init__.py",
            "functions/main.py",
            "functions/hello.py",
            "shared/__init__.py",
            "shared/config.py",
        }
        assert zf.read("requirements.txt") == b"flask==3.1.3\n"
        assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())
    assert built.path.name == f"fns-{built.sha256[:16]}.zip"
    assert built.object_name == f"functions/{built.path.name}"


def test_root_main_reexports_the_entry_points(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    built = archive.build_archive("fns", tmp_path / "out", "", repo_root=repo)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(built.path) as zf:
        zf.extractall(unpacked)
    namespace: dict = {}
    # Import the unpacked tree's ``functions`` package, not the repository's (restore it afterwards).
    saved = {
        m: sys.modules.pop(m) for m in list(sys.modules) if m == "functions" or m.startswith("functions.")
    }
    sys.path.insert(0, str(unpacked))
    try:
        exec(compile((unpacked / "main.py").read_text(), "main.py", "exec"), namespace)  # noqa: S102
    finally:
        sys.path.remove(str(unpacked))
        for mod in [m for m in sys.modules if m == "functions" or m.startswith("functions.")]:
            del sys.modules[mod]
        sys.modules.update(saved)
    assert namespace["hello"](None) == "hi"


def test_same_tree_same_bytes_and_name_a_change_gives_a_new_name(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    first = archive.build_archive("fns", tmp_path / "a", "x==1\n", repo_root=repo)
    again = archive.build_archive("fns", tmp_path / "b", "x==1\n", repo_root=repo)
    assert first.path.name == again.path.name
    assert first.path.read_bytes() == again.path.read_bytes()
    # Touching a file without changing it changes nothing (mtimes are not recorded).
    (repo / "shared" / "config.py").touch()
    assert archive.build_archive("fns", tmp_path / "c", "x==1\n", repo_root=repo).path.name == first.path.name
    # A code change, a pin change: new names.
    (repo / "shared" / "config.py").write_text("X = 2\n")
    code_change = archive.build_archive("fns", tmp_path / "d", "x==1\n", repo_root=repo)
    pin_change = archive.build_archive("fns", tmp_path / "e", "x==2\n", repo_root=repo)
    assert len({first.path.name, code_change.path.name, pin_change.path.name}) == 3
    # Ignored files do not count.
    (repo / "shared" / "__pycache__" / "other.pyc").write_bytes(b"\1")
    assert (
        archive.build_archive("fns", tmp_path / "f", "x==2\n", repo_root=repo).path.name
        == pin_change.path.name
    )


def test_vendored_packages_are_included_as_files(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    vendored = tmp_path / "site" / "modelpkg"
    (vendored / "model").mkdir(parents=True)
    (vendored / "__init__.py").write_text("")
    (vendored / "model" / "weights.bin").write_bytes(b"w" * 100)
    built = archive.build_archive("fns", tmp_path / "out", "", vendor=[vendored], repo_root=repo)
    assert {"modelpkg/__init__.py", "modelpkg/model/weights.bin"} <= set(built.names)


def test_requirements_are_pinned_from_the_environment_without_deploy_tools() -> None:
    roots = archive.runtime_roots()
    assert "functions-framework" in roots and "pulumi" not in roots and "pulumi-gcp" not in roots
    text = archive.pinned_requirements(["functions-framework"])
    lines = text.splitlines()
    assert any(line.startswith("functions-framework==") for line in lines)
    assert any(line.lower().startswith("flask==") for line in lines)  # a dependency, pinned too
    assert all("==" in line for line in lines)


def test_missing_package_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not installed"):
        archive.pinned_requirements(["surely-not-installed-askbase-pkg"])
    with pytest.raises(RuntimeError, match="not a package"):
        archive.build_archive("fns", tmp_path / "out", "", repo_root=tmp_path)
