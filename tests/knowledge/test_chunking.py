"""Chunking invariants: exact offsets, size bounds, heading paths, article boundaries, overlap."""

from __future__ import annotations

import random

import pytest

from knowledge.chunking import build_segments, chunk_document
from knowledge.errors import ValidationError
from knowledge.text_utils import ARTICLE_RE, sentence_spans
from knowledge.types import Block, LoadedDocument


def make_doc(blocks: list[Block], sha: str = "ab" * 32) -> LoadedDocument:
    return LoadedDocument(source="t.txt", blocks=blocks, sha256=sha)


def check_invariants(doc: LoadedDocument, chunks, size: int) -> None:
    text = doc.text
    rows = {b.text for b in doc.blocks if b.kind == "table"}
    for c in chunks:
        assert c.text == text[c.start:c.end]
        assert 0 < len(c.text) <= size or c.text in rows     # a row longer than size stays whole
        assert c.text == c.text.strip()
    assert [c.chunk_id for c in chunks] == [f"{doc.sha256[:12]}-{i:04d}" for i in range(len(chunks))]
    # Every non-whitespace character of the document lies in some chunk.
    covered = [False] * len(text)
    for c in chunks:
        covered[c.start:c.end] = [True] * (c.end - c.start)
    assert all(covered[i] or text[i].isspace() for i in range(len(text)))
    # Chunks move forward.
    assert all(a.start < b.start and a.end < b.end for a, b in zip(chunks, chunks[1:]))


REGULATION = [
    Block("差旅费管理办法", "heading", level=1),
    Block("第一章 总则", "heading", level=2),
    Block("第一条 为规范差旅费管理，制定本办法。", "article"),
    Block("第二条 本办法适用于全体员工。员工出差应当节约。", "article"),
    Block("（一）乘坐火车二等座；", "list"),
    Block("（二）乘坐飞机经济舱。", "list"),
    Block("第二章 报销标准", "heading", level=2),
    Block("第一节 住宿", "heading", level=3),
    Block("第三条 经理住宿费每晚600元，员工每晚400元。", "article", page=2),
    Block("第二节 伙食", "heading", level=3, page=3),
    Block("伙食补助每天100元。", "para", page=3),
]


def test_heading_paths_and_article_boundaries():
    doc = make_doc(REGULATION)
    chunks = chunk_document(doc, size=400, overlap=60)
    check_invariants(doc, chunks, 400)
    assert [(c.heading_path, c.text.split("\n\n")[-1][:3]) for c in chunks] == [
        (["差旅费管理办法", "第一章 总则"], "第一条"),
        (["差旅费管理办法", "第一章 总则"], "（二）"),
        (["差旅费管理办法", "第二章 报销标准", "第一节 住宿"], "第三条"),
        (["差旅费管理办法", "第二章 报销标准", "第二节 伙食"], "伙食补"),
    ]
    # The leading headings stay in the first chunk's text; articles each start their own chunk.
    assert chunks[0].text.startswith("差旅费管理办法\n\n第一章 总则\n\n第一条")
    assert chunks[1].text.startswith("第二条") and "（一）" in chunks[1].text
    for c in chunks:
        assert sum(1 for line in c.text.split("\n\n") if ARTICLE_RE.match(line)) <= 1
    # page = page of the chunk's first block (the third chunk starts at a heading without a page)
    assert [c.page for c in chunks] == [None, None, None, 3]


def test_page_is_page_of_first_block():
    blocks = [Block("第一页。", page=1), Block("第二页" + "内容很长。" * 20, page=2), Block("第三页。", page=3)]
    chunks = chunk_document(make_doc(blocks), size=60, overlap=0)
    assert chunks[0].page == 1 and chunks[-1].page in (2, 3)
    for c in chunks:
        first_block = next(b for b in blocks if c.text.split("\n\n")[0] in b.text)
        assert c.page == first_block.page


def test_paragraphs_kept_whole_when_they_fit():
    paras = [Block(f"第{i}段的内容，说明一些规则。" * 3) for i in range(10)]
    doc = make_doc(paras)
    chunks = chunk_document(doc, size=100, overlap=0)
    check_invariants(doc, chunks, 100)
    whole = {b.text for b in paras}
    for c in chunks:
        assert all(part in whole for part in c.text.split("\n\n"))


def test_long_paragraph_splits_at_sentence_boundaries_with_overlap():
    sentences = [f"第{i}句规定了报销的第{i}项标准。" for i in range(30)]
    doc = make_doc([Block("标准", "heading", level=1), Block("".join(sentences))])
    chunks = chunk_document(doc, size=80, overlap=40)
    check_invariants(doc, chunks, 80)
    sentence_set = set(sentences)
    for c in chunks:
        body = c.text.split("\n\n")[-1]
        assert all(s in sentence_set for s in sentence_spans_text(body))   # no sentence cut
    # Consecutive chunks overlap by whole trailing sentences, never more than `overlap` characters.
    for a, b in zip(chunks, chunks[1:]):
        shared = a.end - b.start
        assert 0 < shared <= 40
        assert doc.text[b.start:a.end] in a.text and a.text.endswith(doc.text[b.start:a.end])
        assert doc.text[b.start:a.end].endswith("。")


