"""Loaders against real files written at test time with the real libraries."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from knowledge.errors import IngestError, KBError
from knowledge.loaders import (
    SUPPORTED_EXTENSIONS,
    Loader,
    decode_text,
    load_document,
    load_documents,
    read_text_file,
    register_loader,
)
from knowledge.text_utils import join_lines, normalize_width

CN_BROKEN = "第一条 出差人员乘坐火车时，可以\n报销二等座的票价，超过部分由个人\n承担。"
CN_JOINED = "第一条 出差人员乘坐火车时，可以报销二等座的票价，超过部分由个人承担。"


# ---------------------------------------------------------------- builders

def write_pdf(path: Path, pages: list[list[tuple[str, float]]], encrypt: bool = False) -> Path:
    """Each page is a list of (text, font size); CJK text uses the built-in china-s font."""
    import pymupdf

    doc = pymupdf.open()
    for items in pages:
        page = doc.new_page()
        y = 72.0
        for text, size in items:
            font = "china-s" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "helv"
            page.insert_text((72, y), text, fontname=font, fontsize=size)
            y += (text.count("\n") + 1) * size * 1.6 + 24
    kwargs = {}
    if encrypt:
        kwargs = dict(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user", owner_pw="owner")
    doc.save(path, **kwargs)
    return path


def write_scanned_pdf(path: Path) -> Path:
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page()
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 40), False)
    pix.clear_with(180)
    page.insert_image(pymupdf.Rect(50, 50, 400, 400), pixmap=pix)
    doc.save(path)
    return path


def write_docx(path: Path) -> Path:
    import docx
    from docx.enum.style import WD_STYLE_TYPE

    document = docx.Document()
    document.core_properties.title = "差旅费管理办法"
    document.add_heading("差旅费管理办法", level=1)
    document.add_heading("第一章 总则", level=2)
    document.add_paragraph("第一条 为规范差旅费管理，制定本办法。")
    document.add_paragraph("住宿费按标准报销", style="List Bullet")
    document.add_paragraph("伙食补助按天计算", style="List Number")
    cn_heading = document.styles.add_style("标题 2", WD_STYLE_TYPE.PARAGRAPH)
    document.add_paragraph("报销标准", style=cn_heading)
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([("级别", "住宿费", "伙食费"), ("经理", "600", "100"), ("员工", "400", "80")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    merged = document.add_table(rows=1, cols=3)
    merged.cell(0, 0).merge(merged.cell(0, 1)).text = "合并单元格"
    merged.cell(0, 2).text = "右"
    document.add_paragraph("表后正文。")
    document.save(path)
    return path


def write_pptx(path: Path) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "季度报告"
    body = slide.placeholders[1].text_frame
    body.text = "收入增长 20%"
    sub = body.add_paragraph()
    sub.text = "华东区贡献最大"
    sub.level = 1
    slide.notes_slide.notes_text_frame.text = "讲者备注：强调华东区。"
    slide2 = deck.slides.add_slide(deck.slide_layouts[5])
    slide2.shapes.title.text = "明细"
    shape = slide2.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1))
    for (r, c), value in {(0, 0): "区域", (0, 1): "收入", (1, 0): "华东", (1, 1): "300"}.items():
        shape.table.cell(r, c).text = value
    deck.save(path)
    return path


def write_xlsx(path: Path) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "标准"
    ws.append(["2024 年差旅标准"])
    ws.append([])
    ws.append(["级别", "住宿费", "伙食费", "合计"])
    ws.append(["经理", 600, 100.0, "=B4+C4"])
    ws.append(["员工", 400, 80.5, None])
    other = wb.create_sheet("说明")
    other.append(["适用于全体员工。"])
    wb.save(path)
    return path


# ---------------------------------------------------------------- PDF

def test_pdf_joins_chinese_lines_without_spaces(tmp_path):
    doc = load_document(write_pdf(tmp_path / "cn.pdf", [[("差旅费管理办法", 18), (CN_BROKEN, 11)]]))
    assert CN_JOINED in doc.text
    article = next(b for b in doc.blocks if b.text.startswith("第一条"))
    assert article.kind == "article" and article.page == 1
    assert doc.blocks[0].kind == "heading" and doc.blocks[0].text == "差旅费管理办法"
    assert doc.title == "差旅费管理办法"


def test_pdf_joins_english_lines_and_hyphenation(tmp_path):
    pdf = write_pdf(tmp_path / "en.pdf", [[("This is an Eng-\nlish sentence broken\nacross lines.", 11)]])
    assert load_document(pdf).text == "This is an English sentence broken across lines."


def test_pdf_keeps_page_numbers_and_drops_page_furniture(tmp_path):
    pages = [[("第一页正文内容。", 11), ("- 1 -", 9)],
             [("第二页正文内容。", 11), ("- 2 -", 9)],
             [("Third page text.", 11), ("3", 9)]]
    doc = load_document(write_pdf(tmp_path / "multi.pdf", pages))
    assert [(b.text, b.page) for b in doc.blocks] == [
        ("第一页正文内容。", 1), ("第二页正文内容。", 2), ("Third page text.", 3)]


def test_pdf_drops_running_headers_and_splits_heading_from_body(tmp_path):
    import pymupdf

    doc = pymupdf.open()
    font = pymupdf.Font("china-s")
    for n in range(1, 4):
        page = doc.new_page()
        page.insert_text((72, 40), "公司内部文件 注意保密", fontname="china-s", fontsize=9)
        # One TextWriter run puts the heading and its paragraph in a single PyMuPDF block.
        writer = pymupdf.TextWriter(page.rect)
        writer.append((72, 100), f"第{n}部分", font=font, fontsize=16)
        writer.append((72, 116), f"这是第{n}部分的正文，内容", font=font, fontsize=11)
        writer.append((72, 130), "跨越两行。", font=font, fontsize=11)
        writer.write_text(page)
    doc.save(tmp_path / "report.pdf")
    loaded = load_document(tmp_path / "report.pdf")
    assert [(b.kind, b.page, b.text) for b in loaded.blocks][:2] == [
        ("heading", 1, "第1部分"), ("para", 1, "这是第1部分的正文，内容跨越两行。")]
    assert "公司内部文件" not in loaded.text and len(loaded.blocks) == 6


def test_pdf_line_per_block_tables_and_page_breaks(tmp_path):
    """Writers that emit every line and every table cell as its own text object."""
    import pymupdf

    def put(page, x, y, text, size=11):
        page.insert_text((x, y), text, fontname="china-s", fontsize=size)

    doc = pymupdf.open()
    for n in range(1, 4):
        page = doc.new_page()
        put(page, 250, 820, f"内部资料 注意保密 第 {n} 页 / 共 3 页", size=9)
        if n == 1:
            put(page, 72, 100, "第一条 出差人员乘坐火车时，可以")
            put(page, 72, 116, "报销二等座的票价。")
            for row, (a, b, c) in enumerate([("职级", "一类城市", "二类城市"), ("A类", "900", "700"),
                                             ("C类", "480", "360")]):
                put(page, 72, 200 + 18 * row, a)
                put(page, 200, 200 + 18 * row, b)
                put(page, 330, 200 + 18 * row, c)
            put(page, 72, 780, "第二条 这一句话被分页")
        elif n == 2:
            put(page, 72, 100, "截断了。")
        else:
            put(page, 72, 100, "第三条 最后一条。")
    doc.save(tmp_path / "lines.pdf")
    blocks = [(b.kind, b.page, b.text) for b in load_document(tmp_path / "lines.pdf").blocks]
    assert blocks == [
        ("article", 1, "第一条 出差人员乘坐火车时，可以报销二等座的票价。"),
        ("table", 1, "职级: A类；一类城市: 900；二类城市: 700"),
        ("table", 1, "职级: C类；一类城市: 480；二类城市: 360"),
        ("article", 1, "第二条 这一句话被分页截断了。"),
        ("article", 3, "第三条 最后一条。"),
    ]


def test_pdf_page_without_text_is_a_warning(tmp_path):
    doc = load_document(write_pdf(tmp_path / "gap.pdf", [[("有文字。", 11)], [], [("也有文字。", 11)]]))
    assert [b.page for b in doc.blocks] == [1, 3]
    assert len(doc.warnings) == 1 and "2" in doc.warnings[0] and "gap.pdf" in doc.warnings[0]


def test_scanned_pdf_is_refused(tmp_path):
    with pytest.raises(IngestError, match=r"no text layer \(scanned PDF\?\)") as info:
        load_document(write_scanned_pdf(tmp_path / "scan.pdf"))
    assert "scan.pdf" in str(info.value)


def test_encrypted_pdf_is_refused(tmp_path):
    pdf = write_pdf(tmp_path / "secret.pdf", [[("机密内容。", 11)]], encrypt=True)
    with pytest.raises(IngestError, match="encrypted") as info:
        load_document(pdf)
    assert "secret.pdf" in str(info.value)


def test_corrupt_pdf_is_refused(tmp_path):
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 4)
    with pytest.raises(IngestError, match="corrupt") as info:
        load_document(bad)
    assert "broken.pdf" in str(info.value)


def test_pdf_extension_on_text_content_is_refused(tmp_path):
    fake = tmp_path / "fake.pdf"
    fake.write_text("这其实是一个文本文件。", encoding="utf-8")
    with pytest.raises(IngestError, match=r"content does not match the extension \.pdf"):
        load_document(fake)


# ---------------------------------------------------------------- Office

def test_docx_headings_lists_articles_tables(tmp_path):
    doc = load_document(write_docx(tmp_path / "policy.docx"))
    kinds = [(b.kind, b.level, b.text) for b in doc.blocks]
    assert kinds[:3] == [("heading", 1, "差旅费管理办法"), ("heading", 2, "第一章 总则"),
                         ("article", 0, "第一条 为规范差旅费管理，制定本办法。")]
    assert ("list", 0, "住宿费按标准报销") in kinds and ("list", 0, "伙食补助按天计算") in kinds
    assert ("heading", 2, "报销标准") in kinds                      # Chinese style name 标题 2
    assert ("table", 0, "级别: 经理；住宿费: 600；伙食费: 100") in kinds   # header row read as labels
    assert ("table", 0, "合并单元格 | 右") in kinds                  # merged cell counted once; one row: no header
    assert kinds[-1] == ("para", 0, "表后正文。")                    # body order kept around tables
    assert doc.title == "差旅费管理办法"


def test_pptx_slides_titles_notes(tmp_path):
    doc = load_document(write_pptx(tmp_path / "deck.pptx"))
    by_text = {b.text: b for b in doc.blocks}
    assert by_text["季度报告"].kind == "heading" and by_text["季度报告"].page == 1
    assert by_text["收入增长 20%"].page == 1
    assert by_text["华东区贡献最大"].kind == "list"
    assert by_text["讲者备注：强调华东区。"].kind == "note" and by_text["讲者备注：强调华东区。"].page == 1
    assert by_text["明细"].page == 2 and by_text["区域: 华东；收入: 300"].kind == "table"


def test_xlsx_rows_with_header_and_missing_formula_values(tmp_path):
    doc = load_document(write_xlsx(tmp_path / "rates.xlsx"))
    texts = [(b.kind, b.page, b.text) for b in doc.blocks]
    assert ("heading", 1, "标准") in texts
    assert ("heading", 1, "2024 年差旅标准") in texts                 # title row above the header
    assert ("table", 1, "级别: 经理；住宿费: 600；伙食费: 100") in texts  # formula: no cached value
    assert ("table", 1, "级别: 员工；住宿费: 400；伙食费: 80.5") in texts
    assert ("table", 2, "适用于全体员工。") in texts
    assert any("formula" in w and "标准" in w for w in doc.warnings)


def test_xlsx_reads_cached_formula_values(tmp_path):
    """A workbook that was calculated (cached values present) is read as values, no warning."""
    import openpyxl

    path = write_xlsx(tmp_path / "calc.xlsx")
    # Simulate Excel's save: write the cached value into the cell XML next to the formula.
    import zipfile

    src = zipfile.ZipFile(path)
    out_path = tmp_path / "calculated.xlsx"
    with zipfile.ZipFile(out_path, "w") as out:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<f>B4+C4</f><v></v>", b"<f>B4+C4</f><v>700</v>")
                data = data.replace(b"<f>B4+C4</f><v />", b"<f>B4+C4</f><v>700</v>")
            out.writestr(item, data)
    assert openpyxl.load_workbook(out_path, data_only=True)["标准"]["D4"].value == 700
    doc = load_document(out_path)
    assert "级别: 经理；住宿费: 600；伙食费: 100；合计: 700" in doc.text
    assert doc.warnings == []


def test_csv_gbk_with_header(tmp_path):
    path = tmp_path / "rates.csv"
    path.write_bytes("级别,住宿费,城市\n经理,600,北京\n员工,400,上海\n".encode("gbk"))
    doc = load_document(path)
    assert [b.text for b in doc.blocks] == ["级别: 经理；住宿费: 600；城市: 北京",
                                             "级别: 员工；住宿费: 400；城市: 上海"]


# ---------------------------------------------------------------- text formats

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030", "utf-16"])
def test_text_encodings(tmp_path, encoding):
    text = "差旅费管理办法\n\n第一条 出差人员乘坐火车，可以报销二等座。\n"
    if encoding == "gb18030":
        text += "\n吉野家的“𠮷”字不在 GBK 里。\n"     # U+20BB7 exists only in GB18030
    path = tmp_path / f"policy-{encoding}.txt"
    path.write_bytes(text.encode(encoding))
    doc = load_document(path)
    assert doc.text.startswith("差旅费管理办法\n\n第一条 出差人员乘坐火车，可以报销二等座。")
    assert "\ufeff" not in doc.text and doc.warnings == []
    if encoding == "gb18030":
        assert "𠮷" in doc.text


def test_decode_text_order():
    assert decode_text("费用".encode("gbk"))[1] == "gb18030"
    assert decode_text("费用".encode("utf-8"))[1] == "utf-8"
    text, encoding, lossy = decode_text(b"caf\xe9 \xff ok")
    assert lossy and "\ufffd" in text


def test_undecodable_text_warns(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9 au lait \xff\xfe ok.")
    warnings: list[str] = []
    assert "au lait" in read_text_file(path, warnings)
    assert warnings and "latin.txt" in warnings[0]
    assert load_document(path).warnings


def test_txt_structure_and_wrapping(tmp_path):
    path = tmp_path / "rules.txt"
    path.write_text(
        "员工手册\n\n第一章 总则\n第一条 本手册适用于\n全体员工。\n第二条 员工应当遵守\n以下规定：\n"
        "（一）按时上班；\n（二）不得迟到。\n\nThis paragraph is hard\nwrapped in English.\n",
        encoding="utf-8",
    )
    doc = load_document(path)
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("heading", "员工手册"),
        ("heading", "第一章 总则"),
        ("article", "第一条 本手册适用于全体员工。"),
        ("article", "第二条 员工应当遵守以下规定："),
        ("list", "（一）按时上班；"),
        ("list", "（二）不得迟到。"),
        ("para", "This paragraph is hard wrapped in English."),
    ]
    assert doc.blocks[0].level == 1 and doc.blocks[1].level == 2


def test_markdown(tmp_path):
    path = tmp_path / "guide.md"
    path.write_text(
        "---\ntitle: x\n---\n# 报销指南\n\n正文第一行\n第二行，见 **[附件](a.pdf)**。\n\n## 标准\n\n"
        "- 住宿费\n- 交通费\n\n1. 第一步\n\n| 级别 | 金额 |\n|---|---|\n| 经理 | 600 |\n\n"
        "```\ncode line\n```\n\n第三条 本指南自发布之日起施行。\n",
        encoding="utf-8",
    )
    blocks = [(b.kind, b.level, b.text) for b in load_document(path).blocks]
    assert blocks == [
        ("heading", 1, "报销指南"),
        ("para", 0, "正文第一行第二行，见 附件。"),
        ("heading", 2, "标准"),
        ("list", 0, "住宿费"), ("list", 0, "交通费"), ("list", 0, "第一步"),
        ("table", 0, "级别: 经理；金额: 600"),
        ("para", 0, "code line"),
        ("article", 0, "第三条 本指南自发布之日起施行。"),
    ]


def test_html(tmp_path):
    path = tmp_path / "page.html"
    html = (
        "<html><head><meta charset='gbk'><title>差旅 说明</title><style>p{color:red}</style></head>"
        "<body><nav>导航</nav><h1>差旅费</h1><script>var x = 1;</script>"
        "<p>出差人员\n<b>住宿费</b>按标准<br>报销。</p><div>散落的文字<p>内部段落</p></div>"
        "<ul><li>火车二等座<ul><li>高铁</li></ul></li><li>飞机经济舱</li></ul>"
        "<table><tr><th>级别</th><th>金额</th></tr><tr><td>经理</td><td>600</td></tr></table>"
        "<h2>English part</h2><p>Rates are <em>per</em>\n day.</p><footer>版权所有</footer></body></html>"
    )
    path.write_bytes(html.encode("gbk"))
    doc = load_document(path)
    blocks = [(b.kind, b.text) for b in doc.blocks]
    assert blocks == [
        ("heading", "差旅费"),
        ("para", "出差人员住宿费按标准报销。"),
        ("para", "散落的文字"), ("para", "内部段落"),
        ("list", "火车二等座"), ("list", "高铁"), ("list", "飞机经济舱"),
        ("table", "级别: 经理；金额: 600"),
        ("heading", "English part"), ("para", "Rates are per day."),
    ]
    assert doc.title == "差旅说明"        # whitespace between Chinese characters is dropped
    for junk in ("var x", "color", "导航", "版权"):
        assert junk not in doc.text


# ---------------------------------------------------------------- tables in every format

APPROVAL_HEADER = ["单笔采购金额", "合同形式", "询价要求"]
APPROVAL_ROWS = [["不足3000元", "无需协议", ""],
                 ["3000元（含）至50000元", "采购协议", "两家询价"],
                 ["50000元（含）至300000元", "正式合同（法务审核）", "三家比价"]]
APPROVAL_RECORDS = ["单笔采购金额: 不足3000元；合同形式: 无需协议",          # the empty cell is left out
                    "单笔采购金额: 3000元（含）至50000元；合同形式: 采购协议；询价要求: 两家询价",
                    "单笔采购金额: 50000元（含）至300000元；合同形式: 正式合同（法务审核）；询价要求: 三家比价"]
TRIP_HEADER = ["Trip", "Approver", "Request at least"]
TRIP_ROWS = [["Domestic, up to USD 3,000", "Manager", "7 days before departure"],
             ["International, any cost", "Vice President", "21 days before departure"]]
TRIP_RECORDS = ["Trip: Domestic, up to USD 3,000; Approver: Manager; Request at least: 7 days before departure",
                "Trip: International, any cost; Approver: Vice President; Request at least: 21 days before departure"]
TABLE_FORMATS = ["docx", "html", "md", "pptx", "xlsx", "csv", "pdf"]


def write_table(path: Path, rows: list[list[str]]) -> Path:
    """A document holding one table whose first row is its header, written the way each format's
    usual tools write one (Word: bold header row, HTML: <th>, Markdown: the |---| line)."""
    fmt = path.suffix[1:]
    if fmt == "docx":
        import docx

        document = docx.Document()
        document.add_paragraph("采购审批矩阵如下表所示：")
        table = document.add_table(rows=0, cols=len(rows[0]))
        for r, values in enumerate(rows):
            cells = table.add_row().cells
            for c, value in enumerate(values):
                cells[c].text = value
                for run in cells[c].paragraphs[0].runs:
                    run.bold = r == 0
        document.save(path)
    elif fmt == "html":
        head = "".join(f"<th>{c}</th>" for c in rows[0])
        body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[1:])
        path.write_text(f"<html><body><p>如下表：</p><table><thead><tr>{head}</tr></thead>"
                        f"<tbody>{body}</tbody></table></body></html>", encoding="utf-8")
    elif fmt == "md":
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + "---|" * len(rows[0]))
        path.write_text("# 标准\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    elif fmt == "pptx":
        from pptx import Presentation
        from pptx.util import Inches

        deck = Presentation()
        slide = deck.slides.add_slide(deck.slide_layouts[5])
        slide.shapes.title.text = "标准"
        shape = slide.shapes.add_table(len(rows), len(rows[0]), Inches(0.5), Inches(2), Inches(9), Inches(2))
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                shape.table.cell(r, c).text = value
        deck.save(path)
    elif fmt == "xlsx":
        import openpyxl

        wb = openpyxl.Workbook()
        for values in rows:
            wb.active.append([v or None for v in values])
        wb.save(path)
    elif fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        path.write_text(buf.getvalue(), encoding="utf-8")
    elif fmt == "pdf":
        import pymupdf

        doc = pymupdf.open()
        page = doc.new_page()
        for r, values in enumerate(rows):
            for c, value in enumerate(values):
                if value:
                    font = "china-s" if any("\u4e00" <= ch <= "\u9fff" for ch in value) else "helv"
                    page.insert_text((60 + 190 * c, 100 + 20 * r), value, fontname=font, fontsize=9)
        doc.save(path)
    return path


def table_texts(path: Path) -> list[str]:
    return [b.text for b in load_document(path).blocks if b.kind == "table"]


@pytest.mark.parametrize("fmt", TABLE_FORMATS)
def test_table_rows_are_header_records_in_every_format(tmp_path, fmt):
    """The demo's 采购管理制度.docx approval matrix: every loader writes a row with its header."""
    assert table_texts(write_table(tmp_path / f"matrix.{fmt}", [APPROVAL_HEADER] + APPROVAL_ROWS)) \
        == APPROVAL_RECORDS


