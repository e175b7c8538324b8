"""Find the base model to train on, as a plain Hugging Face folder.

The project ships its small model only as a GGUF file (see ``router/llm/assets.py``).
transformers can read a GGUF (``from_pretrained(dir, gguf_file=...)``) but dequantising it
takes about 40 s, so we do it once and keep a plain HF copy in the cache folder; later
loads take a few seconds. The copy is written into a temporary folder and moved into place
with ``os.replace`` under a file lock, so parallel processes never see half a model.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from config.settings import default_cache_dir
from knowledge.core.errors import ConfigError
from knowledge.core.files import atomic_dir
from knowledge.core.files import file_lock as _file_lock
from router.llm.assets import packaged_gguf_path

PACKAGED_HF_NAME = "qwen2.5-coder-0.5b-instruct-hf"
PACKAGED_TOKENIZER_NAME = "qwen2.5-coder-0.5b-instruct-tokenizer"
# Written last into a converted folder: its presence means the copy is complete.
DONE_MARKER = ".complete"


def hf_copy_name(gguf_path: Path) -> str:
    """Name of the cached HF copy of a GGUF file.

    >>> hf_copy_name(Path("/x/qwen2.5-coder-0.5b-instruct.gguf"))
    'qwen2.5-coder-0.5b-instruct-hf'
    """
    return f"{gguf_path.stem}-hf"


def is_hf_folder(path: Path) -> bool:
    """True when ``path`` is a folder holding a transformers ``config.json``."""
    return path.is_dir() and (path / "config.json").is_file()


def resolve_base_model(path_or_empty: str | Path | None, cache_dir: str | Path | None = None) -> Path:
    """The HF folder to train on.

    - empty → the packaged Qwen2.5-Coder-0.5B-Instruct GGUF, dequantised once into
      ``cache_dir/qwen2.5-coder-0.5b-instruct-hf``;
    - a ``.gguf`` file → dequantised once into ``cache_dir/<stem>-hf``;
    - a HF folder (with ``config.json``) → returned as is.

    ``cache_dir`` defaults to ``settings.cache_dir``. Raises ``ConfigError`` for anything else.
    """
    cache = _cache_dir(cache_dir)
    text = str(path_or_empty or "").strip()
    if not text:
        return gguf_to_hf(packaged_gguf_path(cache), cache)
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return gguf_to_hf(path, cache)
    if is_hf_folder(path):
        return path
    raise ConfigError(
        f"finetune.base_model={text!r} is neither a .gguf file nor a Hugging Face folder with config.json"
    )


def gguf_to_hf(gguf_path: Path, cache_dir: Path) -> Path:
    """Dequantise ``gguf_path`` into a plain HF folder in ``cache_dir`` (once) and return it."""
    target = cache_dir / hf_copy_name(gguf_path)
    if (target / DONE_MARKER).is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _file_lock(cache_dir / f".{target.name}.lock"):
        if (target / DONE_MARKER).is_file():  # another process finished while we waited
            return target
        with atomic_dir(target) as tmp:  # replaces a stale, incomplete copy from a killed run
            _convert(gguf_path, tmp)
            (tmp / DONE_MARKER).write_text(str(gguf_path), encoding="utf-8")
    return target


def packaged_tokenizer_dir(cache_dir: str | Path | None = None) -> Path:
    """A folder holding only the packaged model's tokenizer (fast to load).

    Reading the tokenizer out of the GGUF takes about 20 s; the saved copy loads in well
    under a second. Uses the full HF copy when it already exists.
    """
    cache = _cache_dir(cache_dir)

    gguf_path = packaged_gguf_path(cache)
    full = cache / hf_copy_name(gguf_path)
    if (full / DONE_MARKER).is_file():
        return full
    target = cache / PACKAGED_TOKENIZER_NAME
    if (target / DONE_MARKER).is_file():
        return target
    with _file_lock(cache / f".{target.name}.lock"):
        if (target / DONE_MARKER).is_file():
            return target
        from transformers import AutoTokenizer  # deferred: heavy: transformers, training only

        with atomic_dir(target) as tmp:
            tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
            tok.save_pretrained(str(tmp))
            (tmp / DONE_MARKER).write_text(str(gguf_path), encoding="utf-8")
    return target


def _convert(gguf_path: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer  # deferred: heavy: transformers, training only

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    _drop_quantizer(model)
    # bf16 is the dtype the Qwen2.5 release ships in; the GGUF's own rounding error dwarfs
    # bf16's, and the copy is half the size of float32.
    import torch

    model.to(torch.bfloat16)
    model.config.torch_dtype = torch.bfloat16
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def _drop_quantizer(model: Any) -> None:
    """Forget the GGUF 'quantizer': the weights are already plain tensors.

    Without this ``save_pretrained`` writes a ``quantization_config`` that makes every later
    load try to dequantise again (and fail, the file being safetensors).
    """
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    for attr in ("is_quantized", "quantization_method"):
        if getattr(model, attr, None):
            with contextlib.suppress(AttributeError):
                setattr(model, attr, False if attr == "is_quantized" else None)


def _cache_dir(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else default_cache_dir()


def base_gguf_path(path_or_empty: str | Path | None, cache_dir: str | Path | None = None) -> Path | None:
    """The GGUF file a base model setting refers to (``None`` for a HF folder).

    This is the file a llama.cpp adapter exported for this base must be validated against.
    """
    text = str(path_or_empty or "").strip()
    if not text:
        return packaged_gguf_path(_cache_dir(cache_dir))
    path = Path(text).expanduser()
    return path if path.suffix.lower() == ".gguf" else None
