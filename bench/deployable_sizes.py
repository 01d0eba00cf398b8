"""Installed size of each deployable's dependency set (deploy/requirements/*.txt), and of what shipped before.

Usage: .venv/bin/python bench/deployable_sizes.py [NAME ...]   (default: every row)

Each row is installed from its requirements file with ``pip install --no-deps --target <tmp> -r FILE``
(wheels from pip's cache, the configured indexes or PyPI; bytecode compiled, as pip does by default) and
measured: the bytes of every file (apparent size, MB = 10^6 bytes), the part that is bytecode
(``__pycache__``), and the number of distributions. Rows:

- ``qa``, ``botrunner``, ``webhooks``, ``scrape``: the sets ``python -m infra.deps lock`` writes;
- ``nodeps``: the model package (``deploy/requirements/nodeps.txt``), installed beside ``qa`` (the scrape
  archive carries its files instead);
- ``before: function archives``: what each function archive's ``requirements.txt`` held before the
  per-deployable sets: the closure of every runtime requirement pyproject.toml declared (minus Pulumi);
- ``before: images``: what the qa and botrunner images installed before: the whole ``requirements.lock``
  (runtime, tests, lint, browsers, Pulumi) + the model package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra import deps  # noqa: E402

# pyproject.toml's [project].dependencies before the per-deployable sets: every function archive's
# requirements.txt was their closure (minus the four Pulumi packages), pinned from the virtualenv.
BEFORE_RUNTIME_ROOTS = [
    "functions-framework",
    "google-cloud-storage",
    "google-cloud-firestore",
    "google-cloud-pubsub",
    "google-cloud-secret-manager",
    "google-auth",
    "google-genai",
    "chromadb",
    "flask",
    "gunicorn",
    "python-telegram-bot",
    "pynacl",
    "cryptography",
    "pydantic",
    "pydantic-settings",
    "click",
    "rich",
    "httpx",
    "trafilatura",
    "onnx",
    "onnxruntime",
    "tokenizers",
    "safetensors",
    "numpy",
    "zstandard",
]


# Declared then, imported by nothing, and no longer in requirements.lock: its pin when it was.
GONE = {"python-telegram-bot": ("python-telegram-bot", "22.8", ["httpx"])}


def _metadata(name: str) -> tuple[str, str, list[str]]:
    try:
        return deps.installed_metadata(name)
    except deps.DepsError:
        if deps.canon(name) in GONE:
            return GONE[deps.canon(name)]
        raise


def before_functions_text() -> str:
    """The old archives' requirements.txt: pinned from this virtualenv, as infra/archive.py did."""
    closure = deps.resolve([deps.Requirement(r) for r in BEFORE_RUNTIME_ROOTS], metadata=_metadata)
    lines = []
    for key in sorted(closure.extras):
        name, version, _requires = _metadata(key)
        lines.append(f"{name}=={version}")
    return "\n".join(lines) + "\n"


def rows(tmp: Path) -> dict[str, Path]:
    out = {name: deps.requirements_path(name) for name in deps.DEPLOYABLES}
    out["nodeps"] = deps.OUT_DIR / deps.NODEPS_FILE
    before = tmp / "before-functions.txt"
    before.write_text(before_functions_text())
    out["before: function archives"] = before
    images = tmp / "before-images.txt"
    lock = (ROOT / "requirements.lock").read_text() + "python-telegram-bot==22.8\n"
    images.write_text(lock + (ROOT / "requirements-nodeps.txt").read_text())
    out["before: images"] = images
    return out


def measure(target: Path) -> tuple[int, int, int]:
    """(all bytes, bytecode bytes, distributions) under ``target``."""
    total = pyc = 0
    for dirpath, _dirnames, filenames in os.walk(target):
        for name in filenames:
            size = (Path(dirpath) / name).lstat().st_size
            total += size
            if "__pycache__" in Path(dirpath).parts:
                pyc += size
    dists = sum(1 for p in target.iterdir() if p.name.endswith(".dist-info"))
    return total, pyc, dists


def install(requirements: Path, target: Path) -> float:
    started = time.perf_counter()
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    subprocess.run(
        [*pip, "--target", str(target), "-r", str(requirements)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    wanted = sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="askbase-sizes-") as tmp:
        tmpdir = Path(tmp)
        table = []
        for name, requirements in rows(tmpdir).items():
            if wanted and name not in wanted and name.split(":")[0] not in wanted:
                continue
            target = tmpdir / name.replace(" ", "_").replace(":", "")
            seconds = install(requirements, target)
            total, pyc, dists = measure(target)
            table.append((name, dists, total, pyc, seconds))
            print(f"{name}: {dists} distributions, {total / 1e6:.1f} MB", file=sys.stderr)
    print(f"{'set':<28}{'dists':>6}{'installed MB':>14}{'of it bytecode':>16}{'without bytecode':>18}")
    for name, dists, total, pyc, _seconds in table:
        print(f"{name:<28}{dists:>6}{total / 1e6:>14.1f}{pyc / 1e6:>16.1f}{(total - pyc) / 1e6:>18.1f}")


if __name__ == "__main__":
    main()
