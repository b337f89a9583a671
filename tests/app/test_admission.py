"""Admission on its own: slots, a bounded waiting room, the queue-wait deadline, and who gets in first."""

from __future__ import annotations

import asyncio
import math

import pytest

from app.engine.admission import Admission, OverloadedError


class Clock:
    """A clock the test moves by hand (the waiting room's ages and the limit's windows)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def occupied(admission: Admission, count: int) -> None:
    for _ in range(count):
        await admission.acquire()


async def queued(admission: Admission, label: str, order: list[str]) -> None:
    """Wait for a slot, note who got in, then keep it (the test releases)."""
    await admission.acquire()
    order.append(label)


def test_requests_beyond_the_slots_wait_and_get_in_as_slots_free() -> None:
    async def scenario() -> list[str]:
        admission = Admission(max_slots=2, max_waiting=5, timeout=5.0)
        await occupied(admission, 2)
        order: list[str] = []
        waiters = [asyncio.ensure_future(queued(admission, label, order)) for label in "abc"]
        await asyncio.sleep(0)
        assert admission.waiting == 3 and order == []
        for _ in range(3):
            admission.release()
            await asyncio.sleep(0)
        await asyncio.gather(*waiters)
        assert admission.in_service == 2 and admission.waiting == 0
        return order

    assert asyncio.run(scenario()) == ["a", "b", "c"]  # oldest first while the queue is young


def test_a_full_waiting_room_refuses_at_once_with_a_retry_after() -> None:
    async def scenario() -> OverloadedError:
        admission = Admission(max_slots=1, max_waiting=1, timeout=2.5, name="tiny version 1")
        await occupied(admission, 1)
        waiter = asyncio.ensure_future(admission.acquire())
        await asyncio.sleep(0)
        with pytest.raises(OverloadedError) as refused:
            await admission.acquire()
        waiter.cancel()
        return refused.value

    error = asyncio.run(scenario())
    assert error.retry_after == 3 and error.code == "overloaded"
    assert "tiny version 1 is overloaded" in str(error)


def test_a_request_that_waits_past_the_deadline_is_refused_and_leaves_the_room() -> None:
    async def scenario() -> Admission:
        admission = Admission(max_slots=1, max_waiting=4, timeout=0.05)
        await occupied(admission, 1)
        with pytest.raises(OverloadedError, match="no slot came free within 0.05 s"):
            await admission.acquire()
        assert admission.waiting == 0
        admission.release()  # nobody waits any more: the slot is free again
        await asyncio.wait_for(admission.acquire(), timeout=1)
        return admission

    assert asyncio.run(scenario()).in_service == 1


def test_a_caller_without_a_deadline_waits_past_the_models_time_out() -> None:
    """The batch command's chunks: bounded by the job itself, never shed however long they wait."""

    async def scenario() -> list[str]:
        admission = Admission(max_slots=1, max_waiting=4, timeout=0.02)
        await occupied(admission, 1)
        order: list[str] = []
        patient = asyncio.ensure_future(queued_with(admission, "patient", order, math.inf))
        await asyncio.sleep(0.1)  # five of the model's time-outs
        admission.release()
        await asyncio.wait_for(patient, timeout=1)
        return order

    assert asyncio.run(scenario()) == ["patient"]


async def queued_with(admission: Admission, label: str, order: list[str], timeout: float) -> None:
    await admission.acquire(timeout)
    order.append(label)


def test_a_standing_queue_lets_the_newest_in_first() -> None:
    async def scenario() -> list[str]:
        clock = Clock()
        admission = Admission(max_slots=1, max_waiting=5, timeout=0.3, clock=clock)
        await occupied(admission, 1)
        order: list[str] = []
        old = asyncio.ensure_future(queued(admission, "old", order))
        await asyncio.sleep(0)
        clock.now = 0.25  # the oldest has waited over three quarters of the time-out: the queue is standing
        new = asyncio.ensure_future(queued(admission, "new", order))
        await asyncio.sleep(0)
        admission.release()
        await new
        with pytest.raises(OverloadedError):
            await old  # would have been late anyway: refused at its deadline
        return order

    assert asyncio.run(scenario()) == ["new"]


def test_a_young_queue_lets_the_oldest_in_first() -> None:
    async def scenario() -> list[str]:
        clock = Clock()
        admission = Admission(max_slots=1, max_waiting=5, timeout=0.3, clock=clock)
        await occupied(admission, 1)
        order: list[str] = []
        old = asyncio.ensure_future(queued(admission, "old", order))
        await asyncio.sleep(0)
        clock.now = 0.2  # under three quarters of the time-out: the oldest can still make it
        new = asyncio.ensure_future(queued(admission, "new", order))
        await asyncio.sleep(0)
        admission.release()
        await old
        new.cancel()
        return order

    assert asyncio.run(scenario()) == ["old"]


def test_a_cancelled_waiter_passes_on_its_slot() -> None:
    async def scenario() -> list[str]:
        admission = Admission(max_slots=1, max_waiting=5, timeout=5.0)
        await occupied(admission, 1)
        order: list[str] = []
        gone = asyncio.ensure_future(queued(admission, "gone", order))
        stays = asyncio.ensure_future(queued(admission, "stays", order))
        await asyncio.sleep(0)
        gone.cancel()
        admission.release()
        await stays
        assert admission.in_service == 1 and admission.waiting == 0
        return order

    assert asyncio.run(scenario()) == ["stays"]


def test_the_slot_context_releases_on_errors() -> None:
    async def scenario() -> Admission:
        admission = Admission(max_slots=1, max_waiting=0, timeout=0)
        with pytest.raises(ValueError):
            async with admission.slot():
                raise ValueError("the work failed")
        async with admission.slot():
            pass
        return admission

    assert asyncio.run(scenario()).in_service == 0


def test_the_limit_follows_how_long_requests_take_while_others_wait() -> None:
    async def scenario() -> list[int]:
        clock = Clock()
        admission = Admission(max_slots=40, max_waiting=1000, timeout=2.0, min_slots=4, clock=clock)
        await occupied(admission, 40)
        order: list[str] = []
        waiters = [asyncio.ensure_future(queued(admission, str(i), order)) for i in range(800)]
        await asyncio.sleep(0)
        limits = []
        # A slow machine: a request holds its slot 2 s, four times the target (a quarter of the time-out) ...
        for held in (2.0, 0.1):  # ... then a fast one: 0.1 s
            for _ in range(60):  # 3 s of releases, one every 50 ms
                clock.now += 0.05
                admission.release(held)
            limits.append(admission.limit)
        for waiter in waiters:
            waiter.cancel()
        return limits

    slow, fast = asyncio.run(scenario())
    assert slow == 4  # shrunk in proportion each window (40 -> 10 -> 4), not below one per decode thread/worker
    assert fast == 40  # grown back, at most twofold a window, up to full batches on every worker
