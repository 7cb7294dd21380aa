"""Map-ready sample layers: the sample territory, gridded and staffed, for demos, tests
and benchmarks of the maps.

``layers.synthetic.county.build_sample`` gives a county with outlets, devices and staff but no
grids. ``sample_layers`` adds them: three nested levels from ``gis_grid.partition``
(townships, then villages / communities, then balanced grids of about 300 households),
and a synthetic staffing — each grid manager (网格管理员) over a run of village /
community grids, each grid worker (网格员) on one level-3 grid, one person per grid
(一人一格) until the workers run out, so the last grids show as unstaffed. The staffing
is for showing the maps only; it is labelled synthetic like the rest of the sample.

>>> layers = sample_layers("420527", households=20_000)      # doctest: +SKIP
>>> sorted(layers["grids"]["level"].unique().tolist())       # doctest: +SKIP
[1, 2, 3]
"""

from __future__ import annotations

import geopandas as gpd
import pandas as pd

from gis_grid.staffing import assign_staff
from layers.synthetic.county import build_sample

__all__ = ["sample_grids", "sample_layers"]


def sample_grids(sample: dict[str, pd.DataFrame]) -> gpd.GeoDataFrame:
    """Three nested levels of government grids over the sample (``gis_grid.partition``):
    townships, villages / communities, balanced grids of about 300 households."""
    from gis_grid.partition import LevelSpec, partition

    result = partition(sample["territory"], sample["households"], units=sample["units"],
                       townships=sample["townships"], outlets=sample.get("outlets"),
                       levels=[LevelSpec("units", source="townships"),
                               LevelSpec("units", source="units"), LevelSpec("balanced")])
    return result.grids


def sample_layers(county: str = "420527", *, households: int | None = None, seed: int = 0
                  ) -> dict[str, pd.DataFrame]:
    """Every layer of the sample county, with staffed three-level grids as ``grids``.

    Parameters
    ----------
    county
        420527 秭归县 Zigui, 330382 乐清市 Yueqing or 371328 蒙阴县 Mengyin.
    households, seed
        As ``layers.synthetic.county.build_sample``.
    """
    sample = build_sample(county, seed=seed, households=households)
    grids, staff = assign_staff(sample_grids(sample), sample["staff"])
    layers = dict(sample)
    layers["grids"] = grids
    layers["staff"] = staff
    return layers
