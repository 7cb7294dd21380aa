"""Who may see and change what: API keys and graded authorization (分级授权, plan B6).

Keys
----
Every data endpoint needs a key, sent as ``Authorization: Bearer <token>``,
``X-API-Key: <token>`` or HTTP Basic with the token as the password and any user name
(``Authorization: Basic base64(user:token)``: what QGIS 3.22 and GDAL 3.6 can send).
A token is ``gg_<key id>.<secret>`` with a 256-bit random secret; the store keeps
only ``sha256(salt ‖ secret)`` with a per-key salt, in the table layer ``api_keys``
(key_id, hash, role, institution, worker, created, revoked) written through the store
contract. A fast hash is enough because the secret is random and long (nothing to
guess from a dictionary); the salt keeps equal secrets from hashing alike.
``gisgrid keys create`` prints a token once; it cannot be shown again.

Roles
-----
regulator (监管)
    Reads every institution's grids, outlets, devices and staff (without their phone
    numbers), the shared layers (territory, townships, units, institutions, households,
    entities), events, the analysis layers, and the ledger (台账): it holds counts per
    grid, institution and period (households, merchants, firms and their files), not
    people, so the regulator reads it whole — ``/collections/ledger``, its aggregates at
    ``/ledger/summary`` and the assessment (``POST /analyses/assessment``) agree.
    Writes nothing through the API.
admin (institution administrator, 机构管理员) of institution X
    Reads and writes the rows of X — every layer with an ``institution`` column (grids,
    outlets, devices, staff with phones, ledger, and analysis layers naming
    an institution) shows only rows whose institution is X — plus the shared layers and
    households, and events reported by X's staff. Uploads to such a layer replace X's
    rows (``mode=replace``) or add/replace them by key (``mode=upsert``); rows of any
    other institution in an upload are refused (403) and the other institutions' rows
    in the store are kept as they are. A grid layer of one institution,
    ``grids__<inst>`` (``gisgrid`` names it ``grids`` + the institution's suffix, e.g.
    ``grids__nsh`` for NSH), is written only by that institution's admin, whatever its
    rows say; the shared ``grids`` layer is written by the institution column (each
    admin replaces or upserts its own rows).
worker (grid worker, 网格员) S of institution X
    Reads its own grids (institution X, worker S), the ledger rows of those grids, X's
    staff, outlets and devices, the shared layers except households, and its own events.
    Writes (upserts) ledger rows of its own grids and its own events (reports).

Boundaries
----------
* Rows are restricted in the query itself: the provider adds ``column = ANY(values)``
  conditions built from this module's rules, so a filter, a bbox, a page, a tile or a
  feature id can never reach another institution's rows. A feature of another
  institution fetched by id is 404 (not 403), so its existence is not leaked.
* A property filter naming another institution (``?institution=B``), or any value
  outside the caller's scope on a scope column, is 403; a filter on a hidden column
  (a regulator filtering staff on ``phone``) is 400 as for a column that does not exist.
* A layer without an ``institution`` column that is not a shared layer (e.g. an
  across-bank overlap layer) is the regulator's only; others get 403.
* The ``api_keys`` layer is never served.
* Reference layers (territory, townships, units, institutions, households, entities) are
  written by the operator with ``gisgrid import``, never through the API.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from api.errors import Forbidden, NotAuthenticated, NotFound
from gis_grid.errors import LayerNotFound, StoreError
from gis_grid.naming import institution_suffix, layer_kind
from layers.store import Store

KEYS_LAYER = "api_keys"
ROLES = ("regulator", "admin", "worker")
#: Layers every role may read (the shared base map of the territory).
SHARED = frozenset({"territory", "townships", "units", "institutions", "entities"})
#: Layers written by the operator only.
REFERENCE = SHARED | {"households"}
#: Columns hidden from callers outside the row's institution, per layer kind.
PRIVATE_COLUMNS = {"staff": frozenset({"phone"})}

_TOKEN = re.compile(r"^gg_([0-9a-f]{12})\.([A-Za-z0-9_-]{20,100})$")
_IDENT = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_.\-]{0,63}$")

#: Lookups a rule may need: values read from the store when a request is served.
OWN_GRIDS = "own_grids"  # codes of the grids of worker S of institution X
OWN_STAFF = "own_staff"  # ids of the staff of institution X


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    key_id: str
    role: str
    institution: str | None = None
    worker: str | None = None

    def __str__(self) -> str:
        who = self.role
        if self.institution:
            who += f" of {self.institution}"
        if self.worker:
            who += f" ({self.worker})"
        return who


@dataclass(frozen=True)
class Rule:
    """What a caller may do with one layer.

    ``fixed`` maps a column to the values every row read (or written) must have;
    ``lookups`` maps a column to a lookup (``OWN_GRIDS``, ``OWN_STAFF``) whose values it
    must be among; ``hidden`` columns are removed from every answer.
    """

    fixed: dict[str, tuple] = field(default_factory=dict)
    lookups: dict[str, str] = field(default_factory=dict)
    hidden: frozenset[str] = frozenset()


def read_rule(principal: Principal, name: str, columns: set[str] | frozenset[str]) -> Rule:
    """The rows and columns of layer ``name`` that ``principal`` may read.

    Raises
    ------
    NotFound
        For the ``api_keys`` layer (never served).
    Forbidden
        When the caller's role may not read the layer at all.
    """
    kind = layer_kind(name)
    role, inst, worker = principal.role, principal.institution, principal.worker
    if name == KEYS_LAYER:
        raise NotFound(f"no collection {name!r}")
    if kind in SHARED:
        return Rule()
    if kind == "households":
        if role == "worker":
            raise Forbidden("households (demand points) are read by regulators and "
                            "institution administrators")
        return Rule()
    if kind == "events":
        if role == "regulator":
            return Rule()
        if role == "admin":
            return Rule(lookups={"reporter": OWN_STAFF})
        return Rule(fixed={"reporter": (worker,)})
    if kind == "ledger":
        if role == "regulator":  # counts per grid, not people (issue 18, M5)
            return Rule()
        if role == "admin":
            return Rule(fixed={"institution": (inst,)})
        return Rule(fixed={"institution": (inst,)}, lookups={"grid": OWN_GRIDS})
    if "institution" in columns:
        if role == "regulator":
            return Rule(hidden=PRIVATE_COLUMNS.get(kind, frozenset()))
        if role == "worker" and kind == "grids":
            return Rule(fixed={"institution": (inst,), "worker": (worker,)})
        return Rule(fixed={"institution": (inst,)})
    if role == "regulator":
        return Rule()
    raise Forbidden(f"layer {name!r} has no institution column: it is the regulator's")


def write_rule(principal: Principal, name: str, columns: set[str] | frozenset[str]
               ) -> tuple[Rule, tuple[str, ...]]:
    """What ``principal`` may write to layer ``name``: the rule every uploaded row must
    satisfy (which also selects the rows it replaces) and the write modes allowed.

    ``columns`` are the layer's schema fields (an unknown layer kind cannot be written).
    """
    kind = layer_kind(name)
    role, inst, worker = principal.role, principal.institution, principal.worker
    if name == KEYS_LAYER or kind in REFERENCE:
        raise Forbidden(f"layer {name!r} is reference data, loaded by the operator with "
                        "`gisgrid import`")
    if role == "regulator":
        raise Forbidden("regulators read; they do not write layers")
    if not columns:
        raise Forbidden(f"layer {name!r} is of no known kind; only layers of the data "
                        "model (grids, outlets, devices, staff, ledger, events) are uploaded")
    if kind == "events":
        if role == "admin":
            return Rule(lookups={"reporter": OWN_STAFF}), ("upsert",)
        return Rule(fixed={"reporter": (worker,)}), ("upsert",)
    if "institution" not in columns:
        raise Forbidden(f"layer {name!r} has no institution column: it is not an "
                        "institution's to write")
    owner = grid_layer_owner(name)
    if owner is not None and (role != "admin" or name != "grids" + institution_suffix(inst)):
        # The layer, not only its rows' institution column, belongs to one institution.
        raise Forbidden(f"grid layer {name!r} belongs to institution {owner!r}: only its "
                        "own administrator writes it")
    if role == "admin":
        return Rule(fixed={"institution": (inst,)}), ("replace", "upsert")
    if kind == "ledger":
        return Rule(fixed={"institution": (inst,)}, lookups={"grid": OWN_GRIDS}), ("upsert",)
    raise Forbidden("grid workers write their own ledger rows and events (reports) only")


@dataclass(frozen=True)
class Namespace:
    """How a caller names the new rows it writes to a layer (issue 18, M4).

    A new row's key (one that is not among the rows the caller may change) must begin
    with ``prefix + "-"``, or, when ``column`` is set, with that row's own ``column``
    value + ``"-"``. Other callers' rows live in other namespaces, so a key the caller
    may not see is refused for its namespace exactly as a key that exists nowhere — an
    upload or a record can no longer ask "is this id taken?".
    """

    key: str
    prefix: str | None = None
    column: str | None = None

    def required(self, frame: pd.DataFrame) -> pd.Series:
        """The prefix each row of ``frame`` must begin with (``…-``)."""
        if self.column is not None:
            values = frame[self.column] if self.column in frame.columns else pd.Series(
                [""] * len(frame), index=frame.index)
            return values.fillna("").astype(str) + "-"
        return pd.Series([f"{self.prefix}-"] * len(frame), index=frame.index, dtype=object)

    def outside(self, keys: pd.Series, required: pd.Series) -> np.ndarray:
        """Which ``keys`` do not begin with their ``required`` prefix (one vectorised
        test per distinct prefix: a few institutions or reporters)."""
        keys = keys.fillna("").astype(str).reset_index(drop=True)
        required = required.reset_index(drop=True)
        bad = np.zeros(len(keys), dtype=bool)
        for prefix in required.unique():
            at = (required == prefix).to_numpy(dtype=bool)
            bad[at] = ~keys[at].str.startswith(prefix).to_numpy(dtype=bool) | \
                (keys[at].str.len() <= len(prefix)).to_numpy(dtype=bool)
        return bad

    @property
    def why(self) -> str:
        return ("each reporter's events are apart; SECURITY.md" if self.column == "reporter"
                else "ids are kept apart by institution; SECURITY.md")

    def describe(self) -> str:
        if self.column is not None:
            return f"its {self.column}'s id followed by '-'"
        return f"'{self.prefix}-'"


#: Layer kinds whose rows are named by an id the writer chooses, within its namespace.
_NAMED_BY_INSTITUTION = frozenset({"outlets", "devices", "staff", "grids"})


def namespace(principal: Principal, name: str) -> Namespace | None:
    """The namespace of the new rows ``principal`` writes to layer ``name`` (see
    ``Namespace``), or None where the layer holds no row the caller cannot see under a
    key it could choose: an institution's own grid layer ``grids__<inst>``, and the
    ledger, whose key holds the institution (and, for a worker, its own grid).

    Institutions' rows begin with the institution's id (``NSH-O-0001``: the sample's
    ids and what ``gisgrid sample`` makes); events begin with their reporter's id, so
    that a worker's events, which only it and its administrator read, are apart from
    its colleagues'.
    """
    kind = layer_kind(name)
    if principal.role == "regulator":
        return None
    if kind == "events":
        return Namespace("id", column="reporter")
    if kind in _NAMED_BY_INSTITUTION and grid_layer_owner(name) is None and \
            principal.institution:
        return Namespace("code" if kind == "grids" else "id", prefix=principal.institution)
    return None


def grid_layer_owner(name: str) -> str | None:
    """The institution a grid layer ``grids__<inst>`` belongs to (None for others,
    including the shared ``grids`` layer, which is written by its institution column)."""
    if layer_kind(name) != "grids" or "__" not in name:
        return None
    suffix = name.split("__", 1)[1]
    return suffix or None


# ----------------------------------------------------------------------------- keys


def _hash(secret: str, salt: bytes) -> str:
    return "sha256$" + salt.hex() + "$" + hashlib.sha256(salt + secret.encode()).hexdigest()


#: Hashed when a key id is unknown, so that an unknown id and a wrong secret take the
#: same time (issue 18, L4: 7.5 ms against 2.3 ms told which key ids exist).
_DUMMY_HASH = _hash(secrets.token_urlsafe(32), secrets.token_bytes(16))


def _matches(secret: str, stored: str) -> bool:
    try:
        scheme, salt, _ = stored.split("$")
    except ValueError:
        return False
    if scheme != "sha256":
        return False
    return hmac.compare_digest(_hash(secret, bytes.fromhex(salt)), stored)


def check_principal(role: str, institution: str | None, worker: str | None) -> None:
    """Raise ``ValueError`` when a role lacks the institution / worker it needs."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    for label, value in (("institution", institution), ("worker", worker)):
        if value is not None and not _IDENT.match(value):
            raise ValueError(f"{label} {value!r}: letters, digits, '_', '.', '-' only")
    if role == "regulator" and (institution or worker):
        raise ValueError("a regulator key has no institution or worker")
    if role in ("admin", "worker") and not institution:
        raise ValueError(f"a {role} key needs --institution")
    if role == "admin" and worker:
        raise ValueError("an admin key has no worker")
    if role == "worker" and not worker:
        raise ValueError("a worker key needs --worker (the staff id, e.g. NSH-S-0003)")


