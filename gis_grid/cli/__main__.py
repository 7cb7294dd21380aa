"""``python -m gis_grid.cli``: the ``gisgrid`` command."""

from gis_grid.cli.root import main

main()
