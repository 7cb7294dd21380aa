"""The HTTP service of gis-grid (``gisgrid serve``).

============  ==========================================================================
module        what it holds
============  ==========================================================================
app           ``create_app(store_url, settings)``: the FastAPI application
settings      ``Settings`` from ``GISGRID_API_*`` environment variables
dependencies  typed parsing of every request parameter (bbox, limit, crs, filters, key)
errors        named errors and the status code of each
auth          API keys (hashed at rest) and the graded-authorization rules (分级授权)
catalog       collections, CRSs offered, the caller's view, one parsed items query
providers     PostGIS (SQL-built GeoJSON and MVT, streamed) and GeoPackage back ends
features      OGC API – Features endpoints (JSON, GeoJSON, HTML)
tiles         vector tiles and TileJSON
analyses      validate / coverage / gaps / overlap / assessment / placement jobs, ledger
              aggregates
jobs          background jobs with status URLs and progress
uploads       checked, all-or-nothing uploads within the caller's rows; 413 limits
html          the HTML pages
cli           the ``serve`` and ``keys`` commands
============  ==========================================================================
"""
