"""The service description in the two OpenAPI versions clients ask for.

FastAPI writes OpenAPI 3.1 (``/openapi.json``, which ``/docs`` shows). OGC API clients
read 3.0: OWSLib's ``Features.api()`` follows only a ``service-desc`` link typed
``application/vnd.oai.openapi+json;version=3.0``, and QGIS and GDAL look for the page
size in it. So the landing page's ``service-desc`` is ``/api``, the same description
converted to 3.0 (``to_openapi30``); the 3.1 document stays at ``/openapi.json``.

Both carry what FastAPI cannot infer: the ``limit`` parameter of the items as the shared
component ``#/components/parameters/limit`` with its ``default`` and ``maximum`` (QGIS
3.22 reads exactly that pointer to size its pages: max(1000, default) up to the
maximum; GDAL 3.8 and later read the maximum), and HTTP Basic among the sign-in schemes.

The conversion rewrites the JSON Schema 2020-12 that 3.1 allows into 3.0's subset:
``anyOf``/``oneOf`` with ``{"type": "null"}`` and type lists become ``nullable``,
numeric ``exclusiveMinimum``/``exclusiveMaximum`` become booleans beside
``minimum``/``maximum``, ``examples`` lists in schemas become one ``example``, ``const``
becomes a one-value ``enum``, ``contentMediaType`` (uploaded files) becomes
``format: binary``; keywords 3.0 does not know are dropped.
"""

from __future__ import annotations

import copy
from typing import Any

OPENAPI_30 = "application/vnd.oai.openapi+json;version=3.0"
OPENAPI_31 = "application/vnd.oai.openapi+json;version=3.1"
ITEMS_PATH = "/collections/{collectionId}/items"

#: Schema keywords of JSON Schema 2020-12 that OpenAPI 3.0's Schema Object lacks.
_DROPPED = frozenset({"$schema", "$id", "$anchor", "$defs", "$comment", "$dynamicRef",
                      "$dynamicAnchor", "prefixItems", "contains", "minContains",
                      "maxContains", "propertyNames", "patternProperties",
                      "dependentRequired", "dependentSchemas", "unevaluatedItems",
                      "unevaluatedProperties", "if", "then", "else", "contentEncoding",
                      "contentSchema"})


def enrich(doc: dict, *, default_limit: int, max_limit: int) -> dict:
    """Add what clients need and FastAPI cannot infer (either version; in place)."""
    components = doc.setdefault("components", {})
    parameters = components.setdefault("parameters", {})
    parameters["limit"] = {
        "name": "limit", "in": "query", "required": False, "style": "form",
        "explode": False,
        "description": f"Features per page, 1–{max_limit} (default {default_limit}). A "
                       "`next` link may ask for a bigger page, up to the maximum.",
        "schema": {"type": "integer", "minimum": 1, "maximum": max_limit,
                   "default": default_limit},
    }
    items = doc.get("paths", {}).get(ITEMS_PATH, {}).get("get")
    if items is not None:
        items["parameters"] = [
            {"$ref": "#/components/parameters/limit"}
            if p.get("name") == "limit" and p.get("in") == "query" else p
            for p in items.get("parameters", [])]
    schemes = components.setdefault("securitySchemes", {})
    schemes["BasicAuth"] = {
        "type": "http", "scheme": "basic",
        "description": "HTTP Basic: any user name, your API key as the password (QGIS "
                       "authentication configuration 'Basic', GDAL_HTTP_USERPWD).",
    }
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            if isinstance(operation, dict) and operation.get("security"):
                if {"BasicAuth": []} not in operation["security"]:
                    operation["security"].append({"BasicAuth": []})
    document_errors(doc)
    return doc


