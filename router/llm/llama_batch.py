"""Continuous batching for llama.cpp: several generations decoded together in one context.

One scheduler thread owns a llama.cpp context with ``parallel`` sequences (slots). Callers
submit a tokenized prompt and read the pieces of text from a queue; the scheduler

* admits waiting prompts into free slots, picking the slot whose cached tokens share the
  longest prefix with the prompt (the system prompt, or the whole prompt of a repeated
  question, is then not evaluated again: ``llama_memory_seq_rm`` drops only the tail);
* builds one ``llama_batch`` per step: one token for every slot that is generating, plus a
  chunk of prompt tokens of slots that are still reading their prompt (so a long prompt
  never stalls the others for more than one chunk);
* samples each slot's next token with its own sampler chain (the same chain as
  ``Llama.create_chat_completion``'s defaults) and streams the text back.

Only the scheduler thread touches the context, so no lock is ever held across a caller's
``yield``: a stream may be consumed from any thread, abandoned or closed at any time (the
slot is freed at the next step). The queue in front of the slots is bounded: a prompt that
would wait longer than ``wait_factor`` generations or ``max_wait_s`` (estimated from the
measured time a generation holds a sequence), or find
``max_queue`` prompts already waiting, is refused with :class:`OverloadedError`, which the
HTTP layer turns into ``429`` with ``Retry-After``.
"""

from __future__ import annotations

import codecs
import collections
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from knowledge.core.errors import GenerationError, OverloadedError

