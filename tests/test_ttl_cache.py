"""shared/ttl_cache.py: entries expire by the injected clock (never a sleep), None is cached only when
asked, a failed load caches nothing, the cache stays bounded."""

from __future__ import annotations

import pytest

from shared.ttl_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counting(values: dict[str, int | None], loads: list[str]):
    def load(key: str) -> int | None:
        loads.append(key)
        return values.get(key)

    return load


def test_a_value_is_cached_until_its_ttl_has_passed() -> None:
    clock = Clock()
    values: dict[str, int | None] = {"a": 1}
    loads: list[str] = []
    cache: TtlCache[str, int | None] = TtlCache(10.0, clock=clock)
    load = counting(values, loads)
    assert cache.get("a", load) == 1
    values["a"] = 2
    clock.now += 9.9
    assert cache.get("a", load) == 1 and loads == ["a"]
    clock.now += 0.1  # exactly ttl after the load: stale
    assert cache.get("a", load) == 2 and loads == ["a", "a"]


def test_none_is_cached_unless_told_not_to() -> None:
    clock = Clock()
    values: dict[str, int | None] = {}
    loads: list[str] = []
    load = counting(values, loads)
    caching: TtlCache[str, int | None] = TtlCache(10.0, clock=clock)
    assert caching.get("new", load) is None
    values["new"] = 5
    assert caching.get("new", load) is None and len(loads) == 1

    loads.clear()
    values.clear()
    skipping: TtlCache[str, int | None] = TtlCache(10.0, cache_none=False, clock=clock)
    assert skipping.get("new", load) is None
    values["new"] = 5
    assert skipping.get("new", load) == 5  # found at once, not after the ttl
    assert skipping.get("new", load) == 5 and loads == ["new", "new"]


def test_a_failed_load_caches_nothing() -> None:
    cache: TtlCache[str, int] = TtlCache(10.0, clock=Clock())

    def fail(key: str) -> int:
        raise LookupError(key)

    with pytest.raises(LookupError):
        cache.get("a", fail)
    assert len(cache) == 0
    assert cache.get("a", lambda key: 3) == 3


def test_forget_makes_the_next_get_load_again() -> None:
    values: dict[str, int | None] = {"a": 1}
    loads: list[str] = []
    load = counting(values, loads)
    cache: TtlCache[str, int | None] = TtlCache(10.0, clock=Clock())
    cache.get("a", load)
    values["a"] = 2
    cache.forget("a")
    cache.forget("never-there")
    assert cache.get("a", load) == 2 and loads == ["a", "a"]


def test_the_cache_is_dropped_when_full() -> None:
    cache: TtlCache[int, int] = TtlCache(10.0, clock=Clock(), max_entries=3)
    for key in range(3):
        cache.get(key, lambda k: k)
    assert len(cache) == 3
    cache.get(3, lambda k: k)
    assert len(cache) == 1  # dropped, then the new entry


def test_the_bot_lookup_cache_never_caches_an_unknown_bot_and_refresh_reads_again() -> None:
    from shared.bots.lookup import BotInfo, CachedLookup

    clock = Clock()
    stored: dict[str, BotInfo] = {}
    reads: list[str] = []

    def read(bot_id: str) -> BotInfo | None:
        reads.append(bot_id)
        return stored.get(bot_id)

    bots = CachedLookup(read, ttl=10.0, clock=clock)
    assert bots("b1") is None
    stored["b1"] = BotInfo("b1", "telegram", token="old")
    assert bots("b1") == stored["b1"]  # registered a moment ago: found at once
    stored["b1"] = BotInfo("b1", "telegram", token="new")
    assert bots("b1").token == "old" and len(reads) == 2  # type: ignore[union-attr]
    assert bots.refresh("b1").token == "new"  # type: ignore[union-attr]
    clock.now += 10.0
    assert bots("b1").token == "new" and len(reads) == 4  # type: ignore[union-attr]
