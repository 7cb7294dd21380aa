"""The three real sample territories, partitioned for the lead bank and staffed, validate
clean: no gap, no overlap, nothing outside, every grid staffed (一人一格)."""

from __future__ import annotations

import pytest

from gis_grid.partition import LevelSpec, partition
from gis_grid.staffing import assign_staff
from gis_grid.topology import validate_grids
from layers.synthetic import build_sample

LEVELS = [LevelSpec("units", source="townships"), LevelSpec("units", source="units"),
          LevelSpec("balanced")]


@pytest.mark.slow
@pytest.mark.parametrize("county, households", [("420527", None), ("330382", 80_000),
                                                ("371328", 60_000)])
def test_partition_of_real_territory_validates_clean(county, households):
    s = build_sample(county, households=households)
    result = partition(s["territory"], s["households"], units=s["units"],
                       townships=s["townships"], outlets=s["outlets"], institution="NSH",
                       levels=LEVELS)
    grids, staff = assign_staff(result.grids, s["staff"], institution="NSH")
    report = validate_grids(grids, territory=s["territory"], households=s["households"],
                            staff=staff)
    assert report.ok, report.human()
    assert int(grids.loc[grids["level"] == 3, "households"].sum()) == \
        int(s["households"]["count"].sum())
