"""A service's Docker build context as a deterministic archive, for a build that runs elsewhere
(Cloud Build: :mod:`infra.components.images`).

What goes in is what ``docker build`` could read: the sources the Dockerfile ``COPY``\\ s or ``ADD``\\ s
(:func:`dockerfile_sources`), with ``.dockerignore`` applied as Docker applies it (:class:`DockerIgnore`),
plus the Dockerfile and ``.dockerignore`` themselves. The archive is named by its content hash and packed
with fixed times, owners and modes, so it changes exactly when the inputs do: a new archive is a new
upload and a new build, an unchanged one is no change to the stack.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

CONTEXT_PREFIX = "images/"  # object name prefix in the build-inputs bucket


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A ``.dockerignore`` pattern (Go ``filepath.Match`` plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                out += "(?:.*/)?"
                i += 1
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out += re.escape(c)
            else:
                body = pattern[i + 1 : end]
                out += "[" + ("^" + body[1:] if body.startswith(("!", "^")) else body) + "]"
                i = end
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


@dataclass(frozen=True)
class DockerIgnore:
    """The rules of a ``.dockerignore``: the last matching pattern decides, ``!`` re-includes, and a
    pattern that matches a directory excludes everything under it."""

    rules: tuple[tuple[re.Pattern[str], bool], ...] = ()  # (pattern, excludes)

    @classmethod
    def parse(cls, text: str) -> DockerIgnore:
        rules = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            excludes = not line.startswith("!")
            line = line.lstrip("!").strip()
            line = os.path.normpath(line.lstrip("/")).replace(os.sep, "/")
            if line in (".", ""):
                continue
            rules.append((_pattern_regex(line), excludes))
        return cls(tuple(rules))

    @classmethod
    def read(cls, context: Path) -> DockerIgnore:
        path = context / ".dockerignore"
        return cls.parse(path.read_text()) if path.exists() else cls()

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for regex, excludes in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                result = excludes
        return result


_INSTRUCTION = re.compile(r"^\s*(COPY|ADD)\s+(.*)$", re.IGNORECASE)


def dockerfile_sources(dockerfile: Path) -> list[str]:
    """The context paths (or globs) a Dockerfile's ``COPY``/``ADD`` read; ``--from=`` copies read
    another stage, not the context, and are skipped."""
    text = re.sub(r"\\\r?\n", " ", dockerfile.read_text())  # join continuation lines
    sources: list[str] = []
    for line in text.splitlines():
        m = _INSTRUCTION.match(line)
        if not m:
            continue
        rest = m.group(2).strip()
        words = json.loads(rest) if rest.startswith("[") else rest.split()
        flags = [w for w in words if w.startswith("--")]
        if any(f.startswith("--from=") for f in flags):
            continue
        paths = [w for w in words if not w.startswith("--")]
        sources += paths[:-1]  # the last word is the destination
    return sources


def context_files(context: Path, dockerfile: Path) -> list[tuple[str, Path]]:
    """``(path in the archive, file)`` for every file the build can read, sorted; ``.dockerignore``
    applied as Docker would."""
    ignore = DockerIgnore.read(context)
    files: dict[str, Path] = {}

    def add(path: Path) -> None:
        rel = path.relative_to(context).as_posix()
        if not ignore.excluded(rel):
            files[rel] = path

    for source in dockerfile_sources(dockerfile):
        matches = sorted(glob.glob(source.rstrip("/") or ".", root_dir=context))
        if not matches and not glob.has_magic(source):
            raise FileNotFoundError(f"{dockerfile}: COPY source {source!r} is not in {context}")
        for match in matches:
            path = context / match
            if path.is_dir():
                for dirpath, dirnames, filenames in os.walk(path):
                    dirnames.sort()
                    for name in sorted(filenames):
                        add(Path(dirpath) / name)
            elif path.is_file():
                add(path)
    # The Dockerfile and .dockerignore themselves: docker build reads both.
    files[dockerfile.relative_to(context).as_posix()] = dockerfile
    if (context / ".dockerignore").exists():
        files[".dockerignore"] = context / ".dockerignore"
    return sorted(files.items())


@dataclass(frozen=True)
class BuiltContext:
    path: Path
    sha256: str
    names: tuple[str, ...]
    dockerfile: str  # the Dockerfile's path inside the archive

    @property
    def object_name(self) -> str:
        return f"{CONTEXT_PREFIX}{self.path.name}"

    @property
    def tag(self) -> str:
        """The image tag: the context's content hash, so a tag names exactly one set of inputs."""
        return f"src-{self.sha256[:16]}"


def build_context(name: str, context: Path, dockerfile: Path, out_dir: Path) -> BuiltContext:
    """Write ``<out_dir>/<name>-<hash16>.tar.gz`` (deterministic: sorted entries, fixed times, owners
    and modes, gzip without a timestamp) unless it exists; return what it holds."""
    entries = context_files(context, dockerfile)
    total = hashlib.sha256()
    for rel, path in entries:
        total.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    digest = total.hexdigest()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{digest[:16]}.tar.gz"
    if not path.exists():
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for rel, src in entries:
                data = src.read_bytes()
                info = tarfile.TarInfo(rel)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                tar.addfile(info, io.BytesIO(data))
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(gzip.compress(raw.getvalue(), compresslevel=6, mtime=0))
        tmp.replace(path)
        for old in out_dir.glob(f"{name}-*.tar.gz"):
            if old != path and re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{16}}\.tar\.gz", old.name):
                old.unlink(missing_ok=True)
    return BuiltContext(
        path=path,
        sha256=digest,
        names=tuple(n for n, _ in entries),
        dockerfile=dockerfile.relative_to(context).as_posix(),
    )
