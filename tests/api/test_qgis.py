"""QGIS 3.22 from Debian (python3-qgis, offscreen) against the running service, signed in
as the README tells a user: an authentication configuration of method Basic with the
key as the password, then the OGC API – Features layers. QGIS lives in the system
Python, so it runs as a subprocess of /usr/bin/python3."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.api.server import BANK_A, running_service

SYSTEM_PYTHON = Path("/usr/bin/python3")

SCRIPT = r"""
import json, os, sys, tempfile
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
profile = tempfile.mkdtemp(prefix="gisgrid-qgis-")
os.environ["QGIS_AUTH_DB_DIR_PATH"] = profile
os.environ["QGIS_CUSTOM_CONFIG_PATH"] = profile
from qgis.core import (Qgis, QgsApplication, QgsAuthMethodConfig, QgsVectorLayer,
                       QgsWkbTypes)

url, key, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
app = QgsApplication([], False)
app.initQgis()
auth = QgsApplication.authManager()
auth.setMasterPassword("gisgrid-test", True)
config = QgsAuthMethodConfig()
config.setName("gisgrid")
config.setMethod("Basic")
config.setConfig("username", "qgis")
config.setConfig("password", key)
auth.storeAuthenticationConfig(config)
out = {"qgis": Qgis.QGIS_VERSION, "layers": []}
for name, subset, *query in spec:
    # A query in the connection URL is sent with every request (QGIS 3.22 sends no
    # CQL2 of its own: that is how its users have the server filter).
    where = f"?{query[0]}" if query and query[0] else ""
    uri = (f"url='{url}/{where}' typename='{name}' authcfg='{config.id()}' "
           "restrictToRequestBBOX='0'")
    layer = QgsVectorLayer(uri, name, "OAPIF")
    entry = {"name": name, "subset": subset, "query": where, "valid": layer.isValid()}
    if layer.isValid():
        if subset:
            entry["subset_ok"] = layer.setSubsetString(subset)
        entry["geometry"] = QgsWkbTypes.displayString(layer.wkbType())
        features = list(layer.getFeatures())
        entry["count"] = len(features)
        entry["located"] = sum(1 for f in features if f.hasGeometry())
        entry["fields"] = [f.name() for f in layer.fields()]
        entry["institutions"] = sorted({str(f["institution"]) for f in features}
                                       if "institution" in entry["fields"] else [])
    out["layers"].append(entry)
print("RESULT " + json.dumps(out, ensure_ascii=False), flush=True)
os._exit(0)  # QGIS 3.22 may crash while tearing down offscreen; the result is out
"""


def _has_qgis() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    done = subprocess.run([str(SYSTEM_PYTHON), "-c", "import qgis.core"],
                          capture_output=True, timeout=120,
                          env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    return done.returncode == 0


pytestmark = pytest.mark.skipif(not _has_qgis(),
                                reason="needs python3-qgis (scripts/setup.sh --test)")


@pytest.fixture(scope="module")
def svc(request, tmp_path_factory):
    with running_service("postgis", request, tmp_path_factory.mktemp("qgis")) as service:
        yield service


def qgis(svc, key: str, spec: list) -> dict:
    # A fresh home for each QGIS: its profile and network cache live there, and a cache
    # shared between runs could answer a run with a wrong key from an earlier run's pages.
    with tempfile.TemporaryDirectory(prefix="gisgrid-qgis-") as home:
        done = subprocess.run([str(SYSTEM_PYTHON), "-c", SCRIPT, svc.url, key,
                               json.dumps(spec)],
                              capture_output=True, text=True, timeout=600,
                              env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin",
                                   "HOME": home})
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_qgis_322_loads_the_four_layers_with_basic_sign_in(svc):
    from urllib.parse import urlencode

    layers = svc.sample.layers
    helpers = "\"tier\" = '助农点'"
    cql2 = urlencode({"filter": "tier='助农点' AND S_INTERSECTS(geometry, "
                                "BBOX(100, 20, 120, 40))"})
    got = qgis(svc, svc.keys.regulator, [["grids", None], ["outlets", None],
                                         ["staff", None], ["households", None],
                                         ["outlets", helpers], ["outlets", None, cql2]])
    assert got["qgis"].startswith("3.")
    by = {(e["name"], e["subset"] or e["query"] or None): e for e in got["layers"]}
    assert all(e["valid"] for e in got["layers"]), got
    for name in ("grids", "outlets", "staff", "households"):
        assert by[(name, None)]["count"] == len(layers[name]), name
    assert by[("grids", None)]["geometry"] == "Polygon"
    assert by[("outlets", None)]["geometry"] == "Point"
    # staff are points, though the first stored ones have no location
    assert layers["staff"].geometry.iloc[:10].isna().all()
    staff = by[("staff", None)]
    assert staff["geometry"] == "Point"
    assert staff["located"] == layers["staff"].geometry.notna().sum()
    assert "phone" not in staff["fields"]  # the regulator's view
    helper_count = (layers["outlets"]["tier"] == "助农点").sum()
    assert 0 < helper_count < len(layers["outlets"])
    filtered = by[("outlets", helpers)]  # QGIS's own filter, evaluated by QGIS
    assert filtered["subset_ok"] and filtered["count"] == helper_count
    served = by[("outlets", f"?{cql2}")]  # a CQL2 filter evaluated by the service
    assert served["count"] == helper_count


def test_qgis_sees_what_the_key_may_see(svc):
    got = qgis(svc, svc.keys.admin_a, [["outlets", None], ["staff", None]])
    outlets, staff = got["layers"]
    assert outlets["valid"] and outlets["institutions"] == [BANK_A]
    own = svc.sample.layers["outlets"]["institution"] == BANK_A
    assert outlets["count"] == own.sum()
    assert "phone" in staff["fields"]
    wrong = qgis(svc, "gg_000000000000.wrongwrongwrongwrongwrong", [["outlets", None]])
    assert not wrong["layers"][0]["valid"]
