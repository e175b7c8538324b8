"""Training data: JSONL records → chat messages → token ids with answer-only labels.

Accepted record shapes (one JSON object per line):

- Alpaca: ``{"instruction": ..., "input": ..., "output": ..., "system"?: ...}``
- ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}, ...]}``
- OpenAI messages: ``{"messages": [{"role": "user"|"assistant"|"system", "content": ...}, ...]}``

Tokenisation renders the whole conversation with the tokenizer's own chat template (so
training sees exactly the text inference will see) and labels only the assistant answers
plus the end-of-turn token; every other position gets ``IGNORE_INDEX``. Packing puts
several examples into one row, resetting ``position_ids`` at each example so that
transformers builds a block-diagonal causal mask and examples never attend to each other.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from knowledge.core.errors import ValidationError

IGNORE_INDEX = -100
Messages = list[dict[str, str]]

_ROLE_ALIASES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant", "bot": "assistant",
    "chatgpt": "assistant", "system": "system",
}


# --- records → messages -----------------------------------------------------------------
def record_to_messages(record: dict[str, Any], where: str = "record") -> Messages:
    """Turn one dataset record (Alpaca, ShareGPT or messages form) into chat messages.

    >>> record_to_messages({"instruction": "Expand AM", "input": "AM负责报销", "output": "Account Manager"})
    [{'role': 'user', 'content': 'Expand AM\\n\\nAM负责报销'}, {'role': 'assistant', 'content': 'Account Manager'}]
    >>> record_to_messages({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]})
    [{'role': 'user', 'content': 'hi'}, {'role': 'assistant', 'content': 'yo'}]
    """
    if not isinstance(record, dict):
        raise ValidationError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        msgs = [_message(m, "role", "content", where) for m in _as_list(record["messages"], where)]
    elif "conversations" in record:
        msgs = [_message(m, "from", "value", where) for m in _as_list(record["conversations"], where)]
    elif "instruction" in record and "output" in record:
        msgs = _alpaca(record)
    else:
        raise ValidationError(
            f"{where}: unknown record shape with keys {sorted(record)}; expected instruction/output, "
            "conversations or messages"
        )
    if not any(m["role"] == "assistant" for m in msgs):
        raise ValidationError(f"{where}: no assistant message to learn from")
    return msgs


def _alpaca(record: dict[str, Any]) -> Messages:
    prompt = str(record["instruction"]).strip()
    extra = str(record.get("input") or "").strip()
    if extra:
        prompt = f"{prompt}\n\n{extra}" if prompt else extra
    msgs: Messages = []
    if record.get("system"):
        msgs.append({"role": "system", "content": str(record["system"])})
    msgs.append({"role": "user", "content": prompt})
    msgs.append({"role": "assistant", "content": str(record["output"])})
    return msgs


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ValidationError(f"{where}: expected a non-empty list of messages, got {value!r:.80}")
    return value


def _message(m: Any, role_key: str, text_key: str, where: str) -> dict[str, str]:
    if not isinstance(m, dict) or role_key not in m or text_key not in m:
        raise ValidationError(f"{where}: message {m!r:.80} needs {role_key!r} and {text_key!r}")
    role = _ROLE_ALIASES.get(str(m[role_key]).lower())
    if role is None:
        raise ValidationError(f"{where}: unknown role {m[role_key]!r}; known: {sorted(_ROLE_ALIASES)}")
    return {"role": role, "content": str(m[text_key])}


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for every non-blank line; bad JSON raises with the line."""
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValidationError(f"{path}:{n}: invalid JSON ({exc.msg})") from None


def load_conversations(path: Path) -> list[Messages]:
    """All records of one JSONL file as chat messages."""
    return [record_to_messages(obj, f"{path}:{n}") for n, obj in read_jsonl(path)]


# --- dataset folders ---------------------------------------------------------------------
@dataclass
class DatasetSplit:
    """Conversations for training and evaluation, plus the files they came from."""

    train: list[Messages]
    eval: list[Messages]
    files: list[Path]
    data_hash: str


