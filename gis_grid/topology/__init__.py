"""Grid-layer validation and repair: the well-field rule (井田制, plan code B2, see
ARCHITECTURE.md).

Within one institution's layer, at one level, grids must tile their territory with no gap
(不遗漏) and no overlap (不重复); small grids nest in big ones (大网格套小网格); each grid is
one valid polygon; and each grid has one grid worker who holds no other grid (一人一格, B4).

``validate_grids`` is a linter: it returns every problem with its location (a geometry in
EPSG:4326) and its measure (area in m², households inside). ``repair_grids`` fixes what
geometry can fix — snapping, gaps, overlaps, slivers, invalid rings, pieces — and lists
every change; what it cannot fix is left in its ``remaining`` report, with the reason.

Checks apply per institution and per level: grids of different banks may overlap (that
is the regulator's across-bank question, not a fault of one layer), and a level-2 grid
overlapping its level-1 parent is the nesting itself.

Tolerances, all in metres or square metres of the metric CRS of the layer
(``gis_grid.crs.metric_crs``; nothing is measured in degrees):

``snap_tolerance`` (default 0.1 m)
    Boundaries closer than this are the same boundary. A difference between a grid and
    its territory or parent that is thinner than this is numerical noise (a projected
    vertex a nanometre off its edge), not a gap; between two grids of one layer such a
    near-miss is still reported, as a ``coverage_edge`` (GEOS requires shared edges to
    match exactly). Where edges do not match, repair snaps vertices closer than this
    together; it closes gaps and cuts overhangs down to rounding
    (``repair._REPAIR_FLOOR``).
``gap_width`` (default 1 m)
    A gap, overlap or grid narrower than this (diameter of its largest inscribed circle)
    is a sliver. Repair hands gaps narrower than this to GEOS's ``coverage_clean``; wider
    gaps inside the territory are filled as well, by the same longest-border rule.
``sliver_area`` (default 1 m²)
    A gap, overlap or grid smaller than this is a sliver.

Problem kinds (``KINDS``; every kind is an error, ``ok`` means none):

gap / parent_uncovered
    Part of the territory (top level; without a territory: a hole in the layer) or of a
    parent grid (nested level, 大网格套小网格) that no grid covers; with its neighbours,
    area and households.
overlap
    Two grids of one layer sharing area; one row per pair, with the shared polygon.
sliver
    A grid, gap, overlap or overhang smaller than ``sliver_area`` or narrower than
    ``gap_width``; ``sliver_of`` says which.
outside_territory / child_outside_parent
    The part of a grid beyond the territory, or beyond its parent.
invalid_geometry, multipart
    Not a valid polygon (with GEOS's reason; checks go on with ``make_valid``'s
    polygon), or a grid in several pieces (the schema wants one polygon per grid).
coverage_edge
    Edges GEOS's coverage validator flags that no gap or overlap above explains: a
    near-miss thinner than ``snap_tolerance`` or a T-junction (a vertex on one side of
    a shared edge missing on the other).
duplicate_code, missing_parent, code_prefix
    Codes: unique; a nested grid's parent (``parent``, else its code less the last
    ``-`` segment) is in the layer, one level up, of the same institution, and the
    child's code starts with the parent's.
household_outside
    Households in no grid of a top-level layer and in no gap reported (outside the
    territory, or outside the layer's outline).
no_worker, worker_multiple (B4, 一人一格)
    A leaf grid (one without children) without a worker; a worker holding two grids of
    one layer (from ``grids.worker`` and the ``staff`` table; managers may hold many).

Modules: ``validate`` (``validate_grids``), ``repair`` (``repair_grids``), ``report``
(``ValidationReport``, ``KINDS``), ``layer`` (the prepared layer and the tolerances) and
``ops`` (the vectorised polygon operations both share).
"""

from gis_grid.topology.layer import (
    DEFAULT_GAP_WIDTH,
    DEFAULT_SLIVER_AREA,
    DEFAULT_SNAP_TOLERANCE,
)
from gis_grid.topology.repair import RepairResult, repair_grids
from gis_grid.topology.report import KINDS, ValidationReport
from gis_grid.topology.seams import stitch_seams
from gis_grid.topology.validate import validate_grids

__all__ = [
    "DEFAULT_GAP_WIDTH", "DEFAULT_SLIVER_AREA", "DEFAULT_SNAP_TOLERANCE", "KINDS",
    "RepairResult", "ValidationReport", "repair_grids", "stitch_seams", "validate_grids",
]
