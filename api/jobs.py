"""Background jobs: long analyses run in a thread pool, polled by a status URL.

``POST /analyses/<name>`` answers 202 and ``POST /processes/<name>/execution`` 201, both
with ``Location: /jobs/<id>``; ``GET /jobs/<id>`` tells the state as OGC API – Processes'
statusInfo (``status``: accepted, running, successful, failed; ``progress`` in %) and as
before (``state``: ``queued``, ``running``, ``done``, ``failed``; the current step);
``GET /jobs/<id>/results`` (OGC) and ``/jobs/<id>/result`` give the report once done.
A job belongs to the API key that started it: anyone else gets 404.

A job runs in the server process that accepted it; its record (id, owner key id, kind,
parameters, state, progress, error, times) and its result are kept where every worker
process can answer the polls. On a PostGIS store that is the store itself, the table
``gisgrid_jobs`` (``layers.migrations``), shared by every process on every machine that
serves the store. On the embedded GeoPackage store it is a folder of JSON files
(``GISGRID_API_JOBS_DIR``, set by ``gisgrid serve`` for all its workers; by default a
folder named after the store in the system's temp folder, so the same store finds its
jobs again), replaced atomically (write, rename). Finished jobs are forgotten after
``keep_s``.

Durable across restarts (issue 18, L6): every server process holds a lock while it runs
— a session advisory lock on its own PostgreSQL connection, or an exclusive lock on a
file ``.live-<instance>`` in the folder — and names that instance in the jobs it
accepts. When a process starts, the unfinished jobs of instances whose lock is free
(the process stopped, or was killed) are marked failed ("the service restarted"),
finished jobs are served as before, and leftovers of a crash are removed: half-written
job files, and the temp copies of uploads and analyses (``gisgrid-upload-*``,
``gisgrid-candidates-*``) untouched for ``stale_temp_s``.

Quotas (issue 18, M8): at most ``max_per_key`` unfinished jobs per API key, counted
over the table or folder (so over every worker process), and ``max_pending`` in one
process.
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


class _Shelf:
    """Where job records live (``_Folder``, ``_Table``): what both answer alike."""

    def load(self, job_id: str) -> dict | None:  # pragma: no cover — each shelf's own
        raise NotImplementedError

    def dismissed(self, job_id: str) -> bool:
        stored = self.load(job_id)
        return stored is not None and stored["state"] == "dismissed"


class _Folder(_Shelf):
    """Job records as JSON files in a folder (the GeoPackage store's service): replaced
    atomically (write, rename); a process is alive while it holds an exclusive lock on
    ``.live-<instance>``; submits are serialised by a lock file."""

    def __init__(self, folder: str | os.PathLike | None) -> None:
        self.folder = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="gisgrid-jobs-"))
        # The parameters and results are the callers' data: this user's only.
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._live = None

    def hold_live(self, instance: str) -> None:
        """Lock ``.live-<instance>`` for this process's lifetime. The file is locked
        before it gets its name, so a starting process never sees it unlocked."""
        tmp = self.folder / f".starting-{instance}"
        handle = open(tmp, "w")  # noqa: SIM115 — held open until shutdown
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(tmp, self.folder / f".live-{instance}")
        self._live = (instance, handle)

    def alive(self, instance: str) -> bool:
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

    def keep_live(self, instance: str) -> None:
        """A file lock is not lost while the process runs."""

    def release_live(self) -> None:
        if self._live is not None:
            instance, handle = self._live
            with contextlib.suppress(OSError):
                (self.folder / f".live-{instance}").unlink(missing_ok=True)
                handle.close()
            self._live = None

    def clean(self) -> int:
        """Half-written job files a crash left; how many were removed."""
        now, count = time.time(), 0
        for path in self.folder.glob(".*.json.*"):
            with contextlib.suppress(OSError):
                if now - path.stat().st_mtime > 60:
                    path.unlink()
                    count += 1
        return count

    def _path(self, job_id: str, suffix: str = ".json") -> Path:
        return self.folder / f"{job_id}{suffix}"

    @staticmethod
    def _write(path: Path, data) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        tmp.write_text(json.dumps(data, ensure_ascii=False, allow_nan=False), encoding="utf-8")
        os.replace(tmp, path)

    def save(self, job: dict) -> None:
        """Write the record, unless the job was dismissed (a dismissal is final)."""
        if job["state"] != "dismissed" and self.dismissed(job["jobID"]):
            return
        self._write(self._path(job["jobID"]), job)

    def save_result(self, job_id: str, result) -> str:
        if not self.dismissed(job_id):
            self._write(self._path(job_id, ".result.json"), result)
        return f"{job_id}.result.json"

    def drop_result(self, job_id: str) -> None:
        self._path(job_id, ".result.json").unlink(missing_ok=True)

    def load(self, job_id: str) -> dict | None:
        try:
            return json.loads(self._path(job_id).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def result_text(self, job_id: str) -> str:
        return self._path(job_id, ".result.json").read_text(encoding="utf-8")

    def jobs(self, owner: str | None = None) -> list[dict]:
        jobs = []
        for path in self.folder.glob("*.json"):
            if path.name.endswith(".result.json"):
                continue
            job = self.load(path.stem)
            if job is not None and (owner is None or job["owner"] == owner):
                jobs.append(job)
        return jobs

    def forget(self, keep_s: float) -> None:
        cutoff = time.time() - keep_s
        for path in self.folder.glob("*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink(missing_ok=True)
            except OSError:
                continue

    @contextlib.contextmanager
    def submitting(self):
        """Across processes: one submit at a time counts and adds a key's jobs."""
        with open(self.folder / ".submit.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        self.release_live()


class _Table(_Shelf):
    """Job records in the PostGIS store's table ``gisgrid_jobs`` (``layers.migrations``),
    so that every server process, on this machine or another, answers a job's polls,
    and the jobs outlive any one of them. A process is alive while its own connection
    holds a session advisory lock named after its instance (PostgreSQL releases it when
    the process dies, however it dies); submits are serialised by a transaction-level
    advisory lock. Connections come from a small pool that checks them, so a restarted
    database is reconnected to (issue 18, H1)."""

    def __init__(self, store) -> None:
        from psycopg import sql
        from psycopg_pool import ConnectionPool

        from layers.migrations import JOBS_TABLE

        self._store = store
        self._table = sql.Identifier(store.schema, JOBS_TABLE)
        self._sql = sql
        self._pool = ConnectionPool(
            kwargs={**store.connection_params(), "autocommit": True}, min_size=1,
            max_size=4, open=True, name="gisgrid-jobs", timeout=30,
            configure=lambda conn: conn.execute("SET TIME ZONE 'UTC'"),
            check=ConnectionPool.check_connection, reconnect_timeout=30)
        self._live = None
        self.folder = None

    def _conn(self):
        return self._pool.connection()

    @staticmethod
    def _lock_key(instance: str) -> str:
        return f"gisgrid job instance {instance}"

    def hold_live(self, instance: str) -> None:
        conn = self._store.connect()
        conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))",
                     [self._lock_key(instance)])
        self._live = conn

    def keep_live(self, instance: str) -> None:
        """Take the lock again if its connection was lost (the database restarted, or
        an administrator ended the backend): checked before each new job."""
        try:
            self._live.execute("SELECT 1")
        except Exception:  # noqa: BLE001 — any failure: a new connection and lock
            self.release_live()
            self.hold_live(instance)

    def alive(self, instance: str) -> bool:
        with self._conn() as conn:
            free = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))",
                                [self._lock_key(instance)]).fetchone()[0]
            if free:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))",
                             [self._lock_key(instance)])
        return not free

    def release_live(self) -> None:
        if self._live is not None:
            with contextlib.suppress(Exception):
                self._live.close()
            self._live = None

    def clean(self) -> int:
        return 0  # a row is written whole or not at all

    def save(self, job: dict) -> None:
        record = json.dumps(job, ensure_ascii=False, allow_nan=False)
        with self._conn() as conn:
            conn.execute(self._sql.SQL(
                "INSERT INTO {} (job_id, owner, instance, state, record, updated)"
                " VALUES (%s, %s, %s, %s, %s::jsonb, now()) ON CONFLICT (job_id) DO UPDATE"
                " SET state = EXCLUDED.state, record = EXCLUDED.record, updated = now()"
                " WHERE {}.state <> 'dismissed'"  # a dismissal is final
            ).format(self._table, self._table), [job["jobID"], job["owner"],
                                                 job.get("instance"), job["state"], record])

    def save_result(self, job_id: str, result) -> str:
        text = json.dumps(result, ensure_ascii=False, allow_nan=False)
        with self._conn() as conn:
            conn.execute(self._sql.SQL("UPDATE {} SET result = %s WHERE job_id = %s"
                                       " AND state <> 'dismissed'")
                         .format(self._table), [text, job_id])
        return f"{job_id}.result.json"

    def drop_result(self, job_id: str) -> None:
        with self._conn() as conn:
            conn.execute(self._sql.SQL("UPDATE {} SET result = NULL WHERE job_id = %s")
                         .format(self._table), [job_id])

    def load(self, job_id: str) -> dict | None:
        with self._conn() as conn:
            row = conn.execute(self._sql.SQL("SELECT record FROM {} WHERE job_id = %s")
                               .format(self._table), [job_id]).fetchone()
        return None if row is None else row[0]

    def result_text(self, job_id: str) -> str:
        with self._conn() as conn:
            row = conn.execute(self._sql.SQL("SELECT result FROM {} WHERE job_id = %s")
                               .format(self._table), [job_id]).fetchone()
        if row is None or row[0] is None:
            raise FileNotFoundError(job_id)
        return row[0]

    def jobs(self, owner: str | None = None) -> list[dict]:
        query = self._sql.SQL("SELECT record FROM {}").format(self._table)
        params: list = []
        if owner is not None:
            query += self._sql.SQL(" WHERE owner = %s")
            params.append(owner)
        with self._conn() as conn:
            return [row[0] for row in conn.execute(query, params)]

    def forget(self, keep_s: float) -> None:
        with self._conn() as conn:
            conn.execute(self._sql.SQL(
                "DELETE FROM {} WHERE updated < now() - make_interval(secs => %s)")
                .format(self._table), [float(keep_s)])

    @contextlib.contextmanager
    def submitting(self):
        with self._conn() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                         [f"gisgrid job submit {self._store.schema}"])
            yield

    def close(self) -> None:
        self.release_live()
        self._pool.close()


