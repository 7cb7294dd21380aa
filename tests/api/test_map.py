"""The map page as the service serves it: only for callers with a key, scoped like the
collections (an institution sees its own grids, staff phones only of its own staff), and
every script from the service itself."""

from __future__ import annotations

import re

import pytest

from tests.api.server import BANK_A, BANK_B, running_service


@pytest.fixture(scope="module")
def service(request, tmp_path_factory):
    with running_service("gpkg", request, tmp_path_factory.mktemp("map")) as running:
        yield running


def _grid_codes(service, layer: str, bank: str) -> list[str]:
    frame = service.sample.layers[layer]
    return frame.loc[frame["institution"] == bank, "code"].astype(str).tolist()


def test_the_map_needs_a_key(service):
    assert service.get("/map").status_code == 401
    assert service.get("/map", key="gg_000000000000.notarealkeynotarealkey").status_code == 401


def test_a_key_in_the_link_becomes_a_cookie(service):
    first = service.get("/map", params={"key": service.keys.regulator},
                        follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"].endswith("/map")
    assert "gisgrid_session=" in first.headers["set-cookie"]
    assert "HttpOnly" in first.headers["set-cookie"]
    assert service.keys.regulator.split(".")[1] not in first.headers["set-cookie"]
    page = service.client.get("/map", cookies={"gisgrid_session":
                                               first.cookies["gisgrid_session"]})
    assert page.status_code == 200


def test_regulator_sees_every_bank_but_no_phone(service):
    page = service.get("/map", key=service.keys.regulator).text
    assert _grid_codes(service, "grids", BANK_A)[0] in page
    phones = service.sample.layers["staff"]["phone"].astype(str)
    assert not any(phone in page for phone in phones.iloc[:50])
    # Every script and stylesheet is the service's own.
    sources = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', page)
    assert sources and all(s.startswith("/static/maps/") for s in sources)
    assert service.get(sources[0]).status_code == 200


def test_an_admin_sees_only_its_own_grids_and_staff_phones(service):
    page = service.get("/map", key=service.keys.admin_b, params={"grids": "grids__ycb"}).text
    staff = service.sample.layers["staff"]
    own = staff.loc[staff["institution"] == BANK_B, "phone"].astype(str)
    other = staff.loc[staff["institution"] == BANK_A, "phone"].astype(str)
    assert any(phone in page for phone in own)
    assert not any(phone in page for phone in other)
    # Bank B asking for bank A's layer gets nothing of it.
    answer = service.get("/map", key=service.keys.admin_b, params={"grids": "grids"})
    assert answer.status_code == 403


def test_the_page_cache_is_bounded_in_entries_bytes_and_time():
    """M1: built pages are kept least-recently-used first out, at most so many and so
    large, and expired pages are dropped (a caller varying ``basemap`` cannot grow it)."""
    from api.mappage import PageCache

    cache = PageCache(entries=3, size=1000, ttl=60)
    for n in range(10):
        cache.put(("store", n), "x" * 300, now=float(n))
        assert len(cache) <= 3 and cache.bytes <= 1000
    assert cache.get(("store", 9), now=10.0) == "x" * 300
    assert cache.get(("store", 0), now=10.0) is None          # evicted, least recent
    cache.get(("store", 7), now=10.0)                           # 7 is now the most recent
    cache.put(("store", 10), "y" * 300, now=11.0)
    assert cache.get(("store", 7), now=11.0) is not None and cache.get(("store", 8), 11.0) \
        is None
    assert cache.get(("store", 9), now=100.0) is None           # expired
    cache.put(("store", 11), "z", now=100.0)                    # expired ones go on put
    assert len(cache) == 1 and cache.bytes == 1
    cache.put(("store", 12), "w" * 5000, now=101.0)             # larger than the cache
    assert cache.get(("store", 12), now=101.0) is None and cache.bytes == 1


@pytest.mark.parametrize("layer", ["staff", "outlets", "no_such_layer", "grids\x00"])
def test_only_grid_layers_are_drawn(service, layer):
    """L2: a layer that is not a grid layer is a bad parameter (400, the same message
    whether it exists or not), never a 500."""
    answer = service.get("/map", key=service.keys.regulator, params={"grids": layer})
    assert answer.status_code == 400, answer.text
    assert "is not a grid layer" in answer.text
