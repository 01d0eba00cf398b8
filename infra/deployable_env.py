"""A deployable's runtime rebuilt on this machine from the development virtualenv, for the proof tests
and the benchmarks: a virtualenv holding only the deployable's pinned set (:func:`link_environment`,
the set from :mod:`infra.deps`), and the code its image holds (:func:`image_source`).

What a deployable imports there comes from its set or fails, so a test that passes here passes in the
artifact that is deployed, not only in the development virtualenv that holds every group.
"""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sysconfig
import venv
from collections.abc import Iterable
from pathlib import Path

from infra.deps import REPO_ROOT, Declaration, DepsError, canon, read_pins, requirements_path


def site_packages() -> Path:
    """This interpreter's site-packages (the development virtualenv's)."""
    return Path(sysconfig.get_paths()["purelib"])


def _owners(site: Path) -> dict[tuple[str, ...], set[str]]:
    """Every file a distribution of ``site`` recorded (RECORD), as path parts → the owning names."""
    owners: dict[tuple[str, ...], set[str]] = {}
    for dist in md.distributions(path=[str(site)]):
        key = canon(dist.metadata["Name"])
        for file in dist.files or []:
            parts = Path(file).parts
            if not parts or ".." in parts:  # console scripts and data outside site-packages
                continue
            owners.setdefault(parts, set()).add(key)
    return owners


def installed_names(deployable: str) -> set[str]:
    """What a deployable's runtime holds: its pinned set, plus what a container installs with
    --no-deps beside it (a function archive vendors those as files instead)."""
    names = set(read_pins(requirements_path(deployable)))
    declared = Declaration.load().deployables[deployable]
    if declared.install == "no-deps":
        names |= set(declared.nodeps)
    return names


def image_source(dest: Path, service: str) -> Path:
    """The code a service image holds (its Dockerfile copies shared/, services/__init__.py and
    services/<service>/), as symlinks under ``dest/<service>-src``; returns that directory."""
    app = dest / f"{service}-src"
    (app / "services").mkdir(parents=True)
    (app / "shared").symlink_to(REPO_ROOT / "shared")
    (app / "services" / "__init__.py").symlink_to(REPO_ROOT / "services" / "__init__.py")
    (app / "services" / service).symlink_to(REPO_ROOT / "services" / service)
    return app


def link_environment(names: Iterable[str], dest: Path, source: Path | None = None) -> Path:
    """A virtualenv at ``dest`` holding only the distributions ``names`` (and the standard library):
    their files, as recorded in RECORD, symlinked from this virtualenv (which must hold them), plus their
    console scripts. Returns its python. For the proof test and the benchmarks: what a deployable
    imports there comes from its set or fails. ``source`` (a directory) is put on the path with a
    ``.pth`` file, as the project's code copied into an image would be.

    A directory whose recorded files all belong to ``names`` is linked whole (its ``__pycache__``
    comes along); a shared one (``google/``, site-packages itself) is created and filled file by file.
    """
    wanted = {canon(n) for n in names}
    site = site_packages()
    owners = _owners(site)
    present = {o for os_ in owners.values() for o in os_}
    missing = sorted(wanted - present)
    if missing:
        raise DepsError(f"not installed in this virtualenv: {', '.join(missing)}")
    dir_owners: dict[tuple[str, ...], set[str]] = {}
    for parts, who in owners.items():
        for i in range(1, len(parts)):
            dir_owners.setdefault(parts[:i], set()).update(who)

    venv.EnvBuilder(with_pip=False, symlinks=True, clear=True).create(dest)
    python = dest / "bin" / "python"
    out = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )

    def link(parts: tuple[str, ...]) -> None:
        target = out.joinpath(*parts)
        if parts in dir_owners:
            who = dir_owners[parts]
            if not who & wanted:
                return
            if who <= wanted:
                target.symlink_to(site.joinpath(*parts), target_is_directory=True)
                return
            target.mkdir()
            for child in sorted({p[: len(parts) + 1] for p in owners if p[: len(parts)] == parts}):
                link(child)
        elif owners.get(parts, set()) & wanted and site.joinpath(*parts).exists():
            target.symlink_to(site.joinpath(*parts))

    for top in sorted({p[:1] for p in owners}):
        link(top)
    if source is not None:
        (out / "askbase-source.pth").write_text(f"{Path(source).resolve()}\n")
    for dist in md.distributions(path=[str(site)]):
        if canon(dist.metadata["Name"]) not in wanted:
            continue
        for ep in dist.entry_points:
            if ep.group != "console_scripts":
                continue
            module, _, attr = ep.value.partition(":")
            script = dest / "bin" / ep.name
            script.write_text(
                f"#!{python}\nimport sys\nfrom {module} import {attr.split('.')[0]}\nsys.exit({attr}())\n"
            )
            script.chmod(0o755)
    return python