@pytest.mark.parametrize("fmt", TABLE_FORMATS)
def test_english_table_records_use_an_ascii_separator(tmp_path, fmt):
    assert table_texts(write_table(tmp_path / f"trips.{fmt}", [TRIP_HEADER] + TRIP_ROWS)) == TRIP_RECORDS


@pytest.mark.parametrize("fmt", ["docx", "html", "md", "xlsx", "csv"])
def test_table_without_a_header_keeps_positional_cells(tmp_path, fmt):
    one_row = write_table(tmp_path / f"one.{fmt}", [["事项", "联系谁", "方式"]])
    assert table_texts(one_row) == ["事项 | 联系谁 | 方式"]
    data_first = write_table(tmp_path / f"data.{fmt}", [["经理", "600", "100"], ["员工", "400", "80"]])
    assert table_texts(data_first) == ["经理 | 600 | 100", "员工 | 400 | 80"]


NOTE_ROWS = [["营运车辆定期保养标准"], [],
             ["车型", "一级保养间隔", "轮胎换位"],
             ["4.2米厢式货车", "每5000公里", "每10000公里"],
             ["6.8米厢式货车", "每8000公里", "每15000公里"],
             [],
             ["注1：保养到期前7天TMS提醒车队长。", "", ""],
             ["超过保养期限15天未保养的，TMS自动锁车", "", ""],
             ["", "说明：费用上限按车型执行", ""],
             ["Note: costs exclude tax", "", ""]]


