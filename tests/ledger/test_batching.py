"""The micro-batcher answers every caller, whatever ends a batch."""

from __future__ import annotations

import asyncio

import pytest

from ledger.batching import MicroBatcher


async def test_answers_come_back_to_their_callers_in_batches() -> None:
    seen: list[list[int]] = []

    async def double(batch: list[int]) -> list[int | Exception]:
        seen.append(batch)
        await asyncio.sleep(0.01)
        return [ValueError(n) if n < 0 else n * 2 for n in batch]

    batcher: MicroBatcher[int, int] = MicroBatcher(double, name="test", max_batch=4)
    answers = await asyncio.gather(
        *(batcher.submit(n) for n in (1, 2, -3, 4, 5)), return_exceptions=True
    )
    await batcher.close()
    assert answers[:2] == [2, 4] and answers[3:] == [8, 10]
    assert isinstance(answers[2], ValueError)  # that caller's error alone
    assert max(len(b) for b in seen) > 1  # callers did share a batch


@pytest.mark.parametrize("ending", ["cancelled", "too few answers"])
async def test_no_caller_is_left_waiting(ending: str) -> None:
    async def handle(batch: list[int]) -> list[int | Exception]:
        if ending == "cancelled":
            raise asyncio.CancelledError
        return []

    batcher: MicroBatcher[int, int] = MicroBatcher(handle, name="test", max_batch=4)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(batcher.submit(1), timeout=5)
