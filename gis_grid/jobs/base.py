"""The job model (ARCHITECTURE.md, "The job model"): one definition per job.

A :class:`Job` says what the job reads, computes and writes, and nothing about *how* it
is driven. Three drivers run the same definition:

* the command line, through ``layers.runner`` on the whole territory;
* the service's background analyses (``api.analyses``), reading through the caller's
  view (graded authorization);
* the fan-out (``layers.fanout``), one task per county, in process or on Dask.

Everything here is pure: a job's ``compute`` takes the frames that were read and the
parameters, and returns an :class:`Outcome` — the layers to store, the files to write
(declared, written by ``layers.runner``), a summary for people and for the resume ledger,
and the engine's own result object for the service's answers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A job's parameters: JSON-like (they are fingerprinted for resuming and sent to workers).
Params = Mapping[str, Any]
#: What a job read: layer name → frame (None where an optional layer is missing).
Inputs = Mapping[str, Any]


@dataclass(frozen=True)
class Read:
    """One layer a job reads.

    ``scope``: ``county`` — the county's rows when run county by county (the whole
    layer otherwise); ``all`` — the whole layer always (``institutions``, which has no
    county column); ``near`` — the features within the county's bounding box (analysis
    layers, which carry no county column).
    """

    name: str
    required: bool = False
    scope: str = "county"
    #: The key the frame is given in ``Inputs`` (default: the layer name).
    key: str | None = None
    #: Only the rows matching these values (``{"level": 1}``).
    where: Mapping[str, Any] | None = None
    #: Columns the job itself writes (``staff.grids`` for the partition): left out of
    #: the fan-out's resume fingerprint, or a run would never match its last one.
    volatile: tuple[str, ...] = ()

    @property
    def as_key(self) -> str:
        return self.key or self.name


@dataclass(frozen=True)
class Tables:
    """Tables written as one CSV each and all of them as ``<stem>.xlsx`` (Chinese
    headers, a notes sheet made from ``meta``)."""

    tables: Mapping[str, Any]
    meta: Mapping[str, Any]
    stem: str


@dataclass(frozen=True)
class Rendered:
    """Files a renderer writes itself into the output folder (the atlas PDFs, a
    report's problem GeoJSON); ``render(folder)`` returns the paths it wrote."""

    render: Callable[[Path], list[Path]]


@dataclass(frozen=True)
class GeoJSON:
    """A layer written as a GeoJSON file. ``engine``: ``product`` — the product's own
    RFC 7946 writer (``layers.files``); ``ogr`` — GDAL's GeoJSON driver (what
    ``gisgrid partition --out`` has always written)."""

    frame: Any
    engine: str = "product"


@dataclass(frozen=True)
class Sheets:
    """Tables for people under the Chinese headers the job gives, as one file chosen by
    the file name's suffix: ``.xlsx`` (a sheet per title) or ``.csv`` (the first table,
    UTF-8 with a BOM); what ``gisgrid screen --out`` and ``events stats --out`` write."""

    #: Sheet title → (table, column → Chinese header).
    sheets: Mapping[str, tuple[Any, Mapping[str, str]]]


#: One output file: text (written as is), a dict (JSON), :class:`Tables`,
#: :class:`GeoJSON`, :class:`Rendered` or :class:`Sheets`.
Output = str | dict | Tables | GeoJSON | Rendered | Sheets


@dataclass
class Outcome:
    """What one run of a job produced."""

    #: The engine's result object (``PartitionResult``, ``ValidationReport``,
    #: ``CoverageReport`` …), for drivers that answer with it (the service).
    result: Any = None
    #: Layers to store, by role (``grids``, ``staff``, ``gaps`` …); ``Job.store_as``
    #: names the layer each role is stored in.
    layers: dict[str, Any] = field(default_factory=dict)
    #: Files to write into the output folder, by file name (or, for :class:`Tables`
    #: and :class:`Rendered`, by a label).
    files: dict[str, Output] = field(default_factory=dict)
    #: JSON-ready facts: what the CLI prints with --json and the fan-out ledger keeps.
    summary: dict = field(default_factory=dict)
    #: What a person reads on the terminal.
    text: str = ""
    #: False when the work ran and found problems (exit code 1).
    ok: bool = True


@dataclass(frozen=True)
class Job:
    """One job, defined once.

    Parameters
    ----------
    name
        The job's name (``partition``, ``validate`` …), as the ledger records it.
    reads
        ``reads(params, available)`` → the layers to read (:class:`Read`), given the
        job's parameters and the names of the layers the store holds.
    compute
        ``compute(inputs, params)`` → :class:`Outcome`. Pure: no store, no file.
    store_as
        ``store_as(role, params)`` → the layer an outcome layer of that role is stored
        in (default: the role's own name).
    stages
        The outcome layers the fan-out stages per county and merges afterwards.
    combine
        For the fan-out: ``combine(staged, context, params)`` → the merged layers by
        role, from each role's county frames (in county code order) and the layers of
        ``combine_reads`` read whole. Default: the county frames concatenated.
    combine_reads
        The layers ``combine`` needs besides the staged ones.
    finish, finish_reads
        For the fan-out, once every county is done (and none failed):
        ``finish(inputs, params)`` → an :class:`Outcome` over the whole territory, from
        the layers ``finish_reads(params)`` names (the validate job's seam check).
    """

    name: str
    reads: Callable[[Params, Collection[str]], list[Read]]
    compute: Callable[[Inputs, Params], Outcome]
    store_as: Callable[[str, Params], str] | None = None
    stages: tuple[str, ...] = ()
    combine: Callable[[dict, dict, Params], dict] | None = None
    combine_reads: tuple[str, ...] = ()
    finish: Callable[[Inputs, Params], Outcome] | None = None
    finish_reads: Callable[[Params], list[Read]] | None = None

    def layer_for(self, role: str, params: Params) -> str:
        """The store layer the outcome layer ``role`` goes to."""
        return self.store_as(role, params) if self.store_as is not None else role
