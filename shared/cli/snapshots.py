"""``askbase snapshots list | show ID | rollback ID``: the index snapshots in the bucket."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING

import click

from shared.config import get_settings

if TYPE_CHECKING:
    from shared.knowledge.snapshot_archive import Manifest
    from shared.knowledge.snapshots import SnapshotStore


def _store() -> SnapshotStore:
    """The store for the configured bucket (imports deferred so ``askbase --help`` stays fast)."""
    from shared import gcp
    from shared.knowledge.snapshots import SnapshotStore

    settings = get_settings()
    bucket = gcp.storage_client(settings.project_id).bucket(settings.bucket)
    return SnapshotStore(
        bucket, settings.snapshot_prefix, settings.snapshot_keep, settings.snapshot_compression
    )


@click.group("snapshots")
def snapshots_group() -> None:
    """List, show or roll back index snapshots."""


def archive_status(store: SnapshotStore, manifest: Manifest, deep: bool) -> str:
    """``ok``, or what is wrong with the snapshot's archive object.

    The cheap check compares the stored object's size with the manifest's (catches truncation and most
    replacements); ``deep`` downloads the archive and compares its sha256, as a restore would.
    """
    blob = store.bucket.get_blob(store.prefix + manifest.archive)
    if blob is None:
        return "MISSING archive"
    if blob.size != manifest.size:
        return f"CORRUPT: {blob.size} bytes, manifest says {manifest.size}"
    if deep:
        digest = hashlib.sha256()
        with blob.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != manifest.sha256:
            return "CORRUPT: sha256 does not match the manifest"
    return "ok"


@snapshots_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print manifests as JSON.")
@click.option("--verify", is_flag=True, help="Download every archive and check its sha256.")
def list_command(as_json: bool, verify: bool) -> None:
    """Every snapshot, newest first; ``*`` marks the one LATEST.json points at.

    The status column says whether each archive is intact; a restore skips a corrupt one and falls
    back to the previous snapshot.
    """
    store = _store()
    pointer, generation = store.read_pointer()
    manifests = store.list()
    statuses = {m.id: archive_status(store, m, verify) for m in manifests}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "pointer": pointer.__dict__ if pointer else None,
                    "generation": generation,
                    "snapshots": [m.to_dict() | {"status": statuses[m.id]} for m in manifests],
                },
                indent=2,
            )
        )
        return
    if not manifests:
        click.echo("no snapshots yet (run `askbase scrape`)")
        return
    current = pointer.snapshot_id if pointer else None
    click.echo(f"{'':1} {'id':<40} {'created':<20} {'chunks':>7} {'pages':>6} {'size':>9}  status")
    for m in manifests:
        mark = "*" if m.id == current else " "
        click.echo(
            f"{mark} {m.id:<40} {m.created_at[:19]:<20} {m.chunk_count:>7} {m.pages:>6} "
            f"{m.size / 1e6:>7.2f}MB  {statuses[m.id]}"
        )
    if any(status != "ok" for status in statuses.values()):
        click.echo(
            "warning: corrupt snapshots are skipped on restore; roll back to an intact one with "
            "`askbase snapshots rollback ID`, or publish a new one with `askbase scrape`",
            err=True,
        )
    if pointer is None and generation:
        click.echo("warning: LATEST.json is unreadable; `askbase snapshots rollback ID` repairs it", err=True)


@snapshots_group.command("show")
@click.argument("snapshot_id")
def show_command(snapshot_id: str) -> None:
    """Print one snapshot's manifest."""
    from shared.knowledge.snapshot_archive import SnapshotError

    try:
        manifest = _store().get(snapshot_id)
    except (SnapshotError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(manifest.to_json().decode())


@snapshots_group.command("rollback")
@click.argument("snapshot_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def rollback_command(snapshot_id: str, yes: bool) -> None:
    """Point LATEST.json back at SNAPSHOT_ID (compare-and-swap); services pick it up on their next poll."""
    from shared.knowledge.snapshot_archive import SnapshotError

    store = _store()
    pointer, _ = store.read_pointer()
    if not yes:
        click.confirm(
            f"Roll back from {pointer.snapshot_id if pointer else 'nothing'} to {snapshot_id}?", abort=True
        )
    try:
        store.rollback(snapshot_id)
    except (SnapshotError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"LATEST.json now points at {snapshot_id}")
    click.echo(
        "A scrape already running stops at its publish without publishing (status conflict). Keep the "
        "Scheduler paused until the cause is fixed: the next scheduled scrape publishes again."
    )
