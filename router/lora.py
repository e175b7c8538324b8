"""``LoRARouter``: the route and term expansions from the packaged GGUF base + a LoRA adapter.

Served in-process by llama-cpp-python (``Llama(model_path=base, lora_path=adapter.gguf)``).
Nothing is generated freely, so the output is always a valid :class:`RouteChoice`:

* the route is chosen by logit scoring: one pass over the prompt plus ``{"route": "``,
  then the logits of the four route labels' first tokens are compared (softmax = confidence);
* each ambiguous term's meaning is chosen by scoring every candidate (each meaning, and "all
  of them" = undecided) as a constrained continuation of ``"terms": {"PM": "``;
* the rewritten query is :func:`router.terms.rewrite_query` over the chosen meanings.

The system-prompt prefix stays in the KV cache: each call evaluates only the tokens after
the longest prefix it shares with the previous call. A missing, invalid (validated before
loading: an invalid adapter segfaults llama.cpp) or failing adapter falls back to
:class:`SignalRouter` with the reason in ``RouteChoice.reason``. A cascade answers with
``SignalRouter`` first when its confidence clears ``cascade_threshold`` and the measured
agreement at that confidence is at least ``min_agreement``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from knowledge.core.errors import ConfigError, KBError
from knowledge.core.numeric import softmax
from router.lora_format import (ANSWER_OPEN, ROUTER_SYSTEM, all_meanings_label, evidence_from_signals, meaning_label,
                                 router_user, terms_prefix)
from router.routes import ROUTE_NAMES, Router, RouteChoice, RouteSignals, SignalRouter, register_router
from router import adapters as shipped_adapters
from router.adapters import AdapterStore
from router.adapters.gguf import validate_gguf_adapter, adapter_gguf_for
from router.disambiguation.base import single_meaning, surface_meaning, undecided
from router.llm.assets import packaged_gguf_path
from router.llm.llama_cpp import resolve_threads
from router.terms import rewrite_query
from config.settings import get_settings
import numpy as np

log = logging.getLogger(__name__)
_CHATML_USER = "<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n"
_CHATML_REST = "{question}<|im_end|>\n<|im_start|>assistant\n"


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the shared start of two token lists.

    >>> common_prefix([1, 2, 3], [1, 2, 4, 5])
    2
    """
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def prompt_text(user: str) -> str:
    """The ChatML text the router model sees (what Qwen's chat template renders for the
    training examples' system + user turns, with the generation prompt); ``user`` is the
    user turn (:func:`router.lora_format.router_user`)."""
    return _CHATML_USER.format(system=ROUTER_SYSTEM) + _CHATML_REST.format(question=user)


