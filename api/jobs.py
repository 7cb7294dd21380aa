"""Background jobs: long analyses run in a thread pool, polled by a status URL.

``POST /analyses/<name>`` answers 202 and ``POST /processes/<name>/execution`` 201, both
with ``Location: /jobs/<id>``; ``GET /jobs/<id>`` tells the state as OGC API – Processes'
statusInfo (``status``: accepted, running, successful, failed; ``progress`` in %) and as
before (``state``: ``queued``, ``running``, ``done``, ``failed``; the current step);
``GET /jobs/<id>/results`` (OGC) and ``/jobs/<id>/result`` give the report once done.
A job belongs to the API key that started it: anyone else gets 404.

A job runs in the server process that accepted it; its record (id, owner key id, kind,
parameters, state, progress, error, times) and its result are JSON files in one folder
(``GISGRID_API_JOBS_DIR``, set by ``gisgrid serve`` for all its workers; by default a
folder named after the store in the system's temp folder, so the same store finds its
jobs again), so any worker process can answer the polls. Files are replaced atomically
(write, rename); finished jobs are forgotten after ``keep_s``.

Durable across restarts (issue 18, L6): every server process holds an exclusive lock on
a file ``.live-<instance>`` in the folder while it runs and names that instance in the
jobs it accepts. When a process starts, the unfinished jobs of instances whose lock is
free (the process stopped, or was killed) are marked failed ("the service restarted"),
finished jobs are served as before, and leftovers of a crash are removed: half-written
job files, and the temp copies of uploads and analyses (``gisgrid-upload-*``,
``gisgrid-candidates-*``) untouched for ``stale_temp_s``.

Quotas (issue 18, M8): at most ``max_per_key`` unfinished jobs per API key, counted
over the folder (so over every worker process), and ``max_pending`` in one process.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from api.errors import NotFound, TooManyRequests, public_message
from gis_grid.errors import GisGridError

#: Report progress: ``progress(fraction, step)``.
Progress = Callable[[float, str], None]
_JOB_ID = "0123456789abcdef"
#: Temp folders of uploads and analyses (api.uploads, api.analyses) removed when stale.
TEMP_PREFIXES = ("gisgrid-upload-", "gisgrid-candidates-")
RESTARTED = "the service restarted before this job finished; start it again"
log = logging.getLogger("gisgrid.api")


def default_folder(store_url: str) -> Path:
    """The jobs folder of a store when none is configured: stable across restarts."""
    digest = hashlib.sha256(store_url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"gisgrid-jobs-{digest}"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class JobManager:
    """Runs jobs on ``workers`` threads, at most ``max_pending`` unfinished at once in
    this process, keeping their status and results in ``folder``."""

    def __init__(self, folder: str | os.PathLike | None = None, workers: int = 1, *,
                 max_pending: int = 16, max_per_key: int = 4, keep_s: float = 3600.0,
                 stale_temp_s: float = 900.0, setting: str = "GISGRID_API_MAX_JOBS_PER_KEY"):
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="gisgrid-jobs-"))
        # The parameters and results are the callers' data: this user's only.
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers),
                                        thread_name_prefix="gisgrid-job")
        self._pending = 0
        self._lock = threading.Lock()
        self._max_pending = max_pending
        self._max_per_key = max_per_key
        self._setting = setting
        self._keep_s = keep_s
        self._stale_temp_s = stale_temp_s
        self._mine: dict[str, dict] = {}  # unfinished jobs of this process
        self.instance = secrets.token_hex(6)
        self._live = self._hold_live_lock()
        self.recovered = self.recover()
        self.cleaned = self.clean_temp()

    # -- restarts

    def _hold_live_lock(self):
        """Lock ``.live-<instance>`` for this process's lifetime. The file is locked
        before it gets its name, so a starting process never sees it unlocked."""
        tmp = self.folder / f".starting-{self.instance}"
        handle = open(tmp, "w")  # noqa: SIM115 — held open until shutdown
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(tmp, self.folder / f".live-{self.instance}")
        return handle

    def _alive(self, instance: str | None) -> bool:
        if instance == self.instance:
            return True
        if not instance:
            return False
        path = self.folder / f".live-{instance}"
        try:
            handle = open(path)  # noqa: SIM115
        except FileNotFoundError:
            return False
        with handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            path.unlink(missing_ok=True)  # its process is gone
            return False

    def recover(self) -> int:
        """Mark failed the unfinished jobs of server processes no longer running;
        return how many."""
        count = 0
        for job in self._jobs():
            if job["state"] in ("queued", "running") and not self._alive(job.get("instance")):
                job.update(state="failed", error=RESTARTED, step="failed",
                           finished=_now())
                self._save(job)
                count += 1
        if count:
            log.warning("%d job(s) left unfinished by a stopped server marked failed", count)
        return count

    def clean_temp(self) -> int:
        """Remove what a crash left: half-written job files, and upload and analysis temp
        folders untouched for ``stale_temp_s``; return how many."""
        now, count = time.time(), 0
        for path in self.folder.glob(".*.json.*"):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > 60:
                    path.unlink()
                    count += 1
        for prefix in TEMP_PREFIXES:
            for path in Path(tempfile.gettempdir()).glob(prefix + "*"):
                try:
                    newest = max([path.stat().st_mtime] + [p.stat().st_mtime
                                                           for p in path.rglob("*")])
                except OSError:
                    continue
                if now - newest > self._stale_temp_s:
                    shutil.rmtree(path, ignore_errors=True)
                    count += 1
        if count:
            log.warning("removed %d file(s) left by a crash", count)
        return count

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
        self._forget_old()
        with self._lock, self._folder_lock():
            if self._pending >= self._max_pending:
                raise TooManyRequests(f"{self._pending} analyses are waiting; try later")
            mine = sum(1 for j in self.owned(owner) if j["state"] in ("queued", "running"))
            if mine >= self._max_per_key:
                raise TooManyRequests(
                    f"this API key has {mine} analyses queued or running, the limit per key "
                    f"({self._setting}={self._max_per_key}); wait for one to finish",
                    extra={"limit": self._max_per_key, "setting": self._setting})
            self._pending += 1
            job = {"jobID": secrets.token_hex(8), "kind": kind, "owner": owner,
                   "instance": self.instance, "state": "queued", "progress": 0.0,
                   "step": "queued", "parameters": parameters, "created": _now(),
                   "started": None, "finished": None, "error": None, "result": None}
            self._save(job)
            self._mine[job["jobID"]] = job
        self._pool.submit(self._run, job, run)
        return job

    @contextlib.contextmanager
    def _folder_lock(self):
        """Across processes: one submit at a time counts and adds a key's jobs."""
        with open(self.folder / ".submit.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

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
            # Its text may name the store's URL or a temp copy: the log keeps it whole.
            log.warning("job %s failed: %s", job["jobID"], exc)
            job.update(state="failed", error=public_message(str(exc)))
        except Exception as exc:  # noqa: BLE001 — a job must never kill its worker thread
            log.error("job %s failed: %s: %s", job["jobID"], type(exc).__name__, exc)
            traceback.print_exc()
            job.update(state="failed", error=f"the analysis failed ({type(exc).__name__}); "
                       f"the server log has the details under job {job['jobID']}")
        else:
            job.update(state="done", progress=1.0, step="done",
                       result=f"{job['jobID']}.result.json")
        finally:
            with self._lock:
                self._pending -= 1
                self._mine.pop(job["jobID"], None)
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

    def _jobs(self) -> list[dict]:
        jobs = []
        for path in self.folder.glob("*.json"):
            if path.name.endswith(".result.json"):
                continue
            job = self._load(path.stem)
            if job is not None:
                jobs.append(job)
        return jobs

    def owned(self, owner: str) -> list[dict]:
        return sorted((j for j in self._jobs() if j["owner"] == owner),
                      key=lambda j: j["created"])

    def _forget_old(self) -> None:
        cutoff = time.time() - self._keep_s
        for path in self.folder.glob("*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
            except OSError:
                continue

    def shutdown(self) -> None:
        """Stop; the jobs this process had not finished are marked failed (a process
        killed instead leaves that to the next start, ``recover``)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            unfinished = list(self._mine.values())
            self._mine.clear()
        for job in unfinished:
            job.update(state="failed", error=RESTARTED, step="failed", finished=_now())
            with contextlib.suppress(OSError):
                self._save(job)
        with contextlib.suppress(OSError):
            (self.folder / f".live-{self.instance}").unlink(missing_ok=True)
            self._live.close()


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
    legacy = {k: v for k, v in job.items()
              if k not in info and k not in ("owner", "instance", "result")}
    return {**info, **legacy, "links": links}
