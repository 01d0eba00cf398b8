"""The scrape schedule: when the next scheduled run is, from ``Settings.scrape_schedule`` (a 5-field cron
string) read in ``Settings.schedule_time_zone``, the same cron string and zone Cloud Scheduler is given.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo


def _field(spec: str, lo: int, hi: int) -> set[int]:
    values: set[int] = set()
    for part in spec.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
            if step < 1:
                raise ValueError("cron step must be positive")
        if part in ("*", ""):
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = int(a), int(b)
        else:
            start = int(part)
            end = hi if step > 1 else start
        if start < lo or end > hi or start > end:
            raise ValueError(f"cron value out of range: {part}")
        values.update(range(start, end + 1, step))
    return values


def schedule_zone(name: str) -> tzinfo:
    """The zone a cron schedule is read in (``Settings.schedule_time_zone``, an IANA name)."""
    from shared.config import UTC_ZONES

    if name in UTC_ZONES:
        return UTC  # no time zone database needed
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def next_cron_time(expression: str, after: datetime, zone: tzinfo = UTC) -> datetime | None:
    """The first time strictly after ``after`` matching a 5-field cron ``expression`` read on the wall
    clock of ``zone`` (as Cloud Scheduler reads it in the job's time zone), in that zone; or None.

    Daylight saving time: a wall time that does not exist that day (clocks go forward over it) never
    matches; one that happens twice (clocks go back) matches both times. Google documents no more than
    that jobs "run on wall clock time" and may run unexpectedly around the change.
    """
    try:
        fields = expression.split()
        if len(fields) != 5:
            return None
        minutes = sorted(_field(fields[0], 0, 59))
        hours = sorted(_field(fields[1], 0, 23))
        days = _field(fields[2], 1, 31)
        months = _field(fields[3], 1, 12)
        weekdays = {d % 7 for d in _field(fields[4], 0, 7)}  # 0 and 7 are both Sunday
    except ValueError:
        return None
    dom_any, dow_any = fields[2] == "*", fields[4] == "*"
    after = after.astimezone(UTC)
    day = after.astimezone(zone).date() - timedelta(days=1)  # a wall date may start before `after`'s
    for _ in range(366 * 5):
        cron_dow = (day.weekday() + 1) % 7  # Python: Monday=0; cron: Sunday=0
        dom_ok, dow_ok = day.day in days, cron_dow in weekdays
        # Standard cron: when both day fields are restricted, either one matching is enough.
        day_ok = (dom_ok or dow_ok) if not (dom_any or dow_any) else (dom_ok and dow_ok)
        if day.month in months and day_ok:
            found = [
                moment
                for hour in hours
                for minute in minutes
                for moment in _instants(datetime(day.year, day.month, day.day, hour, minute), zone)
                if moment > after
            ]
            if found:
                return min(found).astimezone(zone)
        day += timedelta(days=1)
    return None


def _instants(wall: datetime, zone: tzinfo) -> list[datetime]:
    """The moments (UTC) at which the clocks of ``zone`` read the naive ``wall``: none in a gap, two in
    an overlap, else one."""
    moments = []
    for fold in (0, 1):
        moment = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if moment.astimezone(zone).replace(tzinfo=None) == wall and moment not in moments:
            moments.append(moment)
    return moments
