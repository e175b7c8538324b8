// Every string the console shows, in Chinese and English: one dictionary, no build step.
export const STRINGS = {
  zh: {
    "app.title": "知识助手",
    "tab.chat": "问答", "tab.admin": "管理",
    "lang.switch": "EN", "lang.switchTitle": "Switch to English",
    "health.index": "索引 {v}", "health.docs": "文档 {n}", "health.chunks": "片段 {n}", "health.terms": "术语 {n}",
    "health.none": "尚未加载知识库：请在管理页上传文档并重建索引",
    "health.down": "无法连接服务器",
    "chat.placeholder": "请输入问题，例如：AM出差住宿标准是多少？（Enter 发送，Shift+Enter 换行）",
    "chat.send": "发送", "chat.new": "新对话", "chat.empty": "可以问制度、费用标准、缩略语……答案会注明出处，数字都经过核验。",
    "chat.thinking": "正在检索……", "chat.copy": "复制", "chat.copied": "已复制",
    "chat.error": "出错了：{msg}", "chat.networkError": "无法连接服务器（{msg}）",
    "chat.partial": "回答中断：{msg}",
    "chat.keyNeeded": "此服务器的问答接口需要 API 密钥。", "chat.keyLabel": "问答 API 密钥", "chat.keySave": "使用此密钥",
    "chat.standalone": "理解为", "chat.terms": "术语", "chat.alternatives": "其他含义", "chat.undecided": "含义未定",
    "chat.citations": "出处", "chat.page": "第{n}页", "chat.details": "细节", "chat.rewritten": "检索用问题",
    "chat.reason": "路由依据", "chat.timings": "耗时", "chat.confidence": "置信度 {p}",
    "route.glossary": "术语表", "route.fact": "事实", "route.rag": "检索生成", "route.refuse": "拒答",
    "verify.verified": "数字已核验", "verify.corrected": "已更正：未经证实的内容已扣留",
    "verify.flagged": "有数字未经核验", "verify.not_applicable": "无需核验的数字",
    "verify.supported": "有依据", "verify.withheld": "无依据，已扣留", "verify.evidence": "依据：{src}",
    "verify.derived": "由依据推算：{d}", "verify.noEvidence": "在资料中找不到该数字",
    "passage.title": "原文", "passage.loading": "正在读取原文……", "passage.close": "关闭",
    "passage.missing": "无法读取原文：{msg}", "passage.glossary": "术语表条目",

    "admin.key": "管理密钥", "admin.keyHint": "密钥只保存在本标签页的会话中，关闭标签页即清除。",
    "admin.login": "进入管理", "admin.logout": "退出", "admin.wrongKey": "管理密钥错误，已拒绝。",
    "admin.disabled": "服务器未启用管理接口（请设置 KB_ADMIN_API_KEY）。", "admin.signedIn": "已进入管理",
    "admin.sessionEnded": "管理会话已失效，请重新输入密钥。",
    "admin.nav.docs": "文档与任务", "admin.nav.versions": "版本", "admin.nav.glossary": "术语表", "admin.nav.eval": "评测",
    "upload.title": "上传", "upload.hint": "把文件拖到这里，或", "upload.choose": "选择文件",
    "upload.asDocs": "文档", "upload.asGlossary": "术语表（缩略语表）",
    "upload.types": "支持 PDF、DOCX、PPTX、XLSX、CSV、Markdown、TXT、HTML；术语表支持 XLSX、CSV、TSV、TXT、JSON。",
    "upload.sending": "上传中……", "upload.stored": "已保存", "upload.unchanged": "已跳过：内容与已保存的相同",
    "upload.glossary": "已导入术语表（{n} 条）", "upload.refused": "已拒绝：{msg}",
    "upload.publishHint": "上传的文件在重建索引后生效。", "upload.reindexNow": "立即重建索引",
    "jobs.title": "任务", "jobs.reindex": "重建索引（增量）", "jobs.full": "全量重建", "jobs.retrain": "重新训练路由模型",
    "jobs.none": "暂无任务", "jobs.live": "当前任务", "jobs.recent": "最近的任务", "jobs.cancel": "取消",
    "jobs.kind.reindex": "重建索引", "jobs.kind.retrain": "重新训练",
    "state.queued": "排队中", "state.running": "运行中", "state.succeeded": "已完成", "state.failed": "失败", "state.cancelled": "已取消",
    "jobs.col.kind": "类型", "jobs.col.state": "状态", "jobs.col.progress": "进度", "jobs.col.started": "开始",
    "jobs.col.result": "结果", "jobs.published": "已发布 {v}",
    "docs.title": "文档", "docs.none": "还没有文档", "docs.col.name": "文件", "docs.col.state": "状态",
    "docs.col.size": "大小", "docs.col.since": "版本", "docs.col.chunks": "片段", "docs.col.facts": "事实",
    "docs.col.notes": "提示", "docs.delete": "删除", "docs.confirm": "确认删除",
    "docs.deleted": "已删除 {name}，重建索引后生效。",
    "docs.state.indexed": "已索引", "docs.state.new": "待索引", "docs.state.changed": "已修改，待索引",
    "docs.state.duplicate": "重复", "docs.state.failed": "无法读取", "docs.state.removed": "已删除，待索引",
    "docs.duplicateOf": "与 {name} 内容相同",
    "idx.title": "索引版本", "idx.rollback": "回滚到上一版本", "idx.publish": "发布", "idx.current": "当前",
    "idx.col.version": "版本", "idx.col.created": "构建时间", "idx.col.docs": "文档", "idx.col.chunks": "片段",
    "idx.col.facts": "事实", "idx.col.terms": "术语", "idx.col.build": "构建", "idx.col.errors": "错误",
    "idx.full": "全量", "idx.incremental": "增量", "idx.published": "已发布并切换到 {v}",
    "ad.title": "路由模型（LoRA 适配器）版本", "ad.none": "还没有适配器：运行 kb train 或“重新训练”任务。",
    "ad.rollback": "回滚到上一版本", "ad.col.status": "状态", "ad.col.metrics": "指标", "ad.serving": "服务中的路由：{r}",
    "ad.status.published": "已发布", "ad.status.rejected": "未通过评测",
    "gl.title": "术语表", "gl.filter": "筛选术语或含义", "gl.add": "添加术语", "gl.term": "缩略语",
    "gl.english": "英文全称", "gl.chinese": "中文解释", "gl.addMeaning": "添加含义", "gl.deleteTerm": "删除术语",
    "gl.deleteMeaning": "删除此含义", "gl.save": "保存为新版本", "gl.discard": "放弃修改",
    "gl.changes": "{n} 处未保存的修改", "gl.noChanges": "没有未保存的修改",
    "gl.saved": "已保存术语表版本 {v}（{n} 个术语）。重建索引后生效。",
    "gl.published": "当前服务的索引使用的就是这份术语表。", "gl.unpublished": "这份术语表尚未发布：重建索引后生效。",
    "gl.conflict": "术语表已被他人修改，请重新加载后再编辑。", "gl.reload": "重新加载",
    "gl.showing": "显示 {shown} / {total} 个术语", "gl.needTerm": "请填写缩略语和至少一个含义。",
    "gl.exists": "术语 {t} 已存在，已为它添加含义。", "gl.files": "来源文件：{f}", "gl.versions": "已保存的版本：{n}",
    "gl.emptyMeaning": "术语 {t} 没有含义：请填写或删除它。",
    "ev.title": "最近一次评测（kb eval）", "ev.none": "还没有评测报告：在服务器上运行 kb eval 问题文件.jsonl。",
    "ev.open": "打开完整报告", "ev.metric": "指标", "ev.ours": "本系统", "ev.baseline": "基线",
    "ev.written": "生成时间 {t}", "ev.config": "配置",
    "common.loading": "加载中……", "common.error": "出错了：{msg}", "common.yes": "是", "common.no": "否",
    "common.refresh": "刷新", "banner.jsError": "页面脚本出错：{msg}",
  },
  en: {
    "app.title": "Knowledge assistant",
    "tab.chat": "Ask", "tab.admin": "Admin",
    "lang.switch": "中文", "lang.switchTitle": "切换到中文",
    "health.index": "index {v}", "health.docs": "{n} docs", "health.chunks": "{n} chunks", "health.terms": "{n} terms",
    "health.none": "No knowledge base loaded: upload documents and reindex in Admin",
    "health.down": "Server unreachable",
    "chat.placeholder": "Ask a question, e.g. AM出差住宿标准是多少？ (Enter sends, Shift+Enter for a new line)",
    "chat.send": "Send", "chat.new": "New conversation",
    "chat.empty": "Ask about policies, expense limits, abbreviations… Answers cite their sources and every number is verified.",
    "chat.thinking": "Searching…", "chat.copy": "Copy", "chat.copied": "Copied",
    "chat.error": "Error: {msg}", "chat.networkError": "Cannot reach the server ({msg})",
    "chat.partial": "The answer was cut off: {msg}",
    "chat.keyNeeded": "This server's chat API needs an API key.", "chat.keyLabel": "Chat API key", "chat.keySave": "Use this key",
    "chat.standalone": "Understood as", "chat.terms": "Terms", "chat.alternatives": "other meanings", "chat.undecided": "meaning uncertain",
    "chat.citations": "Sources", "chat.page": "p. {n}", "chat.details": "Details", "chat.rewritten": "Search query",
    "chat.reason": "Route reason", "chat.timings": "Timings", "chat.confidence": "confidence {p}",
    "route.glossary": "glossary", "route.fact": "fact", "route.rag": "retrieval + generation", "route.refuse": "refused",
    "verify.verified": "Numbers verified", "verify.corrected": "Corrected: unsupported content was withheld",
    "verify.flagged": "Some numbers are unverified", "verify.not_applicable": "No numbers to verify",
    "verify.supported": "supported", "verify.withheld": "no evidence, withheld", "verify.evidence": "Evidence: {src}",
    "verify.derived": "derived from the evidence: {d}", "verify.noEvidence": "This number is not in the sources",
    "passage.title": "Passage", "passage.loading": "Loading the passage…", "passage.close": "Close",
    "passage.missing": "Cannot load the passage: {msg}", "passage.glossary": "Glossary entry",

    "admin.key": "Admin key", "admin.keyHint": "The key is kept for this tab's session only and cleared when the tab closes.",
    "admin.login": "Sign in", "admin.logout": "Sign out", "admin.wrongKey": "Wrong admin key: refused.",
    "admin.disabled": "The admin API is disabled on this server (set KB_ADMIN_API_KEY).", "admin.signedIn": "Signed in as administrator",
    "admin.sessionEnded": "The admin session has ended; enter the key again.",
    "admin.nav.docs": "Documents & jobs", "admin.nav.versions": "Versions", "admin.nav.glossary": "Glossary", "admin.nav.eval": "Evaluation",
    "upload.title": "Upload", "upload.hint": "Drop files here, or", "upload.choose": "choose files",
    "upload.asDocs": "Documents", "upload.asGlossary": "Glossary (abbreviation list)",
    "upload.types": "PDF, DOCX, PPTX, XLSX, CSV, Markdown, TXT, HTML; glossaries as XLSX, CSV, TSV, TXT or JSON.",
    "upload.sending": "Uploading…", "upload.stored": "stored", "upload.unchanged": "skipped: same content already stored",
    "upload.glossary": "imported as glossary ({n} entries)", "upload.refused": "refused: {msg}",
    "upload.publishHint": "Uploaded files take effect after a reindex.", "upload.reindexNow": "Reindex now",
    "jobs.title": "Jobs", "jobs.reindex": "Reindex (incremental)", "jobs.full": "Full reindex", "jobs.retrain": "Retrain the router",
    "jobs.none": "No jobs yet", "jobs.live": "Current job", "jobs.recent": "Recent jobs", "jobs.cancel": "Cancel",
    "jobs.kind.reindex": "reindex", "jobs.kind.retrain": "retrain",
    "state.queued": "queued", "state.running": "running", "state.succeeded": "succeeded", "state.failed": "failed", "state.cancelled": "cancelled",
    "jobs.col.kind": "Kind", "jobs.col.state": "State", "jobs.col.progress": "Progress", "jobs.col.started": "Started",
    "jobs.col.result": "Result", "jobs.published": "published {v}",
    "docs.title": "Documents", "docs.none": "No documents yet", "docs.col.name": "File", "docs.col.state": "State",
    "docs.col.size": "Size", "docs.col.since": "Version", "docs.col.chunks": "Chunks", "docs.col.facts": "Facts",
    "docs.col.notes": "Notes", "docs.delete": "Delete", "docs.confirm": "Confirm delete",
    "docs.deleted": "Deleted {name}; reindex to publish.",
    "docs.state.indexed": "indexed", "docs.state.new": "new, not indexed", "docs.state.changed": "changed, not indexed",
    "docs.state.duplicate": "duplicate", "docs.state.failed": "unreadable", "docs.state.removed": "deleted, still indexed",
    "docs.duplicateOf": "same content as {name}",
    "idx.title": "Index versions", "idx.rollback": "Roll back to the previous version", "idx.publish": "Publish", "idx.current": "current",
    "idx.col.version": "Version", "idx.col.created": "Built", "idx.col.docs": "Docs", "idx.col.chunks": "Chunks",
    "idx.col.facts": "Facts", "idx.col.terms": "Terms", "idx.col.build": "Build", "idx.col.errors": "Errors",
    "idx.full": "full", "idx.incremental": "incremental", "idx.published": "Published and now serving {v}",
    "ad.title": "Router (LoRA adapter) versions", "ad.none": "No adapters yet: run kb train or the retrain job.",
    "ad.rollback": "Roll back to the previous version", "ad.col.status": "Status", "ad.col.metrics": "Metrics", "ad.serving": "Serving router: {r}",
    "ad.status.published": "published", "ad.status.rejected": "rejected by the gate",
    "gl.title": "Glossary", "gl.filter": "Filter terms or meanings", "gl.add": "Add term", "gl.term": "Abbreviation",
    "gl.english": "English long form", "gl.chinese": "Chinese meaning", "gl.addMeaning": "Add meaning", "gl.deleteTerm": "Delete term",
    "gl.deleteMeaning": "Delete this meaning", "gl.save": "Save as new version", "gl.discard": "Discard changes",
    "gl.changes": "{n} unsaved change(s)", "gl.noChanges": "No unsaved changes",
    "gl.saved": "Saved glossary version {v} ({n} terms). It takes effect after a reindex.",
    "gl.published": "The serving index uses exactly this glossary.", "gl.unpublished": "This glossary is not published yet: reindex to apply it.",
    "gl.conflict": "Someone else changed the glossary; reload it and edit again.", "gl.reload": "Reload",
    "gl.showing": "Showing {shown} of {total} terms", "gl.needTerm": "Give an abbreviation and at least one meaning.",
    "gl.exists": "{t} already exists; the meaning was added to it.", "gl.files": "Source files: {f}", "gl.versions": "Saved versions: {n}",
    "gl.emptyMeaning": "{t} has no meaning: fill one in or delete the term.",
    "ev.title": "Latest evaluation (kb eval)", "ev.none": "No evaluation report yet: run kb eval QUESTIONS.jsonl on the server.",
    "ev.open": "Open the full report", "ev.metric": "Metric", "ev.ours": "ours", "ev.baseline": "baseline",
    "ev.written": "written {t}", "ev.config": "Configuration",
    "common.loading": "Loading…", "common.error": "Error: {msg}", "common.yes": "yes", "common.no": "no",
    "common.refresh": "Refresh", "banner.jsError": "Page script error: {msg}",
  },
};

let lang = (() => {
  const saved = localStorage.getItem("kb.lang");  // a preference, not a secret
  if (saved === "zh" || saved === "en") return saved;
  return (navigator.language || "zh").toLowerCase().startsWith("zh") ? "zh" : "en";
})();

export function getLang() { return lang; }

export function setLang(next) {
  lang = next === "en" ? "en" : "zh";
  localStorage.setItem("kb.lang", lang);
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
}

/** t("chat.page", {n: 2}) -> "第2页" / "p. 2"; an unknown key shows itself (never blank). */
export function t(key, vars = {}) {
  const text = STRINGS[lang][key] ?? STRINGS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

/** Fill the static text of the page: data-i18n (text), -placeholder and -title attributes. */
export function applyStatic(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of root.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of root.querySelectorAll("[data-i18n-title]")) node.title = t(node.dataset.i18nTitle);
  document.title = t("app.title") + " · kb-assistant";
}
