"""The next scheduled scrape in the zone Cloud Scheduler reads the cron in (``schedule_time_zone``,
infra's ``askbase:scheduleTimeZone``): computed on that zone's wall clock and shown with the zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared.config import Settings
from shared.knowledge.schedule import next_cron_time, schedule_zone
from shared.qa.live_index import LiveIndex

BERLIN = ZoneInfo("Europe/Berlin")  # CET/CEST: clocks go forward 2026-03-29 02:00, back 2026-10-25 03:00
NEW_YORK = ZoneInfo("America/New_York")  # EST/EDT: forward 2026-03-08 02:00, back 2026-11-01 02:00


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, zone: ZoneInfo, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold)


# --- zones without daylight saving time ------------------------------------------------------------
@pytest.mark.parametrize(
    ("zone", "expression", "after", "expected"),
    [
        # India, UTC+05:30: 09:00 there is 03:30 UTC.
        ("Asia/Kolkata", "0 9 * * *", "2026-11-23T04:00:00", "2026-11-24T09:00:00"),
        ("Asia/Kolkata", "0 9 * * *", "2026-11-23T03:29:00", "2026-11-23T09:00:00"),
        # The local date is already the next one: 2026-11-23 20:00 UTC is the 24th, 01:30, in India.
        ("Asia/Kolkata", "0 0 24 11 *", "2026-11-23T18:30:00", "2027-11-24T00:00:00"),
        ("Asia/Kolkata", "0 0 24 11 *", "2026-11-23T18:29:00", "2026-11-24T00:00:00"),
        # Tokyo, UTC+9: a Monday 08:00 there is Sunday 23:00 UTC.
        ("Asia/Tokyo", "0 8 * * 1", "2026-11-22T22:00:00", "2026-11-23T08:00:00"),
        ("Asia/Tokyo", "*/30 * * * *", "2026-11-23T10:44:10", "2026-11-23T20:00:00"),
    ],
)
def test_next_run_in_a_zone_without_dst(zone: str, expression: str, after: str, expected: str) -> None:
    tz = ZoneInfo(zone)
    found = next_cron_time(expression, utc(after), tz)
    assert found == local(expected, tz)
    assert found is not None and found.tzinfo is tz  # in the zone, for the page to show


def test_utc_is_the_default_and_needs_no_time_zone_database() -> None:
    assert schedule_zone("Etc/UTC") is UTC and schedule_zone("UTC") is UTC
    assert next_cron_time("0 3 * * *", utc("2026-11-23T10:00:00")) == utc("2026-11-24T03:00:00")
    assert next_cron_time("0 3 * * *", utc("2026-11-23T10:00:00"), schedule_zone("Etc/UTC")) == utc(
        "2026-11-24T03:00:00"
    )
    assert schedule_zone("Asia/Kolkata") == ZoneInfo("Asia/Kolkata")


# --- zones with daylight saving time ---------------------------------------------------------------
def test_a_daily_run_keeps_its_wall_time_across_the_change() -> None:
    # 03:00 Berlin is 02:00 UTC in winter and 01:00 UTC in summer: the UTC answer moves, the wall time not.
    before = next_cron_time("0 3 * * *", utc("2026-03-28T12:00:00"), BERLIN)
    after = next_cron_time("0 3 * * *", utc("2026-03-29T12:00:00"), BERLIN)
    assert before == local("2026-03-29T03:00:00", BERLIN) == utc("2026-03-29T01:00:00")
    assert after == local("2026-03-30T03:00:00", BERLIN) == utc("2026-03-30T01:00:00")
    assert before is not None and before.strftime("%H:%M %Z") == "03:00 CEST"
    # New York, the week the clocks go back: Monday 09:00 is 13:00 UTC before, 14:00 UTC after.
    assert next_cron_time("0 9 * * 1", utc("2026-10-27T00:00:00"), NEW_YORK) == utc("2026-11-02T14:00:00")
    assert next_cron_time("0 9 * * 1", utc("2026-10-20T00:00:00"), NEW_YORK) == utc("2026-10-26T13:00:00")


def test_a_wall_time_the_clocks_skip_never_comes() -> None:
    # 2026-03-29 02:30 does not exist in Berlin: the next 02:30 is the day after.
    found = next_cron_time("30 2 * * *", utc("2026-03-28T12:00:00"), BERLIN)
    assert found == local("2026-03-30T02:30:00", BERLIN)
    # Every half hour across the gap: 01:30 CET, then 03:00 CEST, one hour of UTC later.
    assert next_cron_time("*/30 * * * *", utc("2026-03-29T00:10:00"), BERLIN) == utc("2026-03-29T00:30:00")
    assert next_cron_time("*/30 * * * *", utc("2026-03-29T00:30:00"), BERLIN) == utc("2026-03-29T01:00:00")
    assert next_cron_time("*/30 * * * *", utc("2026-03-29T00:30:00"), BERLIN) == local(
        "2026-03-29T03:00:00", BERLIN
    )


def test_a_wall_time_the_clocks_repeat_comes_twice() -> None:
    # 2026-10-25 02:30 happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET). (Compared in UTC:
    # Python never finds a time in a fold equal to one in another zone, PEP 495.)
    first = next_cron_time("30 2 * * *", utc("2026-10-25T00:00:00"), BERLIN)
    assert first is not None and first.astimezone(UTC) == utc("2026-10-25T00:30:00")
    second = next_cron_time("30 2 * * *", first, BERLIN)
    assert second is not None and second.astimezone(UTC) == utc("2026-10-25T01:30:00")
    assert first.strftime("%H:%M %Z") == "02:30 CEST" and second.strftime("%H:%M %Z") == "02:30 CET"
    third = next_cron_time("30 2 * * *", second, BERLIN)
    assert third is not None and third.astimezone(UTC) == utc("2026-10-26T01:30:00")


def test_garbage_is_still_none_in_any_zone() -> None:
    assert next_cron_time("61 * * * *", utc("2026-11-23T10:00:00"), BERLIN) is None


# --- the status page shows it -------------------------------------------------------------------------
@pytest.mark.emulators
def test_status_page_shows_the_next_run_in_the_schedule_zone(
    emulators, settings: Settings, live: LiveIndex
) -> None:
    from tests.qa_support import make_app, sign_in

    client = make_app(
        settings, live, scrape_schedule="0 9 * * *", schedule_time_zone="Asia/Kolkata"
    ).test_client()
    sign_in(client, "viewer@example.com")
    html = client.get("/status").get_data(as_text=True)
    shown = re.search(r'<dt>Next scheduled</dt><dd><time datetime="([^"]+)">([^<]+)</time> \(([^)]+)\)', html)
    assert shown, html
    moment, text, zone = shown.groups()
    assert zone == "Asia/Kolkata" and text.endswith(" 09:00 IST") and moment.endswith("T09:00:00+05:30")
    now = datetime.now(UTC)
    assert now < datetime.fromisoformat(moment) <= now + timedelta(days=1)

    utc_client = make_app(settings, live, scrape_schedule="0 9 * * *").test_client()
    sign_in(utc_client, "viewer@example.com")
    html = utc_client.get("/status").get_data(as_text=True)
    shown = re.search(r"<dt>Next scheduled</dt><dd><time[^>]*>([^<]+)</time> <span", html)
    assert shown and shown.group(1).endswith(" 09:00 UTC"), html  # no zone name after UTC


# --- qa's image can read any zone -----------------------------------------------------------------------
def test_qa_runtime_set_resolves_zones_without_a_system_database(tmp_path: Path) -> None:
    """The slim Debian image may have no /usr/share/zoneinfo: qa's own set carries tzdata, which
    zoneinfo falls back to. Run in a virtualenv holding only qa's set, with the system paths hidden."""
    import os
    import subprocess

    from infra import deployable_env

    python = deployable_env.link_environment(
        deployable_env.installed_names("qa"), tmp_path / "env", source=Path(__file__).resolve().parents[1]
    )
    probe = (
        "import zoneinfo; from datetime import datetime, UTC; "
        "from shared.config import Settings; "
        "from shared.knowledge.schedule import next_cron_time, schedule_zone; "
        "s = Settings(_env_file=None, schedule_time_zone='Asia/Kolkata'); "
        "print(zoneinfo.TZPATH, next_cron_time('0 9 * * *', datetime(2026, 11, 23, 4, tzinfo=UTC), "
        "schedule_zone(s.schedule_time_zone)).isoformat())"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ASKBASE_"))}
    env["PYTHONTZPATH"] = str(tmp_path / "no-zoneinfo")  # no system database: only the tzdata package
    out = subprocess.run([str(python), "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"('{tmp_path / 'no-zoneinfo'}',)", "2026-11-24T09:00:00+05:30"]
