"""Partition a territory into nested financial service grids (金融服务网格, 井田制).

``partition`` cuts a territory (辖区) — or a layer of existing parent grids — into grids at
up to three nested levels for one institution (or the government grid when none is named),
following plans B1–B3 and C1 (see ARCHITECTURE.md): no gap, no overlap, small grids
inside big grids, each grid one connected polygon whose code starts with its parent's
code. Each level is made by one method, and any method can make any level:

``units``
    grids follow administrative units: townships (乡镇/街道) or villages / communities
    (村/社区). A big urban grid is a community, a big rural grid a village (B1).
``balanced``
    each parent is split into contiguous, compact children of about ``target_households``
    households (C1: about 300) within ``± tolerance``.
``tiles``
    a regular well-field tiling of squares or hexagons of ``cell_size`` metres.
``outlets``
    service areas centred on outlets (物理网点) of the level's tiers (B3), optionally
    balanced by households.

How the geometry stays exact
----------------------------
Topology is built in the storage CRS (EPSG:4326), where the input edges are straight and
where the grids are stored; the territory's metric CRS (``gis_grid.crs.metric_crs``) is
used to decide (where to cut, what is nearest) and to measure. A parent is never replaced
by independently made children: it is cut by noding its own outline together with the
cutting lines — snap-rounded to a grid of 10^-12 degree (about 0.1 µm), so every
vertex lying on a line becomes a node of it — and polygonizing, which gives *atoms* that
tile the parent exactly. A method only labels atoms; a child is the coverage union of its
atoms, so siblings share their edges vertex for vertex. Cutting lines made in the metric
CRS are densified before they are carried into EPSG:4326, so a straight cut stays straight
on the ground. When every level is cut, the finest grids are noded once more all
together, with GEOS's coverage cleaner and a snapping distance of 10^-11 degree (a node a
cut made on one side of a parent's border is then on the other side too), and every
coarser grid is rebuilt as the union of its children: each level is a valid coverage
(``shapely.coverage_is_valid``) and each child lies exactly inside its parent.

Areas are measured in the metric CRS. A polygon stored in EPSG:4326 has edges straight in
longitude / latitude; projected vertex by vertex, a kilometre-long edge becomes a chord a
centimetre or so off the projected line. Where a child's node sits on such an edge of the
territory, comparing the two projected vertex by vertex shows centimetre slivers that are
not in the data; densify in EPSG:4326 before projecting to measure what is stored:
``gis_grid.crs.reproject`` (or ``to_crs``) does, every 500 m, and the report's areas and
compactness are measured so.

The package
-----------
``api`` holds :func:`partition`, :func:`household_blocks` and :class:`PartitionResult`;
``spec`` :class:`LevelSpec` and the outlet tiers; ``frame`` the two coordinate systems;
``points`` point-in-polygon lookups; ``atoms`` the atom graph (adjacency, orphans,
absorption, rebalancing); ``seeds`` the seeds and lattices atoms are cut along;
``context`` the state of one run (inputs, parents, atoms of a region, children of
labelled atoms); ``units``, ``balanced``, ``tiles`` and ``outlets`` one splitting method
each; ``finish`` the final coverage, the grids' attributes and the report.

Example
-------
>>> from layers.synthetic import build_sample
>>> from gis_grid.partition import LevelSpec, partition
>>> s = build_sample("420527", households=20_000)
>>> result = partition(s["territory"], s["households"], units=s["units"],
...                    townships=s["townships"],
...                    levels=[LevelSpec("units", source="townships"),
...                            LevelSpec("units", source="units"), LevelSpec("balanced")])
>>> sorted(result.grids["level"].unique().tolist())
[1, 2, 3]
"""

from gis_grid.partition.api import PartitionResult, household_blocks, partition
from gis_grid.partition.spec import DEFAULT_TIERS, LevelSpec

__all__ = [
    "DEFAULT_TIERS",
    "LevelSpec",
    "PartitionResult",
    "household_blocks",
    "partition",
]
