"""``gisgrid history``: what changed in a layer, and undoing a change (issue 15)."""

from __future__ import annotations

import datetime as dt
import json
import unicodedata

import click

from gis_grid.cli.common import store_option


def _since(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected a date (2026-11-01) or a date and "
                                 "time (2026-11-01T08:00)", param_hint="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _keys(keys: list[str], n: int = 5) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" … (+{len(keys) - n})" if len(keys) > n else "")


@click.command(name="history")
@click.argument("layer")
@click.option("--since", default=None, metavar="DATE",
              help="Only changes at or after DATE (2026-11-01, or 2026-11-01T08:00; UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.option("--show", "show_id", type=int, default=None, metavar="CHANGE_ID",
              help="Print one change whole, with the old values of its changed and removed "
                   "rows, as JSON.")
@click.option("--restore", "restore_id", type=int, default=None, metavar="CHANGE_ID",
              help="Put LAYER back as it was before change CHANGE_ID, all or nothing, as one "
                   "more logged change. Refused (exit 3) when a later change touched the "
                   "same keys: restore those first, newest first.")
@store_option
def history(layer: str, since: str | None, as_json: bool, show_id: int | None,
            restore_id: int | None, store: str | None) -> None:
    """List the changes of LAYER (oldest first), or undo one with --restore.

    Every change of a layer is logged: when (UTC), who (the OS user, or the API key's
    role and institution, or an SQL client on PostGIS), how (the mode and the command or
    endpoint), and the keys added, changed and removed — with the old values of the
    changed and removed rows, which is what --restore puts back. References are checked
    on a restore as on an import.
    """
    from layers.history import default_actor
    from layers.store import open_store

    moment = _since(since)
    with open_store(store) as source:
        if restore_id is not None:
            change = source.restore(layer, restore_id,
                                    actor=default_actor(f"history --restore {restore_id}"))
            if as_json:
                click.echo(json.dumps(change.summary(), ensure_ascii=False, indent=2))
                return
            click.echo(f"{layer}: restored to before change {restore_id}: "
                       f"{len(change.added)} added, {len(change.changed)} changed, "
                       f"{len(change.removed)} removed, {change.rows_after} rows now"
                       + (f" (change {change.id})" if change.id is not None else
                          " (nothing to change)"))
            return
        if show_id is not None:
            found = [c for c in source.history(layer, since_id=show_id, with_old=True)
                     if c.id == show_id]
            if not found:
                raise click.BadParameter(f"no change {show_id} of layer {layer}",
                                         param_hint="--show")
            entry = found[0]
            click.echo(json.dumps(entry.summary() | {"old": entry.old}, ensure_ascii=False,
                                  indent=2))
            return
        changes = source.history(layer, since=moment)
    if as_json:
        click.echo(json.dumps([c.summary() for c in changes], ensure_ascii=False, indent=2))
        return
    if not changes:
        click.echo(f"{layer}: no changes logged" + (f" since {since}" if since else ""))
        return
    click.echo(f"{layer}: {len(changes)} change(s)")
    widths = (6, 19, 16, 7, 7, 7, 13)
    right = (True, False, False, True, True, True, True)
    header = ("编号", "时间 (UTC)", "操作人", "新增", "修改", "删除", "行数")
    click.echo(_row(header, widths, right) + "  方式")
    for c in changes:
        before = "-" if c.rows_before is None else str(c.rows_before)
        after = "-" if c.rows_after is None else str(c.rows_after)
        at = c.at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if c.at else ""
        cells = (str(c.id), at, _clip(c.who, widths[2]), str(len(c.added)),
                 str(len(c.changed)), str(len(c.removed)), f"{before}→{after}")
        click.echo(_row(cells, widths, right) + f"  {c.how}")
        for label, keys in (("+", c.added), ("~", c.changed), ("-", c.removed)):
            if keys and len(keys) <= 20:
                click.echo(f"{'':>8}{label} {_keys(keys)}")


def _width(text: str) -> int:
    """Columns a terminal gives ``text`` (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _clip(text: str, width: int) -> str:
    while _width(text) > width:
        text = text[:-1]
    return text


def _row(cells, widths, right) -> str:
    out = []
    for cell, width, to_right in zip(cells, widths, right, strict=True):
        pad = " " * max(0, width - _width(cell))
        out.append(pad + cell if to_right else cell + pad)
    return "  ".join(out)
