"""``gisgrid schema [LAYER] [--json]``: what each layer holds, from the data model alone.

Fields, types, whether required, allowed values (the four outlet tiers …), code patterns,
ranges, Chinese titles (accepted as column names on import) and keys — all from
``gis_grid.model.describe_layer``, the description the service's schemas give too.
"""

from __future__ import annotations

import json

import click


def _constraint(field: dict) -> str:
    parts = []
    if "enum" in field:
        parts.append("one of " + " / ".join(field["enum"]))
    if "pattern" in field:
        parts.append(f"matches {field['pattern']}")
    low, high = field.get("minimum"), field.get("maximum")
    if low is not None and high is not None:
        parts.append(f"{low:g}–{high:g}")
    elif low is not None:
        parts.append(f"≥ {low:g}")
    elif high is not None:
        parts.append(f"≤ {high:g}")
    if "references" in field:
        parts.append(f"refers to {field['references']}")
    if "description" in field:
        parts.append(field["description"])
    return "; ".join(parts)


def _pad(title: str, width: int = 14) -> str:
    # CJK characters take two columns in a terminal.
    used = sum(2 if ord(ch) > 0x2E80 else 1 for ch in title)
    return title + " " * max(1, width - used)


def _text(doc: dict) -> str:
    geometry = " or ".join(doc["geometry"]) or "none (a table)"
    if doc["geometry"] and doc["geometry_optional"]:
        geometry += " (may be missing)"
    key = " + ".join(doc["key"]) or "none"
    lines = [f"{doc['layer']} {doc['title_zh']}"
             + (f" — {doc['description']}" if doc["description"] else ""),
             f"  geometry: {geometry}; key: {key}",
             f"  {'field':<18} {_pad('标题')} {'type':<9} {'required':<9} allowed"]
    for f in doc["fields"]:
        lines.append(f"  {f['name']:<18} {_pad(f['title_zh'])} {f['type']:<9} "
                     f"{'yes' if f['required'] else 'no':<9} {_constraint(f)}".rstrip())
    for part, whole in doc["not_above"]:
        lines.append(f"  {part} may not exceed {whole}")
    return "\n".join(lines)


@click.command()
@click.argument("layer", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def schema(layer: str | None, as_json: bool) -> None:
    """Show what LAYER holds (every layer when none is named): fields, types, whether
    each is required, allowed values, code patterns, ranges, Chinese titles and keys.

    LAYER may carry a suffix (grids__nsh is a grids layer). The Chinese titles are the
    column headers `export --headers zh` and .xlsx files use; `import` accepts them as
    column names.

    \b
    Examples:
      gisgrid schema outlets            the four outlet tiers, the key, the references
      gisgrid schema --json             every layer, as JSON
    """
    from gis_grid.model import LAYERS, describe_layer, schema_for

    if layer is not None and schema_for(layer) is None:
        known = ", ".join(LAYERS)
        raise click.BadParameter(f"{layer!r} has no schema; layers with one: {known}",
                                 param_hint="LAYER")
    docs = [describe_layer(layer)] if layer else [describe_layer(n) for n in LAYERS]
    if as_json:
        click.echo(json.dumps(docs[0] if layer else docs, ensure_ascii=False, indent=2))
        return
    click.echo("\n\n".join(_text(doc) for doc in docs))
