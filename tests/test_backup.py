"""Export / import / verify: Firestore data survives a trip through a portable archive."""

from __future__ import annotations

import datetime as dt
import io
import tarfile

import pytest
from click.testing import CliRunner
from google.cloud.firestore_v1 import GeoPoint

from shared import backup, gcp
from shared.cli import cli

pytestmark = pytest.mark.emulators


def _populate(db) -> None:
    when = dt.datetime(2026, 11, 1, 12, 30, 15, 123000, tzinfo=dt.UTC)
    db.collection("bots").document("b1").set(
        {
            "name": "Docs bot",
            "token_enc": b"\x00\x01ciphertext",
            "created_at": when,
            "platform_info": {"username": "docs_bot", "ids": [1, 2, 3]},
            "where": GeoPoint(52.5, 13.4),
            "owner_ref": db.document("users/u1"),
        }
    )
    db.collection("bots").document("b1").collection("activity").document("a1").set(
        {"kind": "start", "at": when, "message": "started"}
    )
    db.collection("conversations").document("c1").set({"owner": "u1", "title": "Hi", "updated_at": when})
    db.collection("conversations").document("c1").collection("messages").document("m1").set(
        {"role": "user", "text": "Ünïcode ✓ question"}
    )


def test_export_import_roundtrip_is_exact_and_idempotent(emulators) -> None:
    db = gcp.firestore_client(emulators.project)
    _populate(db)
    exported = backup.export_database(db, snapshot_id="snap-1")
    assert exported.manifest["collections"]["bots"]["count"] == 2  # bot + its activity entry
    assert exported.manifest["collections"]["conversations"]["count"] == 2
    assert exported.manifest["snapshot_id"] == "snap-1"

    emulators.reset_firestore()
    assert backup.export_database(db, None).manifest["documents"] == 0
    backup.import_database(db, exported.data)
    backup.import_database(db, exported.data)  # twice: same result
    again = backup.export_database(db, "snap-1")
    assert backup.compare(exported.manifest["collections"], again.manifest["collections"]) == []
    bot = db.collection("bots").document("b1").get().to_dict()
    assert bot["token_enc"] == b"\x00\x01ciphertext"
    assert bot["created_at"] == dt.datetime(2026, 11, 1, 12, 30, 15, 123000, tzinfo=dt.UTC)
    assert bot["owner_ref"].path == "users/u1"
    assert bot["where"] == GeoPoint(52.5, 13.4)


def test_damaged_archive_is_refused_and_writes_nothing(emulators) -> None:
    db = gcp.firestore_client(emulators.project)
    _populate(db)
    good = backup.export_database(db, None).data
    emulators.reset_firestore()
    with pytest.raises(backup.BackupFormatError):
        backup.import_database(db, good[: len(good) // 2])  # truncated
    with pytest.raises(backup.BackupFormatError):
        backup.import_database(db, b"definitely not a tarball")
    # A tampered document: the manifest hashes no longer match.
    with tarfile.open(fileobj=io.BytesIO(good), mode="r:gz") as src:
        docs = src.extractfile("documents.jsonl").read().replace(b"Docs bot", b"Evil bot")
        manifest = src.extractfile("manifest.json").read()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in (("manifest.json", manifest), ("documents.jsonl", docs)):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(backup.BackupFormatError, match="do not match"):
        backup.import_database(db, buf.getvalue())
    assert list(db.collections()) == []


def test_cli_export_import_and_verify(emulators, settings, tmp_path) -> None:
    db = gcp.firestore_client(emulators.project)
    _populate(db)
    runner = CliRunner()
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    result = runner.invoke(cli, ["export", str(out_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "exported 4 documents" in result.output
    [archive] = list(out_dir.glob("askbase-export-*.tar.gz"))

    result = runner.invoke(cli, ["backup", "verify", str(out_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "counts and hashes match" in result.output

    emulators.reset_firestore()
    result = runner.invoke(cli, ["import", str(archive)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert db.collection("bots").document("b1").get().get("name") == "Docs bot"

    archive.write_bytes(archive.read_bytes()[:100])
    result = runner.invoke(cli, ["backup", "verify", str(archive)])
    assert result.exit_code != 0
    assert "not a readable askbase export" in result.output
