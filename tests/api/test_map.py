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
    assert "gisgrid_key=" in first.headers["set-cookie"]
    assert "HttpOnly" in first.headers["set-cookie"]
    page = service.client.get("/map", cookies={"gisgrid_key": service.keys.regulator})
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
