"""Live-session store and dynamic batcher, without HTTP."""

import asyncio
import threading

import pytest

from cmdrec.serving.batching import DynamicBatcher, QueueFull
from cmdrec.serving.sessions import SessionStore


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_sessions_keep_their_last_events_expire_when_idle_and_the_least_recent_goes_first():
    clock = Clock()
    store = SessionStore(max_events=3, ttl_seconds=60, max_sessions=2, clock=clock)
    store.append("a", ["1", "2", "3", "4"], None, None)
    assert store.get("a").commands == ["2", "3", "4"] and store.get("a").timestamps is None
    clock.now = 30
    store.append("b", ["x"], None, None)
    store.append("a", ["5"], None, None)  # a is now the most recent
    store.append("c", ["y"], None, None)  # over capacity: b goes
    assert store.get("b") is None and store.evicted == {"idle": 0, "capacity": 1}
    clock.now = 95  # a and c were last seen at 30: idle past 60 s
    assert store.get("a") is None and len(store) == 0 and store.evicted["idle"] == 2


def test_online_accuracy_checks_the_next_real_command_against_the_last_suggestions():
    store = SessionStore()
    store.append("s", ["Wall"], None, None).suggestions = ["Door", "Window", "Wall"]
    store.append("s", ["Noise", "Window"], None, None, is_noise=lambda c: c == "Noise")
    assert store.accuracy.checked == 1 and store.accuracy.hits == {1: 0, 3: 1, 10: 1}
    store.append("s", ["Door"], None, None)  # no suggestions shown since: not checked
    assert store.accuracy.checked == 1


def test_concurrent_requests_share_forward_passes_and_a_full_queue_refuses():
    batches, release = [], threading.Event()

    def score(items, k, exclude_seen):
        release.wait(5)
        batches.append(len(items))
        return [f"{item}@{k}" for item in items]

    async def scenario():
        batcher = DynamicBatcher(score, max_batch=64, max_wait_ms=0, queue_size=8)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(["a"], 3, False))
        await asyncio.sleep(0.05)  # "a" is being scored; these wait and go in one pass
        rest = [asyncio.ensure_future(batcher.submit([name], 5, False)) for name in "bcdefgh"]
        await asyncio.sleep(0.05)
        with pytest.raises(QueueFull):
            await batcher.submit(["i", "j"], 5, False)  # 7 waiting + 2 > 8
        release.set()
        answers = [await first] + [await r for r in rest]
        await batcher.stop()
        return answers

    answers = asyncio.run(scenario())
    assert answers[0] == [("a@3", 3)] and answers[1] == [("b@5", 5)]
    assert batches == [1, 7]


def test_two_model_workers_score_two_batches_at_once():
    both_running = threading.Barrier(2, timeout=5)  # broken (an error) unless two batches run together

    def score(items, k, exclude_seen):
        both_running.wait()
        return list(items)

    async def scenario():
        batcher = DynamicBatcher(score, max_batch=1, max_wait_ms=0, workers=2)
        batcher.start()
        answers = await asyncio.gather(batcher.submit(["a"], 1, False), batcher.submit(["b"], 1, False))
        await batcher.stop()
        return answers

    assert asyncio.run(scenario()) == [[("a", 1)], [("b", 1)]]
