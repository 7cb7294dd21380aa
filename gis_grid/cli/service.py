"""The service commands of ``gisgrid``: ``serve`` and ``keys`` (the ``api`` package).

The store and web modules are imported inside the commands so that ``gisgrid --help``
stays instant.
"""

from __future__ import annotations

import json
import os

import click

from gis_grid.cli.common import store_option


@click.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Server processes. On PostGIS 2 per core serve most; each holds up to "
                   "$GISGRID_API_POOL_SIZE connections.")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Largest upload accepted; larger ones get 413. Default 50 "
                   "($GISGRID_API_MAX_UPLOAD_MB).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info",
                                                "debug"]), default="info", show_default=True)
def serve(store, host, port, workers, max_upload_mb, log_level):
    """Serve the store over HTTP: OGC API – Features, vector tiles, analyses, uploads.

    \b
    Endpoints (JSON, GeoJSON or HTML with ?f=html):
      /                                     landing page, links to all below
      /conformance, /openapi.json, /docs    what the API implements, its definition
      /collections                          the layers you may read
      /collections/{id}/items               features: bbox, bbox-crs, limit (1-10000),
                                            offset (next links), crs (CRS84, EPSG:4326,
                                            EPSG:4490, EPSG:3857), ?field=value filters
      /collections/{id}/items/{featureId}   one feature by its key (code, id) or number
      /tiles/{id}/{z}/{x}/{y}.mvt           vector tiles (PostGIS stores)
      POST /analyses/validate|coverage|gaps|overlap|assessment|placement
                                            start a job; poll /jobs/{jobId}
      /ledger/summary                       ledger aggregates
      POST /imports/{layer}                 upload a file (checked, all or nothing)

    \b
    Every data endpoint needs an API key (see `gisgrid keys create --help`), sent as
    `Authorization: Bearer <token>` or `X-API-Key: <token>`; what each key may read and
    write depends on its role (regulator, admin, worker) — see api/auth.py.

    \b
    Example:
      gisgrid keys create --role regulator --store zigui.gpkg
      gisgrid serve --store zigui.gpkg --port 8000
      ogrinfo -ro OAPIF:http://127.0.0.1:8000/ --config GDAL_HTTP_HEADERS "X-API-Key: gg_…"
    """
    import uvicorn

    from api.app import app_from_env
    from layers.store import open_store, resolve_store_url

    url = resolve_store_url(store)
    with open_store(url):  # fail here, plainly, if the store cannot be opened
        pass
    os.environ["GISGRID_STORE"] = url
    if max_upload_mb is not None:
        os.environ["GISGRID_API_MAX_UPLOAD_MB"] = str(max_upload_mb)
    # Every worker process answers a poll: on PostGIS the jobs are in the store's table;
    # on GeoPackage in one folder of job files, without GISGRID_API_JOBS_DIR one named
    # after the store (the same for every worker and across restarts; api.jobs).
    # uvicorn's worker processes import the app factory by its import string (their only
    # way in); the string is made from the imported function, so it moves with the code.
    # loop/http "auto": uvloop and httptools (dependencies of ours) when importable.
    factory = f"{app_from_env.__module__}:{app_from_env.__qualname__}"
    uvicorn.run(factory, factory=True, host=host, port=port,
                workers=workers, log_level=log_level, proxy_headers=True,
                loop="auto", http="auto")


@click.group()
def keys():
    """Create, list and revoke API keys of the HTTP service (`gisgrid serve`).

    A token is printed once, at creation; the store keeps only its salted hash (table
    layer api_keys). Roles: regulator (reads every institution's grids, outlets, devices,
    staff without phones, aggregates), admin (reads and writes its institution's layers
    and ledger), worker (reads its own grids, writes its own ledger rows and reports).
    """


@keys.command(name="create")
@click.option("--role", type=click.Choice(["regulator", "admin", "worker"]), required=True)
@click.option("--institution", default=None, metavar="ID",
              help="Institution id (NSH, YCB …); required for admin and worker.")
@click.option("--worker", default=None, metavar="STAFF_ID",
              help="The grid worker's staff id (as in staff.id and grids.worker); "
                   "required for worker.")
@store_option
def create(role, institution, worker, store):
    """Create a key and print its token (shown only this once)."""
    from api.auth import create_key
    from layers.store import open_store

    try:
        from api.auth import check_principal

        check_principal(role, institution, worker)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    with open_store(store) as target:
        key_id, token = create_key(target, role, institution, worker)
    click.echo(f"key {key_id} ({role}"
               + (f", {institution}" if institution else "")
               + (f", {worker}" if worker else "") + ") — token (keep it; it is not "
               "shown again):", err=True)
    click.echo(token)


@keys.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@store_option
def list_(as_json, store):
    """List the keys (never their tokens or hashes)."""
    from api.auth import list_keys
    from layers.store import open_store

    with open_store(store) as source:
        frame = list_keys(source)
    rows = json.loads(frame.to_json(orient="records", date_format="iso", force_ascii=False))
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for row in rows:
        state = "revoked" if row["revoked"] else "active"
        click.echo(f"  {row['key_id']}  {row['role']:<9} {row['institution'] or '-':<8} "
                   f"{row['worker'] or '-':<14} {state:<7} created {row['created']}")


@keys.command()
@click.argument("key_id")
@store_option
def revoke(key_id, store):
    """Revoke KEY_ID; a running server stops accepting it within
    $GISGRID_API_KEYS_TTL_S seconds (default 30)."""
    from api.auth import revoke_key
    from layers.store import open_store

    with open_store(store) as target:
        revoke_key(target, key_id)
    click.echo(f"revoked {key_id}")