@pytest.mark.parametrize("fmt", ["xlsx", "csv"])
def test_sheet_note_rows_are_notes_not_records(tmp_path, fmt):
    doc = load_document(write_table(tmp_path / f"maintenance.{fmt}", NOTE_ROWS))
    blocks = [(b.kind, b.text) for b in doc.blocks if b.kind in ("table", "note")]
    assert blocks == [
        ("table", "车型: 4.2米厢式货车；一级保养间隔: 每5000公里；轮胎换位: 每10000公里"),
        ("table", "车型: 6.8米厢式货车；一级保养间隔: 每8000公里；轮胎换位: 每15000公里"),
        ("note", "注1：保养到期前7天TMS提醒车队长。"),
        ("note", "超过保养期限15天未保养的，TMS自动锁车"),     # under the notes: a note too
        ("note", "说明：费用上限按车型执行"),
        ("note", "Note: costs exclude tax"),
    ]


def test_single_cell_rows_inside_a_table_stay_records(tmp_path):
    """A row with one value and no sign of a note is still a row of the table."""
    rows = [["车型", "轮胎换位"], ["4.2米厢式货车", "每10000公里"], ["6.8米厢式货车", ""]]
    assert table_texts(write_table(tmp_path / "partial.xlsx", rows))[-1] == "车型: 6.8米厢式货车"


