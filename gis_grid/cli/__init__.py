"""The ``gisgrid`` command line: the composition root (ARCHITECTURE.md, "Packages").

The one part of ``gis_grid`` that reaches out to ``layers``, ``maps`` and ``api``: it
wires the stores, files, maps and the service to the engine's jobs. Every click command
of the product lives in this package, one module per group of commands:

``common``    the store option, exit codes, the fan-out options and runner
``data``      sample, import, export, layers, delete
``grids``     partition, validate, repair
``analysis``  coverage, place
``maps``      map, atlas
``watch``     screen, inspect, events (plans A and C)
``service``   serve, keys
``province``  province … (county by county, Dask optional)
``demo``      the whole job end to end
``root``      the ``gisgrid`` group that registers them all
"""

from gis_grid.cli.root import main

__all__ = ["main"]