#: The answers the service gives instead of the operation's own, each as
#: ``{"code", "description", …}`` (``api.errors``), and what each means.
ERRORS = {
    400: "A parameter is malformed or unknown (InvalidParameterValue); the description "
         "names it.",
    401: "No API key, or an unknown or revoked one.",
    403: "Your key's role or institution may not do this.",
    404: "No such collection, feature, job, process or tile matrix set — or not yours.",
    406: "The Accept header asks for a format the service cannot give (JSON, GeoJSON or "
         "HTML).",
    409: "The record's state does not allow this move, or the id is in use.",
    412: "If-Match names an older version of the record: read it again.",
    413: "Too large: the body, the rows or the unpacked size of an upload (the "
         "description names the setting).",
    422: "The content failed the checks: the problems, with their rows or fields "
         "(at most 1,000, after a summary by field and kind).",
    428: "If-Match is required: send the ETag of the record as you last read it.",
    429: "This key already has the most analyses queued or running "
         "(GISGRID_API_MAX_JOBS_PER_KEY), or the queue is full.",
    503: "The store cannot be reached just now; try again shortly.",
}

_EXCEPTION = {
    "title": "Exception",
    "description": "An OGC API exception: a code and a description; 422 answers add the "
                   "problems, 413 and 429 the limit and its setting.",
    "type": "object",
    "required": ["code", "description"],
    "properties": {
        "code": {"type": "string"},
        "description": {"type": "string"},
        "problems": {"type": "array", "items": {"type": "object"}},
        "summary": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": True,
}

#: Pages that take the key from the query or the session cookie, not a security scheme.
_KEY_IN_PAGE = frozenset({"/map"})

#: Media types of the JSON documents some GET operations answer in, beside HTML.
_MEDIA = {"/queryables": "application/schema+json", "/schema": "application/schema+json"}


def _codes(path: str, method: str, operation: dict) -> list[int]:
    """The error statuses operation ``method path`` can answer with."""
    codes = {400, 422, 503}
    if operation.get("security") or path in _KEY_IN_PAGE:
        codes |= {401, 403}
    if "{" in path:
        codes.add(404)
    if method == "get":
        codes.add(406)
    if method in ("post", "put", "patch", "delete"):
        codes |= {409, 413}
    if method in ("put", "patch", "delete"):
        codes |= {412, 428}
    if method == "post" and (path.startswith("/analyses") or path.endswith("/execution")):
        codes.add(429)
    return sorted(codes)


def document_errors(doc: dict) -> None:
    """Declare on every operation the error answers it can give, all with the one
    ``Exception`` schema (FastAPI's own 422 schema, ``{"detail": …}``, is not what the
    service answers), and the JSON Schema media type of queryables and schemas — so that
    a client, or schemathesis' conformance checks, finds every answer documented."""
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {})["Exception"] = _EXCEPTION
    responses = components.setdefault("responses", {})
    for status, meaning in ERRORS.items():
        responses[f"E{status}"] = {
            "description": meaning,
            "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Exception"}}}}
    for path, item in doc.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            answers = operation["responses"]
            for status in _codes(path, method, operation):
                own = answers.get(str(status), {}).get("description")
                answers[str(status)] = {"$ref": f"#/components/responses/E{status}"} \
                    if own in (None, "Validation Error") else {
                        "description": own, "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Exception"}}}}
            media = next((m for suffix, m in _MEDIA.items() if path.endswith(suffix)), None)
            ok = answers.get("200", {}).get("content")
            if media and ok is not None and media not in ok:
                ok[media] = ok.get("application/json", {"schema": {}})
            if ok is not None and method == "get" and any(
                    isinstance(p, dict) and p.get("name") == "f" and p.get("in") == "query"
                    for p in operation.get("parameters", [])):
                ok.setdefault("text/html", {"schema": {"type": "string"}})  # f=html, Accept
    schemas = components.get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def to_openapi30(doc: dict) -> dict:
    """A copy of the OpenAPI 3.1 document ``doc`` as OpenAPI 3.0.3."""
    out = copy.deepcopy(doc)
    out["openapi"] = "3.0.3"
    out.pop("webhooks", None)
    out.pop("jsonSchemaDialect", None)
    info = out.get("info", {})
    if isinstance(info.get("license"), dict):
        info["license"].pop("identifier", None)
    components = out.get("components", {})
    for name, schema in list(components.get("schemas", {}).items()):
        components["schemas"][name] = _schema(schema)
    for parameter in components.get("parameters", {}).values():
        _parameter(parameter)
    for path in out.get("paths", {}).values():
        for parameter in path.get("parameters", []):
            _parameter(parameter)
        for operation in path.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                _parameter(parameter)
            body = operation.get("requestBody")
            if isinstance(body, dict):
                _content(body.get("content", {}))
            for response in operation.get("responses", {}).values():
                if isinstance(response, dict):
                    _content(response.get("content", {}))
    return out