def test_html_keeps_the_ideographic_space(tmp_path):
    path = tmp_path / "rules.html"
    path.write_text("<html><body><p class='meta'>版本：第2版\u3000生效日期：2025年2月1日</p>"
                    "<p>第一条\u3000为规范\n差旅管理，制定本办法。</p>"
                    "<p>第二条&nbsp;&nbsp;本办法适用于全体员工。</p></body></html>", encoding="utf-8")
    assert [(b.kind, b.text) for b in load_document(path).blocks] == [
        ("para", "版本：第2版\u3000生效日期：2025年2月1日"),
        ("article", "第一条\u3000为规范差旅管理，制定本办法。"),   # the source line break still joins
        ("article", "第二条 本办法适用于全体员工。"),             # &nbsp; between Chinese: one space
    ]


def test_pdf_keeps_separate_centred_lines_apart(tmp_path):
    """Two centred document-info lines, each its own text block, are not one glued paragraph."""
    import pymupdf

    doc = pymupdf.open()
    page = doc.new_page()

    def put(x, y, text, size):
        page.insert_text((x, y), text, fontname="china-s", fontsize=size)

    put(198, 80, "职工考勤与请假管理办法", 18)                                  # centred lines
    put(150, 110, "文件编号：RS-2025　　版本：第2版　　生效日期：2025年1月1日", 9)
    put(172, 124, "制定部门：人事处　　审核：院务委员会　　批准：院长办公会", 9)
    body = "第一条　为加强职工考勤管理，维护正常的工作秩序，保障职工依法享有休息休假和获得劳动报酬的权利，根"
    put(60, 160, body, 10.5)                                                     # a full-width line
    put(60, 176, "据国家有关规定，制定本办法。", 10.5)
    put(60, 200, "第二条　本办法适用于本院在编职工、合同制职工及劳务派遣人员，进修和规培人员参照执行。", 10.5)
    doc.save(tmp_path / "info.pdf")
    assert [b.text for b in load_document(tmp_path / "info.pdf").blocks] == [
        "职工考勤与请假管理办法",
        "文件编号：RS-2025　　版本：第2版　　生效日期：2025年1月1日",
        "制定部门：人事处　　审核：院务委员会　　批准：院长办公会",
        body + "据国家有关规定，制定本办法。",                      # a wrapped line still joins
        "第二条　本办法适用于本院在编职工、合同制职工及劳务派遣人员，进修和规培人员参照执行。",
    ]