def sentence_spans_text(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def test_no_overlap_across_headings_or_articles():
    blocks = [Block("A", "heading", level=1), Block("甲规则。" * 30),
              Block("B", "heading", level=1), Block("乙规则。" * 30),
              Block("第五条 丙规则。" + "丙规则。" * 30, "article"), Block("第六条 丁规则。" * 3, "article")]
    doc = make_doc(blocks)
    chunks = chunk_document(doc, size=50, overlap=20)
    check_invariants(doc, chunks, 50)
    for a, b in zip(chunks, chunks[1:]):
        if a.heading_path != b.heading_path or ARTICLE_RE.match(b.text):
            assert b.start > a.end              # a boundary: nothing shared
    article_starts = [doc.text.index("第五条"), doc.text.index("第六条")]
    assert all(any(c.start == s for c in chunks) for s in article_starts)


def test_sentence_longer_than_size_is_cut_hard():
    doc = make_doc([Block("这是一个非常长的句子，" * 40 + "结束。")])
    chunks = chunk_document(doc, size=50, overlap=10)
    check_invariants(doc, chunks, 50)
    assert len(chunks) > 8
    assert all(c.text.endswith(("，", "。")) for c in chunks)   # cut after commas near the limit


def test_english_text_splits_on_periods():
    doc = make_doc([Block("Staff may claim economy fares. Managers may claim business fares. "
                          "Receipts are required for every claim. Claims older than 90 days are refused. " * 3)])
    chunks = chunk_document(doc, size=120, overlap=45)
    check_invariants(doc, chunks, 120)
    assert all(c.text.endswith(".") for c in chunks)


def test_deterministic_ids_and_fallback_hash():
    doc = make_doc(REGULATION)
    assert chunk_document(doc, 100, 20) == chunk_document(doc, 100, 20)
    no_hash = make_doc(REGULATION, sha="")
    ids = [c.chunk_id for c in chunk_document(no_hash, 100, 20)]
    assert ids == [c.chunk_id for c in chunk_document(no_hash, 100, 20)] and ids[0].endswith("-0000")
    assert len(ids[0].split("-")[0]) == 12


def test_trailing_headings_and_empty_document():
    doc = make_doc([Block("正文。"), Block("附录", "heading", level=1)])
    chunks = chunk_document(doc, 100, 10)
    assert [c.text for c in chunks] == ["正文。", "附录"] and chunks[1].heading_path == ["附录"]
    assert chunk_document(make_doc([]), 100, 10) == []


@pytest.mark.parametrize("size, overlap", [(0, 0), (100, 100), (100, -1), (10, 20)])
def test_invalid_sizes(size, overlap):
    with pytest.raises(ValidationError, match=str(overlap) if overlap >= size else "size"):
        chunk_document(make_doc(REGULATION), size, overlap)


def test_heading_stack_pops_same_and_deeper_levels():
    blocks = [Block("A", "heading", level=1), Block("A1", "heading", level=2), Block("x"),
              Block("A1a", "heading", level=3), Block("y"), Block("A2", "heading", level=2), Block("z"),
              Block("B", "heading", level=1), Block("w")]
    assert [s.heading_path for s in build_segments(blocks)] == [
        ["A", "A1"], ["A", "A1", "A1a"], ["A", "A2"], ["B"]]


def test_random_documents_keep_invariants():
    rng = random.Random(7)
    pieces = ["住宿费每晚600元。", "超过部分自理！", "Economy class only.", "是否报销？", "按月结算；",
              "这是一个没有标点的很长很长的句子片段", " and more words"]
    for _ in range(60):
        blocks = []
        for _ in range(rng.randint(1, 12)):
            roll = rng.random()
            if roll < 0.15:
                blocks.append(Block(f"标题{rng.randint(1, 9)}", "heading", level=rng.randint(1, 3)))
            elif roll < 0.3:
                blocks.append(Block("第十二条 " + "".join(rng.choices(pieces, k=rng.randint(1, 8))), "article"))
            else:
                text = "".join(rng.choices(pieces, k=rng.randint(1, 15))).strip()
                blocks.append(Block(text, rng.choice(["para", "list", "table"]), page=rng.randint(1, 5)))
        doc = make_doc(blocks)
        size = rng.randint(20, 200)
        overlap = rng.randint(0, size - 1)
        chunks = chunk_document(doc, size, overlap)
        check_invariants(doc, chunks, size)
        for a, b in zip(chunks, chunks[1:]):
            assert a.end - b.start <= overlap


MAINTENANCE = [   # logistics 运营标准汇总表.xlsx, sheet 车辆保养周期, as the loader writes it
    "车型: 4.2米厢式货车；一级保养间隔: 每5000公里或3个月；二级保养间隔: 每20000公里或12个月；轮胎换位: 每10000公里；"
    "制动片检查: 每次一级保养检查，厚度低于3毫米更换；一级保养费用上限（元/次）: 600",
    "车型: 6.8米厢式货车；一级保养间隔: 每8000公里或3个月；二级保养间隔: 每30000公里或12个月；轮胎换位: 每15000公里；"
    "制动片检查: 每次一级保养检查，厚度低于3毫米更换；一级保养费用上限（元/次）: 900",
    "车型: 9.6米厢式货车；一级保养间隔: 每10000公里或3个月；二级保养间隔: 每40000公里或12个月；轮胎换位: 每20000公里；"
    "制动片检查: 每次一级保养检查，厚度低于4毫米更换；一级保养费用上限（元/次）: 1300",
    "车型: 13米半挂车；一级保养间隔: 每15000公里或2个月；二级保养间隔: 每60000公里或12个月；轮胎换位: 每20000公里；"
    "制动片检查: 每次一级保养检查，厚度低于4毫米更换；一级保养费用上限（元/次）: 1800",
]
INTRO = "第二十五条　营运车辆按下表定期保养（按里程或时间，以先到者为准）："


def table_doc() -> LoadedDocument:
    return make_doc([Block("第四章　车辆保养", "heading", level=2), Block(INTRO, "article")]
                    + [Block(row, "table") for row in MAINTENANCE]
                    + [Block("注1：保养到期前7天提醒车队长。", "note")])


def test_table_rows_are_never_split_and_overlap_starts_at_a_row():
    doc = table_doc()
    for size, overlap in [(400, 60), (300, 150), (200, 199)]:
        chunks = chunk_document(doc, size=size, overlap=overlap)
        check_invariants(doc, chunks, size)
        assert len(chunks) > 1
        for c in chunks:
            parts = c.text.split("\n\n")
            assert all(p in MAINTENANCE or not p.startswith(("车型", "轮胎", "制动")) for p in parts)
            assert c.text.startswith(("第四章", "车型: ", "注1")), c.text[:20]   # never mid-row


def test_row_longer_than_size_is_one_chunk():
    doc = table_doc()
    chunks = chunk_document(doc, size=100, overlap=30)
    check_invariants(doc, chunks, 100)
    assert [c.text for c in chunks if c.text.startswith("车型")] == MAINTENANCE


def test_record_lines_in_a_paragraph_are_cut_between_lines():
    lines = [row.replace("车型", f"车型{i}") for i, row in enumerate(MAINTENANCE)]
    doc = make_doc([Block("\n".join(lines))])
    chunks = chunk_document(doc, size=300, overlap=120)
    assert all(line in lines for c in chunks for line in c.text.split("\n"))


def test_chunk_continuing_a_table_carries_its_introduction():
    doc = table_doc()
    chunks = chunk_document(doc, size=400, overlap=60)
    assert chunks[0].text.startswith("第四章　车辆保养\n\n" + INTRO)
    assert chunks[0].heading_path == ["第四章　车辆保养"]
    for c in chunks[1:]:
        assert c.heading_path == ["第四章　车辆保养", INTRO]


def test_table_introduction_is_not_added_after_a_heading_or_to_prose():
    doc = make_doc([Block("车辆保养周期", "heading", level=1)] + [Block(row, "table") for row in MAINTENANCE]
                   + [Block("其他说明。" * 30)])
    chunks = chunk_document(doc, size=400, overlap=60)
    assert all(c.heading_path == ["车辆保养周期"] for c in chunks)


def test_loaded_pdf_round_trip(tmp_path):
    """A real multi-page PDF chunks with page numbers of the blocks it starts on."""
    import pymupdf

    from knowledge.loaders import load_document

    pdf = pymupdf.open()
    for n in range(1, 4):
        page = pdf.new_page()
        page.insert_text((72, 72), f"第{n}页：出差人员乘坐火车时，可以\n报销二等座的票价。", fontname="china-s",
                         fontsize=11)
    pdf.save(tmp_path / "p.pdf")
    doc = load_document(tmp_path / "p.pdf")
    chunks = chunk_document(doc, size=30, overlap=0)
    check_invariants(doc, chunks, 30)
    assert [c.page for c in chunks] == [1, 2, 3]
    assert chunks[0].text == "第1页：出差人员乘坐火车时，可以报销二等座的票价。"


def test_docstring_examples():
    import doctest

    import knowledge.chunking

    result = doctest.testmod(knowledge.chunking)
    assert result.failed == 0 and result.attempted > 0