def dataset_files(dataset: Path) -> tuple[list[Path], list[Path]]:
    """``(train_files, eval_files)`` of a dataset: one JSONL file, or a folder.

    A folder with ``train.jsonl`` uses it (and ``eval.jsonl`` when present); otherwise every
    ``*.jsonl`` in it is training data and the eval split is carved out of it.
    """
    dataset = Path(dataset)
    if dataset.is_file():
        return [dataset], []
    if not dataset.is_dir():
        raise ValidationError(f"dataset {dataset} does not exist")
    if (dataset / "train.jsonl").is_file():
        ev = dataset / "eval.jsonl"
        return [dataset / "train.jsonl"], [ev] if ev.is_file() else []
    files = sorted(dataset.glob("*.jsonl"))
    if not files:
        raise ValidationError(f"dataset folder {dataset} holds no .jsonl file")
    return files, []


def data_hash(files: Iterable[Path]) -> str:
    """sha256 over the names and bytes of the data files (order-independent)."""
    digest = hashlib.sha256()
    for path in sorted(Path(f) for f in files):
        digest.update(path.name.encode("utf-8") + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def load_dataset(dataset: Path, eval_ratio: float = 0.1, seed: int = 0) -> DatasetSplit:
    """Read a dataset and split it. Without an ``eval.jsonl`` a seeded ``eval_ratio`` share
    (at least one conversation when there are two or more) becomes the eval split."""
    train_files, eval_files = dataset_files(dataset)
    train = [m for f in train_files for m in load_conversations(f)]
    if not train:
        raise ValidationError(f"dataset {dataset} has no training records")
    evals = [m for f in eval_files for m in load_conversations(f)]
    if not eval_files and eval_ratio > 0 and len(train) >= 2:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        k = min(len(train) - 1, max(1, round(len(train) * eval_ratio)))
        chosen = set(order[:k])
        evals = [train[i] for i in sorted(chosen)]
        train = [m for i, m in enumerate(train) if i not in chosen]
    files = train_files + eval_files
    return DatasetSplit(train=train, eval=evals, files=files, data_hash=data_hash(files))


# --- tokenisation -------------------------------------------------------------------------
@dataclass
class Example:
    """One training row. ``position_ids`` is set only for packed rows."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int] | None = None
    n_examples: int = field(default=1)

    def __len__(self) -> int:
        return len(self.input_ids)


def render(tokenizer: Any, messages: Messages, add_generation_prompt: bool = False) -> str:
    """The conversation as text, through the tokenizer's chat template."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def answer_spans(tokenizer: Any, messages: Messages) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans to learn: each assistant answer
    through its end-of-turn token (the newline the template puts after it is not learned).

    The spans come from rendering growing prefixes of the conversation, so they are right
    for any template whose rendering of a prefix is a prefix of the full rendering.
    """
    full = render(tokenizer, messages)
    eos = tokenizer.eos_token or ""
    spans = []
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True) if i else ""
        upto = render(tokenizer, messages[: i + 1])
        if not (upto.startswith(before) and full.startswith(upto)):
            raise ValidationError(
                "the tokenizer's chat template does not render conversation prefixes as prefixes "
                f"(assistant turn {i}); cannot place answer labels"
            )
        added = upto[len(before):]
        cut = added.rfind(eos) if eos else -1
        end = len(before) + (cut + len(eos) if cut >= 0 else len(added.rstrip()))
        spans.append((len(before), end))
    return full, spans


def tokenize_conversation(tokenizer: Any, messages: Messages, max_len: int) -> Example | None:
    """Token ids of the rendered conversation and labels that keep only answer tokens.

    Rows longer than ``max_len`` are cut at the right; a row left with no answer token is
    dropped (``None``).
    """
    text, spans = answer_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    labels = [tok if _in_spans(start, spans) else IGNORE_INDEX for tok, (start, _end) in zip(ids, offsets)]
    ids, labels = ids[:max_len], labels[:max_len]
    if all(lab == IGNORE_INDEX for lab in labels[1:]):
        return None
    return Example(input_ids=ids, labels=labels)


def _in_spans(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= pos < end for start, end in spans)


def tokenize_all(tokenizer: Any, conversations: Iterable[Messages], max_len: int) -> tuple[list[Example], int]:
    """Tokenise many conversations; returns ``(examples, dropped_count)``."""
    out, dropped = [], 0
    for msgs in conversations:
        ex = tokenize_conversation(tokenizer, msgs, max_len)
        if ex is None:
            dropped += 1
        else:
            out.append(ex)
    return out, dropped


# --- packing and batching -----------------------------------------------------------------
def pack_examples(examples: list[Example], max_len: int) -> list[Example]:
    """First-fit-decreasing packing of examples into rows of at most ``max_len`` tokens.

    Each packed row restarts ``position_ids`` at 0 for every example, and its first label is
    ignored, so no example learns from or attends to its neighbour.

    >>> rows = pack_examples([Example([1, 2, 3], [-100, 2, 3]), Example([4, 5], [-100, 5]),
    ...                       Example([6, 7, 8], [-100, 7, 8])], max_len=5)
    >>> [(r.input_ids, r.position_ids) for r in rows]
    [([1, 2, 3, 4, 5], [0, 1, 2, 0, 1]), ([6, 7, 8], [0, 1, 2])]
    """
    rows: list[Example] = []
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i]))
    for i in order:
        ex = examples[i]
        if len(ex) > max_len:
            raise ValidationError(f"example of {len(ex)} tokens exceeds max_len={max_len}")
        row = next((r for r in rows if len(r) + len(ex) <= max_len), None)
        if row is None:
            row = Example(input_ids=[], labels=[], position_ids=[], n_examples=0)
            rows.append(row)
        row.input_ids += ex.input_ids
        row.labels += [IGNORE_INDEX] + ex.labels[1:]
        row.position_ids = (row.position_ids or []) + list(range(len(ex)))
        row.n_examples += 1
    # Rows were filled longest-first; put them back in a stable, input-derived order.
    return sorted(rows, key=lambda r: r.input_ids)


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[list[int]]:
    """Indices of each batch of one epoch; the order depends only on ``(seed, epoch)``,
    which is what lets a resumed run skip exactly the batches it already saw.

    >>> batch_indices(5, 2, seed=0, epoch=0, shuffle=False)
    [[0, 1], [2, 3], [4]]
    """
    order = list(range(n))
    if shuffle:
        random.Random(seed * 100_003 + epoch).shuffle(order)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def collate(batch: list[Example], pad_id: int, multiple_of: int = 8) -> dict[str, Any]:
    """Right-pad a batch into tensors.

    Unpacked rows get an ``attention_mask``. Packed rows get ``position_ids`` and no
    attention mask: transformers then derives a block-diagonal causal mask from where the
    positions restart (the padding forms its own block and is never learned). That happens
    only when the forward pass runs without a KV cache (``use_cache=False``), as training does.
    """
    import torch  # deferred: heavy: torch, for training and embedding only

    width = max(len(ex) for ex in batch)
    width = -(-width // multiple_of) * multiple_of if multiple_of > 1 else width
    packed = any(ex.position_ids is not None for ex in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    extra = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ex in enumerate(batch):
        n = len(ex)
        ids[row, :n] = torch.tensor(ex.input_ids)
        labels[row, :n] = torch.tensor(ex.labels)
        if packed:
            pos = ex.position_ids if ex.position_ids is not None else list(range(n))
            extra[row, :n] = torch.tensor(pos)
            extra[row, n:] = torch.arange(width - n)
        else:
            extra[row, :n] = 1
    out: dict[str, Any] = {"input_ids": ids, "labels": labels}
    out["position_ids" if packed else "attention_mask"] = extra
    return out


def count_label_tokens(batch: dict[str, Any]) -> int:
    """Tokens that contribute to the loss (labels are shifted by one inside the model)."""
    return int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
