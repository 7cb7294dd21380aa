"""Pictures of the grids: the interactive map that works offline (``maps.interactive``,
served by the API through ``maps.web``) and the printed atlas (``maps.atlas``), with their
shared symbology (``maps.symbology``), data (``maps.data``) and CJK font (``maps.fonts``).
"""
