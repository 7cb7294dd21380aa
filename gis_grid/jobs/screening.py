"""The screening job: the risk watch list of market entities, counted per grid (plan code
A2, with A1's attachment to grids; ARCHITECTURE.md).

Reads the entities layer (``entities`` parameter, required) and the polygons they are
attached to: the ``grids`` parameter's layer (required), else layer ``grids`` when it has
features, else the units (:func:`area_reads`, :func:`areas_of`). Computes
``gis_grid.screening.screen``, ``locate`` and ``watch_counts``; stores ``watch_list``
(the flagged entities with their grid and words) and ``watch_counts`` (per grid); with
the ``out`` parameter, writes the two for people (Chinese headers) to that file, .xlsx
or .csv.
"""

from __future__ import annotations

from gis_grid.jobs.base import Job, Outcome, Read, Sheets

#: Outcome layer role → the layer it is stored in.
STORED = {"watch": "watch_list", "counts": "watch_counts"}
#: The columns of the watch list (those the entities have), before the geometry.
FIELDS = ("id", "name", "registered_type", "address", "unit", "grid", "keywords")
#: Chinese column headers of the files written for people.
WATCH_HEADERS = {"id": "主体编号", "name": "名称", "registered_type": "登记类型",
                 "address": "地址", "unit": "村/社区代码", "grid": "所在网格",
                 "keywords": "命中关键词"}
COUNT_HEADERS = {"grid": "网格", "unit": "村/社区", "entities": "市场主体数",
                 "flagged": "重点关注数", "microloan": "小额贷款公司（除外）"}


def area_reads(grids: str | None) -> list[Read]:
    """The layers entities are attached to: ``grids`` (required) when named, else layers
    ``grids`` and ``units`` (optional), of which :func:`areas_of` chooses."""
    if grids is not None:
        return [Read(grids, required=True, key="areas")]
    return [Read("grids"), Read("units")]


def areas_of(inputs) -> tuple:
    """The polygons entities are attached to and the column they give: the named grid
    layer, else layer ``grids`` when it has features, else the units (``unit``); (None,
    ``grid``) when there are none."""
    if "areas" in inputs:
        return inputs["areas"], "grid"
    if inputs.get("grids") is not None and len(inputs["grids"]):
        return inputs["grids"], "grid"
    if inputs.get("units") is not None:
        return inputs["units"], "unit"
    return None, "grid"


def _reads(params, available) -> list[Read]:
    return [Read(params.get("entities", "entities"), required=True, key="entities"),
            *area_reads(params.get("grids"))]


def _compute(inputs, params) -> Outcome:
    import pandas as pd

    from gis_grid.screening import locate, screen, watch_counts

    screened = screen(inputs["entities"])
    areas, by = areas_of(inputs)
    screened["grid"] = (locate(screened, areas) if areas is not None
                        else pd.Series(pd.NA, index=screened.index, dtype="string"))
    if by == "unit" and "unit" in screened.columns:
        screened["grid"] = screened["unit"].astype("string").fillna(screened["grid"])
    watch = screened.loc[screened["flagged"].to_numpy(),
                         [c for c in FIELDS if c in screened.columns] + ["geometry"]]
    counts = watch_counts(screened).rename(columns={"grid": by})
    flagged, microloans = int(screened["flagged"].sum()), int(screened["microloan"].sum())
    lines = [f"screened {len(screened)} entities of {params.get('entities', 'entities')}: "
             f"{flagged} flagged, {microloans} microloan companies excluded; attached to "
             f"{'grids' if by == 'grid' else 'units (no grids layer)'}"]
    words = counts.drop(columns=[by, "entities", "flagged", "microloan"]).sum()
    if len(words):
        lines.append("  by word: " + ", ".join(f"{w} {int(n)}" for w, n in words.items() if n))
    busiest = counts[counts["flagged"] > 0].head(10)
    for row in busiest.itertuples(index=False):
        lines.append(f"  {getattr(row, by):<22} {row.flagged:>4} flagged of {row.entities:>5}")
    files = {}
    if params.get("out"):
        files[params["out"]] = Sheets({
            "重点关注名单": (watch, WATCH_HEADERS),
            "网格统计": (counts, COUNT_HEADERS)})
    return Outcome(result=screened, layers={"watch": watch, "counts": counts}, files=files,
                   summary={"entities": len(screened), "flagged": flagged,
                            "microloans": microloans, "attached_to": by,
                            "words": {str(w): int(n) for w, n in words.items() if n}},
                   text="\n".join(lines))


def _store_as(role: str, params) -> str:
    return STORED[role]


#: Parameters: ``entities`` (the entities layer, default ``entities``), ``grids`` (the
#: grid layer to attach them to, default as :func:`areas_of` says), ``out`` (the file
#: to write for people, a path relative to the folder the files are written into).
SCREENING = Job("screening", reads=_reads, compute=_compute, store_as=_store_as)