# ---------------------------------------------------------------- errors and batches

def test_empty_file(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(IngestError, match="empty file") as info:
        load_document(tmp_path / "empty.txt")
    assert "empty.txt" in str(info.value)


def test_whitespace_only_file(tmp_path):
    (tmp_path / "blank.md").write_text("\n   \n\n", encoding="utf-8")
    with pytest.raises(IngestError, match="no text"):
        load_document(tmp_path / "blank.md")


def test_oversized_file(tmp_path):
    (tmp_path / "big.txt").write_text("很长的文件。" * 100, encoding="utf-8")
    with pytest.raises(IngestError, match="too large") as info:
        load_document(tmp_path / "big.txt", max_bytes=100)
    assert "big.txt" in str(info.value)


def test_default_size_limit_comes_from_settings(tmp_path, monkeypatch):
    from config.settings import reset_settings

    monkeypatch.setenv("KB_INGEST__MAX_FILE_MB", "0.0001")   # about 100 bytes
    reset_settings()
    try:
        (tmp_path / "big.txt").write_text("很长的文件。" * 100, encoding="utf-8")
        with pytest.raises(IngestError, match="too large"):
            load_document(tmp_path / "big.txt")
    finally:
        monkeypatch.delenv("KB_INGEST__MAX_FILE_MB")
        reset_settings()


def test_unsupported_extension(tmp_path):
    (tmp_path / "data.xyz").write_text("something", encoding="utf-8")
    with pytest.raises(IngestError, match=r"unsupported file type '\.xyz'"):
        load_document(tmp_path / "data.xyz")
    (tmp_path / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100)
    with pytest.raises(IngestError, match="save it as .docx"):
        load_document(tmp_path / "old.doc")


@pytest.mark.parametrize("name", ["broken.docx", "broken.xlsx", "broken.pptx"])
def test_corrupt_office_files(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    with pytest.raises(IngestError, match="corrupt") as info:
        load_document(path)
    assert name in str(info.value)


def test_office_content_mismatch(tmp_path):
    xlsx = write_xlsx(tmp_path / "rates.xlsx")
    renamed = tmp_path / "rates.docx"
    renamed.write_bytes(xlsx.read_bytes())
    with pytest.raises(IngestError, match=r"does not match the extension \.docx \(looks like an Excel"):
        load_document(renamed)


def test_missing_file(tmp_path):
    with pytest.raises(IngestError, match="not found"):
        load_document(tmp_path / "nope.pdf")


def test_batch_never_stops_and_names_files(tmp_path, capsys):
    root = tmp_path / "docs"
    (root / "hr").mkdir(parents=True)
    good_pdf = write_pdf(root / "hr" / "travel.pdf", [[(CN_BROKEN, 11)]])
    (root / "notes.md").write_text("# 标题\n\n正文。", encoding="utf-8")
    (root / "empty.txt").write_bytes(b"")
    (root / "bad.docx").write_bytes(b"PK\x03\x04garbage")
    (root / "image.xyz").write_bytes(b"\x89PNG\r\n")
    write_scanned_pdf(root / "scan.pdf")
    paths = sorted(p for p in root.rglob("*") if p.is_file())
    docs, errors = load_documents(paths, root=root, max_bytes=10_000_000, progress=True)
    assert sorted(d.source for d in docs) == ["hr/travel.pdf", "notes.md"]
    assert sorted(Path(e.path).name for e in errors) == ["bad.docx", "empty.txt", "image.xyz", "scan.pdf"]
    travel = next(d for d in docs if d.source == "hr/travel.pdf")
    assert travel.sha256 == hashlib.sha256(good_pdf.read_bytes()).hexdigest()
    assert "loading documents" in capsys.readouterr().err   # the tqdm bar


def test_source_without_root_is_file_name(tmp_path):
    (tmp_path / "a.txt").write_text("内容。", encoding="utf-8")
    assert load_document(tmp_path / "a.txt").source == "a.txt"


def test_registry_rejects_duplicates_and_accepts_new_formats(tmp_path):
    class Dummy(Loader):
        def load(self, path):
            from knowledge.types import Block
            return [Block(path.read_text(encoding="utf-8").upper())]

    with pytest.raises(KBError, match="already registered"):
        register_loader((".pdf",), Dummy)
    from knowledge.loaders import unregister_loader

    register_loader((".shout",), Dummy)
    try:
        (tmp_path / "x.shout").write_text("hello", encoding="utf-8")
        assert load_document(tmp_path / "x.shout").text == "HELLO"
        assert ".shout" in SUPPORTED_EXTENSIONS
    finally:
        unregister_loader(".shout")
    assert ".shout" not in SUPPORTED_EXTENSIONS


def test_pure_helpers():
    assert join_lines(CN_BROKEN.split("\n")) == CN_JOINED
    assert normalize_width("ＰＭ（产品）") == "PM(产品)"


@pytest.mark.parametrize("module", [
    "knowledge.text_utils", "knowledge.loaders", "knowledge.loaders.base", "knowledge.loaders.pdf",
    "knowledge.loaders.docx", "knowledge.loaders.sheet", "knowledge.loaders.text",
    "knowledge.loaders.tables", "knowledge.loaders.html",
])
def test_docstring_examples(module):
    """The worked examples in the helpers' docstrings are true."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
