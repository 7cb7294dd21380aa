"""Uploads: a layer file checked and stored all-or-nothing, within the caller's rows.

``POST /imports/{layer}`` takes a multipart ``file`` — GeoJSON, GeoPackage, zipped
Shapefile or CSV — and the options of ``gisgrid import`` as query parameters (``crs``
incl. ``gcj02`` / ``bd09``, ``lon_col``, ``lat_col``, ``encoding``, ``source_layer``,
``fix_geometry``, ``max_outside`` in km). The file goes through
``layers.transfer.import_file``, the one checked
import: every problem is listed with its row or feature and nothing is stored (422).

What is stored follows the caller's write rule (``api.auth.write_rule``): every row must
belong to the caller (an administrator's institution; a worker's grids or own reports),
else 403 with the rows named. The write modes are those of ``gisgrid import --mode``, by
the layer's key (the schema's key; for the ledger grid + institution + period), applied
to the caller's rows only: ``replace`` makes the caller's rows of the layer the file's;
``append`` adds rows with new keys; ``upsert`` adds rows and replaces those with the same
key; ``delete`` removes the caller's rows with the file's keys. Everyone else's rows are
kept as they are, and a key used by a row the caller may not change is refused (422). A
layer that exists needs ``mode`` (422 naming the modes the caller may use), as the CLI
needs ``--mode``. Administrators may use every mode; where the rule allows upserts only
(a worker's ledger rows, reports) ``append`` is allowed too.

Each upload is one ``Store.change``: references are checked against the store's current
state (an unknown institution, or devices left pointing at a removed outlet: 422 naming
the rows), the layer is replaced in one transaction, and the change is logged with the
key's role and institution as who and ``POST /imports/<layer>?mode=…`` as how
(``gisgrid history``). A failure leaves the layer as it was.

Bodies larger than ``settings.max_upload_bytes`` are refused with 413 before they are
read (``Content-Length``) or as soon as the limit is passed (chunked uploads).
"""

from __future__ import annotations

import re
import tempfile
import zipfile
from pathlib import Path
from typing import Annotated, Literal

import anyio
import geopandas as gpd
import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.auth import Namespace, Principal, layer_kind, namespace, write_rule
from api.dependencies import Caller, get_provider
from api.errors import Forbidden, PayloadTooLarge, Unprocessable
from api.providers import Provider
from gis_grid.errors import InputError, Problem, StoreError
from gis_grid.model import schema_for
from layers.files import FORMATS, read_file
from layers.history import Actor, Change, key_text
from layers.store import LayerInfo, Store
from layers.transfer import import_file