class LoRARouter(Router):
    """See the module docstring. ``llama`` may be passed in (tests); otherwise it is loaded."""

    name = "lora"

    def __init__(self, routes: dict[str, Any], *, base_gguf: str | Path | None = None,
                 adapter_gguf: str | Path | None = None, fallback: Router | None = None,
                 cascade_threshold: float | None = None, agreement: float | None = None,
                 min_agreement: float = 0.95, n_threads: int = 0, n_ctx: int = 1024, version: str = "",
                 peak_threshold: float = 0.04, llama: Any = None):
        self.routes = routes
        self.fallback = fallback or SignalRouter(routes, peak_threshold=peak_threshold)
        self.peak_threshold = peak_threshold
        self.cascade_threshold = cascade_threshold
        self.agreement = agreement
        self.min_agreement = min_agreement
        self.version = version
        self.disabled_reason = ""
        self.lock = threading.RLock()
        self.llm = llama
        self.calls = {"lora": 0, "cascade": 0, "fallback": 0}
        if self.llm is None:
            try:
                self.llm = _load(base_gguf, adapter_gguf, n_threads, n_ctx)
            except (KBError, OSError, ValueError) as exc:
                self.disabled_reason = f"adapter not loaded: {exc}"
                log.warning("LoRA router disabled, SignalRouter answers instead: %s", exc)
        if self.llm is not None:
            self._prepare()

    # -- setup --------------------------------------------------------------------------
    def _tok(self, text: str) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _prepare(self) -> None:
        meta = getattr(self.llm, "metadata", {}) or {}
        template = meta.get("tokenizer.chat_template", "")
        if template and "<|im_start|>" not in template:
            raise ConfigError("the LoRA router expects a ChatML (Qwen) base model; this GGUF's chat template "
                              f"starts {template[:60]!r}")
        self.n_vocab = self.llm.n_vocab()
        self.prefix = self._tok(_CHATML_USER.format(system=ROUTER_SYSTEM))
        with self.lock:
            self._eval_to(self.prefix)  # the system prefix now sits in the KV cache
        probe = prompt_text("x") + ANSWER_OPEN
        self.route_tokens = [self._continuation(probe, label, '", "terms": ') for label in ROUTE_NAMES]
        firsts = [t[0] for t in self.route_tokens]
        self.one_pass = len(set(firsts)) == len(firsts)

    def _continuation(self, prefix: str, text: str, end: str) -> list[int]:
        """Tokens ``text + end`` add after ``prefix`` (the prefix must tokenize the same alone)."""
        head, full = self._tok(prefix), self._tok(prefix + text + end)
        if full[:len(head)] != head:
            # The boundary merged into one token; score the whole text as one unit instead.
            n = common_prefix(head, full)
            return full[n:]
        return full[len(head):]

    # -- llama.cpp state -----------------------------------------------------------------
    def _eval_to(self, tokens: list[int]) -> None:
        """Make the context hold exactly ``tokens`` with fresh logits for the last one,
        evaluating only what differs from what the KV cache already holds."""
        if len(tokens) >= self.llm.n_ctx():
            raise KBError(f"router prompt of {len(tokens)} tokens does not fit the context of {self.llm.n_ctx()}")
        held = [int(t) for t in self.llm.input_ids[: self.llm.n_tokens]]
        n = common_prefix(held, tokens)
        if n == len(tokens):
            n -= 1  # re-evaluate the last token to get its logits
        self.llm.n_tokens = n
        self.llm.eval(tokens[n:])

    def _last_logits(self) -> Any:
        import llama_cpp  # deferred: heavy: loads the native llama.cpp library

        ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def _choose(self, context: list[int], candidates: list[list[int]]) -> tuple[int, list[float]]:
        """Greedy decoding constrained to ``candidates``; returns the winner and the softmax
        over the candidates' tokens at the first point where they differ."""
        alive, pos, ctx, probs = list(range(len(candidates))), 0, list(context), None
        self._eval_to(ctx)
        while len(alive) > 1:
            nexts = {i: candidates[i][pos] if pos < len(candidates[i]) else -1 for i in alive}
            distinct = sorted(set(nexts.values()))
            if len(distinct) == 1:
                if distinct[0] == -1:
                    break  # identical candidates: keep the first
                ctx.append(distinct[0])
            else:
                logits = self._last_logits()
                scores = {t: (float(logits[t]) if t >= 0 else -1e9) for t in distinct}
                if probs is None:
                    per = softmax([scores[nexts[i]] for i in alive])
                    probs = [0.0] * len(candidates)
                    for i, p in zip(alive, per):
                        probs[i] = p
                best = max(distinct, key=lambda t: scores[t])
                alive = [i for i in alive if nexts[i] == best]
                if best == -1 or len(alive) == 1:
                    break
                ctx.append(best)
            pos += 1
            self._eval_to(ctx)
        winner = alive[0]
        if probs is None:
            probs = [1.0 if i == winner else 0.0 for i in range(len(candidates))]
        return winner, probs

    # -- deciding ------------------------------------------------------------------------
    def decide(self, signals: RouteSignals) -> RouteChoice:
        base = self.fallback.decide(signals)
        if self.llm is None:
            return self._fallback(base, self.disabled_reason)
        if self._cascade_ok(base):
            self.calls["cascade"] += 1
            base.reason = f"cascade: signals confidence {base.confidence:.2f} >= {self.cascade_threshold}; {base.reason}"
            return base
        try:
            with self.lock:
                choice = self._decide_lora(signals, base)
            self.calls["lora"] += 1
            return choice
        except Exception as exc:  # noqa: BLE001 - any model failure must degrade, never break answering
            return self._fallback(base, f"lora decision failed: {type(exc).__name__}: {exc}")

    def _cascade_ok(self, base: RouteChoice) -> bool:
        if self.cascade_threshold is None or self.agreement is None:
            return False
        return base.confidence >= self.cascade_threshold and self.agreement >= self.min_agreement

    def _fallback(self, base: RouteChoice, why: str) -> RouteChoice:
        self.calls["fallback"] += 1
        log.warning("LoRA router fell back to SignalRouter: %s", why)
        base.reason = f"lora fallback ({why}); {base.reason}"
        return base

    def user_turn(self, signals: RouteSignals, rule_choice: RouteChoice | None = None) -> str:
        """The question with its evidence, exactly as in the training rows (no rule verdict: the
        model reads the evidence itself)."""
        return router_user(signals.question, **evidence_from_signals(signals))

    def _decide_lora(self, signals: RouteSignals, rule_choice: RouteChoice | None = None) -> RouteChoice:
        user = self.user_turn(signals, rule_choice)
        prompt = self.prefix + self._tok(_CHATML_REST.format(question=user) + ANSWER_OPEN)
        if self.one_pass:
            self._eval_to(prompt)
            logits = self._last_logits()
            probs = softmax([float(logits[t[0]]) for t in self.route_tokens])
            best = max(range(len(ROUTE_NAMES)), key=lambda i: probs[i])
        else:
            best, probs = self._choose(prompt, self.route_tokens)
        route = ROUTE_NAMES[best]
        resolutions = self._expansions(signals, route, user)

        base = signals.form.search_text if signals.form is not None else signals.question
        rewritten = rewrite_query(base, signals.matches, resolutions) if signals.matches else signals.rewritten_query
        scores = {f"p_{name}": round(p, 4) for name, p in zip(ROUTE_NAMES, probs)}
        scores["answerable"] = round(1.0 - probs[ROUTE_NAMES.index("refuse")], 4)
        return RouteChoice(route, probs[best], resolutions, rewritten, scores,
                           f"lora adapter {self.version or ''}".strip())

    def _expansions(self, signals: RouteSignals, route: str, user: str) -> list[Any]:
        """One resolution per match; each ambiguous term's meanings (and "all of them") scored
        as constrained continuations of the answer's ``terms`` object."""

        order = list(dict.fromkeys(m.term for m in signals.matches))
        chosen: dict[str, tuple[str, int | None]] = {}  # term -> (label written, meaning index)
        for match in signals.matches:
            ms = match.entry.meanings
            if match.term in chosen:
                continue
            if len(ms) <= 1 or match.via == "meaning":
                idx = surface_meaning(match) if len(ms) > 1 else 0
                chosen[match.term] = (meaning_label(ms[idx]) if ms else match.term, idx)
                continue
            done = [(t, chosen[t][0]) for t in order if t in chosen]
            prefix_text = prompt_text(user) + terms_prefix(route, done, match.term)
            end = '"}}' if order.index(match.term) == len(order) - 1 else '", '
            names = [meaning_label(m) for m in ms] + [all_meanings_label(ms)]
            win, _ = self._choose(self._tok(prefix_text), [self._continuation(prefix_text, n, end) for n in names])
            chosen[match.term] = (names[win], win if win < len(ms) else None)
        out = []
        for match in signals.matches:
            idx = chosen[match.term][1]
            out.append(single_meaning(match) if len(match.entry.meanings) <= 1
                       else undecided(match) if idx is None else single_meaning(match, idx))
        return out


