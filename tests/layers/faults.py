"""Fault injection for the fan-out tests, from the tests (not a hook in production code):
a job whose county tasks fail for chosen counties, or kill their worker process once
(as a lost machine would)."""

from __future__ import annotations

import dataclasses
import functools
import os

from gis_grid.jobs import Job


def _compute(compute, fail: tuple[str, ...], kill_once: tuple[str, str] | None, inputs,
             params):
    county = params.get("county")
    if county in fail:
        raise RuntimeError(f"injected failure for county {county}")
    if kill_once is not None and county == kill_once[0]:
        try:
            fd = os.open(kill_once[1], os.O_CREAT | os.O_EXCL)  # only the first attempt
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os._exit(1)  # the worker process dies, as on a lost machine
    return compute(inputs, params)


def faulty(job: Job, *, fail=(), kill_once: tuple[str, str] | None = None) -> Job:
    """``job`` whose county task fails for the counties ``fail`` and, for county
    ``kill_once[0]``, kills its process the first time (marker file ``kill_once[1]``)."""
    return dataclasses.replace(job, compute=functools.partial(
        _compute, job.compute, tuple(fail), kill_once))