router = APIRouter(tags=["imports"])
#: Keys of layers whose schema has none (rows are identified by these columns together).
UNIQUE_KEYS = {"ledger": ("grid", "institution", "period")}


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes (an upload, or an
    analysis with inline candidates), decided from ``Content-Length`` before reading,
    else while the body streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        seen = 0
        state = {"started": False, "refused": False}

        async def counted() -> Message:
            nonlocal seen
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit and not state["started"]:
                    # Answer 413 now and tell the app the client has gone, so that it
                    # stops reading; whatever it answers then is dropped.
                    state["refused"] = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message: Message) -> None:
            if state["refused"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except Exception:
            if not state["refused"]:
                raise

    async def _refuse(self, send: Send) -> None:
        mb = self.limit / 2**20
        response = JSONResponse({"code": "PayloadTooLarge",
                                 "description": f"uploads are limited to {mb:g} MiB "
                                                f"({self.limit} bytes)"}, status_code=413)
        await response({"type": "http"}, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class _ScopeViolation(Exception):
    def __init__(self, column: str, rows: np.ndarray, values: list) -> None:
        self.column, self.rows, self.values = column, rows, values


class _ScopedWrite:
    """The store as an upload sees it: what ``import_file`` asks of it passes through,
    and its one ``change`` is checked against the caller's rule and limited to the rows
    the caller may change (``Store.change(mine=...)``)."""

    def __init__(self, store: Store, scope: dict[str, tuple], actor: Actor,
                 names: Namespace | None = None):
        self.inner, self.url = store, store.url
        self.scope, self.actor, self.names = scope, actor, names
        self.result: Change | None = None

    def layers(self) -> list[LayerInfo]:
        return self.inner.layers()

    def read(self, name: str, **kwargs):
        # The import's checks read the store as it is: the territory for the place check,
        # the institution's grids for the ledger (layers.checks.store_problems).
        return self.inner.read(name, **kwargs)

    def _mine(self, frame: pd.DataFrame) -> np.ndarray:
        mask = np.ones(len(frame), dtype=bool)
        for column, allowed in self.scope.items():
            if column not in frame.columns:
                mask[:] = False
                continue
            mask &= frame[column].astype("object").isin(list(allowed)).to_numpy(dtype=bool)
        return mask

    def change(self, name: str, frame: pd.DataFrame, mode: str, **options) -> Change:
        frame = frame.reset_index(drop=True)
        _schema_locked(name, frame, options.get("source") or name)
        if mode != "delete":  # a file of keys to delete holds no scope columns
            for column, allowed in self.scope.items():
                values = frame[column] if column in frame.columns else pd.Series(
                    [None] * len(frame))
                bad = ~values.astype("object").isin(list(allowed)).to_numpy(dtype=bool)
                if bad.any():
                    raise _ScopeViolation(column, np.flatnonzero(bad), values[bad].tolist())
        if self.names is not None and mode != "delete":
            self._check_names(name, frame, options.get("source") or name,
                              options.get("labels"))
        if layer_kind(name) == "grids" and mode != "delete":
            _check_grids(self.inner, name, frame, mode, self._mine,
                         options.get("source") or name)
        options["actor"] = self.actor
        self.result = self.inner.change(name, frame, mode, mine=self._mine, **options)
        return self.result


    def _check_names(self, name: str, frame: pd.DataFrame, source: str,
                     labels: list[str] | None) -> None:
        """The file's new keys (those not among the caller's rows) lie in the caller's
        namespace (``api.auth.Namespace``), else 422 naming the rows — whether or not
        another caller's row holds the key, so the answer tells nothing of others'
        rows (issue 18, M4)."""
        names = self.names
        if names.key not in frame.columns:
            return  # the import names the missing key field
        keys = key_text(frame[names.key]).reset_index(drop=True)
        seen: set = set()
        if self.inner.has(name):
            wanted = [names.key, *(c for c in self.scope if c != names.key)]
            try:
                current = self.inner.read(name, columns=wanted)
            except (KeyError, ValueError, StoreError):  # a field the layer lacks
                current = self.inner.read(name)
            if names.key in current.columns:
                seen = set(key_text(current[names.key])[self._mine(current)])
        bad = ~keys.isin(seen).to_numpy(dtype=bool) & names.outside(
            keys, names.required(frame))
        if not bad.any():
            return
        rows = np.flatnonzero(bad)
        where = [labels[i] if labels and i < len(labels) else f"row {i + 1}"
                 for i in rows[:50]]
        raise InputError(
            [Problem(source, w, names.key, f"{keys.iloc[i]!r} is not one of your rows, and "
                     f"a new {names.key} begins with {names.describe()} ({names.why})",
                     f"is not one of your rows, and a new {names.key} begins with "
                     f"{names.describe()}")
             for w, i in zip(where, rows, strict=False)],
            source=f"{source}: {len(rows)} new {names.key}(s) outside your namespace")


def _schema_locked(name: str, frame: pd.DataFrame, source: str) -> None:
    """An upload carries only the layer's fields (issue 18, M3): any other column —
    an extra header, a duplicate one — is refused naming it, so no upload can add a
    column to a layer every caller reads."""
    schema = schema_for(name)
    if schema is None:
        return
    known = set(schema.field_names) | {"geometry", frame.geometry.name
                                       if isinstance(frame, gpd.GeoDataFrame) else "geometry"}
    extra = [str(c) for c in frame.columns if c not in known]
    if extra:
        shown = ", ".join(repr(c[:60]) for c in extra[:10])
        raise InputError([Problem(source, None, c[:60], f"column {c[:60]!r} is not a field of "
                                  f"{layer_kind(name)}; an upload carries only the layer's "
                                  "fields (gisgrid schema LAYER lists them)", "unknown column")
                          for c in extra[:50]],
                         source=f"{source}: {len(extra)} column(s) not in the layer ({shown})")


#: The problems of ``gisgrid validate`` that refuse an uploaded grid layer: the partition
#: itself (井田制). Staffing (no_worker, worker_multiple) and households outside any grid
#: are reported by ``gisgrid validate`` but do not block an upload.
GRID_REFUSALS = ("invalid_geometry", "duplicate_code", "missing_parent", "code_prefix",
                 "gap", "parent_uncovered", "overlap", "sliver", "outside_territory",
                 "child_outside_parent", "multipart", "coverage_edge")


def _check_grids(store: Store, name: str, frame: pd.DataFrame, mode: str, mine, source: str
                 ) -> None:
    """The grid layer as the upload would leave it, checked as ``gisgrid validate`` checks
    it (``gis_grid.topology.validate_grids``, against the territory): a gap, overlap,
    sliver or broken nesting of the uploader's grids is refused (422) with the problems,
    on both stores (issue 18, M6)."""
    from gis_grid.topology import validate_grids

    current = store.read(name) if store.has(name) else None
    if current is not None and len(current):
        frame = frame.to_crs(current.crs) if isinstance(frame, gpd.GeoDataFrame) and \
            frame.crs is not None and not frame.crs.equals(current.crs) else frame
        theirs = current[~mine(current)]
        own = current[mine(current)]
        if mode in ("upsert", "append") and len(own):
            codes = set(frame["code"].astype(str))
            own = own[~own["code"].astype(str).isin(codes)]
            frame = pd.concat([own, frame], ignore_index=True)
        after = gpd.GeoDataFrame(pd.concat([theirs, frame], ignore_index=True),
                                 geometry="geometry", crs=current.crs)
    else:
        after = frame
    if not len(after):
        return
    territory = store.read("territory") if store.has("territory") else None
    report = validate_grids(after, territory=territory)
    problems = report.problems
    problems = problems[problems["kind"].isin(GRID_REFUSALS)]
    uploaded = set(frame["code"].astype(str))
    concerned = problems["codes"].fillna("").astype(str).map(
        lambda codes: not codes or bool(set(codes.split(";")) & uploaded))
    problems = problems[concerned.to_numpy(dtype=bool)]
    if len(problems):
        raise InputError([Problem(source, f"grids {r.codes}" if r.codes else None, "geometry",
                                  f"{r.kind} — breaks the well-field rule (不重复、不遗漏): "
                                  f"{r.message}", r.kind)
                          for r in problems.head(50).itertuples(index=False)],
                         source=f"{source}: the grid layer would break the well-field rule "
                                f"(不重复、不遗漏): {len(problems)} problem(s)")


#: The modes a write rule's modes allow (appending is upserting new keys only; an
#: administrator who may replace her rows may also delete some of them).
_MODES_ALLOWED = {"replace": ("replace", "append", "upsert", "delete"),
                  "upsert": ("append", "upsert")}


@router.post("/imports/{layer}", status_code=201, summary="Upload a layer file (checked)",
             responses={413: {"description": "Too large"},
                        422: {"description": "Problems, with rows; nothing stored"}})
async def upload(
    request: Request,
    file: UploadFile,
    who: Caller,
    provider: Annotated[Provider, Depends(get_provider)],
    layer: Annotated[str, PathParam(pattern=r"^[a-z][a-z0-9_]{0,59}$",
                                    description="Layer to write (outlets, grids__nsh, …).")],
    crs: Annotated[str | None, Query(max_length=40, description="Coordinates of the file: "
                                     "an EPSG code, gcj02 (Amap, Tencent) or bd09 (Baidu). "
                                     "Default: the file's own, else WGS84.")] = None,
    lon_col: Annotated[str, Query(max_length=64)] = "lon",
    lat_col: Annotated[str, Query(max_length=64)] = "lat",
    encoding: Annotated[str | None, Query(max_length=20)] = None,
    source_layer: Annotated[str | None, Query(max_length=64)] = None,
    fix_geometry: bool = False,
    max_outside: Annotated[float, Query(ge=0, le=1000, description="How far, in km, a "
                                        "point or shape may lie outside the territory "
                                        "(gisgrid import --max-outside).")] = 20.0,
    mode: Annotated[Literal["replace", "append", "upsert", "delete"] | None, Query(
        description="How the file changes your rows of the layer, by its key: replace (your "
                    "rows become the file's), append (add rows with new keys), upsert (add "
                    "or change rows by key), delete (remove your rows with the file's keys)."
                    " Required when the layer exists; for a new layer: replace for "
                    "administrators, upsert otherwise.")] = None,
) -> JSONResponse:
    """Check an uploaded file as ``gisgrid import`` does and store it within your rows."""
    schema = schema_for(layer)
    rule, modes = write_rule(who, layer, set(schema.field_names) if schema else set())
    allowed = tuple(dict.fromkeys(m for rule_mode in modes
                                  for m in _MODES_ALLOWED.get(rule_mode, (rule_mode,))))
    if mode is None:
        held = await anyio.to_thread.run_sync(provider.store.layers)
        if any(info.name == layer for info in held):
            raise Unprocessable(f"layer {layer!r} exists: choose how the file changes your "
                                f"rows with mode={'|'.join(allowed)}")
    chosen = mode or modes[0]
    if chosen not in allowed:
        raise Forbidden(f"mode {chosen!r}: you ({who}) may use {', '.join(allowed)} on "
                        f"{layer}")
    key = UNIQUE_KEYS.get(layer_kind(layer)) or ((schema.key,) if schema and schema.key
                                                 else ())
    if chosen in ("upsert", "delete") and not key:
        raise Unprocessable(f"layer {layer!r} has no key to {chosen} by; use mode=replace "
                            "or mode=append")
    scope = {column: tuple(values) for column, values in rule.fixed.items()}
    for column, lookup in rule.lookups.items():
        scope[column] = await provider.lookup(lookup, who)
    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in FORMATS:
        raise Unprocessable(f"file {file.filename!r}: unknown type {suffix or '(none)'}; "
                            f"send one of {', '.join(FORMATS)}")

    settings = request.app.state.settings

    def run() -> dict:
        with tempfile.TemporaryDirectory(prefix="gisgrid-upload-") as folder:
            path = Path(folder) / f"upload{suffix}"
            lines = 0
            with path.open("wb") as out:
                while chunk := file.file.read(1 << 20):
                    out.write(chunk)
                    lines += chunk.count(b"\n")
                    if suffix == ".csv" and lines > settings.max_upload_rows + 1:
                        raise _too_many(settings, file.filename)
            _check_unpacked(path, suffix, settings, file.filename)
            actor = Actor(f"api key {who.key_id}: {who}",
                          f"POST /imports/{layer}?mode={chosen} ({file.filename})")
            target = _ScopedWrite(provider.store, scope, actor, namespace(who, layer))
            options = dict(crs=crs, lon=lon_col, lat=lat_col, encoding=encoding,
                           source_layer=source_layer)
            try:
                report = import_file(target, path, layer, mode=chosen,
                                     fix_geometry=fix_geometry,
                                     max_outside=max_outside * 1000, **options)
            except _ScopeViolation as exc:
                raise _refusal(exc, path, layer, who, options, file.filename) from None
            except InputError as exc:
                raise _renamed(exc, file.filename) from None
            change = target.result
            return {"layer": layer, "source": file.filename, "mode": chosen,
                    "repaired": report.repaired, "stored": report.count,
                    "added": len(change.added), "changed": len(change.changed),
                    "removed": len(change.removed), "total": change.rows_after,
                    "change": change.id}

    # The store keeps writers of the layer apart (``Store.modify``), across processes.
    result = await anyio.to_thread.run_sync(run)
    provider.invalidate()
    return JSONResponse(result, status_code=201)


def _too_many(settings, filename: str | None) -> PayloadTooLarge:
    return PayloadTooLarge(f"{filename or 'upload'}: more than {settings.max_upload_rows:,} "
                           "rows, the most one upload may hold (setting GISGRID_API_MAX_"
                           "UPLOAD_ROWS); split the file or load it with gisgrid import")


def _check_unpacked(path: Path, suffix: str, settings, filename: str | None) -> None:
    """Refuse (413) a file whose unpacked size or row count passes the limits, before it
    is read: a zip's sizes from its directory (a workbook is a zip too), a layer's
    feature count from its header, a workbook's rows counted in its sheets as they are
    unpacked."""
    if suffix in (".zip", ".xlsx"):
        try:
            with zipfile.ZipFile(path) as archive:
                unpacked = sum(info.file_size for info in archive.infolist())
        except zipfile.BadZipFile:
            kind = "a zip file" if suffix == ".zip" else "an Excel workbook (.xlsx)"
            raise Unprocessable(f"{filename or 'upload'}: not {kind}") from None
        if unpacked > settings.max_upload_unpacked_bytes:
            raise PayloadTooLarge(
                f"{filename or 'upload'}: {unpacked / 2**20:,.0f} MB unpacked, more than "
                f"{settings.max_upload_unpacked_bytes / 2**20:,.0f} MB (setting GISGRID_API_"
                "MAX_UPLOAD_UNPACKED_MB)")
    if suffix == ".xlsx" and _sheet_rows(path) > settings.max_upload_rows + 1:
        raise _too_many(settings, filename)  # + 1: the header row
    if suffix in (".zip", ".gpkg", ".geojson", ".json"):
        import pyogrio

        target = f"/vsizip/{path}" if suffix == ".zip" else str(path)
        try:
            features = int(pyogrio.read_info(target).get("features") or 0)
        except Exception:  # noqa: BLE001 — unreadable: the import names what is wrong
            return
        if features > settings.max_upload_rows:
            raise _too_many(settings, filename)


#: A row element of a sheet's XML, with or without a namespace prefix (``<x:row r="2">``).
_ROW_TAG = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?row[\s>/]")


def _sheet_rows(path: Path) -> int:
    """The most rows in one sheet of a workbook: ``<row`` elements counted while each
    sheet's XML is unpacked in chunks (zipfile stops at the declared size, which the
    caller has bounded), without parsing it — a sheet's ``dimension`` could lie."""
    most = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not (info.filename.startswith("xl/worksheets/") and
                    info.filename.endswith(".xml")):
                continue
            rows, pending = 0, b""
            with archive.open(info) as sheet:
                while chunk := sheet.read(1 << 20):
                    pending += chunk
                    cut = pending.rfind(b"<")  # a tag may go on in the next chunk
                    rows += len(_ROW_TAG.findall(pending, 0, max(cut, 0)))
                    pending = pending[cut:] if cut >= 0 else b""
            rows += len(_ROW_TAG.findall(pending))
            most = max(most, rows)
    return most


def _renamed(exc: InputError, filename: str | None) -> InputError:
    """The problems named after the uploaded file, not the temporary copy."""
    name = filename or "upload"
    problems = [Problem(name, p.where, p.field, p.message, p.kind) for p in exc.problems]
    return InputError(problems, source=name)


def _refusal(exc: _ScopeViolation, path: Path, layer: str, who: Principal, options: dict,
             filename: str | None) -> Exception:
    """403 naming the rows outside the caller's scope (labels as the import gives them)."""
    raw = read_file(path, layer=options["source_layer"], crs=options["crs"],
                    lon=options["lon"], lat=options["lat"], encoding=options["encoding"])
    labels = raw.labels or [f"feature {i + 1}" for i in range(len(raw.frame))]
    name = filename or "upload"
    shown = [labels[i] if i < len(labels) else f"feature {i + 1}" for i in exc.rows[:50]]
    problems = [{"source": name, "where": w, "field": exc.column,
                 "message": f"{v!r} is not yours ({who})"}
                for w, v in zip(shown, exc.values, strict=False)]
    return Forbidden(f"{len(exc.rows)} row(s) of {name} lie outside what you ({who}) may "
                     f"write in {layer}: {exc.column} must be one of your own",
                     extra={"problems": problems})
