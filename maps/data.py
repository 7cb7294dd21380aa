"""What the maps show, gathered once: layers from a store and the facts of each grid.

The interactive map (``maps.interactive``) and the atlas (``maps.atlas``) draw the same
things and print the same numbers, so both take a ``dict`` of layers (names as in
``gis_grid.model.LAYERS``) and ask this module for:

- ``load_layers``: the layers a map needs, read from a store;
- ``grid_facts``: one row per grid with what people ask about — code, name, level, kind,
  institution, outlet, manager, worker, phone, households, outlets, devices, files %;
- ``household_coverage``: which household points are covered (``gis_grid.coverage``);
- ``household_cells``: covered / uncovered households summed in small square cells, so a
  county of 10^5 points is drawn as a few thousand circles;
- ``staff_points``: staff placed on the map (their own point, else their grid's).

Everything is vectorised (``STRtree.query`` for points in polygons); nothing loops over
features in Python on a hot path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import geopandas as gpd
import numpy as np
import pandas as pd
import pyproj
import shapely

from gis_grid.crs import metric_crs
from gis_grid.errors import GisGridError, StoreError
from gis_grid.model import STORAGE_CRS
from gis_grid.naming import drawn_grid_key
from gis_grid.staffing import grid_staffing
from maps.symbology import area_style

#: Layers of the data model a map draws when the store has them (grids come separately).
MAP_LAYERS = ("territory", "townships", "units", "households", "institutions", "outlets",
              "devices", "staff", "ledger")

#: Side of the cells households are summed in for display, in metres: about a hamlet
#: (自然村). At 250 m the Zigui sample makes 8,200 circles and the page opens 0.6 s slower
#: than at 400 m (3,500 circles) on the 2-core test machine.
HOUSEHOLD_CELL_M = 400.0

FACT_COLUMNS = ("code", "name", "level", "kind", "zone", "parent", "institution_id",
                "institution", "outlet", "manager", "worker", "phone", "households",
                "outlets", "devices", "files_pct")


def load_layers(store: str | None = None, *, grids: str | Sequence[str] = "grids"
                ) -> dict[str, pd.DataFrame]:
    """Read the layers a map or atlas draws from a store.

    Parameters
    ----------
    store
        A GeoPackage path or PostGIS URL (see ``layers.store.open_store``).
    grids
        The grid layer to draw (``grids`` or ``grids__NAME``), returned under the key
        ``"grids"``; or several (one per bank), the first as ``"grids"`` and the others
        under their own names (the map draws each; the atlas, the first).

    Returns
    -------
    dict
        The grid layer(s) and every layer of ``MAP_LAYERS`` the store holds, plus the
        analysis layers (``service_blanks``, ``units_without_service_point``,
        ``coverage_gaps``, ``overlaps…``) it holds.

    Raises
    ------
    StoreError
        A grid layer is not in the store.
    """
    from layers.store import open_store

    wanted = [grids] if isinstance(grids, str) else list(grids)
    if not wanted:
        raise GisGridError("load_layers: name at least one grid layer")
    with open_store(store) as source:
        names = {info.name for info in source.layers()}
        for name in wanted:
            if name not in names:
                raise StoreError(
                    f"{source.url}: no grid layer {name!r}; make one with `gisgrid partition` "
                    f"or import one with `gisgrid import FILE --layer {name}`")
        layers: dict[str, pd.DataFrame] = {"grids": source.read(wanted[0])}
        for k, name in enumerate(wanted[1:], start=1):
            layers[drawn_grid_key(name, k)] = source.read(name)
        for name in MAP_LAYERS:
            if name in names:
                layers[name] = source.read(name)
        for name in sorted(names):
            if area_style(name) is not None:
                layers[name] = source.read(name)
    return layers


def analysis_rows(name: str, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The features of an analysis layer worth drawing: ``grid_overlap`` lists every unit
    with how many banks' grids cover it, and only those of two or more are overlaps."""
    style = area_style(name)
    if style is not None and style.label == "跨行重叠" and "institutions" in frame.columns:
        return frame[pd.to_numeric(frame["institutions"], errors="coerce") >= 2]
    return frame


