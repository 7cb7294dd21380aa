"""Job definitions (ARCHITECTURE.md, "The job model"): each job defined once, run alike
by the command line (``layers.runner``), the service (``api.analyses``) and the fan-out
(``layers.fanout``). The atlas job, which draws, is ``maps.jobs.ATLAS``."""

from gis_grid.jobs.base import (
    GeoJSON,
    Inputs,
    Job,
    Outcome,
    Output,
    Params,
    Read,
    Rendered,
    Sheets,
    Tables,
)
from gis_grid.jobs.coverage import COVERAGE
from gis_grid.jobs.events import EVENT_STATS
from gis_grid.jobs.partition import PARTITION
from gis_grid.jobs.placement import PLACEMENT
from gis_grid.jobs.screening import SCREENING
from gis_grid.jobs.validate import VALIDATE

__all__ = ["COVERAGE", "EVENT_STATS", "PARTITION", "PLACEMENT", "SCREENING", "VALIDATE",
           "GeoJSON", "Inputs", "Job", "Outcome", "Output", "Params", "Read", "Rendered",
           "Sheets", "Tables"]
