"""Synthetic territories for demos, tests and benchmarks: every layer of the data model,
made up where it is not real, deterministic from a seed.

* ``county``: ``build_sample``, one of three real counties (real boundary and divisions),
  gridded and populated; ``COUNTIES``, ``County`` and ``LAYER_NAMES``.
* ``province``: ``build_province``, a province of generated counties, each one unit of
  work for the fan-out (``layers.fanout``).
* ``grids``: ``sample_layers`` / ``sample_grids``, the sample with three levels of grids
  (``gis_grid.partition``) and staffed, for the maps' tests and benchmarks.
* the construction they share: ``cells`` (metric frame, Voronoi cells of one noding,
  points inside units), ``demand`` (zones, households), ``banks`` (institutions, outlets,
  devices, staff, ledger), ``entities`` (market entities, ``RISK_WORDS``) and ``names``
  (generated names of people and places).

The real data they read (county boundaries and division tables) is in ``layers/data``.
"""

from layers.synthetic.county import COUNTIES, LAYER_NAMES, County, build_sample
from layers.synthetic.entities import RISK_WORDS
from layers.synthetic.grids import sample_grids, sample_layers
from layers.synthetic.province import PROVINCE_CODE, build_province

__all__ = [
    "COUNTIES",
    "County",
    "LAYER_NAMES",
    "PROVINCE_CODE",
    "RISK_WORDS",
    "build_province",
    "build_sample",
    "sample_grids",
    "sample_layers",
]
