"""Portable exports of askbase's Firestore data, for migration and for proving backups restore.

An export is a gzipped tar with two members:

* ``manifest.json``: format version, project, created_at, the published snapshot id (the index itself
  stays in GCS; an export names the snapshot so an import can point at it), and per-collection document
  counts and content hashes;
* ``documents.jsonl``: one line per document, ``{"path": "bots/abc/activity/x", "data": {...}}``, with
  Firestore types tagged so they round-trip exactly (timestamps, bytes, references, geo points).

Imports write each document under its original path with ``set()``, so importing the same archive twice
leaves the same data (idempotent), and an interrupted import is finished by running it again. Secrets stay
as they are stored: bot tokens are AES-GCM ciphertext, so the target environment needs the same token key.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1 import DocumentReference, GeoPoint

FORMAT_VERSION = 1
_TAG = "__askbase_type__"


# --- value encoding (pure) ----------------------------------------------------------------------------
def encode_value(value: Any) -> Any:
    """Turn a Firestore value into JSON, tagging the types JSON lacks."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return {_TAG: "timestamp", "value": value.astimezone(dt.UTC).isoformat()}
    if isinstance(value, bytes):
        return {_TAG: "bytes", "value": base64.b64encode(value).decode()}
    if isinstance(value, DocumentReference):
        return {_TAG: "reference", "value": value.path}
    if isinstance(value, GeoPoint):
        return {_TAG: "geopoint", "value": [value.latitude, value.longitude]}
    if isinstance(value, dict):
        return {k: encode_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    return value


def decode_value(value: Any, db: firestore.Client | None = None) -> Any:
    """Inverse of :func:`encode_value`; references need ``db`` to be rebuilt."""
    if isinstance(value, dict):
        tag = value.get(_TAG)
        if tag == "timestamp":
            return dt.datetime.fromisoformat(value["value"])
        if tag == "bytes":
            return base64.b64decode(value["value"])
        if tag == "reference":
            return db.document(value["value"]) if db is not None else value["value"]
        if tag == "geopoint":
            return GeoPoint(*value["value"])
        return {k: decode_value(v, db) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v, db) for v in value]
    return value


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def summarize(records: Iterable[tuple[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per top-level collection: document count and a hash independent of document order."""
    digests: dict[str, list[str]] = {}
    for path, data in records:
        top = path.split("/", 1)[0]
        digest = hashlib.sha256(path.encode() + b"\0" + _canonical(data)).hexdigest()
        digests.setdefault(top, []).append(digest)
    return {
        name: {"count": len(items), "sha256": hashlib.sha256("".join(sorted(items)).encode()).hexdigest()}
        for name, items in sorted(digests.items())
    }


# --- Firestore I/O ------------------------------------------------------------------------------------
def iter_documents(db: firestore.Client) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every document in the database, sub-collections included, as (path, encoded data)."""

    def walk(collection: firestore.CollectionReference) -> Iterator[tuple[str, dict[str, Any]]]:
        # list_documents also yields "missing" parents that only hold sub-collections.
        for ref in collection.list_documents(page_size=500):
            snap = ref.get()
            if snap.exists:
                yield ref.path, encode_value(snap.to_dict())
            for sub in ref.collections():
                yield from walk(sub)

    for collection in sorted(db.collections(), key=lambda c: c.id):
        yield from walk(collection)


@dataclass
class ExportResult:
    manifest: dict[str, Any]
    data: bytes


def export_database(db: firestore.Client, snapshot_id: str | None) -> ExportResult:
    """Read every document and pack them with a manifest into a tar.gz held in memory."""
    lines: list[bytes] = []
    records: list[tuple[str, Any]] = []
    for path, data in iter_documents(db):
        records.append((path, data))
        lines.append(_canonical({"path": path, "data": data}) + b"\n")
    manifest = {
        "format": FORMAT_VERSION,
        "project": db.project,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "snapshot_id": snapshot_id,
        "collections": summarize(records),
        "documents": len(records),
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in (
            ("manifest.json", json.dumps(manifest, indent=2).encode()),
            ("documents.jsonl", b"".join(lines)),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(payload))
    return ExportResult(manifest=manifest, data=buf.getvalue())


class BackupFormatError(ValueError):
    """The archive is not an askbase export, or it is damaged."""


def read_archive(data: bytes) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """Parse and check an export: members, format version, and that counts and hashes match."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            if set(members) != {"manifest.json", "documents.jsonl"}:
                raise BackupFormatError(f"unexpected archive members: {sorted(members)}")
            manifest = json.loads(tar.extractfile(members["manifest.json"]).read())  # type: ignore[union-attr]
            raw = tar.extractfile(members["documents.jsonl"]).read()  # type: ignore[union-attr]
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError, json.JSONDecodeError) as exc:
        raise BackupFormatError(f"not a readable askbase export: {exc}") from exc
    if manifest.get("format") != FORMAT_VERSION:
        raise BackupFormatError(f"unsupported export format {manifest.get('format')!r}")
    records: list[tuple[str, Any]] = []
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            item = json.loads(line)
            records.append((str(item["path"]), item["data"]))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise BackupFormatError(f"documents.jsonl line {number} is damaged: {exc}") from exc
        if len(records[-1][0].split("/")) % 2:
            path = records[-1][0]
            raise BackupFormatError(f"documents.jsonl line {number}: {path!r} is not a document path")
    if summarize(records) != manifest.get("collections"):
        raise BackupFormatError("document counts or hashes do not match the manifest")
    return manifest, records


def import_database(db: firestore.Client, data: bytes, batch_size: int = 400) -> dict[str, Any]:
    """Write every document of an export into ``db`` under its original path. Idempotent."""
    manifest, records = read_archive(data)
    batch = db.batch()
    pending = 0
    for path, encoded in records:
        batch.set(db.document(path), decode_value(encoded, db))
        pending += 1
        if pending >= batch_size:
            batch.commit()
            batch, pending = db.batch(), 0
    if pending:
        batch.commit()
    return manifest


def compare(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Differences between two collection summaries, as readable lines (empty when identical)."""
    problems = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want is None and got is not None:
            problems.append(f"{name}: {got['count']} unexpected documents")
        elif got is None and want is not None:
            problems.append(f"{name}: all {want['count']} documents missing")
        elif want is not None and got is not None and want != got:
            problems.append(
                f"{name}: expected {want['count']} docs ({want['sha256'][:12]}), "
                f"found {got['count']} ({got['sha256'][:12]})"
            )
    return problems
