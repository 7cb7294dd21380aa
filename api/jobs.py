"""Background jobs: long analyses run in a thread pool, polled by a status URL.

``POST /analyses/<name>`` answers 202 and ``POST /processes/<name>/execution`` 201, both
with ``Location: /jobs/<id>``; ``GET /jobs/<id>`` tells the state as OGC API – Processes'
statusInfo (``status``: accepted, running, successful, failed; ``progress`` in %) and as
before (``state``: ``queued``, ``running``, ``done``, ``failed``; the current step);
``GET /jobs/<id>/results`` (OGC) and ``/jobs/<id>/result`` give the report once done.
A job belongs to the API key that started it: anyone else gets 404.

A job runs in the server process that accepted it; its status and result are files in
one folder (``GISGRID_API_JOBS_DIR``, set by ``gisgrid serve`` for all its workers), so
any worker process can answer the polls. Files are replaced atomically (write, rename);
finished jobs are forgotten after ``keep_s``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from api.errors import NotFound, TooManyRequests
from gis_grid.errors import GisGridError

#: Report progress: ``progress(fraction, step)``.
Progress = Callable[[float, str], None]
_JOB_ID = "0123456789abcdef"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class JobManager:
    """Runs jobs on ``workers`` threads, at most ``max_pending`` unfinished at once in
    this process, keeping their status and results in ``folder``."""

    def __init__(self, folder: str | os.PathLike | None = None, workers: int = 1, *,
                 max_pending: int = 16, keep_s: float = 3600.0):
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="gisgrid-jobs-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers),
                                        thread_name_prefix="gisgrid-job")
        self._pending = 0
        self._lock = threading.Lock()
        self._max_pending = max_pending
        self._keep_s = keep_s

    # -- files

    def _path(self, job_id: str, suffix: str = ".json") -> Path:
        return self.folder / f"{job_id}{suffix}"

    def _save(self, job: dict) -> None:
        self._write(self._path(job["jobID"]), job)

    @staticmethod
    def _write(path: Path, data) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        tmp.write_text(json.dumps(data, ensure_ascii=False, allow_nan=False), encoding="utf-8")
        os.replace(tmp, path)

    def _load(self, job_id: str) -> dict | None:
        if len(job_id) != 16 or any(ch not in _JOB_ID for ch in job_id):
            return None
        try:
            return json.loads(self._path(job_id).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    # -- API

    def submit(self, kind: str, owner: str, parameters: dict,
               run: Callable[[Progress], object]) -> dict:
        """Queue ``run(progress)``; its return value (JSON-ready) becomes the result."""
        with self._lock:
            if self._pending >= self._max_pending:
                raise TooManyRequests(f"{self._pending} analyses are waiting; try later")
            self._pending += 1
        self._forget_old()
        job = {"jobID": secrets.token_hex(8), "kind": kind, "owner": owner,
               "state": "queued", "progress": 0.0, "step": "queued",
               "parameters": parameters, "created": _now(), "started": None,
               "finished": None, "error": None}
        self._save(job)
        self._pool.submit(self._run, job, run)
        return job

    def _run(self, job: dict, run: Callable[[Progress], object]) -> None:
        last = [0.0]

        def progress(fraction: float, step: str) -> None:
            job["progress"] = round(min(max(float(fraction), job["progress"]), 1.0), 3)
            job["step"] = step
            if time.monotonic() - last[0] > 0.2:  # the file, not the polls, sets the pace
                self._save(job)
                last[0] = time.monotonic()

        job.update(state="running", started=_now(), step="starting")
        self._save(job)
        try:
            result = run(progress)
            self._write(self._path(job["jobID"], ".result.json"), result)
        except GisGridError as exc:
            job.update(state="failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 — a job must never kill its worker thread
            job.update(state="failed", error=f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
        else:
            job.update(state="done", progress=1.0, step="done")
        finally:
            with self._lock:
                self._pending -= 1
        job["finished"] = _now()
        self._save(job)

    def get(self, job_id: str, owner: str) -> dict:
        """The job's status; 404 for an unknown job or another caller's."""
        job = self._load(job_id)
        if job is None or job["owner"] != owner:
            raise NotFound(f"no job {job_id!r}")
        return job

    def result_text(self, job_id: str) -> str:
        return self._path(job_id, ".result.json").read_text(encoding="utf-8")

    def owned(self, owner: str) -> list[dict]:
        jobs = []
        for path in self.folder.glob("*.json"):
            if path.name.endswith(".result.json"):
                continue
            job = self._load(path.stem)
            if job is not None and job["owner"] == owner:
                jobs.append(job)
        return sorted(jobs, key=lambda j: j["created"])

    def _forget_old(self) -> None:
        cutoff = time.time() - self._keep_s
        for path in self.folder.glob("*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
            except OSError:
                continue

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


#: The job states as OGC API – Processes names them (statusCode).
OGC_STATUS = {"queued": "accepted", "running": "running", "done": "successful",
              "failed": "failed"}
REL_RESULTS = "http://www.opengis.net/def/rel/ogc/1.0/results"


def status(job: dict, base: str) -> dict:
    """The status document of a job (no owner): OGC API – Processes' statusInfo
    (``jobID``, ``processID``, ``type``, ``status``, ``message``, ``created``,
    ``started``, ``finished``, ``updated``, ``progress`` in whole percent, ``links``)
    with the fields /analyses clients read: ``kind``, ``state``, ``step``, ``error``,
    ``parameters``."""
    url = f"{base}/jobs/{job['jobID']}"
    links = [{"rel": "self", "href": url, "type": "application/json",
              "title": "this status"}]
    if job["state"] == "done":
        links.append({"rel": REL_RESULTS, "href": f"{url}/results",
                      "type": "application/json", "title": "the results"})
        links.append({"rel": "result", "href": f"{url}/result",
                      "type": "application/json", "title": "the report alone"})
    info = {
        "jobID": job["jobID"], "processID": job["kind"], "type": "process",
        "status": OGC_STATUS.get(job["state"], job["state"]),
        "message": job["error"] if job["state"] == "failed" else job["step"],
        "created": job["created"], "started": job["started"],
        "finished": job["finished"],
        "updated": job["finished"] or job["started"] or job["created"],
        "progress": int(round(100 * float(job["progress"]))),
    }
    legacy = {k: v for k, v in job.items() if k not in info and k != "owner"}
    return {**info, **legacy, "links": links}
