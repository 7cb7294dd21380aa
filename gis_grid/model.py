"""The data model: one schema per layer (ARCHITECTURE.md §4, "The data model").

Every layer that enters the system — from a file, an upload or a generator — is checked
against the schema of its name before it is stored (see ``layers.checks``). A schema
states the geometry types a layer may hold, its fields with their types, whether each is
required, the enumerations and code formats, and which field identifies a feature.

Chinese domain terms appear here once, next to their English names:
territory 辖区, township 乡镇/街道, unit 村/社区 (village or community), household 住户,
institution 金融机构, outlet 物理网点, device 电子机具, staff 网格人员, grid 网格,
ledger 台账, entity 市场主体, event 事件.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gis_grid.naming import layer_kind

#: The CRS every store holds geometry in (WGS84 longitude/latitude; CGCS2000 / EPSG:4490
#: agrees with it to within centimetres for this purpose).
STORAGE_CRS = "EPSG:4326"

#: Where each feature came from: real (published data), derived (computed from real data,
#: e.g. township polygons from township seats) or synthetic (generated, seeded).
SOURCES = ("real", "derived", "synthetic")

#: National Bureau of Statistics urban-rural codes (城乡分类代码). 1xx urban, 2xx rural.
UR_CODES = ("111", "112", "121", "122", "123", "210", "220")

#: The "four zones" of urban grids (B1) plus the village of rural grids.
ZONES = ("商区", "园区", "校区", "社区", "村")

KINDS = ("urban", "rural")

INSTITUTION_TYPES = (
    "国有大型商业银行",  # large state-owned commercial bank
    "股份制商业银行",  # joint-stock commercial bank
    "城市商业银行",  # city commercial bank
    "农村商业银行",  # rural commercial bank
    "邮政储蓄银行",  # postal savings bank
    "村镇银行",  # village and township bank
    "农村信用社",  # rural credit cooperative
    "政府",  # government (the government grid's owner)
)

#: Outlet tiers (B3): tier-1 sub-branch, tier-2 sub-branch, 分理处 (office), and the
#: assisted-service point in a village (助农点).
OUTLET_TIERS = ("一级支行", "二级支行", "分理处", "助农点")
OUTLET_STATUSES = ("营业", "停业", "筹建")

#: Electronic devices (电子机具).
DEVICE_TYPES = ("ATM", "CRS", "助农取款POS", "智能终端")

#: Staff roles (B4): grid manager 网格管理员, grid worker 网格员, part-time 兼职网格员.
STAFF_ROLES = ("manager", "worker", "part-time")

EVENT_KINDS = ("general", "coordination", "emergency", "approval")
#: Event states (C2/C3); which kind may go where is ``gis_grid.events.TRANSITIONS``.
EVENT_STATES = ("reported", "accepted", "handled_on_site", "taken_back", "escalated",
                "resolved", "closed")
#: The path of a risk report (plan A5–A6; ``gis_grid.riskflow``): routed when made, then
#: 受理 → 处置 or 转办 → 反馈 → 办结.
REPORT_STATES = ("routed", "accepted", "disposed", "transferred", "fed_back", "closed")
#: The path of a task handed down from above (交办, A7).
TASK_STATES = ("issued", "accepted", "fed_back", "closed")
#: The nine behaviour checks of plan A3 (labels in ``gis_grid.screening.Check``).
RISK_CHECKS = ("guaranteed_returns", "gifts_rebates", "public_promotion",
               "disguised_lending", "illegal_fundraising", "e_trading", "mutual_aid_platform",
               "shop_crowdfunding", "other")

CODE_12 = r"^\d{12}$"
CODE_COUNTY = r"^\d{6}(\d{6})?$"
MOBILE = r"^1[3-9]\d{9}$"
PERIOD = r"^\d{4}-(0[1-9]|1[0-2]|Q[1-4])$"
#: Grid codes are hierarchical: the parent's code is the child's prefix. A grid code is the
#: territory or unit code it sits in, then ``-`` separated segments of letters and digits.
GRID_CODE = r"^[0-9A-Za-z]+(-[0-9A-Za-z]+)*$"


@dataclass(frozen=True)
class Field:
    """One attribute of a layer.

    ``dtype`` is one of ``str``, ``int``, ``float``, ``bool``, ``date``, ``datetime``.
    """

    name: str
    dtype: str
    required: bool = True
    enum: tuple[str, ...] | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in ("str", "int", "float", "bool", "date", "datetime"):
            raise ValueError(f"field {self.name}: unknown dtype {self.dtype!r}")
        if self.pattern is not None:
            re.compile(self.pattern)


@dataclass(frozen=True)
class LayerSchema:
    """The schema of one layer: geometry types, fields and the identifying field."""

    name: str
    geometry: tuple[str, ...]
    fields: tuple[Field, ...]
    key: str | None
    title_zh: str
    description: str = ""
    #: Whether a feature may lack a geometry (staff may have no location).
    geometry_optional: bool = False
    extra: dict = field(default_factory=dict)
    #: The date or timestamp field that places a feature in time (an event's report
    #: time, a patrol's day): what the service's ``datetime`` parameter selects on.
    temporal: str | None = None

    @property
    def spatial(self) -> bool:
        return bool(self.geometry)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"layer {self.name} has no field {name!r}")

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def _source() -> Field:
    return Field("source", "str", required=False, enum=SOURCES,
                 description="real / derived / synthetic — where the feature came from")


POLYGONAL = ("Polygon", "MultiPolygon")

LAYERS: dict[str, LayerSchema] = {
    s.name: s
    for s in (
        LayerSchema(
            "territory", POLYGONAL,
            (
                Field("code", "str", pattern=CODE_COUNTY, description="division code"),
                Field("name", "str"),
                Field("level", "str", enum=("county", "prefecture", "province", "country")),
                _source(),
            ),
            key="code", title_zh="辖区",
            description="The whole territory being gridded (a county, prefecture, province).",
        ),
        LayerSchema(
            "townships", POLYGONAL,
            (
                Field("code", "str", pattern=CODE_12, description="12-digit division code"),
                Field("name", "str"),
                Field("parent", "str", pattern=CODE_COUNTY, description="county code"),
                _source(),
            ),
            key="code", title_zh="乡镇街道",
        ),
        LayerSchema(
            "units", POLYGONAL,
            (
                Field("code", "str", pattern=CODE_12, description="12-digit division code"),
                Field("name", "str"),
                Field("parent", "str", pattern=CODE_12, description="township code"),
                Field("kind", "str", enum=KINDS),
                Field("zone", "str", required=False, enum=ZONES),
                Field("ur_code", "str", required=False, enum=UR_CODES),
                Field("households", "int", minimum=0),
                Field("population", "int", required=False, minimum=0),
                _source(),
            ),
            key="code", title_zh="村社区",
            description="Villages (村) and communities (社区), the administrative units.",
        ),
        LayerSchema(
            "households", ("Point",),
            (
                Field("id", "int", minimum=0),
                Field("count", "int", minimum=1, description="households at this point"),
                Field("unit", "str", required=False, pattern=CODE_12),
                _source(),
            ),
            key="id", title_zh="住户",
        ),
        LayerSchema(
            "institutions", (),
            (
                Field("id", "str"),
                Field("name", "str"),
                Field("type", "str", enum=INSTITUTION_TYPES),
                _source(),
            ),
            key="id", title_zh="金融机构",
        ),
        LayerSchema(
            "outlets", ("Point",),
            (
                Field("id", "str"),
                Field("institution", "str"),
                Field("tier", "str", enum=OUTLET_TIERS),
                Field("name", "str"),
                Field("status", "str", required=False, enum=OUTLET_STATUSES),
                Field("unit", "str", required=False, pattern=CODE_12),
                _source(),
            ),
            key="id", title_zh="物理网点",
        ),
        LayerSchema(
            "devices", ("Point",),
            (
                Field("id", "str"),
                Field("institution", "str"),
                Field("type", "str", enum=DEVICE_TYPES),
                Field("outlet", "str", required=False),
                Field("unit", "str", required=False, pattern=CODE_12),
                _source(),
            ),
            key="id", title_zh="电子机具",
        ),
        LayerSchema(
            "staff", ("Point",),
            (
                Field("id", "str"),
                Field("institution", "str"),
                Field("name", "str"),
                Field("role", "str", enum=STAFF_ROLES),
                Field("phone", "str", required=False, pattern=MOBILE),
                Field("grids", "str", required=False,
                      description="codes of the grids held, separated by ';'"),
                Field("trained", "date", required=False, description="last training"),
                _source(),
            ),
            key="id", title_zh="网格人员", geometry_optional=True,
        ),
        LayerSchema(
            "grids", ("Polygon",),
            (
                Field("code", "str", pattern=GRID_CODE),
                Field("level", "int", minimum=1, maximum=3),
                Field("parent", "str", required=False, pattern=GRID_CODE),
                Field("kind", "str", enum=KINDS),
                Field("zone", "str", required=False, enum=ZONES),
                Field("institution", "str", required=False,
                      description="owning institution; empty for the government grid"),
                Field("outlet", "str", required=False),
                Field("manager", "str", required=False),
                Field("worker", "str", required=False),
                Field("households", "int", required=False, minimum=0),
                _source(),
            ),
            key="code", title_zh="网格",
        ),
        LayerSchema(
            "ledger", (),
            (
                Field("grid", "str", pattern=GRID_CODE),
                Field("institution", "str"),
                Field("period", "str", pattern=PERIOD, description="YYYY-MM or YYYY-Qn"),
                Field("households_total", "int", minimum=0),
                Field("households_files", "int", minimum=0),
                Field("merchants_total", "int", minimum=0),
                Field("merchants_files", "int", minimum=0),
                Field("firms_total", "int", minimum=0),
                Field("firms_files", "int", minimum=0),
                Field("surveys", "int", required=False, minimum=0,
                      description="pre-loan surveys"),
                Field("checks", "int", required=False, minimum=0,
                      description="post-loan checks"),
                _source(),
            ),
            key=None, title_zh="台账",
            extra={"unique": ("grid", "institution", "period"),
                   "not_above": (("households_files", "households_total"),
                                 ("merchants_files", "merchants_total"),
                                 ("firms_files", "firms_total"))},
        ),
        LayerSchema(
            "entities", ("Point",),
            (
                Field("id", "str"),
                Field("name", "str"),
                Field("registered_type", "str"),
                Field("address", "str", required=False),
                Field("unit", "str", required=False, pattern=CODE_12),
                _source(),
            ),
            key="id", title_zh="市场主体",
        ),
        LayerSchema(
            "events", ("Point",),
            (
                Field("id", "str"),
                Field("kind", "str", enum=EVENT_KINDS),
                Field("grid", "str", required=False, pattern=GRID_CODE),
                Field("reporter", "str"),
                Field("state", "str", enum=EVENT_STATES),
                Field("reported_at", "datetime"),
                Field("summary", "str", required=False),
                Field("category", "str", required=False,
                      description="subject category (定责: 市容管控, 民政, 计生 …; "
                                  "gis_grid.events.SUBJECT_CATEGORIES or the office's list)"),
                Field("owner", "str", required=False, description="who took it on (有人负责)"),
                Field("deadline", "datetime", required=False,
                      description="to be resolved by (emergencies: reported_at + limit)"),
                Field("accepted_at", "datetime", required=False,
                      description="when it first left 'reported'"),
                Field("resolved_at", "datetime", required=False),
                Field("resolved_by", "str", required=False),
                Field("closed_at", "datetime", required=False),
                Field("closed_by", "str", required=False, description="supervisor (督查)"),
                Field("updated_at", "datetime", required=False),
                Field("version", "int", required=False, minimum=1,
                      description="bumped by every change (optimistic concurrency)"),
                _source(),
            ),
            key="id", title_zh="事件", geometry_optional=True, temporal="reported_at",
        ),
        LayerSchema(
            "event_log", (),
            (
                Field("id", "str", description="<event>/<version reached>"),
                Field("event", "str"),
                Field("version", "int", minimum=2),
                Field("from_state", "str", enum=EVENT_STATES),
                Field("to_state", "str", enum=EVENT_STATES),
                Field("action", "str"),
                Field("actor", "str"),
                Field("at", "datetime"),
                Field("note", "str", required=False),
            ),
            key="id", title_zh="事件流转记录", temporal="at",
            description="Every transition of every event, appended with the event's update.",
        ),
        LayerSchema(
            "patrols", (),
            (
                Field("worker", "str"),
                Field("grid", "str", pattern=GRID_CODE),
                Field("date", "date"),
                Field("note", "str", required=False),
            ),
            key=None, title_zh="巡查记录", temporal="date",
        ),
        LayerSchema(
            "watch_list", ("Point",),
            (
                Field("id", "str", description="entity id"),
                Field("name", "str"),
                Field("registered_type", "str", required=False),
                Field("address", "str", required=False),
                Field("unit", "str", required=False, pattern=CODE_12),
                Field("grid", "str", required=False),
                Field("keywords", "str", description="watch-list words matched, ';'-separated"),
            ),
            key="id", title_zh="重点关注市场主体",
        ),
        LayerSchema(
            "inspections", (),
            (
                Field("entity", "str"),
                Field("date", "date"),
                Field("inspector", "str"),
                Field("check", "str", enum=RISK_CHECKS),
                Field("finding", "bool", description="the behaviour was found (有)"),
                Field("detail", "str", required=False),
            ),
            key=None, title_zh="排查记录", temporal="date",
        ),
        LayerSchema(
            "risk_reports", (),
            (
                Field("id", "str"),
                Field("entity", "str"),
                Field("name", "str", required=False),
                Field("grid", "str", required=False),
                Field("township", "str", required=False, pattern=CODE_12),
                Field("date", "date"),
                Field("inspector", "str"),
                Field("checks", "str", description="checks found, ';'-separated"),
                Field("route", "str", enum=("street", "city")),
                Field("handler", "str"),
                Field("reason", "str"),
                Field("status", "str", required=False, enum=REPORT_STATES,
                      description="where the report is on its path (gis_grid.riskflow)"),
                Field("routed_at", "datetime", required=False,
                      description="when it was made and routed (its route never changes)"),
                Field("department", "str", required=False,
                      description="the department it was transferred to (转办)"),
                Field("due", "datetime", required=False,
                      description="the time limit of its current step"),
                Field("updated_at", "datetime", required=False),
                Field("version", "int", required=False, minimum=1,
                      description="bumped by every change (optimistic concurrency)"),
            ),
            key="id", title_zh="风险信息报告", temporal="date",
        ),
        LayerSchema(
            "tasks", (),
            (
                Field("id", "str"),
                Field("subject", "str", description="what is asked (交办事项)"),
                Field("issued_by", "str", description="who hands it down (e.g. 市金融办)"),
                Field("assignee", "str", description="street office, grid or worker"),
                Field("issued_at", "datetime"),
                Field("deadline", "datetime", description="feedback is due by"),
                Field("status", "str", enum=TASK_STATES),
                Field("feedback", "str", required=False),
                Field("updated_at", "datetime", required=False),
                Field("version", "int", required=False, minimum=1),
            ),
            key="id", title_zh="上级交办任务", temporal="issued_at",
        ),
        LayerSchema(
            "report_log", (),
            (
                Field("id", "str", description="<layer>:<record>/<version reached>"),
                Field("layer", "str", enum=("risk_reports", "tasks")),
                Field("record", "str"),
                Field("version", "int", minimum=2),
                Field("from_state", "str"),
                Field("to_state", "str"),
                Field("action", "str"),
                Field("actor", "str"),
                Field("at", "datetime"),
                Field("note", "str", required=False),
            ),
            key="id", title_zh="报告与交办流转记录", temporal="at",
            description="Every transition of every risk report and task, with who and when.",
        ),
    )
}

#: The references between layers, in one place (field → (layer, key field)): every
#: checked write (``Store.change``: ``gisgrid import``, uploads, restores) refuses a row
#: pointing at a key the store does not hold, and a change that would leave rows of
#: another layer pointing at a key it removes; on PostGIS, triggers refuse other clients'
#: SQL the same way (``layers.integrity``, ``layers.migrations``). A referencing layer
#: of any name of its kind (``grids__nsh``) refers to the plain target layer
#: (``institutions``); an empty value refers to nothing (the government grid's owner).
#: ``staff.grids`` (';'-separated codes of several grid layers) is not checked here.
REFERENCES: dict[str, dict[str, tuple[str, str]]] = {
    "units": {"parent": ("townships", "code")},
    "households": {"unit": ("units", "code")},
    "outlets": {"institution": ("institutions", "id"), "unit": ("units", "code")},
    "devices": {"institution": ("institutions", "id"), "outlet": ("outlets", "id"),
                "unit": ("units", "code")},
    "staff": {"institution": ("institutions", "id")},
    "ledger": {"institution": ("institutions", "id")},
    "grids": {"institution": ("institutions", "id")},
}


def schema_for(layer: str) -> LayerSchema | None:
    """The schema of a known layer name, or None for a free-form layer.

    Layer names may carry a suffix after ``__`` (``grids__nsh``) to hold several layers of
    one kind; the kind before ``__`` decides the schema.
    """
    return LAYERS.get(layer_kind(layer))


# --------------------------------------------------------------------------- titles, schema

#: Chinese titles of the fields (字段中文名): the column headers of files written for people
#: (``gisgrid export --headers zh``, every .xlsx), and accepted as column names on import.
#: A layer kind may override a title (``LAYER_TITLES_ZH``); within a layer they are unique.
FIELD_TITLES_ZH: dict[str, str] = {
    "code": "代码", "name": "名称", "level": "级别", "parent": "上级代码",
    "kind": "城乡类别", "zone": "区域类型", "ur_code": "城乡分类代码",
    "households": "住户数", "population": "人口", "source": "来源", "id": "编号",
    "count": "住户数", "unit": "村/社区代码", "type": "类型", "institution": "机构",
    "tier": "网点层级", "status": "营业状态", "outlet": "所属网点", "role": "角色",
    "phone": "手机号", "grids": "负责网格", "trained": "培训日期",
    "manager": "网格管理员", "worker": "网格员", "grid": "网格", "period": "期间",
    "households_total": "住户总数", "households_files": "已建档住户",
    "merchants_total": "商户总数", "merchants_files": "已建档商户",
    "firms_total": "小微企业总数", "firms_files": "已建档小微企业",
    "surveys": "贷前调查", "checks": "贷后核查", "registered_type": "登记类型",
    "address": "地址", "reporter": "报告人", "state": "状态", "reported_at": "报告时间",
    "summary": "摘要", "owner": "负责人", "deadline": "期限", "accepted_at": "受理时间",
    "resolved_at": "解决时间", "resolved_by": "解决人", "closed_at": "办结时间",
    "closed_by": "督查人", "updated_at": "更新时间", "version": "版本", "event": "事件",
    "from_state": "原状态", "to_state": "新状态", "action": "操作", "actor": "操作人",
    "at": "时间", "note": "备注", "date": "日期", "keywords": "命中关键词",
    "entity": "市场主体", "inspector": "排查人", "check": "排查项目", "finding": "有无",
    "detail": "详情", "township": "乡镇街道代码", "route": "流转", "handler": "处理部门",
    "reason": "原因", "routed_at": "流转时间", "department": "转办部门", "due": "时限",
    "subject": "交办事项", "issued_by": "交办单位", "assignee": "承办方",
    "issued_at": "交办时间", "feedback": "反馈", "layer": "图层", "record": "记录",
    "category": "事件类别",
}

#: Titles that differ by layer kind.
LAYER_TITLES_ZH: dict[str, dict[str, str]] = {
    "institutions": {"type": "机构类型"},
    "outlets": {"name": "网点名称"},
    "devices": {"type": "机具类型"},
    "staff": {"name": "姓名", "id": "人员编号"},
    "grids": {"code": "网格代码", "parent": "上级网格"},
    "entities": {"id": "主体编号"},
    "watch_list": {"id": "主体编号", "grid": "所在网格"},
    "events": {"kind": "事件类型"},
    "risk_reports": {"checks": "发现问题", "grid": "所在网格", "status": "办理状态"},
    "tasks": {"status": "办理状态"},
}

#: Chinese titles of the coordinate columns of point layers in CSV and XLSX files.
LON_ZH, LAT_ZH = "经度", "纬度"

#: References checked by their own rule rather than ``REFERENCES`` (``layers.checks``).
_GRID_REFERENCES = {("ledger", "grid"): "grids__<institution>.code (a finest grid)"}

_TYPES_ZH = {"str": "文本", "int": "整数", "float": "数值", "bool": "是/否", "date": "日期",
             "datetime": "日期时间"}


def field_titles_zh(layer: str) -> dict[str, str]:
    """Field name → Chinese title for every field of ``layer``'s schema ({} if none).

    >>> field_titles_zh("outlets")["tier"], field_titles_zh("entities")["id"]
    ('网点层级', '主体编号')
    """
    schema = schema_for(layer)
    if schema is None:
        return {}
    own = LAYER_TITLES_ZH.get(schema.name, {})
    return {f.name: own.get(f.name) or FIELD_TITLES_ZH.get(f.name, f.name)
            for f in schema.fields}


def describe_layer(layer: str) -> dict:
    """The schema of ``layer`` as plain data, the one description every surface gives:
    ``gisgrid schema`` prints it, the service's schema and queryables can say the same.

    Keys: ``layer``, ``kind``, ``title_zh``, ``description``, ``geometry`` (allowed
    types, [] for a table), ``geometry_optional``, ``key`` (the identifying field, or the
    fields unique together), ``fields`` (each: ``name``, ``title_zh``, ``type`` and its
    Chinese ``type_zh``, ``required``, and when set ``enum``, ``pattern``, ``minimum``,
    ``maximum``, ``description``, ``references`` as ``layer.field``), and
    ``not_above`` (pairs of fields where the first may not exceed the second).
    Raises ``KeyError`` for a layer without a schema.

    >>> describe_layer("outlets")["fields"][2]["enum"]
    ['一级支行', '二级支行', '分理处', '助农点']
    """
    schema = schema_for(layer)
    if schema is None:
        raise KeyError(layer)
    titles = field_titles_zh(layer)
    refs = REFERENCES.get(schema.name, {})
    key = [schema.key] if schema.key else list(schema.extra.get("unique", ()))
    fields = []
    for f in schema.fields:
        item: dict = {"name": f.name, "title_zh": titles[f.name], "type": f.dtype,
                      "type_zh": _TYPES_ZH[f.dtype], "required": f.required}
        if f.enum is not None:
            item["enum"] = list(f.enum)
        if f.pattern is not None:
            item["pattern"] = f.pattern
        if f.minimum is not None:
            item["minimum"] = f.minimum
        if f.maximum is not None:
            item["maximum"] = f.maximum
        if f.description:
            item["description"] = f.description
        if f.name in refs:
            item["references"] = ".".join(refs[f.name])
        elif (schema.name, f.name) in _GRID_REFERENCES:
            item["references"] = _GRID_REFERENCES[(schema.name, f.name)]
        fields.append(item)
    return {
        "layer": layer, "kind": schema.name, "title_zh": schema.title_zh,
        "description": schema.description, "geometry": list(schema.geometry),
        "geometry_optional": schema.geometry_optional, "key": key, "fields": fields,
        "not_above": [list(pair) for pair in schema.extra.get("not_above", ())],
    }
