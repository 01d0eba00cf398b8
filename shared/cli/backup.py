"""``askbase export``, ``askbase import`` and ``askbase backup verify``."""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path

import click

from shared import backup, gcp
from shared.config import get_settings

log = logging.getLogger(__name__)


def _write(target: str, data: bytes) -> str:
    settings = get_settings()
    if target.startswith("gs://"):
        bucket_name, _, key = target[5:].partition("/")
        if not key or key.endswith("/"):
            key += f"askbase-export-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.tar.gz"
        blob = gcp.storage_client(settings.project_id).bucket(bucket_name).blob(key)
        # Create-only: an export never overwrites an earlier one.
        blob.upload_from_string(data, content_type="application/gzip", if_generation_match=0)
        return f"gs://{bucket_name}/{key}"
    path = Path(target)
    if path.is_dir():
        path = path / f"askbase-export-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.tar.gz"
    tmp = path.with_suffix(path.suffix + ".partial")
    tmp.write_bytes(data)
    tmp.replace(path)  # never leave a half-written archive under the final name
    return str(path)


def _read(source: str) -> tuple[str, bytes]:
    settings = get_settings()
    if source.startswith("gs://"):
        bucket_name, _, key = source[5:].partition("/")
        client = gcp.storage_client(settings.project_id)
        if not key or key.endswith("/"):
            blobs = sorted(client.list_blobs(bucket_name, prefix=key), key=lambda b: b.name)
            blobs = [b for b in blobs if b.name.endswith(".tar.gz")]
            if not blobs:
                raise click.ClickException(f"no exports under {source}")
            key = blobs[-1].name
        return f"gs://{bucket_name}/{key}", client.bucket(bucket_name).blob(key).download_as_bytes()
    path = Path(source)
    if path.is_dir():
        candidates = sorted(path.glob("askbase-export-*.tar.gz"))
        if not candidates:
            raise click.ClickException(f"no exports in {path}")
        path = candidates[-1]
    if not path.is_file():
        raise click.ClickException(f"{path} does not exist")
    return str(path), path.read_bytes()


def _current_snapshot_id() -> str | None:
    from shared.knowledge.snapshots import SnapshotStore

    settings = get_settings()
    bucket = gcp.storage_client(settings.project_id).bucket(settings.bucket)
    try:
        pointer, _ = SnapshotStore(bucket, prefix=settings.snapshot_prefix).read_pointer()
    except Exception as exc:  # an export must not fail because the index bucket is unreachable
        log.warning("could not read the snapshot pointer: %s", exc)
        return None
    return pointer.snapshot_id if pointer else None


@click.command("export")
@click.argument("target", default=".")
def export_command(target: str) -> None:
    """Write Firestore data and the current snapshot id to TARGET (a file, a directory or gs://…)."""
    settings = get_settings()
    db = gcp.firestore_client(settings.project_id)
    result = backup.export_database(db, _current_snapshot_id())
    where = _write(target, result.data)
    counts = ", ".join(f"{k} {v['count']}" for k, v in result.manifest["collections"].items())
    click.echo(f"exported {result.manifest['documents']} documents ({counts or 'empty'}) to {where}")


@click.command("import")
@click.argument("source")
def import_command(source: str) -> None:
    """Load an export (a file, a directory's newest export, or gs://…) into this environment."""
    settings = get_settings()
    where, data = _read(source)
    try:
        manifest = backup.import_database(gcp.firestore_client(settings.project_id), data)
    except backup.BackupFormatError as exc:
        raise click.ClickException(f"{where}: {exc}") from None
    click.echo(
        f"imported {manifest['documents']} documents from {where} "
        f"(exported {manifest['created_at']}, snapshot {manifest['snapshot_id'] or 'none'})"
    )


@click.group("backup")
def backup_group() -> None:
    """Check that backups restore."""


@backup_group.command("verify")
@click.argument("source")
def verify_command(source: str) -> None:
    """Restore the newest export at SOURCE into a scratch emulator and compare counts and hashes."""
    from shared.emulators import EmulatorError, EmulatorStack

    where, data = _read(source)
    try:
        manifest, _ = backup.read_archive(data)
    except backup.BackupFormatError as exc:
        raise click.ClickException(f"{where}: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="askbase-verify-") as tmp:
        stack = EmulatorStack(project="askbase-verify", workdir=Path(tmp))
        try:
            stack.start()
        except EmulatorError as exc:
            raise click.ClickException(str(exc)) from None
        try:
            # A client bound to the scratch emulator only, whatever this process is configured for.
            assert stack.firestore is not None
            scratch = gcp.firestore_client(stack.project, emulator_host=stack.firestore.host)
            backup.import_database(scratch, data)
            restored = backup.export_database(scratch, manifest.get("snapshot_id")).manifest
        finally:
            stack.stop()
    problems = backup.compare(manifest["collections"], restored["collections"])
    if problems:
        raise click.ClickException(f"{where} did not restore faithfully:\n  " + "\n  ".join(problems))
    click.echo(
        f"{where}: restored {restored['documents']} documents into a scratch emulator; "
        "counts and hashes match"
    )
