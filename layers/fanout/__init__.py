"""Run a job over a province county by county, in-process or on a Dask cluster.

A province (ARCHITECTURE.md, "Scale": ~10⁴ villages, ~10⁷ households) is many counties
whose work is independent. ``run_province`` makes each county one task of
``run_county``: the task opens the store by its address, reads *its county only*
(``store.read(name, where={"county": code})``), runs the job's ``compute``
(``gis_grid.jobs``) and stages its result. The fan-out is generic over jobs: it is given
the :class:`gis_grid.jobs.Job` to run, and knows no job by name.

Modules
    ``county``   one county's task (read, resume or compute, stage, ledger row)
    ``ledger``   the resume ledger ``fanout_runs`` and its fingerprints
    ``cluster``  the province: counties, in process or on Dask, retries, failures
    ``merge``    the staging layers merged through the job's ``combine``; ``finish``
    ``clean``    removing staging layers and ledger rows

Results, all-or-nothing and never duplicated
    A county's layers go to its own staging layers ``<layer>__c<code>``, replaced whole
    by every attempt, so a retried or re-run county can never leave two copies. When
    every county has finished, the client merges the staging layers of the counties that
    succeeded into the job's layers, each in one all-or-nothing write.

One county without a ``county`` column
    A territory layer without a ``county`` column and with one row (a single county, as
    ``gisgrid sample --county 420527`` builds it) is run as one county, one task, whose
    code is the territory's: the task reads every layer whole, and the merged grids carry
    no ``county`` column, exactly as an in-process ``gisgrid partition`` writes them. A
    territory of several rows without a ``county`` column is refused (``InputError``).

Failures
    A county that still fails after the retries is reported by code and name with its
    error (and recorded as ``failed``); the other counties complete and are merged.

Stores
    Workers on other machines must reach the store: use PostGIS. The GeoPackage store is a
    file on this machine and SQLite allows one writer at a time, so it is refused with any
    scheduler (in-process runs use it as before).

Example
-------
>>> from gis_grid.jobs import PARTITION
>>> run = run_province("postgresql://postgres@127.0.0.1/gis", PARTITION,
...                    {"institution": "NSH"}, scheduler="tcp://10.0.0.5:8786")
... # doctest: +SKIP
>>> run.failed  # doctest: +SKIP
[]
"""

from layers.fanout.clean import Cleaned, clean_runs, staging_layers
from layers.fanout.cluster import (
    ProvinceRun,
    check_scheduler_store,
    results_frame,
    run_province,
)
from layers.fanout.county import WHOLE, CountyResult, run_county

__all__ = ["WHOLE", "Cleaned", "CountyResult", "ProvinceRun", "check_scheduler_store",
           "clean_runs", "results_frame", "run_county", "run_province", "staging_layers"]
