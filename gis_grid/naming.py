"""The one home of the layer naming rules (ARCHITECTURE.md, "The data model").

* A layer's **kind** is its name before ``__``: ``grids__nsh`` is a ``grids`` layer, and
  the kind decides its schema (``gis_grid.model.schema_for``) and who may read it.
* An institution's own layers carry its **suffix**: ``grids__nsh`` for NSH, and its
  coverage layers ``coverage_gaps__nsh``. The government grid is plain ``grids``.
* A county's **staging layer**, written by a fan-out task, is ``<layer>__c<code>``
  (``grids__nsh__c420527``); a staged layer of another role is
  ``<role>__<layer>__c<code>`` (``staff__grids__nsh__c420527``). Staging layers are
  bookkeeping: never a grid layer, never a collection.
* The fan-out's resume ledger is the table ``fanout_runs``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["GRIDS", "LEDGER", "drawn_grid_key", "grid_layer", "grid_layers",
           "institution_suffix",
           "is_grid_layer", "is_staging", "layer_kind", "stage_layer", "staged_layer",
           "target_layer"]

#: The kind of grid layers.
GRIDS = "grids"
#: The fan-out's resume ledger table.
LEDGER = "fanout_runs"
#: A county code as staging layers carry it: 6 digits, or 12 for a finer division.
COUNTY_CODE = r"\d{6}(?:\d{6})?"
_STAGING = re.compile(rf"__c{COUNTY_CODE}$")


def layer_kind(name: str) -> str:
    """The kind of a layer: its name before ``__`` (``grids__nsh`` → ``grids``)."""
    return name.split("__", 1)[0]


def institution_suffix(institution: str | None) -> str:
    """The suffix of an institution's own layers: ``NSH`` → ``__nsh``; none → ``""``.

    Lower case; any character but an ASCII letter or digit becomes ``_``, so the name is
    always a valid layer name (``check_layer_name``).

    >>> institution_suffix("NSH"), institution_suffix("Bank-7"), institution_suffix(None)
    ('__nsh', '__bank_7', '')
    """
    if not institution:
        return ""
    clean = "".join(ch if ch.isascii() and ch.isalnum() else "_" for ch in institution.lower())
    return f"__{clean}"


def grid_layer(institution: str | None) -> str:
    """The grid layer of an institution (``grids__nsh``), or ``grids`` for the
    government grid."""
    return GRIDS + institution_suffix(institution)


def target_layer(params) -> str:
    """The grid layer a job is about: its ``layer`` parameter, else the grid layer of
    its ``institution`` parameter."""
    if params.get("layer"):
        return str(params["layer"])
    return grid_layer(params.get("institution"))


def stage_layer(layer: str, county: str) -> str:
    """The staging layer of one county's result: ``grids__nsh__c420527``."""
    return f"{layer}__c{county}"


def staged_layer(role: str, layer: str, county: str) -> str:
    """The staging layer of a job's outcome layer ``role`` for ``layer``'s run in one
    county: ``grids`` → ``<layer>__c<code>``, any other → ``<role>__<layer>__c<code>``."""
    return stage_layer(layer if role == GRIDS else f"{role}__{layer}", county)


def is_staging(name: str) -> bool:
    """Whether ``name`` is a county's staging layer (``…__c420527``)."""
    return _STAGING.search(name) is not None


def is_grid_layer(name: str) -> bool:
    """Whether ``name`` is a grid layer (``grids``, ``grids__nsh``), not a staging layer."""
    return layer_kind(name) == GRIDS and not is_staging(name)


def grid_layers(names: Iterable[str]) -> list[str]:
    """The grid layers among ``names``, sorted."""
    return sorted(n for n in names if is_grid_layer(n))


def drawn_grid_key(name: str, k: int) -> str:
    """The key the ``k``-th further grid layer of a map is drawn under: its own name when
    it is an institution's (``grids__nsh``), else ``grids__<k>``."""
    return name if layer_kind(name) == GRIDS and name != GRIDS else f"{GRIDS}__{k}"

