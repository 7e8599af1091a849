"""The one loop that follows work on a worker thread (a generation, a download), and the person it belongs to."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings

import pytest

pytest.importorskip("wslink", reason="the web extra is not installed (pip install -e '.[web]')")
from drdm_web.job import GenerationJob, run_on_worker  # noqa: E402
from drdm_web.session import SessionGate  # noqa: E402


def stepping(job: GenerationJob, release: threading.Event, steps: int = 3, fail: bool = False):
    """Work that reports ``steps`` steps, then waits for ``release`` (the test's moment) and returns or raises."""

    def work() -> str:
        for step in range(1, steps + 1):
            job.progress(step, steps)
        release.wait(10)
        if fail:
            raise ValueError("the worker failed")
        return "result"

    return work


def test_progress_is_shown_while_it_runs_and_the_result_comes_back():
    job, release, shown = GenerationJob(), threading.Event(), []

    def show(percent: float, status: str) -> None:
        shown.append((percent, status))
        if percent == 100:
            job.cancel()
        if status == "cancelling…":
            release.set()

    async def main():
        return await run_on_worker(job, stepping(job, release), lambda: f"working: {job.describe()}", show, lambda: True)

    future = asyncio.run(main())
    assert future.result() == "result"
    done = shown.index((100.0, "working: step 3/3, about 0 s left"))  # "starting…" before it, if the worker was slow
    assert shown[done + 1:] and set(shown[done + 1:]) == {(100.0, "cancelling…")}


def test_work_of_an_earlier_person_shows_nothing_and_is_dropped():
    gate, job, release, shown = SessionGate(), GenerationJob(), threading.Event(), []
    assert gate.claim("first", gate.issue()) == (True, False)
    current = gate.same_person()

    def show(percent: float, status: str) -> None:
        shown.append(status)
        gate.release("first")
        assert gate.claim("second", gate.issue()) == (True, True)  # a different person takes the server
        release.set()

    async def main():
        return await run_on_worker(job, stepping(job, release, fail=True), lambda: "working", show, current)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the worker's error is retrieved, never "never retrieved"
        assert asyncio.run(main()) is None
        gc.collect()
    assert shown == ["working"] and not current() and gate.same_person()()


def test_the_same_person_coming_back_keeps_its_work():
    gate = SessionGate()
    credential = gate.issue()
    gate.claim("page", credential)
    current = gate.same_person()
    gate.release("page")
    assert gate.claim("reloaded page", credential) == (True, False) and current()
