"""What makes one level of grids: the four methods, the tile shapes, the outlet tiers of
each level and :class:`LevelSpec` (plans B1–B3 and C1, see ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from gis_grid.model import OUTLET_TIERS

METHODS = ("units", "balanced", "tiles", "outlets")
SHAPES = ("square", "hexagon")

#: Outlet tiers (B3) whose service areas make each level of the ``outlets`` method: tier-1
#: and tier-2 sub-branches (一级/二级支行) the big grids, tier-2 sub-branches and offices
#: (分理处) the middle ones, assisted-service points (助农点) the small ones.
DEFAULT_TIERS: dict[int, tuple[str, ...]] = {
    1: ("一级支行", "二级支行"),
    2: ("二级支行", "分理处"),
    3: ("助农点",),
}


@dataclass(frozen=True)
class LevelSpec:
    """How one level of grids is cut out of its parents.

    Parameters
    ----------
    method
        ``"units"``, ``"balanced"``, ``"tiles"`` or ``"outlets"`` (see the package doc of
        ``gis_grid.partition``).
    source
        For ``units``: the layer whose polygons become the grids, ``"townships"`` or
        ``"units"``. Default: townships at level 1 when given, else units.
    target_households, tolerance
        For ``balanced`` (and ``outlets`` with ``capacity``): override the defaults of
        :func:`partition` for this level.
    cell_size, shape, min_area
        For ``tiles``: override the defaults of :func:`partition` for this level.
    tiers
        For ``outlets``: the outlet tiers whose service areas make this level; default
        ``DEFAULT_TIERS[level]``.
    capacity
        For ``outlets``: balance the service areas by households — boundary pieces move
        from over-full to under-full neighbouring areas.

    Examples
    --------
    >>> LevelSpec("balanced", target_households=250).method
    'balanced'
    """

    method: str
    source: str | None = None
    target_households: int | None = None
    tolerance: float | None = None
    cell_size: float | None = None
    shape: str | None = None
    min_area: float | None = None
    tiers: tuple[str, ...] | None = None
    capacity: bool = False

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"LevelSpec: method {self.method!r} is not one of {METHODS}")
        if self.source not in (None, "townships", "units"):
            raise ValueError(f"LevelSpec: source {self.source!r} is not townships or units")
        if self.shape not in (None, *SHAPES):
            raise ValueError(f"LevelSpec: shape {self.shape!r} is not one of {SHAPES}")
        if self.target_households is not None and self.target_households < 1:
            raise ValueError("LevelSpec: target_households must be at least 1")
        if self.tolerance is not None and not 0 < self.tolerance < 1:
            raise ValueError("LevelSpec: tolerance must be between 0 and 1 (0.2 = ±20 %)")
        if self.cell_size is not None and not self.cell_size > 0:
            raise ValueError("LevelSpec: cell_size must be positive (metres)")
        if self.min_area is not None and self.min_area < 0:
            raise ValueError("LevelSpec: min_area must not be negative (m²)")
        if self.tiers is not None:
            if isinstance(self.tiers, str):
                object.__setattr__(self, "tiers", (self.tiers,))
            unknown = sorted(set(self.tiers) - set(OUTLET_TIERS))
            if unknown:
                raise ValueError(f"LevelSpec: unknown outlet tiers {unknown}; "
                                 f"known: {OUTLET_TIERS}")
            object.__setattr__(self, "tiers", tuple(self.tiers))
