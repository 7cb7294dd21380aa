"""One conversion of report values to plain JSON-ready Python, for every report writer
(CLI files, the service's answers, Excel cells)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def plain(value):
    """JSON-ready Python: NaN, NA and NaT → None; numpy scalars → Python numbers and
    booleans; dates and times → ISO text; dicts, sequences and DataFrames (as records)
    converted throughout.

    >>> plain({"share": np.float64("nan"), "n": np.int64(3), "at": pd.Timestamp("2026-06-01")})
    {'share': None, 'n': 3, 'at': '2026-06-01T00:00:00'}
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return [plain(r) for r in value.to_dict(orient="records")]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
