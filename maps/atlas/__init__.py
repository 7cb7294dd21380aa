"""The printable atlas (图集): PDF volumes of a territory's grids on B5 paper.

Plan B5 asks for an urban volume (城区卷) and a rural volume (农村卷), each with three
maps: physical outlet distribution (物理网点分布图), electronic device distribution
(电子机具分布图) and grid staff and service distribution (网格人员及服务分布图).
``build_atlas`` writes, per volume, those three maps as overview pages of the volume's
grids, then one page per big grid — by default a level-2 grid, which plan B1 makes a
village (rural) or a community (urban); a grid's kind decides its volume.

Every page has a title, the map frame fitted to its grids (drawn in the territory's
metric CRS, so the scale bar is true), an inset locating it in the county, a legend, a
scale bar, a north arrow, the page number, a table (grid code, level, institution,
manager, worker, contact, households, outlets, devices, files %), and a line naming the
data sources and the data date. Pages are portrait or landscape, whichever prints the
grid larger. Chinese prints in an embedded CJK font (``maps.fonts``); a missing font is
an error, never boxes.

The same input gives the same bytes: the PDF carries no creation date, fixed producer
and creator, and matplotlib writes its objects in a fixed order. Speed: every layer is
projected once, clipped to each page's frame with an STRtree, and drawn as one
collection per style (Zigui, 193 village pages and 6 overviews: see
``scripts/bench_maps.py``).

The package: ``scene`` (the layers prepared once, clipped to each page, the table rows,
the volumes and overview maps), ``layout`` (page geometry, title block, inset, legend,
table, north arrow, scale bar), ``painter`` (the maps of each page, drawn with
matplotlib) and ``build`` (``build_atlas``, the entry point re-exported here); plan
codes (B1, B5) are explained in ARCHITECTURE.md.

Example
-------
>>> from layers.synthetic import sample_layers                    # doctest: +SKIP
>>> build_atlas(sample_layers("420527"), "out/")                   # doctest: +SKIP
AtlasResult(paths={'urban': …/atlas-urban.pdf, 'rural': …/atlas-rural.pdf}, …)
"""

from maps.atlas.build import PDF_METADATA, AtlasResult, build_atlas, data_sources
from maps.atlas.scene import OVERVIEW_MAPS, OVERVIEW_TITLES, VOLUME_TITLES, VOLUMES

__all__ = [
    "OVERVIEW_MAPS",
    "OVERVIEW_TITLES",
    "PDF_METADATA",
    "VOLUMES",
    "VOLUME_TITLES",
    "AtlasResult",
    "build_atlas",
    "data_sources",
]
