"""China's offset datums: GCJ-02 (Amap, Tencent) and BD-09 (Baidu) to and from WGS84.

Most outlet coordinates in China arrive in GCJ-02 or BD-09, public-algorithm offsets of
WGS84 of up to several hundred metres that apply only inside China. PROJ / pyproj do not
know them (they are not geodetic datums), and the PyPI packages that do (eviltransform,
coord-convert, prcoords …) work one point at a time in Python; hence this vectorised numpy
implementation of the published formulas. The forward transforms are closed form; the
inverses have none, so they iterate the forward transform until the residual is below
1e-9 degree (≈ 0.1 mm), instead of the one-step subtraction that leaves metre-level error.

Points outside China's bounding box are not shifted, as the datum defines.
"""

from __future__ import annotations

import numpy as np

from gis_grid.geometry import transform_xy

_A = 6378245.0  # Krasovsky 1940 semi-major axis, as the GCJ-02 algorithm uses
_EE = 0.00669342162296594323  # its first eccentricity squared
_X_PI = np.pi * 3000.0 / 180.0

#: The names ``crs`` arguments accept for these datums.
OFFSET_DATUMS = ("gcj02", "bd09")


def out_of_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """True where the point lies outside the box in which GCJ-02 applies its offset."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    return (lon < 72.004) | (lon > 137.8347) | (lat < 0.8293) | (lat > 55.8271)


def _offset(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = lon - 105.0
    y = lat - 35.0
    sx = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sx + common
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sx + common
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    radlat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 → GCJ-02 (closed form). Arrays or scalars in, float arrays out."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    dlon, dlat = _offset(lon, lat)
    outside = out_of_china(lon, lat)
    return np.where(outside, lon, lon + dlon), np.where(outside, lat, lat + dlat)


def _gcj02_to_bd09(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def wgs84_to_bd09(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 → BD-09 (GCJ-02, then Baidu's own offset; unshifted outside China)."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    glon, glat = wgs84_to_gcj02(lon, lat)
    blon, blat = _gcj02_to_bd09(glon, glat)
    outside = out_of_china(lon, lat)
    return np.where(outside, lon, blon), np.where(outside, lat, blat)


def _invert(forward, lon, lat, tol: float = 1e-9, max_iter: int = 30):
    """Solve forward(w) = (lon, lat) for w by fixed-point iteration from w = (lon, lat).

    The offsets vary slowly (their derivative is ~1e-5), so each step gains about five
    digits; three or four steps reach ``tol``.
    """
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    wlon, wlat = lon.copy(), lat.copy()
    for _ in range(max_iter):
        flon, flat = forward(wlon, wlat)
        rlon, rlat = flon - lon, flat - lat
        wlon = wlon - rlon
        wlat = wlat - rlat
        if np.all(np.abs(rlon) < tol) and np.all(np.abs(rlat) < tol):
            break
    return wlon, wlat


def gcj02_to_wgs84(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 → WGS84, iterated to below 1e-9 degree."""
    return _invert(wgs84_to_gcj02, lon, lat)


def bd09_to_wgs84(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    """BD-09 → WGS84, iterated to below 1e-9 degree."""
    return _invert(wgs84_to_bd09, lon, lat)


_TO_WGS84 = {"gcj02": gcj02_to_wgs84, "bd09": bd09_to_wgs84}
_FROM_WGS84 = {"gcj02": wgs84_to_gcj02, "bd09": wgs84_to_bd09}


def to_wgs84(geometries, datum: str) -> np.ndarray:
    """Convert an array of shapely geometries from ``datum`` (gcj02 / bd09) to WGS84,
    all coordinates at once."""
    return transform_xy(geometries, _TO_WGS84[datum])


def from_wgs84(geometries, datum: str) -> np.ndarray:
    """Convert an array of shapely geometries from WGS84 to ``datum`` (gcj02 / bd09)."""
    return transform_xy(geometries, _FROM_WGS84[datum])
