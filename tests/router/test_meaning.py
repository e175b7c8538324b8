"""The evidence reader reads meaning (router/meaning.py): sentence vectors rank the units, an
everyday word is read as the documents' term, a question in another language finds its rows, and
the vectors of unchanged text are reused by the next index version."""

from __future__ import annotations

import json
import shutil

import pytest

from router.engine import Engine
from router.llm.extractive import ExtractiveGenerator
from router.meaning import UNIT_KEYS, Meaning, MeaningReader, build_meaning, meaning_of


@pytest.fixture(scope="module")
def wordy_engine(demo_settings, demo_index):
    """The same demo index read by words only (no meaning reader)."""
    settings = demo_settings.model_copy(deep=True)
    settings.router.meaning.enabled = False
    return Engine(settings, demo_index, generator=ExtractiveGenerator())


def test_the_index_carries_unit_and_vocabulary_vectors_with_a_fitted_scale(demo_index):
    meaning = meaning_of(demo_index)
    assert meaning is not None
    assert len(meaning.unit_keys) == len(meaning.unit_vectors) > 100
    assert len(meaning.vocab) == len(meaning.vocab_vectors) > 100
    fitted = demo_index.manifest["meaning"]
    assert fitted["source"] == "index" and fitted["probes"] >= 5 and 0.005 < fitted["scale"] < 0.5


def test_an_everyday_word_is_read_as_the_documents_term(extractive_engine, wordy_engine):
    # The documents say 年休假; the question says 年假.
    _, signals = extractive_engine.decide("年假有几天？")
    assert signals.evidence.equivalents == {"年假": "年休假"}
    answer = extractive_engine.answer("年假有几天？")
    assert answer.route != "refuse" and "年休假" in answer.answer
    # Read by shared words alone, the same question finds nothing to quote.
    assert wordy_engine.answer("年假有几天？").route == "refuse"


def test_a_missing_sibling_is_never_taken_for_a_synonym(hospital_engine):
    """A near topic (a kind of leave the documents do not cover) stays absent: the sibling test
    runs before any meaning equivalent is looked for."""
    _, signals = hospital_engine.decide("探亲假有几天？")
    assert "探亲假" not in signals.evidence.equivalents


def test_meaning_ranks_the_sentence_that_answers_first(extractive_engine):
    _, signals = extractive_engine.decide("年假有几天？")
    best = signals.evidence.units[0]
    assert "年休假" in best.text and best.meaning is not None and best.meaning > 0.5


def test_a_question_in_english_finds_the_chinese_table_rows(extractive_engine, wordy_engine):
    q = "What is the hotel limit per night in tier-1 cities?"
    answer = extractive_engine.answer(q)
    assert answer.route in ("rag", "fact"), answer.reason
    assert "一类城市" in answer.answer
    _, signals = wordy_engine.decide(q)
    assert signals.evidence.best_coverage == 0.0  # no shared word: only meaning finds the rows


def test_unchanged_units_reuse_the_previous_versions_vectors(demo_index, demo_settings, tmp_path):
    copy = tmp_path / "version"
    shutil.copytree(demo_index.path, copy)
    for name in ("unit_vectors.npy", UNIT_KEYS):
        (copy / name).unlink()

    class _Embedder:
        """Counts what is embedded (it must be nothing: every unit is unchanged)."""

        dim = demo_index.embedder.dim
        texts: list[str] = []

        def embed(self, texts, kind, progress=False):
            self.texts.extend(texts)
            return demo_index.embedder.embed(texts, kind)

    class _View:
        path, chunks, bm25, embedder = copy, demo_index.chunks, demo_index.bm25, _Embedder()

    counts = build_meaning(_View(), demo_settings, previous=demo_index.path)
    assert counts["reused_units"] == counts["units"] and _View.embedder.texts == []
    rebuilt = Meaning.load(copy)
    assert rebuilt is not None and json.loads((copy / UNIT_KEYS).read_text()) == list(rebuilt.unit_keys)


def test_no_reader_without_vectors_or_when_switched_off(demo_settings, demo_index, tmp_path):
    settings = demo_settings.model_copy(deep=True)
    settings.router.meaning.enabled = False
    assert MeaningReader.for_index(demo_index, settings) is None
    assert Meaning.load(tmp_path) is None
