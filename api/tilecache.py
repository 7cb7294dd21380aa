"""Vector tiles kept in memory, exact to the layer's generation.

A tile is one ``ST_AsMVT`` over every feature meeting it: on a 10⁵-grid layer a z12
tile carries ~3,400 polygons and costs PostgreSQL 20–30 ms of CPU, most of it in
``ST_AsMVTGeom`` (clip, snap, make valid), which no SQL rewrite avoids. Map viewers ask
for the same tiles again and again (every pan, every user of one county), and the grid
layers change rarely, so the service keeps the tiles it made, as tile servers such as
martin do by default.

Never stale: the store moves a layer's *generation* in the same transaction as any
change of its rows, whoever makes it (``layers.migrations``, migration 3). A tile is
computed together with the generation in one statement (one snapshot) and stored under
it; a request first reads the current generation (one small query) and takes a cached
tile only if it was made at that generation. The key also holds the caller's view (the
columns and row scope of ``api.auth``), so a tile made for one institution is never
served to another.

Bounded: least recently used tiles are dropped past ``max_bytes``. Concurrent requests
for a tile that is being made wait for it instead of making it again.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

#: Bytes counted for a cached tile beyond its data (key, entry, dict slot).
_ENTRY_OVERHEAD = 300


class TileCache:
    """Tiles by (key, generation), least recently used dropped past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self._tiles: OrderedDict[Hashable, tuple[int, bytes]] = OrderedDict()
        self._making: dict[tuple[Hashable, int], asyncio.Future] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def __len__(self) -> int:
        return len(self._tiles)

    def get(self, key: Hashable, generation: int) -> bytes | None:
        entry = self._tiles.get(key)
        if entry is None or entry[0] != generation:
            return None
        self._tiles.move_to_end(key)
        return entry[1]

    def put(self, key: Hashable, generation: int, data: bytes) -> None:
        size = len(data) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        old = self._tiles.pop(key, None)
        if old is not None:
            self.bytes -= len(old[1]) + _ENTRY_OVERHEAD
        self._tiles[key] = (generation, data)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, dropped) = self._tiles.popitem(last=False)
            self.bytes -= len(dropped) + _ENTRY_OVERHEAD

    async def fetch(self, key: Hashable, generation: int,
                    make: Callable[[], Awaitable[tuple[int, bytes]]]) -> tuple[bytes, bool]:
        """The tile for ``key`` at ``generation``: cached, or made by ``make`` (which
        returns the generation it saw with the tile). Returns (tile, was cached)."""
        cached = self.get(key, generation)
        if cached is not None:
            self.hits += 1
            return cached, True
        self.misses += 1
        pending = self._making.get((key, generation))
        if pending is not None:
            data = await asyncio.shield(pending)
            if data is not None:
                return data, False
            # The request making it failed or went away: make it here.
            made_at, data = await make()
            self.put(key, made_at, data)
            return data, False
        future = asyncio.get_running_loop().create_future()
        self._making[(key, generation)] = future
        made: bytes | None = None
        try:
            made_at, made = await make()
            # Stored under the generation of its own snapshot, which may be newer than
            # the one this request saw.
            self.put(key, made_at, made)
        finally:
            del self._making[(key, generation)]
            future.set_result(made)  # None: the waiters make it themselves
        return made, False