def _load(base_gguf: str | Path | None, adapter_gguf: str | Path | None, n_threads: int, n_ctx: int) -> Any:
    """Validate the adapter against the base, then load both into llama.cpp."""

    if not base_gguf or not Path(base_gguf).is_file():
        raise ConfigError(f"LoRA router base GGUF {base_gguf!r} is not a file")
    if not adapter_gguf or not Path(adapter_gguf).is_file():
        raise ConfigError(f"LoRA router adapter {adapter_gguf!r} is not a file")
    validate_gguf_adapter(adapter_gguf, base_gguf)  # raises ValidationError (a KBError) when invalid
    from llama_cpp import Llama  # deferred: heavy: loads the native llama.cpp library

    return Llama(model_path=str(base_gguf), lora_path=str(adapter_gguf), n_ctx=n_ctx,
                 n_threads=resolve_threads(n_threads), verbose=False, seed=0)


def from_settings(routes: dict[str, Any], settings: Any = None, **kw: Any) -> LoRARouter:
    """``settings.router.backend = "lora"``: the knowledge base's published adapter over its base
    GGUF, or — when it has none yet — the base router adapter shipped with the project.

    No adapter at all is a configuration error (say so now, not on the first question).
    """

    if settings is None:
        settings = get_settings()
    store = AdapterStore(settings.home)
    version = store.current()
    if not version:
        shipped = shipped_adapters.BASE_ADAPTER_DIR / "adapter.gguf"  # read at call time (tests move it)
        if not shipped.is_file():
            raise ConfigError(f"router.backend 'lora' needs an adapter: none is published in {store.root} and the "
                              f"base adapter {shipped} is missing; run `kb distill` and `kb train`, or set "
                              "router.backend to 'signals'")
        return LoRARouter(routes, base_gguf=packaged_gguf_path(settings.cache_dir), adapter_gguf=shipped,
                          version="base", n_threads=settings.llm.n_threads, **kw)
    manifest = store.manifest(version)
    base = Path(manifest.get("base_gguf") or packaged_gguf_path(settings.cache_dir))
    metrics = manifest.get("metrics", {})
    try:
        adapter = adapter_gguf_for(store.path(version), base)
    except KBError as exc:
        adapter = None
        log.warning("adapter %s could not be exported to GGUF: %s", version, exc)
    return LoRARouter(routes, base_gguf=base, adapter_gguf=adapter, version=version,
                      cascade_threshold=metrics.get("cascade_threshold"), agreement=metrics.get("cascade_agreement"),
                      n_threads=settings.llm.n_threads, **kw)


register_router("lora", from_settings)