def check_grids(grids: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The grid layer in the storage CRS, with the columns the maps rely on.

    Raises ``GisGridError`` naming what is missing.
    """
    if not isinstance(grids, gpd.GeoDataFrame):
        raise GisGridError("grids: expected a GeoDataFrame of grid polygons")
    missing = [c for c in ("code", "level", "kind") if c not in grids.columns]
    if missing:
        raise GisGridError(f"grids: missing field(s) {', '.join(missing)} "
                           "(see the grids schema in gis_grid/model.py)")
    if grids.crs is None:
        raise GisGridError("grids: the layer has no CRS")
    if len(grids) == 0:
        raise GisGridError("grids: the layer is empty; there is nothing to map")
    kinds = grids.geom_type
    other = kinds[~kinds.isin(["Polygon", "MultiPolygon"])]
    if len(other):
        raise GisGridError(f"grids: {len(other)} grid(s) are not polygons (e.g. grid "
                           f"{grids.loc[other.index[0], 'code']}: {other.iloc[0]}); "
                           "check the layer with `gisgrid validate`")
    grids = grids.to_crs(STORAGE_CRS) if not grids.crs.equals(STORAGE_CRS) else grids
    grids = grids.copy()
    grids["level"] = grids["level"].astype(int)
    grids["code"] = grids["code"].astype(str)
    return grids.sort_values(["level", "code"], kind="stable").reset_index(drop=True)


def _digits(codes) -> np.ndarray:
    return np.array([re.sub(r"[^0-9A-Za-z]", "", str(c)) for c in codes], dtype=object)


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) \
        and str(value) not in ("", "nan", "None", "<NA>")


def grid_names(grids: pd.DataFrame, units: pd.DataFrame | None,
               townships: pd.DataFrame | None) -> pd.Series:
    """A readable name for each grid: the village / community or township whose division
    code its code spells (``420527-101-203`` → unit 420527101203), else the name of the
    nearest named ancestor followed by the grid's last code segment."""
    names: dict[str, str] = {}
    for table in (townships, units):
        if table is not None and "name" in table.columns:
            names.update(zip(table["code"].astype(str), table["name"].astype(str),
                             strict=True))
    digits = _digits(grids["code"])
    own = pd.Series([names.get(d.ljust(12, "0")) if len(d) <= 12 else None for d in digits],
                    index=grids.index, dtype=object)
    by_code = dict(zip(grids["code"], own, strict=True))
    parents = dict(zip(grids["code"], grids.get("parent", pd.Series(index=grids.index)),
                       strict=True))
    out = []
    for code, name in zip(grids["code"], own, strict=True):
        if name is not None:
            out.append(name)
            continue
        # A finer grid (e.g. a balanced level-3 grid) is named after its ancestor.
        parent, seen = parents.get(code), 0
        while _present(parent) and by_code.get(parent) is None and seen < 3:
            parent, seen = parents.get(parent), seen + 1
        base = by_code.get(parent) if _present(parent) else None
        tail = str(code).rsplit("-", 1)[-1]
        out.append(f"{base} {tail}号网格" if base else f"{tail}号网格")
    return pd.Series(out, index=grids.index, dtype=object)


def _staff_lookup(staff: pd.DataFrame | None) -> dict[str, tuple[str, str | None]]:
    """Staff id and name → (name, phone)."""
    if staff is None or len(staff) == 0:
        return {}
    phones = staff["phone"] if "phone" in staff.columns else pd.Series(None, index=staff.index)
    lookup: dict[str, tuple[str, str | None]] = {}
    for sid, name, phone in zip(staff["id"].astype(str), staff["name"].astype(str), phones,
                                strict=True):
        entry = (name, str(phone) if _present(phone) else None)
        lookup.setdefault(name, entry)
        lookup[sid] = entry
    return lookup


def _points_per_polygon(points: gpd.GeoDataFrame | None, polygons: np.ndarray) -> np.ndarray:
    """How many of ``points`` lie in each polygon (a point on a shared border counts in
    each polygon touching it)."""
    if points is None or len(points) == 0:
        return np.zeros(len(polygons), dtype=int)
    geoms = points.geometry.values
    geoms = geoms[~(shapely.is_missing(geoms) | shapely.is_empty(geoms))]
    tree = shapely.STRtree(polygons)
    _, hit = tree.query(geoms, predicate="intersects")
    return np.bincount(hit, minlength=len(polygons))


def _files_pct(grids: pd.DataFrame, ledger: pd.DataFrame | None) -> np.ndarray:
    """Households with files (建档) as a percentage of households, per grid, from the
    latest period of the ledger (台账). A ledger row belongs to a grid when its grid code,
    dashes aside, starts with the grid's (a township grid sums its villages); a grid with
    no row of its own (a level-3 grid under a village ledger) takes its parent's rate. A
    grid owned by an institution counts only that institution's rows."""
    pct = np.full(len(grids), np.nan)
    need = ("grid", "institution", "households_total", "households_files")
    if ledger is None or len(ledger) == 0 or any(c not in ledger.columns for c in need):
        return pct
    rows = ledger
    if "period" in rows.columns:
        rows = rows[rows["period"].astype(str) == rows["period"].astype(str).max()]
    codes = _digits(rows["grid"])
    totals = rows["households_total"].to_numpy(float)
    files = rows["households_files"].to_numpy(float)
    owners = rows["institution"].astype(str).to_numpy()
    digits = _digits(grids["code"])
    insts = grids["institution"] if "institution" in grids.columns else \
        pd.Series(None, index=grids.index)
    sums: dict[tuple[str, str | None], tuple[float, float]] = {}
    for length in sorted({len(d) for d in digits}):
        prefix = np.array([c[:length] if len(c) >= length else "" for c in codes],
                          dtype=object)
        frame = pd.DataFrame({"p": prefix, "i": owners, "t": totals, "f": files})
        frame = frame[frame["p"] != ""]
        for (p, i), (t, f) in frame.groupby(["p", "i"])[["t", "f"]].sum().iterrows():
            t0, f0 = sums.get((p, i), (0.0, 0.0))
            sums[(p, i)] = (t0 + t, f0 + f)
        for p, (t, f) in frame.groupby("p")[["t", "f"]].sum().iterrows():
            t0, f0 = sums.get((p, None), (0.0, 0.0))
            sums[(p, None)] = (t0 + t, f0 + f)
    for k, (d, inst) in enumerate(zip(digits, insts, strict=True)):
        t, f = sums.get((d, str(inst) if _present(inst) else None), (0.0, 0.0))
        if t > 0:
            pct[k] = 100.0 * f / t
    # A grid without rows of its own inherits its parent's rate (coarsest level first).
    if "parent" in grids.columns:
        index = {code: k for k, code in enumerate(grids["code"])}
        for k in np.argsort(grids["level"].to_numpy(), kind="stable"):
            parent = grids["parent"].iloc[k]
            if np.isnan(pct[k]) and _present(parent) and parent in index:
                pct[k] = pct[index[parent]]
    return pct


def grid_facts(layers: dict[str, pd.DataFrame], grids: gpd.GeoDataFrame | None = None
               ) -> pd.DataFrame:
    """The facts of each grid that the map's popups and the atlas's tables show.

    Parameters
    ----------
    layers
        Layers by name; uses ``grids`` (unless ``grids`` is given), ``units``,
        ``townships``, ``institutions``, ``outlets``, ``devices``, ``staff``,
        ``households`` and ``ledger`` when present.
    grids
        The grids to describe (default ``layers["grids"]``).

    Returns
    -------
    pandas.DataFrame
        One row per grid, in the order of ``check_grids(grids)``, with ``FACT_COLUMNS``:
        names rather than ids for the institution, outlet, manager and worker (the
        grid's workers by ``gis_grid.staffing.grid_staffing``, joined by 、); ``phone``
        the worker's mobile (the manager's when the grid has no worker); ``households``
        the grid's own figure or, missing that, the households counted inside it;
        ``outlets`` / ``devices`` counted inside it; ``files_pct`` see ``_files_pct``.
    """
    grids = check_grids(grids if grids is not None else layers["grids"])
    geoms = grids.geometry.values
    institutions = layers.get("institutions")
    inst_names = {} if institutions is None else dict(
        zip(institutions["id"].astype(str), institutions["name"].astype(str), strict=True))
    outlets = layers.get("outlets")
    outlet_names = {} if outlets is None else dict(
        zip(outlets["id"].astype(str), outlets["name"].astype(str), strict=True))
    people = _staff_lookup(layers.get("staff"))

    def column(name: str) -> pd.Series:
        return grids[name] if name in grids.columns else pd.Series(None, index=grids.index,
                                                                   dtype=object)

    inst_ids = [str(v) if _present(v) else None for v in column("institution")]
    managers = [people.get(str(v), (str(v), None)) if _present(v) else (None, None)
                for v in column("manager")]
    # Who staffs a grid is the engine's one rule (gis_grid.staffing.grid_staffing): a
    # worker or part-time worker, never a manager, from the grid's worker field or the
    # staff layer's grids field — what validate, coverage and the assessment count.
    staffed_by = grid_staffing(grids, layers.get("staff"))["workers"]
    workers = [(("、".join(people.get(w, (w, None))[0] for w in ws)),
                next((people[w][1] for w in ws if w in people and people[w][1]), None))
               if ws else (None, None) for ws in staffed_by]
    households = pd.to_numeric(column("households"), errors="coerce").to_numpy(float)
    if np.isnan(households).any() and layers.get("households") is not None:
        homes = layers["households"]
        tree = shapely.STRtree(geoms)
        pi, gi = tree.query(homes.geometry.values, predicate="intersects")
        count = homes["count"].to_numpy(float) if "count" in homes.columns else \
            np.ones(len(homes))
        counted = np.bincount(gi, weights=count[pi], minlength=len(grids))
        households = np.where(np.isnan(households), counted, households)
    facts = pd.DataFrame({
        "code": grids["code"].to_numpy(),
        "name": grid_names(grids, layers.get("units"), layers.get("townships")).to_numpy(),
        "level": grids["level"].to_numpy(),
        "kind": column("kind").to_numpy(),
        "zone": [v if _present(v) else None for v in column("zone")],
        "parent": [v if _present(v) else None for v in column("parent")],
        "institution_id": inst_ids,
        "institution": [inst_names.get(i, i) if i else None for i in inst_ids],
        "outlet": [outlet_names.get(str(v), str(v)) if _present(v) else None
                   for v in column("outlet")],
        "manager": [m[0] for m in managers],
        "worker": [w[0] for w in workers],
        "phone": [w[1] or m[1] for w, m in zip(workers, managers, strict=True)],
        "households": households,
        "outlets": _points_per_polygon(outlets, geoms),
        "devices": _points_per_polygon(layers.get("devices"), geoms),
        "files_pct": _files_pct(grids, layers.get("ledger")),
    })
    return facts


def household_coverage(layers: dict[str, pd.DataFrame], crs: pyproj.CRS | None = None
                       ) -> np.ndarray:
    """Whether each household point is covered (within reach of a bank).

    The households' own ``covered`` column when they carry one; else the product's one
    definition, ``gis_grid.coverage.access``: a serving outlet or a device within the
    service radius of the household's kind of area (2 km urban, 5 km rural by default),
    measured in ``crs`` (default the households' metric CRS). No outlets and no devices:
    nobody is covered.
    """
    from gis_grid.coverage import access, touch_points

    homes = layers["households"]
    if "covered" in homes.columns:
        return homes["covered"].fillna(False).to_numpy(bool)
    outlets, devices = layers.get("outlets"), layers.get("devices")
    if (outlets is None or len(outlets) == 0) and (devices is None or len(devices) == 0):
        return np.zeros(len(homes), dtype=bool)
    touch = touch_points(outlets if outlets is not None and len(outlets) else None,
                         devices if devices is not None and len(devices) else None)
    if len(touch) == 0:
        return np.zeros(len(homes), dtype=bool)
    result = access(homes, touch, units=layers.get("units"), crs=crs or metric_crs(homes),
                    by_institution=False)
    return result.households["covered"].to_numpy(bool)


def household_points(homes: gpd.GeoDataFrame, crs: pyproj.CRS
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Household points as (n, 2) coordinates in ``crs`` and the households at each (the
    ``count`` column, 1 where there is none)."""
    xy = shapely.get_coordinates(homes.to_crs(crs).geometry.values)
    count = homes["count"].to_numpy(float) if "count" in homes.columns else \
        np.ones(len(homes))
    return xy, count


def household_cells(layers: dict[str, pd.DataFrame], crs: pyproj.CRS | None = None, *,
                    cell_m: float = HOUSEHOLD_CELL_M) -> gpd.GeoDataFrame:
    """Households summed per square cell of ``cell_m`` metres and per coverage.

    Returns a point layer (EPSG:4326), one point per non-empty (cell, covered) pair at
    the household-weighted mean position of its points (so it sits on the hamlet, not
    the cell's centre), with ``households`` (the summed ``count``) and ``covered``.
    """
    homes = layers["households"]
    crs = crs or metric_crs(homes)
    covered = household_coverage(layers, crs)
    xy, count = household_points(homes, crs)
    cells = np.floor(xy / cell_m).astype(np.int64)
    keys = np.stack([cells[:, 0], cells[:, 1], covered.astype(np.int64)], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    total = np.bincount(inverse, weights=count)
    mx = np.bincount(inverse, weights=count * xy[:, 0]) / total
    my = np.bincount(inverse, weights=count * xy[:, 1]) / total
    points = gpd.GeoSeries(shapely.points(mx, my), crs=crs).to_crs(STORAGE_CRS)
    return gpd.GeoDataFrame({"households": total.round().astype(int),
                             "covered": unique[:, 2].astype(bool)},
                            geometry=points.values, crs=STORAGE_CRS)


def staff_points(staff: pd.DataFrame | None, grids: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Staff on the map: at their own point when they have one, else at a point inside
    the first grid they hold (``grids`` field, codes separated by ``;``); staff with
    neither are left out. Returns EPSG:4326 points with id, name, role, institution,
    phone and grids."""
    columns = ["id", "name", "role", "institution", "phone", "grids"]
    if staff is None or len(staff) == 0:
        return gpd.GeoDataFrame({c: [] for c in columns}, geometry=[], crs=STORAGE_CRS)
    frame = pd.DataFrame({c: staff[c] if c in staff.columns else None for c in columns})
    own = staff.geometry.values if isinstance(staff, gpd.GeoDataFrame) else \
        np.full(len(staff), None, dtype=object)
    if isinstance(staff, gpd.GeoDataFrame) and staff.crs is not None \
            and not staff.crs.equals(STORAGE_CRS):
        own = staff.to_crs(STORAGE_CRS).geometry.values
    anchors = dict(zip(grids["code"].astype(str),
                       shapely.point_on_surface(grids.geometry.values), strict=True))
    first = [str(g).split(";")[0].strip() if _present(g) else None for g in frame["grids"]]
    geoms = np.array([o if o is not None and not shapely.is_empty(o) else anchors.get(f)
                      for o, f in zip(own, first, strict=True)], dtype=object)
    keep = np.array([g is not None for g in geoms])
    return gpd.GeoDataFrame(frame[keep].reset_index(drop=True), geometry=list(geoms[keep]),
                            crs=STORAGE_CRS)