def schema_30(schema: dict) -> dict:
    """One JSON Schema (2020-12) in OpenAPI 3.0's Schema Object dialect (a copy)."""
    return _schema(copy.deepcopy(schema))


def _parameter(parameter: dict) -> None:
    if "schema" in parameter:
        parameter["schema"] = _schema(parameter["schema"])
    examples = parameter.get("examples")
    if isinstance(examples, list):  # 3.0: a map of Example Objects
        parameter.pop("examples")
        if examples:
            parameter["example"] = examples[0]
    if "content" in parameter:
        _content(parameter["content"])


def _content(content: dict) -> None:
    for media in content.values():
        if isinstance(media, dict) and "schema" in media:
            media["schema"] = _schema(media["schema"])


def _is_null(schema: Any) -> bool:
    """A branch that allows only null: ``{"type": "null"}``, or what it becomes here."""
    return isinstance(schema, dict) and (schema == {"type": "null"}
                                         or schema == {"nullable": True})


def _schema(schema: Any) -> Any:
    """One schema (recursively) in OpenAPI 3.0's dialect."""
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        ref = {"$ref": schema["$ref"]}
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        if not rest:
            return ref
        # 3.0 ignores siblings of $ref: keep them beside an allOf.
        return _schema({**rest, "allOf": [ref]})
    out: dict = {}
    for key, value in schema.items():
        if key in _DROPPED:
            continue
        if key in ("properties",) and isinstance(value, dict):
            out[key] = {name: _schema(sub) for name, sub in value.items()}
        elif key in ("items", "not") and isinstance(value, dict):
            out[key] = _schema(value)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = _schema(value)
        elif key in ("anyOf", "oneOf", "allOf") and isinstance(value, list):
            out[key] = [_schema(sub) for sub in value]
        elif key == "examples":
            if isinstance(value, list) and value:
                out["example"] = value[0]
        elif key == "const":
            out["enum"] = [value]
        elif key == "contentMediaType":
            out.setdefault("format", "binary")
        else:
            out[key] = value
    # type: ["string", "null"] → type: string, nullable
    kind = out.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        if len(kinds) == 1:
            out["type"] = kinds[0]
        else:
            out.pop("type")
            out["anyOf"] = [{"type": k} for k in kinds]
    # anyOf / oneOf with a null branch → the other branch(es), nullable
    for key in ("anyOf", "oneOf"):
        branches = out.get(key)
        if isinstance(branches, list) and any(_is_null(b) for b in branches):
            rest = [b for b in branches if not _is_null(b)]
            del out[key]
            out["nullable"] = True
            if len(rest) == 1:
                only = rest[0]
                if "$ref" in only:
                    out["allOf"] = [only]
                else:
                    merged = {**only, **{k: v for k, v in out.items()
                                         if k not in only}}
                    out = merged
            elif rest:
                out[key] = rest
    if out.get("type") == "null":  # a lone null type: 3.0 has none
        out.pop("type")
        out["nullable"] = True
    # numeric exclusive bounds → boolean flags beside minimum / maximum
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = out.get(exclusive)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            tighter = bound not in out or (value >= out[bound] if bound == "minimum"
                                           else value <= out[bound])
            if tighter:
                out[bound] = value
                out[exclusive] = True
            else:
                del out[exclusive]
    return out