log = logging.getLogger(__name__)
_DONE = object()


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the shared start of two token lists.

    >>> common_prefix([1, 2, 3], [1, 2, 4]), common_prefix([], [1])
    (2, 0)
    """
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def safe_emit_end(text: str, emitted: int, stops: list[str]) -> int:
    """How far ``text`` can be released without showing the start of a stop string.

    >>> safe_emit_end("Hello <|im", 0, ["<|im_end|>"])
    6
    >>> safe_emit_end("Hello", 0, ["<|im_end|>"])
    5
    """
    end = len(text)
    for stop in stops:
        for k in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:k]):
                end = min(end, len(text) - k)
                break
    return max(end, emitted)


@dataclass
class Job:
    """One submitted generation; its text arrives on ``out`` (pieces, then ``_DONE`` or an error)."""

    tokens: list[int]
    max_tokens: int
    temperature: float
    stops: list[str]
    seed: int
    out: "queue.SimpleQueue[Any]" = field(default_factory=queue.SimpleQueue)
    cancelled: threading.Event = field(default_factory=threading.Event)
    enqueued: float = field(default_factory=time.monotonic)
    started: float = 0.0
    steps: int = 0          # decode steps it took part in
    sharing: int = 0        # sum over those steps of the sequences decoded together


@dataclass
class _Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV this sequence holds
    job: Job | None = None
    fed: int = 0            # prompt tokens already in the KV cache
    next_token: int = -1    # sampled, not yet fed
    n_gen: int = 0
    sampler: Any = None
    decoder: Any = None
    text: str = ""
    emitted: int = 0


class BatchScheduler:
    """See the module docstring. ``llm`` is a loaded ``llama_cpp.Llama`` (its model is shared)."""

    def __init__(self, llm: Any, *, parallel: int = 4, n_ctx_seq: int = 4096, n_threads: int = 1,
                 n_threads_batch: int | None = None, n_batch: int = 512, prefill_chunk: int = 256,
                 max_queue: int = 16, max_wait_s: float = 60.0, wait_factor: float = 1.5,
                 latency_factor: float = 3.0, kv_unified: bool = False,
                 result_timeout_s: float = 600.0, max_retry_after_s: float = 60.0) -> None:
        import llama_cpp  # deferred: heavy: loads the native llama.cpp library

        self.llm = llm
        self.parallel = max(1, int(parallel))
        self.n_ctx_seq = int(n_ctx_seq)
        self.n_batch = int(n_batch)
        self.prefill_chunk = max(16, min(int(prefill_chunk), self.n_batch))
        self.max_queue = int(max_queue)
        self.max_wait_s = float(max_wait_s)
        self.wait_factor = float(wait_factor)
        self.latency_factor = float(latency_factor)
        self.result_timeout_s = float(result_timeout_s)
        self.max_retry_after_s = float(max_retry_after_s)
        self._next_appointment = 0.0   # monotonic time of the latest Retry-After handed out
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.n_ctx_seq * self.parallel
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = self.parallel
        params.kv_unified = bool(kv_unified)
        params.n_threads = int(n_threads)
        params.n_threads_batch = int(n_threads_batch or n_threads)
        params.no_perf = True
        self._lib = llama_cpp
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise GenerationError(f"llama.cpp could not create a context of {params.n_ctx} tokens "
                                  f"for {self.parallel} sequences")
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        self.vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        self.slots = [_Slot(seq=i) for i in range(self.parallel)]
        self._waiting: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        # Measured seconds a job holds a slot (exponential average); seeds the wait estimate.
        self.service_s = 5.0
        # Seconds of a generation running alone, and what each sequence decoded beside it costs
        # (1.0: no gain from batching; prompt reading gains little, decoding much).
        self.solo_s = 0.0
        self.share_cost = 0.75
        self.stats = {"submitted": 0, "completed": 0, "rejected": 0, "failed": 0, "cancelled": 0,
                      "steps": 0, "prompt_tokens": 0, "cached_tokens": 0, "generated_tokens": 0}
        self._thread = threading.Thread(target=self._loop, name="llama-batch", daemon=True)
        self._thread.start()

    # -- callers ---------------------------------------------------------------------------
    def estimated_wait(self) -> float:
        """Seconds a prompt submitted now would wait for a slot (0 when one is free)."""
        with self._cv:
            return self._estimate_locked()

    def _service_locked(self) -> float:
        """Seconds a generation holds a sequence: the measured average, or longer while the
        running ones have already taken longer (the machine got slower)."""
        now = time.monotonic()
        ages = sorted(now - s.job.started for s in self.slots if s.job is not None)
        return max(self.service_s, ages[len(ages) // 2] if ages else 0.0)

    def _expected_latency_locked(self, busy: int, wait: float) -> float:
        """Seconds until a prompt submitted now is answered: its wait, plus a lone generation
        slowed by the sequences it will be decoded beside."""
        sharing = min(self.parallel, busy + len(self._waiting) + 1)
        return wait + (self.solo_s or self.service_s) * max(1.0, self.share_cost * sharing)

    def _estimate_locked(self) -> float:
        busy = sum(s.job is not None for s in self.slots)
        ahead = len(self._waiting) + busy - self.parallel + 1
        return 0.0 if ahead <= 0 else self._service_locked() * ahead / self.parallel

    def _appointment_locked(self, wait: float, service: float) -> float:
        """Seconds a refused caller should wait before asking again (its ``Retry-After``).

        Callers told to come back are spread out: each refusal gets the next free appointment, one
        completion (the measured time a generation holds a sequence, over the sequences) after the
        previous one, so that the refused come back about
        as fast as sequences free up instead of all at once (and are refused again). Capped at
        ``max_retry_after_s`` (the official openai client obeys a ``Retry-After`` of up to 60 s).
        """
        now = time.monotonic()
        lone = self.solo_s or service
        # one completion every (time a generation holds a sequence, as measured) / sequences
        spacing = max(service, lone) / self.parallel
        earliest = now + max(wait, lone * self.share_cost)
        self._next_appointment = min(max(earliest, self._next_appointment + spacing), now + self.max_retry_after_s)
        return self._next_appointment - now

    def submit(self, tokens: list[int], *, max_tokens: int, temperature: float, stops: list[str],
               seed: int = 0) -> Job:
        """Queue a prompt; raises :class:`OverloadedError` when the wait would be unreasonable."""
        if len(tokens) + 1 >= self.n_ctx_seq:
            raise GenerationError(f"prompt of {len(tokens)} tokens exceeds the context window of "
                                  f"{self.n_ctx_seq} tokens per sequence (llm.n_ctx)")
        job = Job(list(tokens), max(1, int(max_tokens)), float(temperature), list(stops), seed)
        with self._cv:
            if self._closed:
                raise GenerationError("the llama.cpp scheduler is closed")
            wait = self._estimate_locked()
            # A wait longer than wait_factor generations (or max_wait_s) is not reasonable: say so now.
            service = self._service_locked()
            bound = min(self.max_wait_s, self.wait_factor * service)
            busy = sum(s.job is not None for s in self.slots)
            beyond = len(self._waiting) + busy - self.parallel  # waiting for a sequence, not for admission
            expected = self._expected_latency_locked(busy, wait)
            too_slow = bool(self.solo_s) and expected > self.latency_factor * self.solo_s
            # A free sequence is always used: only a prompt that would have to wait is refused.
            if beyond >= self.max_queue or wait > bound or (too_slow and beyond >= 0):
                self.stats["rejected"] += 1
                retry = self._appointment_locked(wait, service)
                raise OverloadedError(f"generation queue full ({max(0, beyond)} waiting, about "
                                      f"{max(wait, expected):.0f} s); try again later", retry_after=retry)
            self.stats["submitted"] += 1
            self._waiting.append(job)
            self._cv.notify_all()
        return job

    def pieces(self, job: Job) -> "JobStream":
        """The text of ``job`` as it is generated; closing (or dropping) the iterator cancels it."""
        return JobStream(self, job)

    def cancel(self, job: Job) -> None:
        if not job.cancelled.is_set():
            job.cancelled.set()
            with self._cv:
                self._cv.notify_all()

    def snapshot(self) -> dict[str, Any]:
        """Counters and the current queue for metrics and health."""
        with self._cv:
            return {**self.stats, "parallel": self.parallel, "waiting": len(self._waiting),
                    "active": sum(s.job is not None for s in self.slots), "service_s": round(self.service_s, 3),
                    "solo_s": round(self.solo_s, 3), "share_cost": round(self.share_cost, 3),
                    "estimated_wait_s": round(self._estimate_locked(), 3)}

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=30)
        for job in list(self._waiting):
            job.out.put(GenerationError("the llama.cpp scheduler was closed"))
        if self.ctx:
            self._lib.llama_batch_free(self.batch)
            self._lib.llama_free(self.ctx)
            self.ctx = None

    # -- the scheduler thread ------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._closed and not self._waiting and not any(s.job for s in self.slots):
                    self._cv.wait()
                if self._closed:
                    for slot in self.slots:
                        if slot.job:
                            self._finish(slot, GenerationError("the llama.cpp scheduler was closed"))
                    return
                self._admit_locked()
            try:
                self._step()
            except Exception as exc:  # noqa: BLE001 - never let the thread die: fail the jobs instead
                log.exception("llama.cpp batch step failed")
                self._lib.llama_memory_clear(self.mem, True)
                for slot in self.slots:
                    slot.cached = []
                    if slot.job:
                        self._finish(slot, GenerationError(f"llama.cpp decode failed: {exc}"))

    def _admit_locked(self) -> None:
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled.is_set():
                self.stats["cancelled"] += 1
                self._finish(slot, None)
        free = [s for s in self.slots if s.job is None]
        while free and self._waiting:
            job = self._waiting.popleft()
            if job.cancelled.is_set():
                self.stats["cancelled"] += 1
                continue
            slot = max(free, key=lambda s: common_prefix(s.cached, job.tokens))
            free.remove(slot)
            self._start(slot, job)

    def _start(self, slot: _Slot, job: Job) -> None:
        n = common_prefix(slot.cached, job.tokens)
        if n >= len(job.tokens):
            n = len(job.tokens) - 1  # evaluate the last prompt token again: its logits start the answer
        if n <= 0 or not self._lib.llama_memory_seq_rm(self.mem, slot.seq, n, -1):
            self._lib.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
            n = 0
        slot.cached = job.tokens[:n]
        slot.job, slot.fed, slot.n_gen, slot.next_token = job, n, 0, -1
        slot.text, slot.emitted = "", 0
        slot.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        slot.sampler = self._sampler(job)
        job.started = time.monotonic()
        self.stats["prompt_tokens"] += len(job.tokens)
        self.stats["cached_tokens"] += n

    def _sampler(self, job: Job) -> Any:
        # The chain create_chat_completion builds by default (top-k 40, typical 1, top-p 0.95,
        # min-p 0.05, temperature, seeded dist); greedy at temperature 0.
        from llama_cpp._internals import LlamaSampler

        sampler = LlamaSampler()
        if job.temperature <= 0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(40)
            sampler.add_typical(1.0, 1)
            sampler.add_top_p(0.95, 1)
            sampler.add_min_p(0.05, 1)
            sampler.add_temp(job.temperature)
            sampler.add_dist(job.seed)
        return sampler

    def _step(self) -> None:
        items: list[tuple[int, int, int, bool, _Slot | None]] = []  # token, pos, seq, logits, slot
        for slot in self.slots:
            if slot.job is not None and slot.next_token >= 0:
                items.append((slot.next_token, len(slot.cached), slot.seq, True, slot))
        budget = self.n_batch - len(items)
        for slot in self.slots:
            job = slot.job
            if job is None or slot.next_token >= 0 or budget <= 0:
                continue
            take = min(len(job.tokens) - slot.fed, budget, self.prefill_chunk)
            for j in range(take):
                pos = slot.fed + j
                last = pos == len(job.tokens) - 1
                items.append((job.tokens[pos], pos, slot.seq, last, slot if last else None))
            budget -= take
            slot.fed += take
            slot.cached = job.tokens[:slot.fed]
        if not items:
            return
        b = self.batch
        b.n_tokens = len(items)
        for i, (tok, pos, seq, logits, _) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = 1 if logits else 0
        rc = self._lib.llama_decode(self.ctx, b)
        if rc != 0:
            raise GenerationError(f"llama_decode returned {rc}")
        self.stats["steps"] += 1
        running = [s.job for s in self.slots if s.job is not None]
        for job in running:
            job.steps += 1
            job.sharing += len(running)
        for i, (tok, _, _, logits, slot) in enumerate(items):
            if slot is None or not logits or slot.job is None:
                continue
            if slot.next_token >= 0:  # a generated token was just fed
                slot.cached.append(tok)
            token = slot.sampler.sample(_CtxRef(self.ctx), i)
            self._advance(slot, token)

    def _advance(self, slot: _Slot, token: int) -> None:
        job = slot.job
        assert job is not None
        if job.cancelled.is_set():
            self.stats["cancelled"] += 1
            self._finish(slot, None)
            return
        if self._lib.llama_vocab_is_eog(self.vocab, token):
            slot.text += slot.decoder.decode(b"", final=True)
            self._flush(slot, final=True)
            self._finish(slot, None)
            return
        slot.n_gen += 1
        self.stats["generated_tokens"] += 1
        slot.text += slot.decoder.decode(self.llm.detokenize([token]))
        for stop in job.stops:
            at = slot.text.find(stop, max(0, slot.emitted - len(stop)))
            if at >= 0:
                slot.text = slot.text[:at]
                self._flush(slot, final=True)
                self._finish(slot, None)
                return
        if slot.n_gen >= job.max_tokens or len(slot.cached) + 2 >= self.n_ctx_seq:
            slot.text += slot.decoder.decode(b"", final=True)
            self._flush(slot, final=True)
            self._finish(slot, None)
            return
        self._flush(slot, final=False)
        slot.next_token = token

    def _flush(self, slot: _Slot, final: bool) -> None:
        job = slot.job
        assert job is not None
        end = len(slot.text) if final else safe_emit_end(slot.text, slot.emitted, job.stops)
        if end > slot.emitted:
            job.out.put(slot.text[slot.emitted:end])
            slot.emitted = end

    def _learn(self, job: Job, held: float) -> None:
        """Update the lone generation time and the cost of sharing from a finished job."""
        if not job.steps:
            return
        sharing = job.sharing / job.steps
        if sharing <= 1.25:  # (almost) alone: this is what one generation costs now
            self.solo_s = held if not self.solo_s else 0.7 * self.solo_s + 0.3 * held
        elif self.solo_s:
            cost = (held / self.solo_s) / sharing
            self.share_cost = min(1.5, max(0.2, 0.8 * self.share_cost + 0.2 * cost))

    def _finish(self, slot: _Slot, error: BaseException | None) -> None:
        job = slot.job
        if job is None:
            return
        job.out.put(error if error is not None else _DONE)
        if error is not None:
            self.stats["failed"] += 1
        elif not job.cancelled.is_set():
            self.stats["completed"] += 1
            held = time.monotonic() - job.started
            self.service_s = 0.8 * self.service_s + 0.2 * held
            self._learn(job, held)
        slot.job, slot.next_token, slot.sampler, slot.decoder = None, -1, None, None


class JobStream:
    """Iterator over a job's text pieces. ``close()`` — or garbage collection of a stream
    nobody reads — cancels the job, started or not, so its sequence is freed."""

    def __init__(self, scheduler: BatchScheduler, job: Job) -> None:
        self.scheduler, self.job = scheduler, job
        self._done = False

    def __iter__(self) -> "JobStream":
        return self

    def __next__(self) -> str:
        if self._done:
            raise StopIteration
        try:
            item = self.job.out.get(timeout=self.scheduler.result_timeout_s)
        except queue.Empty:
            self.close()
            raise GenerationError(f"no output from llama.cpp for {self.scheduler.result_timeout_s:.0f} s") from None
        if item is _DONE:
            self._done = True
            raise StopIteration
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    def close(self) -> None:
        if not self._done:
            self._done = True
            self.scheduler.cancel(self.job)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class _CtxRef:
    """What ``LlamaSampler.sample`` expects: an object with a ``ctx`` attribute."""

    __slots__ = ("ctx",)

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
