"""The tile cache on its own: exact to the generation, bounded, one maker per tile."""

from __future__ import annotations

import asyncio

import pytest

from api.tilecache import _ENTRY_OVERHEAD, TileCache


def test_a_tile_is_served_only_at_its_generation():
    cache = TileCache(10_000)
    cache.put("a", 7, b"tile-at-7")
    assert cache.get("a", 7) == b"tile-at-7"
    assert cache.get("a", 8) is None and cache.get("b", 7) is None
    cache.put("a", 8, b"tile-at-8")
    assert cache.get("a", 7) is None and cache.get("a", 8) == b"tile-at-8"
    assert len(cache) == 1 and cache.bytes == len(b"tile-at-8") + _ENTRY_OVERHEAD


def test_least_recently_used_tiles_go_first_past_the_bound():
    size = 1_000
    cache = TileCache(3 * (size + _ENTRY_OVERHEAD))
    for key in "abc":
        cache.put(key, 1, bytes(size))
    assert cache.get("a", 1) is not None  # a is now the most recent
    cache.put("d", 1, bytes(size))
    assert cache.get("b", 1) is None
    assert all(cache.get(k, 1) is not None for k in "acd")
    assert cache.bytes <= cache.max_bytes
    cache.put("huge", 1, bytes(cache.max_bytes))  # larger than the whole cache: not kept
    assert cache.get("huge", 1) is None and len(cache) == 3
    assert not TileCache(0).enabled


def test_concurrent_requests_make_a_tile_once_and_failures_are_not_cached():
    cache = TileCache(10_000)
    made = []

    async def make():
        made.append(1)
        await asyncio.sleep(0.05)
        return 5, b"tile"

    async def many():
        return await asyncio.gather(*(cache.fetch("k", 5, make) for _ in range(8)))

    results = asyncio.run(many())
    assert len(made) == 1 and [r[0] for r in results] == [b"tile"] * 8
    assert asyncio.run(cache.fetch("k", 5, make)) == (b"tile", True)

    async def broken():
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError, match="went away"):
        asyncio.run(cache.fetch("x", 1, broken))
    assert cache.get("x", 1) is None

    async def first_fails_then_waiter_makes_it():
        calls = []

        async def flaky():
            calls.append(1)
            await asyncio.sleep(0.02)
            if len(calls) == 1:
                raise RuntimeError("first attempt fails")
            return 2, b"second"

        outcome = await asyncio.gather(cache.fetch("y", 2, flaky), cache.fetch("y", 2, flaky),
                                       return_exceptions=True)
        return outcome, calls

    outcome, calls = asyncio.run(first_fails_then_waiter_makes_it())
    assert isinstance(outcome[0], RuntimeError) and outcome[1] == (b"second", False)
    assert len(calls) == 2 and cache.get("y", 2) == b"second"