class JobManager:
    """Runs jobs on ``workers`` threads, at most ``max_pending`` unfinished at once in
    this process, keeping their records and results in ``where``: a folder, or a PostGIS
    store (its ``gisgrid_jobs`` table)."""

    def __init__(self, where=None, workers: int = 1, *,
                 max_pending: int = 16, max_per_key: int = 4, keep_s: float = 3600.0,
                 stale_temp_s: float = 900.0, setting: str = "GISGRID_API_MAX_JOBS_PER_KEY"):
        self._shelf = _Table(where) if hasattr(where, "connect") else _Folder(where)
        self.folder = self._shelf.folder
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
        self._shelf.hold_live(self.instance)
        self.recovered = self.recover()
        self.cleaned = self.clean_temp()

    # -- restarts

    def _alive(self, instance: str | None) -> bool:
        if instance == self.instance:
            return True
        if not instance:
            return False
        return self._shelf.alive(instance)

    def recover(self) -> int:
        """Mark failed the unfinished jobs of server processes no longer running;
        return how many."""
        count = 0
        for job in self._shelf.jobs():
            if job["state"] in ("queued", "running") and not self._alive(job.get("instance")):
                job.update(state="failed", error=RESTARTED, step="failed",
                           finished=_now())
                self._shelf.save(job)
                count += 1
        if count:
            log.warning("%d job(s) left unfinished by a stopped server marked failed", count)
        return count

    def clean_temp(self) -> int:
        """Remove what a crash left: half-written job files, and upload and analysis temp
        folders untouched for ``stale_temp_s``; return how many."""
        now, count = time.time(), self._shelf.clean()
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

    # -- API

    def submit(self, kind: str, owner: str, parameters: dict,
               run: Callable[[Progress], object]) -> dict:
        """Queue ``run(progress)``; its return value (JSON-ready) becomes the result."""
        self._shelf.forget(self._keep_s)
        self._shelf.keep_live(self.instance)
        with self._lock, self._shelf.submitting():
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
            self._shelf.save(job)
            self._mine[job["jobID"]] = job
        self._pool.submit(self._run, job, run)
        return job

    def _run(self, job: dict, run: Callable[[Progress], object]) -> None:
        last = [0.0]

        def progress(fraction: float, step: str) -> None:
            job["progress"] = round(min(max(float(fraction), job["progress"]), 1.0), 3)
            job["step"] = step
            if time.monotonic() - last[0] > 0.2:  # the record, not the polls, sets the pace
                with contextlib.suppress(Exception):  # a lost write of progress is harmless
                    self._shelf.save(job)
                last[0] = time.monotonic()

        try:
            if self._shelf.dismissed(job["jobID"]):  # dismissed while it was queued
                with self._lock:
                    self._pending -= 1
                    self._mine.pop(job["jobID"], None)
                return
        except Exception:  # noqa: BLE001, S110 — the store is away: the job runs as asked
            pass
        job.update(state="running", started=_now(), step="starting")
        try:
            self._shelf.save(job)
            result = run(progress)
            stored = self._shelf.save_result(job["jobID"], result)
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
            job.update(state="done", progress=1.0, step="done", result=stored)
        finally:
            with self._lock:
                self._pending -= 1
                self._mine.pop(job["jobID"], None)
        job["finished"] = _now()
        try:
            self._shelf.save(job)
        except Exception as exc:  # noqa: BLE001 — the store went away; the log says so
            log.error("job %s: its final state could not be kept: %s", job["jobID"], exc)

    def get(self, job_id: str, owner: str) -> dict:
        """The job's status; 404 for an unknown job, a dismissed one or another caller's."""
        job = self._load(job_id)
        if job is None or job["owner"] != owner or job["state"] == "dismissed":
            raise NotFound(f"no job {job_id!r}")
        return job

    def dismiss(self, job_id: str, owner: str) -> dict:
        """Dismiss a job (OGC API – Processes' dismiss): it is forgotten with its result
        (404 from now on) and its place in the key's quota is freed. A job that runs on
        keeps running to its end, in whichever process has it, but nothing it does is
        kept: its record refuses every write but this one."""
        job = self.get(job_id, owner)
        job.update(state="dismissed", step="dismissed", finished=job["finished"] or _now(),
                   result=None)
        self._shelf.save(job)
        self._shelf.drop_result(job_id)
        return job

    def _load(self, job_id: str) -> dict | None:
        if len(job_id) != 16 or any(ch not in _JOB_ID for ch in job_id):
            return None
        return self._shelf.load(job_id)

    def result_text(self, job_id: str) -> str:
        return self._shelf.result_text(job_id)

    def owned(self, owner: str) -> list[dict]:
        return sorted((j for j in self._shelf.jobs(owner) if j["state"] != "dismissed"),
                      key=lambda j: j["created"])

    def shutdown(self) -> None:
        """Stop; the jobs this process had not finished are marked failed (a process
        killed instead leaves that to the next start, ``recover``)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            unfinished = list(self._mine.values())
            self._mine.clear()
        for job in unfinished:
            job.update(state="failed", error=RESTARTED, step="failed", finished=_now())
            with contextlib.suppress(Exception):
                self._shelf.save(job)
        self._shelf.close()


#: The job states as OGC API – Processes names them (statusCode).
OGC_STATUS = {"queued": "accepted", "running": "running", "done": "successful",
              "failed": "failed", "dismissed": "dismissed"}
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
