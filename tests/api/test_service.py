"""The HTTP service over a real store (GeoPackage and PostGIS), driven over HTTP.

Each store kind gets a fresh store loaded with the Zigui sample (5,000 households), grids
of two banks (NSH in ``grids``, YCB in ``grids__ycb``), events and an across-bank overlap
layer, served by uvicorn on a free localhost port. The tests cover every read endpoint,
status code and role boundary of OGC API – Features, the tiles and the ledger summary.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pandas as pd
import psycopg
import pytest
import shapely

from api.auth import revoke_key
from tests.api.server import BANK_A, BANK_B, bbox_of, running_service, tile_of


@pytest.fixture(scope="module", params=["gpkg", "postgis"])
def svc(request, tmp_path_factory):
    with running_service(request.param, request, tmp_path_factory.mktemp("api")) as service:
        yield service


def features(svc, path, key, **params):
    r = svc.get(path, key, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def all_pages(svc, path, key, **params):
    """Every feature by following ``next`` links; checks the counts on each page."""
    seen, pages = [], 0
    r = svc.get(path, key, params=params)
    while True:
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["numberReturned"] == len(doc["features"])
        seen += doc["features"]
        pages += 1
        nxt = [link["href"] for link in doc["links"] if link["rel"] == "next"]
        if not nxt:
            return doc["numberMatched"], seen, pages
        r = svc.client.get(nxt[0], headers={"X-API-Key": key})


# ------------------------------------------------------------------ public documents


def test_landing_conformance_and_openapi_need_no_key(svc):
    landing = svc.get("/").json()
    rels = {link["rel"] for link in landing["links"]}
    assert {"self", "service-desc", "conformance", "data"} <= rels
    conformance = svc.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in conformance
    spec = svc.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    assert "/collections/{collectionId}/items" in spec["paths"]
    [desc] = [link for link in landing["links"] if link["rel"] == "service-desc"]
    assert desc["type"] == "application/vnd.oai.openapi+json;version=3.0"
    r = svc.client.get(desc["href"])
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    assert r.json()["openapi"] == "3.0.3"
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30" in conformance
    assert svc.get("/docs").status_code == 200
    page = svc.get("/", params={"f": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert svc.get("/", headers={"Accept": "text/html"}).text.startswith("<!doctype html>")
    assert svc.get("/", headers={"Accept": "image/png"}).status_code == 406


# ---------------------------------------------------------------------------- keys


def test_data_needs_a_valid_key(svc):
    assert svc.get("/collections").status_code == 401
    assert svc.get("/collections").headers["www-authenticate"].startswith("Bearer")
    assert svc.get("/collections", "not-a-token").status_code == 401
    forged = svc.keys.regulator[:-4] + "AAAA"
    assert svc.get("/collections", forged).status_code == 401
    assert svc.get("/collections", headers={"Authorization": "Basic abc"}).status_code == 401
    bearer = {"Authorization": f"Bearer {svc.keys.regulator}"}
    assert svc.get("/collections", headers=bearer).status_code == 200
    for path in ("/collections/grids/items", "/tiles/grids/0/0/0.mvt", "/ledger/summary",
                 "/jobs"):
        assert svc.get(path).status_code == 401, path


def test_a_revoked_key_stops_working(svc):
    from api.auth import create_key

    with svc.store() as store:
        key_id, token = create_key(store, "regulator")
    time.sleep(1.05)  # the test server reloads keys every 0.5 s
    assert svc.get("/collections", token).status_code == 200
    with svc.store() as store:
        revoke_key(store, key_id)
    time.sleep(1.1)  # the test server reloads keys every 0.5 s
    assert svc.get("/collections", token).status_code == 401


def test_keys_are_stored_hashed_and_never_served(svc):
    with svc.store() as store:
        keys = store.read("api_keys")
    tokens = [svc.keys.regulator, svc.keys.admin_a, svc.keys.worker_a]
    text = keys.to_csv()
    assert not any(t.split(".")[1] in text for t in tokens)
    assert keys["hash"].str.startswith("sha256$").all()
    assert svc.get("/collections/api_keys", svc.keys.regulator).status_code == 404
    assert svc.get("/collections/api_keys/items", svc.keys.admin_a).status_code == 404


# --------------------------------------------------------------------- collections


def collection_ids(svc, key):
    r = svc.get("/collections", key)
    assert r.status_code == 200
    return {c["id"] for c in r.json()["collections"]}


def test_each_role_lists_what_it_may_read(svc):
    shared = {"territory", "townships", "units", "institutions", "entities"}
    regulator = collection_ids(svc, svc.keys.regulator)
    assert shared | {"grids", "grids__ycb", "outlets", "devices", "staff", "households",
                     "overlaps", "events"} <= regulator
    assert "ledger" in regulator and "api_keys" not in regulator  # M5: counts, not people
    admin = collection_ids(svc, svc.keys.admin_a)
    assert shared | {"grids", "ledger", "staff", "households"} <= admin
    assert "overlaps" not in admin
    worker = collection_ids(svc, svc.keys.worker_a)
    assert shared | {"grids", "ledger"} <= worker
    assert not {"households", "overlaps"} & worker


def test_collection_document_part2(svc):
    doc = features(svc, "/collections/grids", svc.keys.regulator)
    assert doc["id"] == "grids" and doc["itemType"] == "feature"
    assert "http://www.opengis.net/def/crs/OGC/1.3/CRS84" in doc["crs"]
    assert "http://www.opengis.net/def/crs/EPSG/0/3857" in doc["crs"]
    assert doc["storageCrs"]
    bbox = doc["extent"]["spatial"]["bbox"][0]
    assert 110 < bbox[0] < bbox[2] < 112 and 30 < bbox[1] < bbox[3] < 32
    assert svc.get("/collections/grids", svc.keys.regulator,
                   params={"f": "html"}).status_code == 200
    queryables = features(svc, "/collections/staff/queryables", svc.keys.regulator)
    assert "institution" in queryables["properties"]
    assert "phone" not in queryables["properties"]  # hidden from regulators


def test_unknown_collection_and_feature_are_404(svc):
    key = svc.keys.regulator
    assert svc.get("/collections/nope", key).status_code == 404
    assert svc.get("/collections/nope/items", key).status_code == 404
    assert svc.get("/collections/grids/items/000000000000", key).status_code == 404
    assert svc.get("/collections/grids/items/' OR 1=1 --", key).status_code == 404
    assert svc.get("/collections/households/items/abc", key).status_code == 404
    # not a layer name at all: refused before anything is looked up
    assert svc.get('/collections/grids";drop table grids;--/items', key).status_code == 400


# --------------------------------------------------------------------------- items


def test_paging_returns_every_feature_exactly_once(svc):
    matched, seen, pages = all_pages(svc, "/collections/grids/items", svc.keys.regulator,
                                     limit=50)
    codes = [f["id"] for f in seen]
    assert matched == len(svc.sample.layers["grids"]) == len(codes) == len(set(codes))
    assert set(codes) == set(svc.sample.layers["grids"]["code"])
    assert pages == 3  # 50, then next links double the page: 100, 43
    first = features(svc, "/collections/grids/items", svc.keys.regulator, limit=50, offset=50)
    assert [f["id"] for f in first["features"]] == codes[50:100]
    assert any(link["rel"] == "prev" for link in first["links"])


def test_next_links_double_the_page_up_to_the_maximum_but_not_in_html(svc):
    """GDAL before 3.8 asks for 10 features a page and follows next links: doubling
    gets a 10⁵-feature layer copied in ~20 requests instead of 10⁴."""

    def next_of(doc):
        [href] = [link["href"] for link in doc["links"] if link["rel"] == "next"]
        return href

    doc = features(svc, "/collections/households/items", svc.keys.regulator, limit=10)
    limits = []
    while True:
        assert doc["numberReturned"] <= 10000
        nxt = [link["href"] for link in doc["links"] if link["rel"] == "next"]
        if not nxt:
            break
        limits.append(int(httpx.URL(nxt[0]).params["limit"]))
        r = svc.client.get(nxt[0], headers={"X-API-Key": svc.keys.regulator})
        assert r.status_code == 200
        doc = r.json()
    assert limits[:4] == [20, 40, 80, 160]
    big = features(svc, "/collections/households/items", svc.keys.regulator, limit=3000)
    assert "limit=6000" in next_of(big)
    page = svc.get("/collections/households/items", svc.keys.regulator,
                   params={"limit": 10, "f": "html"}).text
    assert "offset=10" in page and "limit=10" in page and "limit=20" not in page


def test_next_limit_doubles_up_to_the_maximum_only_for_machines():
    from types import SimpleNamespace

    from starlette.requests import Request

    from api.features import next_limit
    from api.settings import Settings

    app = SimpleNamespace(state=SimpleNamespace(settings=Settings(max_limit=1000)))

    def request(query: bytes = b"", accept: bytes = b"application/geo+json") -> Request:
        return Request({"type": "http", "query_string": query, "app": app,
                        "headers": [(b"accept", accept)]})

    assert next_limit(request(), 10) == 20
    assert next_limit(request(), 600) == 1000
    assert next_limit(request(), 1000) == 1000
    assert next_limit(request(b"f=html"), 10) == 10
    assert next_limit(request(accept=b"text/html,application/xhtml+xml"), 10) == 10
    assert next_limit(request(b"f=json", b"text/html"), 10) == 20


def test_default_and_maximum_limits(svc):
    doc = features(svc, "/collections/households/items", svc.keys.regulator)
    assert doc["numberReturned"] == 10
    doc = features(svc, "/collections/households/items", svc.keys.regulator, limit=10000)
    assert doc["numberReturned"] == doc["numberMatched"] == len(svc.sample.layers["households"])


@pytest.mark.parametrize("layer", ["grids", "units", "townships", "events"])
def test_properties_are_the_stored_values(svc, layer):
    """Every property of every feature as stored: text, integers, floats, timestamps
    (built as JSON text by PostgreSQL on PostGIS, by Python on a GeoPackage)."""
    frame = svc.sample.layers[layer]
    key = "code" if "code" in frame.columns else "id"
    expected = frame.drop(columns="geometry").set_index(key, drop=False)
    matched, seen, _ = all_pages(svc, f"/collections/{layer}/items", svc.keys.regulator,
                                 limit=1000)
    assert matched == len(seen) == len(frame)
    for feature in seen:
        row = expected.loc[feature["id"]]
        props = feature["properties"]
        assert set(props) == set(expected.columns), layer
        for column, value in props.items():
            want = row[column]
            if pd.isna(want):
                assert value is None, (layer, column)
            elif isinstance(want, pd.Timestamp):
                assert pd.Timestamp(value) == want, (layer, column, value)
            elif isinstance(want, float | np.floating):
                assert value == pytest.approx(float(want), rel=1e-12), (layer, column)
            else:
                assert value == (want.item() if isinstance(want, np.generic) else want), \
                    (layer, column)


def test_a_page_past_the_end_still_tells_the_count(svc):
    homes = svc.sample.layers["households"]
    box = ",".join(map(str, bbox_of(svc.sample.layers["units"], 10)))
    doc = features(svc, "/collections/households/items", svc.keys.regulator, bbox=box,
                   limit=10)
    assert doc["numberMatched"] > 10
    past = features(svc, "/collections/households/items", svc.keys.regulator, bbox=box,
                    limit=10, offset=doc["numberMatched"] + 5)
    assert past["numberMatched"] == doc["numberMatched"]
    assert past["numberReturned"] == 0 and past["features"] == []
    whole = features(svc, "/collections/households/items", svc.keys.regulator,
                     limit=10, offset=len(homes))
    assert whole["numberMatched"] == len(homes) and whole["features"] == []


def test_bbox_matches_a_shapely_count_exactly(svc):
    homes = svc.sample.layers["households"]
    box = bbox_of(svc.sample.layers["units"], 10)
    expected = int(shapely.intersects(homes.geometry.to_numpy(), shapely.box(*box)).sum())
    assert 0 < expected < len(homes)
    matched, seen, _ = all_pages(svc, "/collections/households/items", svc.keys.regulator,
                                 bbox=",".join(map(str, box)), limit=500)
    assert matched == len(seen) == expected
    assert len({f["id"] for f in seen}) == expected
    # the same box latitude first (bbox-crs EPSG:4326) and in metres (EPSG:3857)
    flipped = f"{box[1]},{box[0]},{box[3]},{box[2]}"
    doc = features(svc, "/collections/households/items", svc.keys.regulator, bbox=flipped,
                   **{"bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4326"})
    assert doc["numberMatched"] == expected
    from pyproj import Transformer

    t = Transformer.from_crs(4326, 3857, always_xy=True)
    (x0, x1), (y0, y1) = t.transform([box[0], box[2]], [box[1], box[3]])
    doc = features(svc, "/collections/households/items", svc.keys.regulator,
                   bbox=f"{x0},{y0},{x1},{y1}", **{"bbox-crs": "EPSG:3857"})
    assert abs(doc["numberMatched"] - expected) <= 2  # the box's edges are reprojected


def test_crs_3857_is_in_metres_with_content_crs(svc):
    r = svc.get("/collections/outlets/items", svc.keys.regulator,
                params={"crs": "http://www.opengis.net/def/crs/EPSG/0/3857", "limit": 5})
    assert r.status_code == 200
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/3857>"
    x, y = r.json()["features"][0]["geometry"]["coordinates"]
    assert 1.2e7 < x < 1.25e7 and 3.5e6 < y < 3.7e6
    r = svc.get("/collections/outlets/items", svc.keys.regulator, params={"limit": 5})
    assert r.headers["content-crs"] == "<http://www.opengis.net/def/crs/OGC/1.3/CRS84>"
    lon, lat = r.json()["features"][0]["geometry"]["coordinates"]
    assert 110 < lon < 112 and 30 < lat < 32
    for crs in ("EPSG:4326", "EPSG:4490"):
        r = svc.get("/collections/outlets/items", svc.keys.regulator,
                    params={"crs": crs, "limit": 5})
        assert r.headers["content-crs"].endswith(f"/{crs.split(':')[1]}>")
        assert r.json()["features"][0]["geometry"]["coordinates"] == [lat, lon]
    one = r.json()["features"][0]["id"]
    r = svc.get(f"/collections/outlets/items/{one}", svc.keys.regulator,
                params={"crs": "EPSG:3857"})
    assert r.status_code == 200 and r.headers["content-crs"].endswith("/3857>")


def test_property_filters(svc):
    units = svc.sample.layers["units"]
    rural = int((units["kind"] == "rural").sum())
    matched, seen, _ = all_pages(svc, "/collections/units/items", svc.keys.worker_a,
                                 kind="rural", limit=1000)
    assert matched == len(seen) == rural
    assert {f["properties"]["kind"] for f in seen} == {"rural"}
    doc = features(svc, "/collections/outlets/items", svc.keys.regulator,
                   institution=BANK_A, tier="助农点", limit=1000)
    outlets = svc.sample.layers["outlets"]
    assert doc["numberMatched"] == int(((outlets["institution"] == BANK_A)
                                        & (outlets["tier"] == "助农点")).sum())
    doc = features(svc, "/collections/households/items", svc.keys.regulator, count=1)
    homes = svc.sample.layers["households"]
    assert doc["numberMatched"] == int((homes["count"] == 1).sum())
    doc = features(svc, "/collections/grids/items", svc.keys.regulator, level=1, limit=1)
    assert doc["numberMatched"] == len(svc.sample.layers["grids"])


def test_bad_parameters_are_400(svc):
    key, path = svc.keys.regulator, "/collections/households/items"
    for params in ({"bbox": "1,2,3"}, {"bbox": "a,b,c,d"}, {"bbox": "111,31,110,30"},
                   {"bbox": "0,0,200,10"}, {"bbox": "1,2,3,nan"}, {"limit": 0},
                   {"limit": 10001}, {"limit": "ten"}, {"offset": -1},
                   {"crs": "EPSG:9999"}, {"bbox-crs": "EPSG:2000", "bbox": "1,2,3,4"},
                   {"nosuchfield": "x"}, {"count": "many"}, {"f": "xml"}):
        r = svc.get(path, key, params=params)
        assert r.status_code == 400, (params, r.text)
        assert r.json()["code"]
    assert svc.get("/collections/ledger/items", svc.keys.admin_a,
                   params={"bbox": "110,30,111,31"}).status_code == 400  # no geometry
    assert svc.get("/collections/grids/items/x", key, params={"crs": "x"}).status_code == 400


def test_html_pages(svc):
    key = svc.keys.regulator
    for path in ("/collections", "/collections/grids/items", "/collections/grids/items/"
                 + svc.sample.layers["grids"]["code"].iloc[0], "/conformance"):
        r = svc.get(path, key, params={"f": "html"})
        assert r.status_code == 200 and ("<table>" in r.text or "<ul>" in r.text), path
    page = svc.get("/collections/grids/items", key, params={"f": "html", "limit": 3}).text
    assert "下一页 next" in page and "NSH" in page


# ------------------------------------------------------------------------- tiles


def test_tiles(svc):
    lon, lat = svc.sample.layers["outlets"].geometry.iloc[0].coords[0]
    x, y = tile_of(lon, lat, 12)
    r = svc.get(f"/tiles/grids/12/{x}/{y}.mvt", svc.keys.regulator)
    assert r.status_code == 200  # on both stores (GeoPackage: mapbox-vector-tile)
    assert r.headers["content-type"] == "application/vnd.mapbox-vector-tile"
    assert len(r.content) > 100 and b"grids" in r.content and BANK_A.encode() in r.content
    # the other bank's grids are invisible to an administrator, in tiles too
    assert svc.get(f"/tiles/grids__ycb/12/{x}/{y}.mvt", svc.keys.admin_a).content == b""
    assert len(svc.get(f"/tiles/grids__ycb/12/{x}/{y}.mvt", svc.keys.admin_b).content) > 100
    far = svc.get("/tiles/grids/12/0/0.mvt", svc.keys.regulator)
    assert far.status_code == 200 and far.content == b""
    assert svc.get("/tiles/grids/3/8/0.mvt", svc.keys.regulator).status_code == 400
    assert svc.get("/tiles/grids/25/0/0.mvt", svc.keys.regulator).status_code == 400
    assert svc.get("/tiles/ledger/1/0/0.mvt", svc.keys.admin_a).status_code == 404
    tj = features(svc, "/tiles/grids/tilejson.json", svc.keys.regulator)
    assert tj["tiles"][0].endswith("/tiles/grids/{z}/{x}/{y}.mvt")


def test_ogc_api_tiles_tile_matrix_sets_and_tilesets(svc):
    """OGC API – Tiles: the tiling scheme (morecantile's WebMercatorQuad), the
    collection's tileset with its limits, the tile at the OGC address, and the links
    from the landing page and the collection (TileJSON too)."""
    listing = svc.get("/tileMatrixSets").json()  # describes the service: no key
    [tms] = listing["tileMatrixSets"]
    assert tms["id"] == "WebMercatorQuad"
    definition = svc.get("/tileMatrixSets/WebMercatorQuad").json()
    assert definition["crs"] == "http://www.opengis.net/def/crs/EPSG/0/3857"
    assert len(definition["tileMatrices"]) == 25
    assert definition["tileMatrices"][12]["matrixWidth"] == 4096
    assert svc.get("/tileMatrixSets/WorldCRS84Quad").status_code == 404
    conformance = svc.get("/conformance").json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core" in conformance
    assert "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt" in conformance
    rels = {link["rel"] for link in svc.get("/").json()["links"]}
    assert "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes" in rels

    links = features(svc, "/collections/outlets", svc.keys.regulator)["links"]
    by_rel = {link["rel"]: link["href"] for link in links}
    assert by_rel["http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"].endswith(
        "/collections/outlets/tiles")
    assert by_rel["describedby"].endswith("/tiles/outlets/tilejson.json")
    sets = features(svc, "/collections/outlets/tiles", svc.keys.regulator)["tilesets"]
    assert sets[0]["tileMatrixSetURI"].endswith("/WebMercatorQuad")
    meta = features(svc, "/collections/outlets/tiles/WebMercatorQuad", svc.keys.regulator)
    [template] = [link["href"] for link in meta["links"] if link["rel"] == "item"]
    assert template.endswith("/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}")
    assert meta["layers"][0]["geometryDimension"] == 0
    lon, lat = svc.sample.layers["outlets"].geometry.iloc[0].coords[0]
    x, y = tile_of(lon, lat, 12)
    [z12] = [m for m in meta["tileMatrixSetLimits"] if m["tileMatrix"] == "12"]
    assert z12["minTileCol"] <= x <= z12["maxTileCol"]
    assert z12["minTileRow"] <= y <= z12["maxTileRow"]
    # the regulator's view: no phone among the staff tiles' properties
    staff = features(svc, "/collections/staff/tiles/WebMercatorQuad", svc.keys.regulator)
    assert "phone" not in staff["layers"][0]["propertiesSchema"]["properties"]

    ogc = svc.get(f"/collections/outlets/tiles/WebMercatorQuad/12/{y}/{x}", svc.keys.admin_a)
    short = svc.get(f"/tiles/outlets/12/{x}/{y}.mvt", svc.keys.admin_a)
    assert ogc.status_code == short.status_code
    assert ogc.content == short.content
    if svc.kind == "postgis":
        assert ogc.status_code == 200 and BANK_A.encode() in ogc.content
        assert BANK_B.encode() not in ogc.content
    for path, key, status in (
            ("/collections/outlets/tiles/WorldCRS84Quad", svc.keys.regulator, 404),
            ("/collections/outlets/tiles/WorldCRS84Quad/1/0/0", svc.keys.regulator, 404),
            ("/collections/outlets/tiles/WebMercatorQuad/25/0/0", svc.keys.regulator, 400),
            ("/collections/outlets/tiles/WebMercatorQuad/3/0/8", svc.keys.regulator, 400),
            ("/collections/ledger/tiles", svc.keys.admin_a, 404),
            ("/collections/overlaps/tiles", svc.keys.admin_a, 403),
            ("/collections/outlets/tiles", None, 401)):
        assert svc.get(path, key).status_code == status, path


def test_province_staging_layers_and_ledger_are_not_collections(svc):
    """A province run leaves per-county staging layers and its ledger in the store; they
    are bookkeeping, never served as collections (nor offered to the map or analyses)."""
    grids = svc.sample.layers["grids"]
    ledger = pd.DataFrame({"job": ["partition"], "layer": ["grids"], "county": ["420527"]})
    with svc.store() as store:
        store.write("grids__c420527", grids.iloc[:3])
        store.write("fanout_runs", ledger)
    try:
        time.sleep(1.0)  # past the catalog's cache (catalog_ttl_s = 0.5)
        names = {c["id"] for c in features(svc, "/collections", svc.keys.regulator)
                 ["collections"]}
        assert "grids" in names
        assert "grids__c420527" not in names and "fanout_runs" not in names
        assert svc.get("/collections/grids__c420527/items",
                       svc.keys.regulator).status_code == 404
    finally:
        with svc.store() as store:
            store.delete("grids__c420527")
            store.delete("fanout_runs")


def test_tiles_are_cached_until_their_layer_changes(svc):
    """A tile comes from the cache only while its layer's generation is unchanged, and
    never across views; a change by another client's SQL is seen at once."""
    if svc.kind == "gpkg":
        pytest.skip("tiles need PostGIS")
    outlets = svc.sample.layers["outlets"]
    lon, lat = outlets.geometry.iloc[3].coords[0]
    x, y = tile_of(lon, lat, 15)
    path = f"/tiles/outlets/15/{x}/{y}.mvt"
    first = svc.get(path, svc.keys.regulator)
    again = svc.get(path, svc.keys.regulator)
    assert first.status_code == again.status_code == 200
    assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
    assert again.content == first.content and len(first.content) > 50
    # Another view of the same tile is made for it, not taken from the regulator's.
    other = svc.get(path, svc.keys.admin_b)
    assert other.headers["x-cache"] == "miss"
    name = outlets["name"].iloc[3]
    changed = name + "（已迁址）"
    with psycopg.connect(svc.store_url, autocommit=True) as conn:
        conn.execute("UPDATE outlets SET name = %s WHERE name = %s", [changed, name])
        try:
            after = svc.get(path, svc.keys.regulator)
            assert after.headers["x-cache"] == "miss"
            assert changed.encode() in after.content and changed.encode() not in first.content
            assert svc.get(path, svc.keys.regulator).headers["x-cache"] == "hit"
        finally:
            conn.execute("UPDATE outlets SET name = %s WHERE name = %s", [name, changed])
    back = svc.get(path, svc.keys.regulator)
    assert back.headers["x-cache"] == "miss" and back.content == first.content


def test_staff_phones_stay_in_their_institution_in_tiles(svc):
    staff = svc.sample.layers["staff"]
    located = staff[~staff.geometry.isna() & (staff["institution"] == BANK_A)]
    row = located.iloc[0]
    x, y = tile_of(*row.geometry.coords[0], 14)
    phone = row["phone"].encode()
    assert phone in svc.get(f"/tiles/staff/14/{x}/{y}.mvt", svc.keys.admin_a).content
    assert phone not in svc.get(f"/tiles/staff/14/{x}/{y}.mvt", svc.keys.regulator).content
    assert phone not in svc.get(f"/tiles/staff/14/{x}/{y}.mvt", svc.keys.admin_b).content


# ----------------------------------------------------------------- role boundaries


def test_admin_reads_only_its_institution_whatever_the_url(svc):
    a, b = svc.keys.admin_a, svc.keys.admin_b
    for layer in ("outlets", "devices", "staff", "ledger", "grids"):
        matched, seen, _ = all_pages(svc, f"/collections/{layer}/items", a, limit=1000)
        assert matched == len(seen) > 0, layer
        assert {f["properties"]["institution"] for f in seen} == {BANK_A}, layer
        # naming the other bank in a filter is refused, alone or with their own
        for value in ([BANK_B], [BANK_A, BANK_B]):
            r = svc.get(f"/collections/{layer}/items", a, params={"institution": value})
            assert r.status_code == 403, (layer, value)
    # the other bank's grid layer: no rows, by bbox or not
    whole = ",".join(map(str, bbox_of(svc.sample.layers["units"], 10_000)))
    assert features(svc, "/collections/grids__ycb/items", a, bbox=whole)["numberMatched"] == 0
    assert features(svc, "/collections/grids__ycb/items", b)["numberMatched"] == len(
        svc.sample.layers["grids__ycb"])
    # B's features by id: 404, not 403 (existence is not leaked)
    b_outlet = svc.sample.layers["outlets"].query("institution == @BANK_B")["id"].iloc[0]
    assert svc.get(f"/collections/outlets/items/{b_outlet}", a).status_code == 404
    assert svc.get(f"/collections/outlets/items/{b_outlet}", b).status_code == 200
    b_staff = svc.sample.layers["staff"].query("institution == @BANK_B")["id"].iloc[0]
    assert svc.get(f"/collections/staff/items/{b_staff}", a).status_code == 404
    b_ledger = features(svc, "/collections/ledger/items", b, limit=1)["features"][0]["id"]
    assert svc.get(f"/collections/ledger/items/{b_ledger}", b).status_code == 200
    assert svc.get(f"/collections/ledger/items/{b_ledger}", a).status_code == 404
    # B's staff phone numbers never reach A
    b_phone = svc.sample.layers["staff"].query("institution == @BANK_B")["phone"].iloc[0]
    doc = features(svc, "/collections/staff/items", a, phone=b_phone)
    assert doc["numberMatched"] == 0
    # the regulator's across-bank layer is not the banks'
    assert svc.get("/collections/overlaps/items", a).status_code == 403


def test_regulator_sees_all_banks_and_the_ledger_but_no_phones(svc):
    key = svc.keys.regulator
    matched, seen, _ = all_pages(svc, "/collections/staff/items", key, limit=1000)
    assert matched == len(svc.sample.layers["staff"])
    assert all("phone" not in f["properties"] for f in seen)
    phone = svc.sample.layers["staff"]["phone"].iloc[0]
    r = svc.get("/collections/staff/items", key, params={"phone": phone})
    assert r.status_code == 400  # as if the column did not exist
    one = svc.sample.layers["staff"]["id"].iloc[0]
    assert "phone" not in features(svc, f"/collections/staff/items/{one}", key)["properties"]
    # The ledger holds counts per grid, not people: the regulator reads it (M5).
    assert svc.get("/collections/ledger", key).status_code == 200
    ledger = features(svc, "/collections/ledger/items", key, limit=1000)
    assert ledger["numberMatched"] == len(svc.sample.layers["ledger"])
    banks = {f["properties"]["institution"]
             for f in features(svc, "/collections/outlets/items", key, limit=1000)["features"]}
    assert {BANK_A, BANK_B} <= banks
    assert features(svc, "/collections/overlaps/items", key)["numberMatched"] == 2


def test_ledger_summary_is_aggregate_and_scoped(svc):
    ledger = svc.sample.layers["ledger"]
    rows = svc.get("/ledger/summary", svc.keys.regulator).json()["rows"]
    assert {r["institution"] for r in rows} == set(ledger["institution"])
    nsh = next(r for r in rows if r["institution"] == BANK_A)
    assert nsh["households_total"] == int(ledger.loc[ledger["institution"] == BANK_A,
                                                     "households_total"].sum())
    assert "grid" not in nsh
    own = svc.get("/ledger/summary", svc.keys.admin_a).json()["rows"]
    assert {r["institution"] for r in own} == {BANK_A}
    mine = svc.get("/ledger/summary", svc.keys.worker_a).json()["rows"]
    assert mine and mine[0]["households_total"] < nsh["households_total"]
    assert svc.get("/ledger/summary", svc.keys.regulator,
                   params={"period": "2026-13"}).status_code == 400


def test_worker_reads_its_own_grids_ledger_and_reports(svc):
    key, me = svc.keys.worker_a, svc.sample.worker_a
    grids = svc.sample.layers["grids"]
    mine = set(grids.loc[grids["worker"] == me, "code"])
    matched, seen, _ = all_pages(svc, "/collections/grids/items", key, limit=1000)
    assert {f["id"] for f in seen} == mine and matched == len(mine)
    other = grids.loc[grids["worker"] != me, "code"].iloc[0]
    assert svc.get(f"/collections/grids/items/{other}", key).status_code == 404
    assert svc.get("/collections/grids/items", key, params={"worker": "NSH-S-9999"}
                   ).status_code == 403
    matched, seen, _ = all_pages(svc, "/collections/ledger/items", key, limit=1000)
    assert matched == len(seen) > 0
    assert {f["properties"]["grid"] for f in seen} <= mine
    assert {f["properties"]["institution"] for f in seen} == {BANK_A}
    assert features(svc, "/collections/grids__ycb/items", key)["numberMatched"] == 0
    events = features(svc, "/collections/events/items", key)["features"]
    assert {e["properties"]["reporter"] for e in events} == {me} and len(events) == 2
    assert svc.get("/collections/households/items", key).status_code == 403
    assert svc.get("/collections/overlaps/items", key).status_code == 403
    # colleagues of the same bank (with phones), never the other bank's
    staff = features(svc, "/collections/staff/items", key, limit=1000)["features"]
    assert {s["properties"]["institution"] for s in staff} == {BANK_A}
    assert all("phone" in s["properties"] for s in staff)


def test_events_follow_the_reporters_institution(svc):
    a = features(svc, "/collections/events/items", svc.keys.admin_a)["features"]
    assert {e["id"] for e in a} == {"E-1", "E-2"}
    b = features(svc, "/collections/events/items", svc.keys.admin_b)["features"]
    assert {e["id"] for e in b} == {"E-3"}
    assert svc.get("/collections/events/items/E-3", svc.keys.admin_a).status_code == 404
    assert len(features(svc, "/collections/events/items", svc.keys.regulator)["features"]) == 3


def test_feature_ids_are_the_layer_keys(svc):
    grids = svc.sample.layers["grids"]
    code = grids["code"].iloc[5]
    doc = features(svc, f"/collections/grids/items/{code}", svc.keys.regulator)
    assert doc["id"] == code and doc["properties"]["code"] == code
    assert {link["rel"] for link in doc["links"]} >= {"self", "collection"}
    ring = np.asarray(doc["geometry"]["coordinates"][0])
    expected = shapely.get_coordinates(grids.geometry.iloc[5].exterior)
    assert np.allclose(ring, expected, atol=1e-6)
    homes = svc.sample.layers["households"]
    one = features(svc, f"/collections/households/items/{homes['id'].iloc[3]}",
                   svc.keys.regulator)
    assert one["properties"]["count"] == int(homes["count"].iloc[3])
