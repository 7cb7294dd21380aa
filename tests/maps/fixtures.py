"""Layers the map and atlas tests share: the Zigui sample with staffed three-level grids
(``layers.synthetic.sample_layers``), built once per test session.

Callers must not modify the frames they get (copy them first).
"""

from __future__ import annotations

from functools import lru_cache

import geopandas as gpd
import pandas as pd
import shapely

from layers.synthetic import sample_layers


@lru_cache(maxsize=1)
def zigui() -> dict[str, pd.DataFrame]:
    """The full Zigui sample (about 130,000 households) with grids, as ``gisgrid demo``
    would map it."""
    return sample_layers("420527")


def township(code: str) -> dict[str, pd.DataFrame]:
    """The Zigui layers with the grids of one township grid (``420527-102``) only."""
    layers = dict(zigui())
    grids = layers["grids"]
    mine = grids["code"].astype(str).str.startswith(code)
    layers["grids"] = grids[mine].reset_index(drop=True)
    return layers


def analysis_layers(layers: dict[str, pd.DataFrame], prefix: str = ""
                    ) -> dict[str, gpd.GeoDataFrame]:
    """Small service-blank, coverage-gap and overlap layers shaped like
    ``gis_grid.coverage``'s, over the first units whose code starts with ``prefix``."""
    units = layers["units"]
    units = units[units["code"].astype(str).str.startswith(prefix)].iloc[:6]
    blanks = gpd.GeoDataFrame({"code": units["code"].iloc[:2].to_numpy(),
                               "name": units["name"].iloc[:2].to_numpy(),
                               "households": [120, 80], "d_nearest": [5400.0, 6100.0]},
                              geometry=units.geometry.iloc[:2].to_numpy(), crs=units.crs)
    centre = shapely.centroid(units.geometry.iloc[2])
    gaps = gpd.GeoDataFrame({"gap": ["G001"], "kind": ["rural"], "area_km2": [3.1],
                             "households": [42]},
                            geometry=[shapely.buffer(centre, 0.01)], crs=units.crs)
    overlaps = gpd.GeoDataFrame({"code": units["code"].iloc[3:6].to_numpy(),
                                 "name": units["name"].iloc[3:6].to_numpy(),
                                 "institutions": [2, 1, 3],
                                 "institution_ids": ["NSH;YCB", "NSH", "NSH;YCB;ABC"]},
                                geometry=units.geometry.iloc[3:6].to_numpy(), crs=units.crs)
    return {"service_blanks": blanks, "coverage_gaps": gaps, "grid_overlap": overlaps}
