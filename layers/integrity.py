"""Referential integrity between layers, by the one table ``gis_grid.model.REFERENCES``.

A checked change of a layer (``Store.change``: every ``gisgrid import`` mode, every
upload, every restore) is refused, with nothing stored, when

- a row it brings points at a key the store does not hold — checked against the store's
  current state whatever it holds: in an empty store an outlet's institution is unknown
  too (``outgoing``);
- it would leave rows of another layer pointing at a key it removes: replacing
  ``institutions`` without one that outlets, devices and staff use (``incoming``). Rows
  that already pointed nowhere before the change are not its doing and do not refuse it.

Both directions raise ``IntegrityError`` (an ``InputError``: CLI exit 3, API 422) naming
the rows: the file's rows for the first, the referencing layer and its ids (the first
``SHOWN`` and the count) for the second. On PostGIS the same table is installed as
triggers (``layers.migrations``, migration 4), so other clients' SQL is refused as well.

A fan-out's staging layers (``<layer>__c<code>``) neither refer nor are referred to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd

from gis_grid.errors import InputError, Problem, StoreError
from gis_grid.model import REFERENCES, schema_for
from gis_grid.naming import is_staging, layer_kind
from layers.history import key_columns, key_text, row_keys

#: Ids of referencing rows named in a refusal (then "… (N in all)").
SHOWN = 10


class IntegrityError(InputError):
    """A change refused because it would break a reference; nothing was stored."""


def outgoing(name: str) -> list[tuple[str, str, str]]:
    """(field, target layer, target key) of each reference from layer ``name``."""
    if is_staging(name):
        return []
    return [(f, t, k) for f, (t, k) in REFERENCES.get(layer_kind(name), {}).items()]


def incoming(name: str, present: Iterable[str]) -> list[tuple[str, str, str]]:
    """(referencing layer, its field, the key of ``name`` it holds) for each layer in
    ``present`` that refers to ``name``."""
    out = []
    for layer in sorted(set(present)):
        if layer == name or is_staging(layer):
            continue
        for f, (t, k) in REFERENCES.get(layer_kind(layer), {}).items():
            if t == name:
                out.append((layer, f, k))
    return out


def related(name: str, present: Iterable[str]) -> set[str]:
    """The layers a change of ``name`` reads to check its references (to be locked
    against writers together with it)."""
    present = set(present)
    return ({t for _, t, _ in outgoing(name)} | {r for r, _, _ in incoming(name, present)}
            ) - {name}


def _values(values: pd.Series) -> pd.Series:
    """Reference values as text (a whole number read as 14.0 is "14", as an id written
    14 in one file and "14" in another must match); empty text counts as no
    reference."""
    text = pd.Series(key_text(values.reset_index(drop=True)), dtype="string")
    return text.where(text.str.strip().str.len() > 0)


def check(
    name: str,
    rows: pd.DataFrame,
    before: pd.DataFrame | None,
    after: pd.DataFrame | None,
    *,
    present: set[str],
    read: Callable[[str, list[str]], pd.DataFrame],
    source: str,
    labels: list[str] | None = None,
) -> list[Problem]:
    """What is wrong with changing layer ``name`` from ``before`` to ``after`` (None: no
    layer), ``rows`` being the rows the change brings (labelled by ``labels``).

    ``present`` are the store's layer names and ``read(layer, columns)`` reads one of
    them as it is now.
    """
    problems: list[Problem] = []
    labels = labels or [f"row {i + 1}" for i in range(len(rows))]
    rows = rows.reset_index(drop=True)
    for field, target, key in outgoing(name):
        if field not in rows.columns:
            continue
        values = _values(rows[field])
        wanted = values.notna().to_numpy()
        if not wanted.any():
            continue
        if target == name and after is not None:
            known = _values(after[key]) if key in after.columns else pd.Series([], dtype="string")
            why = f"is not in layer {target}"
        elif target in present:
            stored = read(target, [key])
            known = _values(stored[key]) if key in stored.columns else pd.Series(
                [], dtype="string")
            why = f"is not in layer {target}"
        else:
            known = pd.Series([], dtype="string")
            why = f"is not in layer {target} (the store has no layer {target} yet)"
        missing = wanted & ~values.isin(set(known.dropna())).to_numpy(dtype=bool)
        for i in missing.nonzero()[0]:
            problems.append(Problem(source, labels[i] if i < len(labels) else f"row {i + 1}",
                                    field, f"{values.iloc[i]!r} {why}"))
    if before is None:
        return problems
    for layer, field, key in incoming(name, present):
        if key not in before.columns:
            continue
        old = set(_values(before[key]).dropna())
        new = set(_values(after[key]).dropna()) if after is not None and key in after.columns \
            else set()
        gone = old - new
        if not gone:
            continue
        schema = schema_for(layer)
        wanted = list(dict.fromkeys([field, *key_columns(layer, schema.field_names)])) \
            if schema is not None else None
        try:
            probe = read(layer, wanted)  # the reference and the key: a narrow read
        except StoreError:  # a column missing: read it whole
            try:
                probe = read(layer, None)
            except StoreError:  # a layer that cannot be read refers to nothing
                continue
        if field not in probe.columns:
            continue
        keys = key_columns(layer, list(probe.columns))
        referrer = row_keys(layer, probe) if keys else None
        values = _values(probe[field])
        hit = values.isin(gone).to_numpy(dtype=bool)
        if not hit.any():
            continue
        ids = (referrer[hit].tolist() if referrer is not None
               else [f"feature {i + 1}" for i in hit.nonzero()[0]])
        pointed = sorted(set(values[hit].dropna()))
        shown = ", ".join(ids[:SHOWN]) + (f" … ({len(ids)} in all)" if len(ids) > SHOWN
                                          else "")
        problems.append(Problem(
            source, None, None,
            f"{len(ids)} row(s) of layer {layer} refer through {field!r} to "
            f"{name} {key} {', '.join(pointed[:SHOWN])}"
            f"{' …' if len(pointed) > SHOWN else ''}, which this change removes: "
            f"{layer} {', '.join(keys) or 'rows'} {shown}"))
    return problems
