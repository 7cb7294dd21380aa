"""Cleaning up after runs: the staging layers and the ledger rows.

Staging layers and ledger rows stay after a run (they are what a re-run resumes from).
``clean_runs`` removes those of a layer (or of every run), in one transaction on
PostGIS; afterwards a re-run recomputes every county.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from gis_grid.jobs import Job
from gis_grid.naming import COUNTY_CODE, GRIDS, LEDGER, is_staging
from layers.store import Store


@dataclass
class Cleaned:
    """What ``clean_runs`` removed (or, with ``dry_run``, would remove)."""

    layers: list[str]  # staging layers
    rows: dict[str, int]  # ledger rows per "job layer"
    atomic: bool = False  # all in one transaction (PostGIS)
    dry_run: bool = False

    @property
    def empty(self) -> bool:
        return not self.layers and not self.rows

    def text(self) -> str:
        """A report for people: every layer and the ledger rows, by job and layer."""
        if self.empty:
            return "nothing to clean: no staging layer and no ledger row matches"
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb} {len(self.layers)} staging layer{'s' if len(self.layers) != 1 else ''}"
                 + (":" if self.layers else "")]
        lines += [f"  {name}" for name in self.layers]
        total = sum(self.rows.values())
        lines.append(f"{verb} {total} row{'s' if total != 1 else ''} of {LEDGER}"
                     + (":" if self.rows else ""))
        lines += [f"  {key}: {n}" for key, n in self.rows.items()]
        if not self.dry_run:
            lines.append("a re-run of these jobs recomputes every county (nothing is left to "
                         "resume from)")
        return "\n".join(lines)


def staging_layers(names, layer: str, jobs: Sequence[Job]) -> list[str]:
    """The staging layers of ``layer``'s runs of ``jobs`` among the layer ``names``:
    ``<layer>__c<code>``, ``staff__<layer>__c<code>`` … (each job's ``stages``). The
    layer itself and every other layer are never among them."""
    prefixes = sorted({layer if role == GRIDS else f"{role}__{layer}"
                       for job in jobs for role in job.stages})
    if not prefixes:
        return []
    pattern = re.compile("(?:" + "|".join(map(re.escape, prefixes)) + rf")__c{COUNTY_CODE}")
    return sorted(n for n in names if pattern.fullmatch(n))


@contextmanager
def _one_transaction(store: Store) -> Iterator[bool]:
    """Make the store changes inside one all-or-nothing transaction where the store can.

    On PostGIS every store operation runs in its own transaction on the store's one
    connection; inside an outer transaction on that connection psycopg turns each into
    a savepoint, so the whole block commits or rolls back together (yields True). The
    GeoPackage store opens a connection per operation, so each change stands alone
    (yields False).
    """
    conn, lock = getattr(store, "_conn", None), getattr(store, "_lock", None)
    if conn is None or lock is None or not hasattr(conn, "transaction"):
        yield False
        return
    with lock, conn.transaction():
        yield True


def clean_runs(store: Store, jobs: Sequence[Job], *, layer: str | None = None,
               job: str | None = None, dry_run: bool = False) -> Cleaned:
    """Remove the staging layers and ``fanout_runs`` rows of finished runs.

    Parameters
    ----------
    store
        An open store.
    jobs
        Every job that may have run (their ``stages`` name the staging layers).
    layer
        The runs' grids layer (``grids__nsh``); None: every layer the ledger names and
        every staging layer (``…__c<code>``) in the store.
    job
        Only this job's rows and staging layers (``partition`` stages grids and staff,
        ``coverage`` its stored layers; ``validate`` and ``atlas`` stage nothing).
    dry_run
        Only say what would be removed.

    Returns
    -------
    Cleaned
        The staging layers and the ledger rows (per job and layer) removed.

    The live layers (``<layer>``, ``staff``, ``coverage_gaps…``) are never touched. On
    PostGIS everything goes in one transaction. On a GeoPackage the ledger rows go first,
    in one write (from then on nothing resumes from the staging layers), then the
    staging layers one by one; if that is interrupted, cleaning again removes the rest.
    Run it when no run of the layer is going: a row a task appends meanwhile may be lost
    (its county is then recomputed next time, nothing worse).
    """
    known = [j.name for j in jobs]
    if job is not None and job not in known:
        raise ValueError(f"clean_runs: job {job!r} is not one of {known}")
    chosen = [j for j in jobs if job is None or j.name == job]
    names = [info.name for info in store.layers()]
    ledger = store.read(LEDGER) if LEDGER in names else None
    if layer is not None:
        layers = [layer]
    else:
        # Every layer the ledger names, and those whose staging layers are left without
        # ledger rows (a run killed before its rows, a clean interrupted on a GeoPackage).
        found = set() if ledger is None else set(ledger["layer"].astype(str))
        for name in filter(is_staging, names):
            base = name.rsplit("__c", 1)[0]
            found.add(base)
            for prefix in {role for j in jobs for role in j.stages} - {GRIDS}:
                found.add(base.removeprefix(f"{prefix}__"))
        layers = sorted(found)
    stages = sorted({name for one in layers for name in staging_layers(names, one, chosen)})
    rows: dict[str, int] = {}
    mine = None
    if ledger is not None and len(ledger):
        mine = ledger["layer"].astype(str).isin(layers).to_numpy(copy=True)
        if job is not None:
            mine &= (ledger["job"].astype(str) == job).to_numpy()
        counts = ledger[mine].groupby(["job", "layer"], sort=True).size()
        rows = {f"{j} {lay}": int(n) for (j, lay), n in counts.items()}
    cleaned = Cleaned(stages, rows, dry_run=dry_run)
    if dry_run or cleaned.empty:
        return cleaned
    with _one_transaction(store) as atomic:
        if rows:
            if mine.all():
                store.delete(LEDGER)
            else:
                store.write(LEDGER, ledger[~mine].reset_index(drop=True))
        for name in stages:
            store.delete(name)
    cleaned.atomic = atomic
    return cleaned
