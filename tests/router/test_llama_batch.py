"""Continuous batching in llama.cpp with the real packaged model: concurrent generations are
decoded together, give the text a lone generation gives, may be consumed from any thread
(as Starlette pulls a stream's items on varying worker threads), can be abandoned, and a full
queue refuses with a retry time instead of waiting without bound."""

from __future__ import annotations

import threading
import time

import pytest

from knowledge.errors import GenerationError, OverloadedError
from router.llm.llama_batch import safe_emit_end

CAT = [{"role": "user", "content": "Write one sentence about a cat."}]
PARIS = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]
COUNT = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]


@pytest.fixture(scope="module")
def gen():
    from router.llm.llama_cpp import LlamaCppGenerator

    g = LlamaCppGenerator(n_ctx=1024, parallel=3, max_queue=2, max_wait_s=600)
    yield g
    g.close()


def test_concurrent_generations_equal_lone_ones_and_share_steps(gen):
    alone = {name: gen.generate(m, max_tokens=16, temperature=0) for name, m in (("cat", CAT), ("paris", PARIS))}
    with gen.exclusive() as llm:  # the reference: llama-cpp-python's own chat completion
        ref = llm.create_chat_completion(messages=CAT, max_tokens=16, temperature=0)["choices"][0]["message"]
    assert alone["cat"] == ref["content"]
    steps0 = gen.stats()["steps"]
    out: dict[int, str] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, gen.generate([CAT, PARIS][i % 2],
                                                                                    max_tokens=16, temperature=0)))
               for i in range(3)]
    [t.start() for t in threads]
    [t.join(300) for t in threads]
    assert out == {0: alone["cat"], 1: alone["paris"], 2: alone["cat"]}
    steps = gen.stats()["steps"] - steps0
    # three sequences of at most 16 tokens each: decoded together they need far fewer steps than 3 x 17
    assert steps < 2 * 17, steps
    assert gen.stats()["cached_tokens"] > 0  # the repeated prompts came from the KV cache


def test_a_stream_consumed_from_changing_threads(gen):
    """The old generator held an RLock across yields: releasing it from another thread raised."""
    stream = gen.stream(COUNT, max_tokens=24, temperature=0)
    pieces: list[str] = []
    errors: list[BaseException] = []

    def pull() -> None:
        try:
            pieces.append(next(stream))
        except StopIteration:
            pass
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    for _ in range(40):
        t = threading.Thread(target=pull)
        t.start()
        t.join(120)
    assert not errors and "".join(pieces) == gen.generate(COUNT, max_tokens=24, temperature=0)


def test_an_abandoned_stream_frees_its_sequence(gen):
    stream = gen.stream(COUNT, max_tokens=200, temperature=0)
    next(stream)
    stream.close()
    deadline = time.time() + 60
    while gen.stats()["active"]:
        assert time.time() < deadline, gen.stats()
        time.sleep(0.05)
    assert gen.generate(PARIS, max_tokens=8, temperature=0).strip().startswith("Paris")


def test_a_full_queue_refuses_with_a_retry_time(gen):
    accepted = []
    try:
        with pytest.raises(OverloadedError) as info:
            for _ in range(10):  # 3 sequences, at most 2 waiting: the queue is bounded
                accepted.append(gen.stream(COUNT, max_tokens=200, temperature=0))
        assert 3 <= len(accepted) <= 5  # every free sequence is used before anyone is refused
        assert info.value.retry_after >= 1 and gen.stats()["rejected"] >= 1
    finally:
        for s in accepted:
            s.close()
    # A chat prompt over the window is fitted to it before it reaches the scheduler (prompts.py);
    # the scheduler itself still refuses a token list longer than a sequence's context.
    with pytest.raises(GenerationError):
        gen.scheduler.submit(list(range(gen.scheduler.n_ctx_seq + 8)), max_tokens=4, temperature=0, stops=[])


def test_stop_strings_are_never_shown_in_part():
    assert safe_emit_end("abc<|im_e", 0, ["<|im_end|>"]) == 3
    assert safe_emit_end("abc", 2, ["<|im_end|>"]) == 3


def test_refused_callers_get_spread_out_appointments():
    """Each refusal's Retry-After is the next free appointment, one slot's share of a generation
    after the previous one: callers come back as sequences free up, not all at once."""
    from router.llm.llama_batch import BatchScheduler

    s = BatchScheduler.__new__(BatchScheduler)
    s.parallel, s.solo_s, s.share_cost, s.max_retry_after_s, s._next_appointment = 4, 8.0, 0.75, 60.0, 0.0
    waits = [s._appointment_locked(0.0, 8.0) for _ in range(6)]
    assert waits[0] == pytest.approx(6.0, abs=0.05)            # a lone generation's share at the least
    gaps = [b - a for a, b in zip(waits, waits[1:])]
    assert all(g == pytest.approx(2.0, abs=0.05) for g in gaps)  # 8 s / 4 sequences apart
    assert max(s._appointment_locked(0.0, 8.0) for _ in range(100)) <= 60.0 + 1e-6
