"""The map page as the API serves it.

The service mounts ``STATIC_DIR`` at ``STATIC_URL`` and answers the map page with
``map_page_html``; every script and stylesheet the page loads is then the service's own
(no CDN), so the page works on an intranet with no internet. With FastAPI::

    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles
    from maps.web import STATIC_DIR, STATIC_URL, map_page_html

    app.mount(STATIC_URL.rstrip("/"), StaticFiles(directory=STATIC_DIR), name="maps-static")

    @app.get("/map", response_class=HTMLResponse)
    def map_page():
        return map_page_html(load_layers(store), viewer_may_see_phones=user.may_see_phones)
"""

from __future__ import annotations

import pandas as pd

from maps.interactive import STATIC_DIR, render_map_html

__all__ = ["STATIC_DIR", "STATIC_URL", "map_page_html"]

#: Where the API mounts ``STATIC_DIR`` (the page refers to its files under this prefix).
STATIC_URL = "/static/maps/"


def map_page_html(
    layers: dict[str, pd.DataFrame],
    *,
    static_base: str = STATIC_URL,
    basemap_url: str | None = None,
    viewer_may_see_phones: bool = False,
    **options,
) -> str:
    """The interactive map page (HTML) for the service.

    Parameters
    ----------
    layers
        Layers by name, as ``maps.interactive.build_map`` takes them (e.g. from
        ``maps.data.load_layers``).
    static_base
        URL prefix where ``STATIC_DIR`` is mounted, ending in ``/``.
    basemap_url
        The office's own tile server URL template, or None for no basemap.
    viewer_may_see_phones
        Whether the viewer is authorised to see staff phone numbers; when False the
        page holds none.
    **options
        Passed to ``build_map`` (``title``, ``simplify_m`` …).
    """
    return render_map_html(layers, static_base=static_base, basemap_url=basemap_url,
                           viewer_may_see_phones=viewer_may_see_phones, **options)