def read_keys(store: Store) -> pd.DataFrame:
    try:
        return store.read(KEYS_LAYER)
    except LayerNotFound:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in
                             ("key_id", "hash", "role", "institution", "worker")})


def create_key(store: Store, role: str, institution: str | None = None,
               worker: str | None = None) -> tuple[str, str]:
    """Create an API key; return ``(key_id, token)``. Only the hash is stored.

    Examples
    --------
    >>> key_id, token = create_key(store, "admin", institution="NSH")  # doctest: +SKIP
    """
    check_principal(role, institution, worker)
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = pd.DataFrame({
        "key_id": [key_id], "hash": [_hash(secret, secrets.token_bytes(16))],
        "role": [role], "institution": [institution], "worker": [worker],
        "created": [pd.Timestamp.now(tz="UTC")], "revoked": [pd.NaT],
    })

    def add(keys: pd.DataFrame | None) -> pd.DataFrame:
        frame = row if keys is None or keys.empty else pd.concat([keys, row],
                                                                 ignore_index=True)
        return _typed_keys(frame)

    # Read and written under the store's lock: a key created or revoked meanwhile by
    # another process is kept, not overwritten.
    store.modify(KEYS_LAYER, add)
    return key_id, f"gg_{key_id}.{secret}"


def _typed_keys(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for col in ("key_id", "hash", "role", "institution", "worker"):
        frame[col] = frame[col].astype("object").where(frame[col].notna(), None)
    for col in ("created", "revoked"):
        if col not in frame:
            frame[col] = pd.NaT
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame[["key_id", "hash", "role", "institution", "worker", "created", "revoked"]]


def revoke_key(store: Store, key_id: str) -> None:
    """Mark a key revoked (kept for the record). Raises ``StoreError`` if unknown."""

    def revoke(keys: pd.DataFrame | None) -> pd.DataFrame:
        hit = (keys["key_id"] == key_id) if keys is not None else pd.Series([], dtype=bool)
        if not hit.any():
            raise StoreError(f"no API key {key_id!r}")
        keys = _typed_keys(keys)
        keys.loc[hit.to_numpy(), "revoked"] = pd.Timestamp.now(tz="UTC")
        return keys

    store.modify(KEYS_LAYER, revoke)  # under the store's lock, as create_key


def list_keys(store: Store) -> pd.DataFrame:
    """The keys without their hashes."""
    keys = _typed_keys(read_keys(store))
    return keys.drop(columns=["hash"])


class KeyRing:
    """Checks tokens against the stored hashes, cached in memory.

    The cache is reloaded every ``ttl`` seconds (so a key revoked with ``gisgrid keys
    revoke`` stops working within ``ttl``; the service also reloads them in the
    background at half of it), and in the background, at most once a second, after a
    token is refused (so a key created meanwhile works a moment after its first try, and
    a flood of bad tokens cannot make the service hammer the store).

    Constant time (issue 18, L4): an unknown key id and a known one with a wrong secret
    take the same path — the secret is hashed (against a dummy hash when the id is
    unknown), compared with ``hmac.compare_digest``, and either starts the same
    background reload; no request waits for a reload an unknown id caused (that wait was
    the 7.5 ms against 2.3 ms that told which ids exist).
    """

    def __init__(self, load: Callable[[], pd.DataFrame], ttl: float = 30.0) -> None:
        self._load = load
        self._ttl = ttl
        self._keys: dict[str, tuple[str, Principal]] = {}
        #: tokens already checked since the last reload, so a hash is computed once
        self._verified: dict[str, Principal] = {}
        self._loaded = -1e18
        self._kicked = -1e18  # when a refused token last started a background reload
        self._lock = threading.Lock()

    def needs_refresh(self, key_id: str | None) -> bool:
        """Whether ``refresh`` would reload (cheap; lets callers skip a thread hop)."""
        # The same answer for every key id, known or not (L4): a request waits only for
        # a reload due by age; refused tokens reload in the background (``_kick``).
        return time.monotonic() - self._loaded >= self._ttl

    @property
    def age(self) -> float:
        """Seconds since the keys were last loaded."""
        return time.monotonic() - self._loaded

    def refresh(self, key_id: str | None, *, force: bool = False) -> None:
        """Reload the keys if stale or ``key_id`` is unknown, or always with ``force``
        (blocking: run it in a thread)."""
        with self._lock:
            if not force and not self.needs_refresh(key_id):
                return
            frame = _typed_keys(self._load())
            active = frame[frame["revoked"].isna()]
            self._keys = {
                kid: (h, Principal(kid, role, inst, worker))
                for kid, h, role, inst, worker in zip(
                    active["key_id"], active["hash"], active["role"], active["institution"],
                    active["worker"], strict=True)
            }
            self._verified = {}
            self._loaded = time.monotonic()

    def verify(self, token: str) -> Principal:
        """The principal of ``token``, or ``NotAuthenticated``."""
        known = self._verified.get(token)
        if known is not None:
            return known
        key_id, secret = split_token(token)
        entry = self._keys.get(key_id)
        # The same work whether the id is known or not: the secret is hashed against the
        # stored hash or a dummy one, and compared in constant time.
        ok = _matches(secret, entry[0] if entry is not None else _DUMMY_HASH)
        if entry is None or not ok:
            self._kick()
            raise NotAuthenticated("unknown or revoked API key (a key created in the last "
                                   "seconds: try again)")
        if len(self._verified) < 10_000:
            self._verified[token] = entry[1]
        return entry[1]


    # -- sessions (the map page's cookie)

    def session(self, principal: Principal, seconds: float, now: float | None = None) -> str:
        """A session value for ``principal``: ``key_id.expiry.signature``, signed with
        HMAC-SHA256 keyed by the key's stored hash. It holds no secret; every worker
        process can check it; revoking the key ends it (issue 18, L5)."""
        expiry = int((time.time() if now is None else now) + seconds)
        stored = self._keys[principal.key_id][0]
        return f"{principal.key_id}.{expiry}.{_sign(stored, principal.key_id, expiry)}"

    def verify_session(self, value: str, now: float | None = None) -> Principal:
        """The principal of a session value, or ``NotAuthenticated`` (malformed, expired,
        forged, or its key revoked)."""
        match = _SESSION.match(value.strip())
        if not match:
            raise NotAuthenticated("malformed session; open /map?key=<token> again")
        key_id, expiry, signature = match.group(1), int(match.group(2)), match.group(3)
        entry = self._keys.get(key_id)
        expected = _sign(entry[0] if entry is not None else _DUMMY_HASH, key_id, expiry)
        ok = hmac.compare_digest(expected, signature)
        if entry is None or not ok:
            self._kick()
            raise NotAuthenticated("unknown or revoked session; open /map?key=<token> again")
        if expiry < (time.time() if now is None else now):
            raise NotAuthenticated("the session has expired; open /map?key=<token> again")
        return entry[1]

    def _kick(self) -> None:
        """After a refused token: reload the keys in a background thread, at most once a
        second and one at a time (the same for unknown ids and wrong secrets)."""
        now = time.monotonic()
        if now - self._kicked < 1.0 or now - self._loaded < 1.0:
            return
        self._kicked = now

        def reload() -> None:
            try:
                self.refresh(None, force=True)
            except Exception:  # noqa: BLE001 — the next request's reload reports it
                pass

        threading.Thread(target=reload, name="gisgrid-keys", daemon=True).start()


_SESSION = re.compile(r"^([0-9a-f]{12})\.([0-9]{1,12})\.([0-9a-f]{64})$")


def _sign(stored_hash: str, key_id: str, expiry: int) -> str:
    return hmac.new(stored_hash.encode(), f"{key_id}.{expiry}".encode(),
                    hashlib.sha256).hexdigest()


def split_token(token: str) -> tuple[str, str]:
    match = _TOKEN.match(token.strip())
    if not match:
        raise NotAuthenticated("malformed API key: expected gg_<key id>.<secret>")
    return match.group(1), match.group(2)


def token_from_headers(authorization: str | None, api_key: str | None) -> str:
    """The token of a request: ``X-API-Key``, ``Authorization: Bearer <token>`` or
    ``Authorization: Basic`` with the token as the password (any user name; QGIS 3.22,
    GDAL's ``GDAL_HTTP_USERPWD`` and browsers send only this). A Basic user name that is
    itself a token with an empty password (``curl -u gg_…:``) is taken too."""
    if api_key:
        return api_key
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        if scheme.lower() == "basic" and value.strip():
            return _basic_password(value.strip())
        raise NotAuthenticated("Authorization header: expected 'Bearer <token>' or "
                               "'Basic' with the token as the password")
    raise NotAuthenticated("an API key is required: send 'Authorization: Bearer <token>', "
                           "'X-API-Key: <token>' or HTTP Basic with the token as the "
                           "password (any user name)")


def _basic_password(encoded: str) -> str:
    """The token in HTTP Basic credentials (RFC 7617: base64 of ``user:password``)."""
    try:
        text = base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise NotAuthenticated("Authorization: Basic credentials are not base64 of "
                               "'user:password'") from None
    user, colon, password = text.partition(":")
    if not colon:
        raise NotAuthenticated("Authorization: Basic credentials lack the ':' between "
                               "user name and password")
    if not password and _TOKEN.match(user.strip()):
        return user
    if not password:
        raise NotAuthenticated("HTTP Basic: the password must be your API key "
                               "(gg_<key id>.<secret>); the user name may be anything")
    return password
