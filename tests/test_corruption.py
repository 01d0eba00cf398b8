"""A corrupt newest snapshot never reaches users: the Q&A service keeps the index it has, says so loudly
in its log, falls back to the previous snapshot on a restart, and ``askbase snapshots list`` shows it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from shared import gcp
from shared.cli import cli
from shared.config import Settings
from shared.qa.live_index import LiveIndex
from tests.qa_corpus import publish

pytestmark = pytest.mark.emulators


def _archive(settings: Settings, manifest):
    bucket = gcp.storage_client(settings.project_id).bucket(settings.bucket)
    return bucket.blob(settings.snapshot_prefix + manifest.archive)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_newest_snapshot_keeps_the_previous_one_serving(
    emulators, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    good = publish(settings, tmp_path, version=1)
    settings = settings.model_copy(update={"snapshot_poll_seconds": 3600})  # we drive the checks
    live = LiveIndex.from_settings(settings)
    live.start()
    try:
        assert live.status().snapshot_id == good.id
        bad = publish(settings, tmp_path, version=2)
        blob = _archive(settings, bad)
        data = blob.download_as_bytes()
        blob.upload_from_string(b"\x00garbage" * 4096 if damage == "garbage" else data[: len(data) // 2])

        caplog.clear()
        with caplog.at_level(logging.ERROR):
            live.check_now()
        assert live.status().snapshot_id == good.id  # still serving the intact index
        assert live.search("How do I rotate a Telegram bot token?", 3)
        assert any(r.levelno >= logging.ERROR and bad.id in r.getMessage() for r in caplog.records)
    finally:
        live.stop()

    # A restart restores the previous intact snapshot instead, again with an ERROR.
    caplog.clear()
    restarted = LiveIndex.from_settings(settings)
    with caplog.at_level(logging.ERROR):
        restarted.start()
    try:
        assert restarted.status().snapshot_id == good.id
        assert any(r.levelno >= logging.ERROR for r in caplog.records)
    finally:
        restarted.stop()

    listing = CliRunner().invoke(cli, ["snapshots", "list", "--verify"], catch_exceptions=False)
    assert listing.exit_code == 0, listing.output
    rows = {line[2:].split()[0]: line for line in listing.output.splitlines() if line[:2] in ("* ", "  ")}
    assert "CORRUPT" in rows[bad.id] and rows[bad.id].startswith("*")  # the pointer names the bad one
    assert rows[good.id].rstrip().endswith("ok")
    assert "corrupt snapshots are skipped on restore" in listing.output
