"""Access and coverage: who is within reach of a bank, where the blanks and gaps are, and
how each bank's grid work measures up (plans B2, B4, B6–B8; see ARCHITECTURE.md).

Touch points (触点) are the places a household meets a bank: serving outlets (物理网点, by
tier) and electronic devices (电子机具, by type). A household is *covered* when a touch
point lies within the radius of its kind of area — by default 2 km in urban communities
and 5 km in rural villages (the 5 km is the threshold India's regulator uses for
villages); both are parameters (:class:`Radii`). Every distance is measured in the
territory's metric CRS (``gis_grid.crs.metric_crs``), never in degrees.

The functions, each over (Geo)DataFrames:

:func:`touch_points`
    outlets and devices as one layer, each with its kind and category.
:func:`access`
    per household point and per unit, the distance to the nearest touch point of each
    kind (any, outlet, device, each outlet tier, each device type) and whether it is
    covered; which institutions cover each household.
:func:`coverage_shares`, :func:`grid_shares`, :func:`institution_shares`
    shares of households covered per unit, township, territory, grid and institution.
:func:`units_without_service_point`, :func:`service_blanks`
    the two kinds of blank, kept apart: units (villages / communities) with no outlet or
    device inside them; units with no touch point within the radius of any of their
    households: their households and the distance to the nearest touch point.
:func:`gap_areas`
    the territory beyond the radius of every touch point, as polygons with their area
    and the households inside.
:func:`access_indicators`
    IMF Financial Access Survey style indicators: outlets and devices per 10,000
    households (and residents) and per 1,000 km², per township and territory.
:func:`grid_overlap`, :func:`outlet_concentration`
    across banks (B2): how many institutions' grids cover each unit, over-concentrated
    urban units and rural blanks; the Herfindahl-Hirschman index of outlets per township.
:func:`files_vs_targets`, :func:`staffing`, :func:`assessment`
    ledger files against the phase targets (B6, B7), one person per grid (B4), and the
    assessment and ranking of each institution (B8).
:func:`coverage_report`
    all of the above in one :class:`CoverageReport`, with the parameters, counts and
    layers used, so that every figure can be traced.

The modules:

``common``
    touch-point categories, :class:`Radii`, the input checks and array helpers.
``points``
    touch points and the centres of units and townships.
``distances``
    :class:`Access` and :func:`access`.
``shares``
    covered shares per territory, kind, township, unit, grid and institution.
``gaps``
    service blanks and gap areas.
``indicators``
    the IMF Financial Access Survey indicators.
``across_banks``
    grid overlap and outlet concentration (HHI).
``files``
    ledger files against the phase targets.
``staff``
    one person per grid.
``ranking``
    blanks closed, the assessment and ranking.
``report``
    :class:`CoverageReport` and :func:`coverage_report`.

Example
-------
>>> import geopandas as gpd
>>> homes = gpd.GeoDataFrame({"id": [0, 1, 2], "count": [1, 2, 3]}, crs="EPSG:4547",
...                          geometry=gpd.points_from_xy([0, 3000, 9000], [0, 0, 0]))
>>> outlets = gpd.GeoDataFrame({"id": ["A"], "institution": ["NSH"], "tier": ["助农点"],
...                             "name": ["A"]}, crs="EPSG:4547",
...                            geometry=gpd.points_from_xy([1000], [0]))
>>> acc = access(homes, touch_points(outlets), radii=Radii(rural=4000))
>>> acc.households["d_any"].tolist(), acc.households["covered"].tolist()
([1000.0, 2000.0, 8000.0], [True, True, False])
"""

from gis_grid.coverage.across_banks import grid_overlap, outlet_concentration
from gis_grid.coverage.common import (
    CATEGORY_KEYS,
    DEFAULT_RADII,
    DISTANCE_COLUMNS,
    Radii,
    check_layers,
)
from gis_grid.coverage.distances import Access, access
from gis_grid.coverage.files import PHASE_TARGETS, Files, files_vs_targets
from gis_grid.coverage.gaps import gap_areas, service_blanks, units_without_service_point
from gis_grid.coverage.indicators import access_indicators
from gis_grid.coverage.points import touch_points, town_centres, unit_centres
from gis_grid.coverage.ranking import assessment, blanks_closed
from gis_grid.coverage.report import CoverageReport, coverage_report
from gis_grid.coverage.shares import coverage_shares, grid_shares, institution_shares
from gis_grid.coverage.staff import Staffing, staffing

__all__ = [
    "CATEGORY_KEYS",
    "DEFAULT_RADII",
    "DISTANCE_COLUMNS",
    "PHASE_TARGETS",
    "Access",
    "CoverageReport",
    "Files",
    "Radii",
    "Staffing",
    "access",
    "access_indicators",
    "assessment",
    "blanks_closed",
    "check_layers",
    "coverage_report",
    "coverage_shares",
    "files_vs_targets",
    "gap_areas",
    "grid_overlap",
    "grid_shares",
    "institution_shares",
    "outlet_concentration",
    "service_blanks",
    "staffing",
    "town_centres",
    "touch_points",
    "unit_centres",
    "units_without_service_point",
]
