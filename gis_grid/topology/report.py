"""The validation report: every problem kind (``KINDS``) and ``ValidationReport``, which
holds the problems found with their geometry and measures and writes them as JSON,
GeoJSON or a short summary for a person (plan code B2, see ARCHITECTURE.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import geopandas as gpd
import pandas as pd
import shapely

#: Every problem kind, in report order, with the title a person reads (Chinese first).
KINDS: dict[str, str] = {
    "invalid_geometry": "几何无效 invalid geometry",
    "duplicate_code": "编码重复 duplicate code",
    "missing_parent": "上级网格缺失 missing parent",
    "code_prefix": "编码不以上级编码开头 code not prefixed by its parent's",
    "gap": "缺口 gap",
    "parent_uncovered": "上级网格未被下级覆盖 parent not covered by its children",
    "overlap": "重叠 overlap",
    "sliver": "碎片 sliver",
    "outside_territory": "超出辖区 outside the territory",
    "child_outside_parent": "超出上级网格 child outside its parent",
    "multipart": "多块 grid in several pieces",
    "coverage_edge": "边界不吻合 edges that do not match",
    "household_outside": "住户不在任何网格 households in no grid",
    "no_worker": "无网格员 grid without a worker",
    "worker_multiple": "一人多格 worker holding several grids",
}

_COLUMNS = ["kind", "codes", "level", "institution", "area_m2", "width_m", "households",
            "sliver_of", "message"]


@dataclass(frozen=True)
class ValidationReport:
    """What ``validate_grids`` found.

    Attributes
    ----------
    problems : GeoDataFrame
        One row per problem, geometry in EPSG:4326, columns ``kind`` (see ``KINDS``),
        ``codes`` (grid codes concerned, ``;``-separated), ``level``, ``institution``,
        ``area_m2``, ``width_m`` (largest inscribed circle's diameter), ``households``,
        ``sliver_of`` (``grid``, ``gap``, ``overlap`` … for slivers) and ``message``.
    parameters : dict
        The tolerances used, the metric CRS, and which inputs were given.
    """

    problems: gpd.GeoDataFrame
    parameters: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the layer has no problem at all."""
        return len(self.problems) == 0

    @property
    def summary(self) -> pd.Series:
        """Number of problems of each kind (every kind, zeros included)."""
        counts = self.problems["kind"].value_counts()
        return pd.Series({k: int(counts.get(k, 0)) for k in KINDS}, name="problems",
                         dtype="int64")

    def as_dict(self, *, wkt: bool = True, precision: int = 7) -> dict:
        """The machine report as plain Python (see ``to_json``)."""
        frame = pd.DataFrame(self.problems[_COLUMNS])
        rows = json.loads(frame.to_json(orient="records", force_ascii=False))
        if wkt:
            texts = shapely.to_wkt(self.problems.geometry.to_numpy(), rounding_precision=precision)
            for row, text in zip(rows, texts, strict=True):
                row["wkt"] = text
        return {
            "ok": self.ok,
            "parameters": self.parameters,
            "counts": {k: v for k, v in self.summary.items() if v},
            "problems": rows,
        }

    def to_json(self, *, wkt: bool = True, indent: int | None = None) -> str:
        """The machine report as JSON text: parameters, counts per kind and each problem
        (with its geometry as WKT in EPSG:4326 when ``wkt``)."""
        return json.dumps(self.as_dict(wkt=wkt), ensure_ascii=False, indent=indent)

    def geojson(self) -> str:
        """The problems as GeoJSON FeatureCollection text (EPSG:4326) for QGIS / GDAL;
        ``layers.runner`` writes it as ``<stem>-problems.geojson``."""
        return self.problems.to_json(na="null", drop_id=True, ensure_ascii=False)

    def human(self, limit: int = 10) -> str:
        """A short summary for a person (Chinese first, English after)."""
        p = self.parameters
        head = (f"网格图层检查 grid layer check: {p.get('grids', 0)} 个网格 grids in "
                f"{p.get('groups', 0)} 层 layers (机构×层级 institution × level)")
        if self.ok:
            return f"{head}\n通过 OK: 无缺口、无重叠 no gap, no overlap, no problem found."
        lines = [head, f"发现 {len(self.problems)} 个问题 problems:"]
        frame = self.problems
        for kind, count in self.summary.items():
            if not count:
                continue
            sel = frame[frame["kind"] == kind]
            extra = []
            if sel["area_m2"].notna().any():
                extra.append(f"{sel['area_m2'].sum():,.1f} m²")
            if sel["households"].notna().any():
                extra.append(f"{int(sel['households'].sum()):,} 户 households")
            tail = f" ({', '.join(extra)})" if extra else ""
            lines.append(f"  {KINDS[kind]}: {count}{tail}")
        lines.append("例如 e.g.:")
        for message in frame["message"].head(limit):
            lines.append(f"  - {message}")
        if len(frame) > limit:
            lines.append(f"  … 另有 {len(frame) - limit} 个 and {len(frame) - limit} more")
        return "\n".join(lines)

    def __repr__(self) -> str:
        counts = {k: v for k, v in self.summary.items() if v}
        return f"ValidationReport(ok={self.ok}, problems={counts})"
