"""Everything synthetic a county holds once its units are drawn: zones, households and
population per unit, household points, outlets, devices, staff, ledger rows and market
entities. One step shared by the real-county sample (``layers.synthetic.county``) and the
synthetic province (``layers.synthetic.province``), so both draw them alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import shapely

from layers.synthetic.banks import _devices, _ledger, _outlets, _staff
from layers.synthetic.cells import _Frame, _Geo
from layers.synthetic.demand import _allocate_households, _households, _zones
from layers.synthetic.entities import _entities

if TYPE_CHECKING:
    from layers.synthetic.county import County


def _populate(rng: Callable[[str], np.random.Generator], info: County, frame: _Frame,
              towns: pd.DataFrame, units: pd.DataFrame, seeds: np.ndarray,
              seats: np.ndarray, townships_m: np.ndarray, units_m: np.ndarray,
              county_seat_m, total: int) -> dict:
    """Draw the county's synthetic layers (``units`` gains zone, households and
    population); ``rng(stream)`` is the county's generator of each named stream."""
    units_ll = frame.to_lonlat(units_m)
    shapely.prepare(units_ll)
    geo = _Geo(frame=frame, units_m=units_m, units_ll=units_ll, seeds=seeds,
               fallback_ll=shapely.point_on_surface(units_ll))
    units["zone"] = _zones(rng("zones"), units, seeds, seats, townships_m)
    allocation = rng("allocation")
    units["households"] = _allocate_households(allocation, units, total)
    units["population"] = np.round(
        units["households"].to_numpy() * allocation.uniform(2.8, 3.2, len(units))
    ).astype(np.int64)
    house = _households(rng("households"), units, geo)
    outlets = _outlets(rng("outlets"), info, towns, units, geo, seats, county_seat_m)
    devices = _devices(rng("devices"), outlets, units, geo)
    staff = _staff(rng("staff"), info, units, geo, total)
    ledger = _ledger(rng("ledger"), units, outlets)
    entities = _entities(rng("entities"), info, towns, units, house, geo, total)
    return {"households": house, "outlets": outlets, "devices": devices, "staff": staff,
            "ledger": ledger, "entities": entities, "geo": geo}
