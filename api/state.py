"""Who owns the serving engine: one :class:`EngineHolder` per app (and one process default).

The published artifacts on disk are the truth: ``indexes/current`` and ``adapters/current``.
A holder serves the engine built from the pair it last read and follows the pointers
(:meth:`EngineHolder.refresh`, called by a background thread every ``api.follow_interval_s``
and right after a job of this process finishes). A refresh reads both pointers and, when
they differ from what is served, builds a new engine from exactly those versions under the
holder's lock, then swaps one reference. So:

* a reindex and a retrain that overlap can never revert each other: whichever finishes
  last rebuilds from both current pointers, not from the engine it started with;
* several worker processes on one home all converge on the published versions without a
  restart (each follows the same pointers);
* each request fetches the engine once and keeps it to the end, so no answer mixes
  versions; the swap is one attribute assignment;
* a published version that does not load (a power cut emptied its files, a disk error) is
  never fatal: the holder serves ``indexes/previous`` instead (or keeps what it serves), says
  so in :attr:`EngineHolder.last_error` (``/healthz`` shows it and reports ``degraded``), logs
  it once, and does not try that version again until a pointer is rewritten.

Engines are built by :func:`build_engine` only, so the ``Engine`` constructor can change
in one place.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from knowledge.core.errors import IndexNotFoundError
from retrieval.store import IndexStore
from router.engine import Engine
from config import get_settings

log = logging.getLogger("kb.api.state")


@dataclass(frozen=True)
class Published:
    """The versions the ``current`` pointers name (``None``: nothing published)."""

    index: str | None
    adapter: str | None


def read_pointer(path: Path) -> str | None:
    """The version a ``current`` pointer file names, or ``None`` when absent or empty."""
    try:
        name = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return name or None


def published(home: Path | str) -> Published:
    """Both pointers of a knowledge-base home (two small file reads)."""
    home = Path(home)
    return Published(read_pointer(home / "indexes" / "current"), read_pointer(home / "adapters" / "current"))


def pointer_stamp(home: Path | str) -> tuple[int, ...]:
    """Identity of both pointer files as last written (inode, size and mtime in ns; zeros when
    absent): it changes whenever a pointer is rewritten, even to the same name."""
    out: list[int] = []
    for path in (Path(home) / "indexes" / "current", Path(home) / "adapters" / "current"):
        try:
            st = path.stat()
            out += [st.st_ino, st.st_size, st.st_mtime_ns]
        except OSError:
            out += [0, 0, 0]
    return tuple(out)


def build_engine(settings: Any, index: Any, previous: Any = None, *, reuse_router: bool = True,
                 generator: Any = None) -> Any:
    """The one factory for serving engines.

    ``previous`` (the engine being replaced) lends its generator and verifier, so a swap
    never reloads the LLM; its router too when ``reuse_router`` (the adapter did not
    change), and its disambiguator when the glossary files did not change (it holds the
    glossary's embedded meanings). A new disambiguator embeds its meanings here, before the
    engine serves, so no request pays for the warm-up.
    """

    kwargs: dict[str, Any] = {}
    if generator is not None:
        kwargs["generator"] = generator
    elif previous is not None:
        kwargs["generator"] = previous.generator
    if previous is not None:
        kwargs["verifier"] = previous.verifier
        if reuse_router:
            kwargs["router"] = previous.router
        same_glossary = (previous.index.manifest.get("glossary") == index.manifest.get("glossary")
                         and len(previous.index.glossary) == len(index.glossary))
        if same_glossary and previous.index.embedder is index.embedder:
            kwargs["disambiguator"] = previous.disambiguator
    engine = Engine(settings, index, **kwargs)
    prepare = getattr(engine.disambiguator, "prepare", None)
    if "disambiguator" not in kwargs and callable(prepare):
        prepare()
    return engine


def effective_router(engine: Any) -> dict[str, Any]:
    """What is really routing: ``{"router", "configured", "reason"}``.

    A LoRA router whose adapter did not load answers with its rule fallback; health must
    say so instead of ``lora``.
    """
    router = getattr(engine, "router", None)
    name = getattr(router, "name", type(router).__name__)
    reason = getattr(router, "disabled_reason", "") or ""
    if name == "lora" and getattr(router, "llm", None) is None:
        fallback = getattr(getattr(router, "fallback", None), "name", "signals")
        return {"router": fallback, "configured": "lora", "reason": reason or "adapter not loaded"}
    return {"router": name, "configured": name, "reason": ""}


class EngineHolder:
    """The serving engine of one app, rebuilt from the published artifacts (see module doc)."""

    def __init__(self, settings: Any, engine: Any = None,
                 factory: Callable[..., Any] = build_engine) -> None:
        self.settings = settings
        self.home = Path(settings.home)
        self.factory = factory
        self._engine = engine
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listeners: list[Callable[[Any, Any], None]] = []
        self.swaps = 0
        self.last_error = ""
        # The pointers (names and file identities) whose index would not load: not retried
        # until a pointer changes, so a follower does not rebuild a broken version every tick.
        self._broken: tuple[Published, tuple[int, ...]] | None = None
        now = published(self.home)
        version = getattr(getattr(engine, "index", None), "version", None)
        # A prebuilt engine serves what it was built over; the adapter is taken as current.
        self.serving = Published(version, now.adapter) if engine is not None else Published(None, None)

    @property
    def engine(self) -> Any:
        return self._engine

    def load(self) -> Any:
        """Build the first engine from the published artifacts (``None`` when there is no index)."""
        self.refresh()
        return self._engine

    def refresh(self) -> bool:
        """Serve the currently published versions; True when the engine was swapped.

        When the published index does not load, the holder serves ``indexes/previous`` (or
        keeps the engine it serves), records why in :attr:`last_error`, logs it once and
        leaves that version alone until a pointer is rewritten.
        """

        with self._lock:
            now = published(self.home)
            stamp = pointer_stamp(self.home)
            if self._broken == (now, stamp):
                return False  # already tried, already logged: wait for a pointer to change
            if now == self.serving and (self._engine is not None or now.index is None):
                self._broken, self.last_error = None, ""  # what is published is what is served
                return False
            if now.index is None:
                return False
            old = self._engine
            try:
                new = self._build(now.index, now.adapter, old)
                served = now
            except Exception as exc:  # noqa: BLE001 - whatever a damaged version raises, serving goes on
                self._broken = (now, stamp)
                reason = f"{type(exc).__name__}: {exc}"
                fallback = self._fallback(now, old)
                if fallback is None:
                    self.last_error = f"published index {now.index} cannot be served ({reason})"
                    if old is not None:
                        self.last_error += f"; still serving {self.serving.index}"
                    log.error("%s", self.last_error)
                    return False
                new, served = fallback
                self.last_error = (f"published index {now.index} cannot be served ({reason}); "
                                   f"serving the previous index {served.index} instead")
                log.error("%s", self.last_error)
                if new is old:
                    self.serving = served
                    return False
            else:
                self._broken = None
                self.last_error = ""
            self._engine, previous = new, self.serving
            self.serving = served
            self.swaps += 1
        log.info("serving index %s adapter %s (was %s / %s)", served.index, served.adapter, previous.index,
                 previous.adapter)
        for listener in list(self.listeners):
            listener(old, new)
        return True

    def _build(self, index_version: str, adapter: str | None, old: Any) -> Any:
        """An engine over ``index_version`` (the served index object when it is the same)."""
        if old is not None and index_version == self.serving.index:
            index = old.index
        else:
            embedder = old.index.embedder if old is not None else None
            index = IndexStore(self.home, self.settings).load(index_version, embedder=embedder)
        return self.factory(self.settings, index, old, reuse_router=adapter == self.serving.adapter)

    def _fallback(self, now: Published, old: Any) -> tuple[Any, Published] | None:
        """What to serve while ``now.index`` is broken: ``indexes/previous`` (the engine already
        serving it when it is, else a new one), or else the index already served; ``None`` when
        there is nothing to serve."""
        store = IndexStore(self.home, self.settings)
        try:  # the pointer a publish writes; homes published before it existed: the version before
            previous = store.previous_pointer() or store.previous_version()
        except Exception:  # noqa: BLE001 - unreadable pointers: nothing to fall back to
            previous = None
        target = previous if previous is not None and previous != now.index else None
        if target is None and old is not None:
            target = self.serving.index
        if target is None:
            return None
        if old is not None and self.serving == Published(target, now.adapter):
            return old, self.serving
        try:
            return self._build(target, now.adapter, old), Published(target, now.adapter)
        except Exception as exc:  # noqa: BLE001 - the previous version is damaged too
            log.error("previous index %s cannot be served either: %s: %s", target, type(exc).__name__, exc)
            return (old, self.serving) if old is not None else None

    # -- following the pointers --------------------------------------------------------------
    def follow(self, interval: float, also: Callable[[], None] | None = None) -> None:
        """Refresh every ``interval`` seconds in a daemon thread (``also`` runs each tick too)."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                    if also is not None:
                        also()
                except Exception:  # noqa: BLE001 - the follower must outlive any one failure
                    log.exception("pointer follower tick failed")

        self._thread = threading.Thread(target=loop, name="kb-follow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# --- process default (CLI, LangChain, Qwen-Agent in process) ---------------------------------
_DEFAULT: EngineHolder | None = None
_DEFAULT_LOCK = threading.Lock()


def default_holder(settings: Any = None) -> EngineHolder:
    """The process-wide holder over ``KB_HOME`` (created on first use)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = EngineHolder(settings or get_settings())
        return _DEFAULT


def get_engine(settings: Any = None) -> Any:
    """The process-wide engine over the current published index (built once, then followed
    on each call: a newly published index is picked up)."""

    holder = default_holder(settings)
    holder.refresh()
    if holder.engine is None:
        raise IndexNotFoundError(holder.last_error or f"no published index under {holder.home / 'indexes'}; "
                                 "add documents and run `kb index`")
    return holder.engine


def set_engine(engine: Any) -> None:
    """Replace (or with ``None`` forget) the process-wide engine (tests, tools)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if engine is None:
            _DEFAULT = None
            return
        if _DEFAULT is None:
            _DEFAULT = EngineHolder(engine.settings, engine)
        else:
            _DEFAULT.set(engine)


def answer(question: str, history: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Answer with the process-wide engine; returns the answer object (ARCHITECTURE.md, Data contracts)."""
    return get_engine().answer(question, history).to_dict()
