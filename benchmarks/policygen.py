"""Generated company-policy text for scale benchmarks (deterministic for a seed).

Real knowledge bases are policies, handbooks and procedures: numbered articles about travel,
leave, purchasing, security and so on, full of roles, amounts, deadlines and systems. This module
writes text of that shape from templates, so that embeddings of it have the topical cluster
structure of a real corpus (many documents per topic, articles that share vocabulary within a
topic and little across topics) instead of the structureless spread of uniform random vectors.

* :func:`passages` — article-sized texts (what the chunker cuts a policy into: one numbered
  article with its sentences and list items), for embedding at scale;
* :func:`questions` — questions in the same vocabulary, embedded as queries;
* :func:`document_markup` / :func:`write_documents` — whole policy documents in the markup of
  ``benchmarks/kbs/*/sources`` (title, meta lines, chapters, articles, items, tables), rendered to
  md / docx / pdf / txt / html by ``benchmarks/kbs/build.py`` for the real ingest path.

About a sixth of the text is English (English-only companies exist among our test knowledge bases).

    >>> a = passages(3, seed=1); b = passages(3, seed=1)
    >>> a == b and len(a) == 3 and all(len(t) > 20 for t in a)
    True
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable

CN = "零一二三四五六七八九"


def cn_number(n: int) -> str:
    """Chinese numeral for article numbers (1..999).

    >>> cn_number(3), cn_number(10), cn_number(15), cn_number(42), cn_number(120)
    ('三', '十', '十五', '四十二', '一百二十')
    """
    if n < 10:
        return CN[n]
    if n < 20:
        return "十" + (CN[n % 10] if n % 10 else "")
    if n < 100:
        return CN[n // 10] + "十" + (CN[n % 10] if n % 10 else "")
    rest = n % 100
    tail = "" if rest == 0 else ("零" + CN[rest] if rest < 10 else ("一" + cn_number(rest) if rest < 20 else cn_number(rest)))
    return CN[n // 100] + "百" + tail


# -- shared vocabulary ---------------------------------------------------------------------------
PREFIXES = ["星河", "华信", "远航", "蓝海", "恒通", "瑞丰", "博远", "中科", "天成", "金桥", "新域", "鼎盛",
            "安泰", "长风", "启明", "九州", "海纳", "云帆", "嘉禾", "弘毅", "北辰", "东方", "万象", "同舟"]
INDUSTRIES = ["印刷科技", "物流", "医疗器械", "软件", "精密制造", "新能源", "食品", "建筑工程", "电子商务",
              "生物医药", "汽车零部件", "金融服务", "教育科技", "化工", "纺织", "通信设备"]
SUFFIX = ["有限公司", "股份有限公司", "集团有限公司"]
ROLES = ["员工", "正式员工", "试用期员工", "实习生", "部门经理", "高级经理", "主管", "总监", "副总经理", "总经理",
         "客户经理（AM）", "项目经理（PM）", "产品经理", "现场应用工程师（FAE）", "采购专员", "财务专员",
         "仓库管理员", "驾驶员", "护士长", "值班医生", "质量工程师", "销售代表", "人力资源专员", "IT管理员"]
DEPTS = ["财务部", "人力资源部", "采购部", "行政部", "信息技术部", "质量管理部", "销售部", "市场部", "研发中心",
         "生产部", "仓储中心", "客服中心", "法务部", "审计部", "安全环保部", "运营中心"]
CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "西安", "南京", "苏州", "重庆", "天津", "长沙",
          "郑州", "青岛", "厦门", "昆明", "合肥", "沈阳", "大连"]
SYSTEMS = ["OA系统", "ERP系统", "SAP", "钉钉", "企业微信", "费控系统", "HR系统", "工单系统", "WMS系统", "CRM系统"]
FORMS = ["申请单", "审批表", "报销单", "登记表", "变更单", "验收单", "确认书", "备案表"]
UNITS_TIME = ["个工作日", "天", "小时", "周", "个月"]


class _Ctx:
    """Random slot fillers for one document (a company, a department, a seed)."""

    def __init__(self, rng: random.Random, company: str):
        self.rng, self.company = rng, company

    def pick(self, items: list[str]) -> str:
        return self.rng.choice(items)

    def amount(self) -> str:
        base = self.rng.choice([50, 80, 100, 120, 150, 200, 300, 500, 600, 800, 1000, 2000, 3000, 5000, 10000,
                                20000, 50000, 100000])
        return f"{base * self.rng.choice([1, 1, 1, 2, 3]):,}元" if self.rng.random() < 0.3 else f"{base}元"

    def days(self) -> str:
        return f"{self.rng.choice([1, 2, 3, 5, 7, 10, 15, 30, 60, 90])}{self.pick(UNITS_TIME)}"

    def pct(self) -> str:
        return f"{self.rng.choice([5, 10, 15, 20, 25, 30, 50, 80])}%"

    def num(self, lo: int = 1, hi: int = 12) -> str:
        return str(self.rng.randint(lo, hi))

    def fill(self, template: str) -> str:
        out = template
        for key, fn in (("{role}", lambda: self.pick(ROLES)), ("{role2}", lambda: self.pick(ROLES)),
                        ("{dept}", lambda: self.pick(DEPTS)), ("{city}", lambda: self.pick(CITIES)),
                        ("{system}", lambda: self.pick(SYSTEMS)), ("{form}", lambda: self.pick(FORMS)),
                        ("{amount}", self.amount), ("{amount2}", self.amount), ("{days}", self.days),
                        ("{days2}", self.days), ("{pct}", self.pct), ("{n}", self.num),
                        ("{company}", lambda: self.company)):
            while key in out:
                out = out.replace(key, fn(), 1)
        return out


# -- topics: (document title, chapters, article templates, question templates) ------------------
TOPICS_ZH: dict[str, dict[str, list[str]]] = {
    "差旅费管理办法": {
        "ch": ["总则", "出差审批", "城市间交通", "住宿费", "伙食补助", "报销"],
        "a": ["{role}出差前须在{system}提交出差{form}，经{role2}审批后方可出行。",
              "{role}在{city}出差期间住宿费每晚不超过{amount}，超出部分由个人承担。",
              "出差人员的伙食补助按出差天数包干使用，每人每天{amount}，无需提供发票。",
              "单程高铁车程超过{n}小时的，{role}可乘坐一等座；乘坐飞机须事先经{role2}批准。",
              "差旅费应在出差结束后{days}内报销，逾期未报销的须说明原因并经{dept}负责人同意。",
              "经批准自驾车出差的，按每公里{amount}的标准给予燃油补贴，过路费凭票据实报销。",
              "参加行业展会期间住宿标准可上浮{pct}，须经{role}批准。",
              "出差期间由接待单位安排住宿的，不得再报销住宿费；住在亲友家中的每晚补贴{amount}。",
              "出差天数超过{days}的，须报{role}审批，单次出差预算超过{amount}的须报总经理审批。"],
        "q": ["{role}去{city}出差住宿标准是多少？", "出差伙食补助每天多少钱？", "差旅费多久内要报销？",
              "坐高铁什么情况下可以坐一等座？", "自驾出差怎么补贴？"],
    },
    "员工请假制度": {
        "ch": ["总则", "假期种类", "请假程序", "考勤与工资"],
        "a": ["员工累计工作满{n}年不满十年的，年休假{days}；满十年的，年休假{days2}。",
              "员工请病假须提供二级以上医院出具的诊断证明，病假{days}以内由{role}审批。",
              "病假期间工资按本人基本工资的{pct}发放，但不低于当地最低工资标准。",
              "婚假{days}，产假按国家规定执行，陪产假{days2}，须在{system}提前提交{form}。",
              "请假{days}以上的须经{dept}备案，未经批准擅自离岗的按旷工处理。",
              "年休假原则上应在当年休完，确因工作需要未休的可顺延至次年{n}月底。",
              "事假期间不发放工资，全年事假累计超过{days}的影响年度评优。"],
        "q": ["年假有几天？", "病假工资怎么算？", "婚假几天？", "请假要走什么流程？", "事假扣工资吗？"],
    },
    "采购管理制度": {
        "ch": ["总则", "采购申请", "供应商管理", "招标与比价", "验收与付款"],
        "a": ["单次采购金额在{amount}以下的，由{role}审批后直接采购。",
              "采购金额超过{amount}的，须至少选取{n}家合格供应商进行比价。",
              "采购金额达到{amount}及以上的，须组织公开招标，由{dept}牵头评标。",
              "供应商准入须经{dept}资质审核，每年进行一次绩效评估，评分低于{n}分的淘汰。",
              "到货后{days}内由使用部门和{dept}共同验收，验收合格后填写{form}。",
              "采购订单（PO）须在{system}中创建，付款前须核对订单、入库单和发票三单一致。",
              "预付款比例不得超过合同金额的{pct}，尾款在质保期满后支付。"],
        "q": ["采购金额超过多少需要招标？", "采购需要几家供应商比价？", "PO是什么？", "到货验收怎么做？"],
    },
    "信息安全管理规定": {
        "ch": ["总则", "账号与密码", "终端与网络", "数据保护", "安全事件"],
        "a": ["系统密码长度不少于{n}位，须包含大小写字母、数字和特殊字符，每{days}更换一次。",
              "员工离职当日由{dept}注销其在{system}等全部系统的账号。",
              "远程办公须通过公司VPN接入，VPN账号由{role}申请、{dept}审批开通。",
              "禁止将公司数据存储在未经批准的个人网盘，违者视情节给予{amount}以下罚款。",
              "发生信息安全事件的，发现人须在{n}小时内报告{dept}，重大事件须立即上报{role}。",
              "移动存储介质须在{dept}登记备案，外来U盘须经杀毒后方可使用。",
              "客户个人信息的访问须经{role}授权，访问日志保存不少于{days}。"],
        "q": ["密码多久更换一次？", "VPN怎么开通？", "信息安全事件如何上报？", "离职后账号怎么处理？"],
    },
    "新员工入职指南": {
        "ch": ["入职准备", "第一周", "试用期", "常用系统"],
        "a": ["新员工入职当天到{dept}报到，领取工牌、电脑和{form}。",
              "入职第一周完成公司文化、信息安全和{dept}业务培训，共计{n}个课时。",
              "试用期为{days}，试用期满前{days2}由{role}组织转正评估。",
              "新员工的导师由{role}指定，导师每周与新员工沟通不少于{n}次。",
              "入职{days}内须在{system}完成个人信息登记和银行卡绑定。",
              "新员工可在入职满{n}个月后申请内部转岗，须经原部门和{dept}同意。"],
        "q": ["新员工入职第一周做什么？", "试用期多长？", "入职要带什么材料？", "导师是谁指定的？"],
    },
    "报销管理办法": {
        "ch": ["总则", "报销范围", "票据要求", "审批流程"],
        "a": ["费用报销须在费用发生后{days}内通过{system}提交，逾期不予报销。",
              "单张发票金额超过{amount}的，须附合同或{form}作为附件。",
              "发票丢失的，须由开票单位出具证明并经{role}签字确认后方可报销。",
              "业务招待费人均不超过{amount}，须注明招待对象和事由。",
              "报销金额在{amount}以内的由{role}审批，超过的须报{role2}审批。",
              "财务部在收到报销单后{days}内完成审核，审核通过后{days2}内付款。"],
        "q": ["报销需要在多少天内提交？", "发票丢失怎么办？", "招待费标准是多少？", "报销谁来审批？"],
    },
    "加班与考勤管理规定": {
        "ch": ["工作时间", "考勤", "加班", "调休"],
        "a": ["公司实行标准工时制，每日工作{n}小时，上午9:00上班，下午18:00下班。",
              "员工每月迟到累计超过{n}次的，扣发当月全勤奖{amount}。",
              "加班须提前在{system}申请，经{role}批准后方可计算加班时长。",
              "工作日加班按小时工资的150%支付加班费，休息日加班优先安排调休。",
              "调休须在加班后{days}内使用，逾期作废。",
              "夜班（22:00至次日6:00）每班发放夜班补贴{amount}。"],
        "q": ["加班费怎么算？", "迟到扣多少钱？", "调休多久内要用完？", "夜班补贴多少？"],
    },
    "固定资产管理办法": {
        "ch": ["总则", "购置与入账", "领用与调拨", "盘点", "报废"],
        "a": ["单价在{amount}以上、使用年限超过一年的设备列为固定资产，由{dept}统一管理。",
              "固定资产每年盘点{n}次，盘亏的须查明原因并由责任人赔偿。",
              "员工领用电脑等资产须填写{form}，离职时须归还后方可办理离职手续。",
              "资产调拨须在{system}发起，调出和调入部门负责人共同签字。",
              "固定资产报废须经{dept}技术鉴定，净值超过{amount}的须报{role}审批。",
              "资产丢失的，责任人按净值的{pct}赔偿。"],
        "q": ["固定资产盘点多久一次？", "电脑丢了要赔吗？", "资产报废怎么审批？"],
    },
    "安全生产管理制度": {
        "ch": ["总则", "安全责任", "作业安全", "隐患排查", "事故处理"],
        "a": ["{dept}每月组织一次安全检查，发现的隐患须在{days}内整改完毕。",
              "特种作业人员须持证上岗，证件到期前{days}由{dept}组织复审。",
              "进入生产车间须佩戴安全帽和防护眼镜，违者每次罚款{amount}。",
              "发生安全事故的，现场人员须在{n}分钟内报告{role}并保护现场。",
              "新员工上岗前须接受不少于{n}学时的三级安全教育。",
              "动火作业须办理动火{form}，由{role}现场监护。"],
        "q": ["安全检查多久一次？", "安全事故怎么上报？", "动火作业要办什么手续？"],
    },
    "车辆及驾驶员管理办法": {
        "ch": ["总则", "车辆使用", "驾驶员管理", "维修保养", "违章与事故"],
        "a": ["公务用车须提前{n}小时在{system}申请，由{dept}统一调度。",
              "驾驶员连续驾驶超过{n}小时的，须停车休息不少于20分钟。",
              "车辆每行驶{amount}公里或每{days}进行一次保养。",
              "因个人原因发生交通违章的，罚款和扣分由驾驶员本人承担。",
              "车辆出险后须在{n}小时内报告{dept}和保险公司。",
              "驾驶员每年体检一次，年度安全行驶无事故的奖励{amount}。"],
        "q": ["用车怎么申请？", "连续开车多久要休息？", "违章罚款谁承担？", "车辆多久保养一次？"],
    },
    "仓储作业管理规范": {
        "ch": ["总则", "入库", "存储", "出库", "盘点"],
        "a": ["货物到仓后{n}小时内完成卸货和清点，差异须当场在{form}上注明。",
              "入库货物须在{system}中登记库位，先进先出，危险品单独存放。",
              "仓库温度保持在{n}至25摄氏度，湿度不超过{pct}。",
              "出库须凭审批通过的出库{form}，由{role}复核后放行。",
              "仓库每月末盘点一次，盘点差异率超过{pct}的须报{dept}分析原因。",
              "叉车司机须持证上岗，仓内叉车限速每小时{n}公里。"],
        "q": ["货物入库要多久清点？", "仓库温度要求是多少？", "盘点差异怎么处理？"],
    },
    "快件理赔管理办法": {
        "ch": ["总则", "理赔范围", "理赔时效", "赔偿标准"],
        "a": ["客户须在签收后{days}内提出理赔申请，逾期不予受理。",
              "未保价快件丢失的，按实际损失赔偿，最高不超过运费的{n}倍。",
              "保价快件按声明价值赔偿，保价费率为声明价值的{pct}。",
              "理赔申请由客服中心受理，{days}内给出处理结果。",
              "单笔理赔金额超过{amount}的，须经{role}审批。",
              "因不可抗力造成的损失不予赔偿，但应协助客户办理保险理赔。"],
        "q": ["快件丢了怎么赔？", "理赔申请要在几天内提出？", "保价费率是多少？"],
    },
    "医院护理工作制度": {
        "ch": ["总则", "交接班", "给药", "护理文书", "院感防控"],
        "a": ["白班护士须提前{n}分钟到岗交接，夜班护士须提前30分钟到岗。",
              "护士给药须执行三查八对，高危药品须双人核对。",
              "危重患者每{n}小时巡视一次，并在护理记录单上签字。",
              "护理文书须在{n}小时内完成，由护士长每周抽查。",
              "发生针刺伤的，须在{n}小时内报告院感科并登记。",
              "病区每日紫外线消毒不少于{n}次，每次30分钟。"],
        "q": ["夜班护士提前多久到岗？", "危重病人多久巡视一次？", "针刺伤怎么报告？"],
    },
    "合同管理办法": {
        "ch": ["总则", "合同订立", "合同审核", "履行与变更", "归档"],
        "a": ["合同金额在{amount}以上的，须经{dept}法律审核后方可签订。",
              "合同须使用公司标准文本，修改条款须在{form}中注明。",
              "合同签订后{days}内须将原件交{dept}归档。",
              "合同变更须经原审批人重新审批，并签订补充协议。",
              "合同履行中发现违约风险的，经办人须在{days}内报告{role}。",
              "合同印章由{dept}专人保管，用印须在{system}登记。"],
        "q": ["合同多少钱以上要法务审核？", "合同签完多久归档？", "合同变更怎么办？"],
    },
    "培训管理办法": {
        "ch": ["总则", "培训计划", "外部培训", "培训服务期"],
        "a": ["各部门每年{n}月底前提交下年度培训计划，由{dept}汇总。",
              "员工每年参加培训不少于{n}学时，纳入年度绩效考核。",
              "外部培训费用超过{amount}的，须签订培训服务协议，服务期{days}。",
              "服务期内离职的，按未服务期限比例退还培训费用。",
              "内部讲师每授课一小时发放课酬{amount}。"],
        "q": ["每年要培训多少学时？", "外部培训有服务期吗？", "内部讲师课酬多少？"],
    },
    "绩效考核管理办法": {
        "ch": ["总则", "考核周期", "考核等级", "结果应用"],
        "a": ["绩效考核每{n}个月进行一次，年度考核在次年1月完成。",
              "考核等级分为A、B、C、D四级，A级比例不超过{pct}。",
              "连续两次考核为D级的，公司可调整岗位或解除劳动合同。",
              "年度考核为A级的，年终奖系数上浮{pct}。",
              "员工对考核结果有异议的，可在{days}内向{dept}申诉。"],
        "q": ["绩效考核多久一次？", "A级比例是多少？", "考核结果有异议怎么办？"],
    },
    "薪酬福利管理制度": {
        "ch": ["总则", "工资构成", "发放", "福利"],
        "a": ["工资由基本工资、岗位工资、绩效工资和津贴组成，每月{n}日发放。",
              "员工生日当月发放生日礼金{amount}。",
              "公司为员工缴纳五险一金，住房公积金缴存比例为{pct}。",
              "员工每年享受一次免费体检，标准为每人{amount}。",
              "高温津贴每年6至9月发放，每月{amount}。"],
        "q": ["工资几号发？", "公积金比例是多少？", "体检标准是多少？", "高温补贴多少钱？"],
    },
    "办公用品及印章管理规定": {
        "ch": ["总则", "办公用品", "印章使用"],
        "a": ["办公用品每月{n}日集中申领，由{dept}统一采购发放。",
              "单价超过{amount}的办公用品须经{role}审批。",
              "公章、合同章由{dept}指定专人保管，用印须填写用印{form}。",
              "印章原则上不得携带外出，确需外带的须两人同行并在{days}内归还。"],
        "q": ["办公用品怎么领？", "盖章要走什么流程？", "印章可以带出去吗？"],
    },
    "客户服务规范": {
        "ch": ["总则", "服务标准", "投诉处理", "回访"],
        "a": ["客服热线须在铃响{n}声内接听，首次响应时间不超过{n}分钟。",
              "客户投诉须在{days}内给出处理意见，重大投诉上报{role}。",
              "客服人员不得向客户承诺超出公司政策的赔偿，单次补偿不超过{amount}。",
              "服务结束后{days}内进行回访，满意度低于{pct}的须整改。"],
        "q": ["客户投诉多久处理？", "客服可以补偿多少？", "回访什么时候做？"],
    },
    "研发项目管理办法": {
        "ch": ["总则", "立项", "过程管理", "结项"],
        "a": ["研发项目预算超过{amount}的，须经技术委员会评审立项。",
              "项目经理（PM）每{days}提交一次项目周报，由{dept}汇总。",
              "项目里程碑延期超过{days}的，须提交变更{form}并重新评审。",
              "项目结项后{days}内完成技术文档归档和知识产权申报。",
              "项目奖金按项目利润的{pct}提取，由PM提出分配方案。"],
        "q": ["研发立项要评审吗？", "项目周报多久交一次？", "项目延期怎么办？"],
    },
}

TOPICS_EN: dict[str, dict[str, list[str]]] = {
    "Travel and Expense Policy": {
        "ch": ["Scope", "Approval", "Transport", "Lodging", "Claims"],
        "a": ["Employees must submit a travel request in the {sys_en} at least {n} days before departure.",
              "Hotel costs are reimbursed up to {usd} per night in tier-one cities.",
              "Meal allowance is {usd} per day and requires no receipts.",
              "Business class is allowed only for flights longer than {n} hours with director approval.",
              "Expense claims must be filed within {n} days after the trip ends."],
        "q": ["What is the hotel limit per night?", "How soon must I file an expense claim?",
              "When can I fly business class?"],
    },
    "Employee Handbook: Leave": {
        "ch": ["Annual Leave", "Sick Leave", "Parental Leave", "Requests"],
        "a": ["Full-time employees earn {n} days of paid annual leave per year.",
              "Sick leave of more than {n} consecutive days requires a doctor's note.",
              "Parental leave is {n} weeks at full pay for the primary caregiver.",
              "Leave requests go to your manager in the {sys_en} at least {n} days in advance.",
              "Unused annual leave of up to {n} days carries over to the next year."],
        "q": ["How many days of annual leave?", "Do I need a doctor's note for sick leave?",
              "How long is parental leave?"],
    },
    "Information Security Standard": {
        "ch": ["Accounts", "Devices", "Data", "Incidents"],
        "a": ["Passwords must be at least {n} characters long and rotated every {n} days.",
              "Laptops must use full-disk encryption and lock after {n} minutes of inactivity.",
              "Report any suspected security incident to the IT desk within {n} hours.",
              "Customer data may not be copied to personal devices or unapproved cloud storage.",
              "Access to production systems is reviewed every {n} months by the system owner."],
        "q": ["How long must a password be?", "How do I report a security incident?",
              "Can I copy customer data to my laptop?"],
    },
    "Procurement Guidelines": {
        "ch": ["Requests", "Quotes", "Contracts", "Payment"],
        "a": ["Purchases above {usd} need at least {n} competing quotes.",
              "Purchase orders are raised in the {sys_en} and approved by the budget owner.",
              "Contracts above {usd} must be reviewed by Legal before signature.",
              "Invoices are paid within {n} days of receipt of goods."],
        "q": ["How many quotes do I need?", "Who approves a purchase order?", "When are invoices paid?"],
    },
    "Remote Work Policy": {
        "ch": ["Eligibility", "Equipment", "Working Hours"],
        "a": ["Employees may work remotely up to {n} days per week with manager approval.",
              "The company provides a home-office allowance of {usd} per year.",
              "Remote staff must be reachable during core hours from 10:00 to {n}:00.",
              "Use the company VPN for all access to internal systems."],
        "q": ["How many days can I work from home?", "Is there a home office allowance?"],
    },
}
EN_SYSTEMS = ["HR portal", "expense system", "ticketing system", "ERP", "intranet"]


def _en_fill(ctx: _Ctx, template: str) -> str:
    out = template
    for key, fn in (("{sys_en}", lambda: ctx.pick(EN_SYSTEMS)), ("{n}", lambda: ctx.num(2, 30)),
                    ("{usd}", lambda: f"${ctx.rng.choice([25, 50, 75, 100, 150, 200, 250, 500, 1000, 5000])}")):
        while key in out:
            out = out.replace(key, fn(), 1)
    return out


def company_name(rng: random.Random, english: bool = False) -> str:
    if english:
        return rng.choice(["Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware", "Adatum", "Proseware",
                           "Lucerne", "Wingtip", "Humongous"]) + " " + rng.choice(["Software", "Systems", "Labs", "Group"])
    return rng.choice(PREFIXES) + rng.choice(INDUSTRIES) + rng.choice(SUFFIX)


def _article(ctx: _Ctx, topic: dict[str, list[str]], english: bool) -> str:
    """One article's body: one to three rule sentences, sometimes a list of items."""
    fill: Callable[[str], str] = (lambda t: _en_fill(ctx, t)) if english else ctx.fill
    rules = topic["a"]
    k = ctx.rng.choice([1, 1, 2, 2, 3])
    body = (" " if english else "").join(fill(t) for t in ctx.rng.sample(rules, min(k, len(rules))))
    if not english and ctx.rng.random() < 0.25:
        items = [fill(t).rstrip("。") for t in ctx.rng.sample(rules, min(2, len(rules)))]
        body += "具体如下：\n" + "\n".join(f"（{CN[i + 1]}）{it}；" for i, it in enumerate(items))
    if ctx.rng.random() < 0.15:
        body = (f"At {ctx.company}, " + body[0].lower() + body[1:]) if english else f"{ctx.company}{body}"
    return body


def _pick_topic(rng: random.Random) -> tuple[str, dict[str, list[str]], bool]:
    english = rng.random() < 1 / 6
    topics = TOPICS_EN if english else TOPICS_ZH
    title = rng.choice(list(topics))
    return title, topics[title], english


def passages(n: int, seed: int = 0) -> list[str]:
    """``n`` article-sized passages, each headed like a chunk of a real policy
    (``<company><title> 第N条 <body>``)."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        title, topic, english = _pick_topic(rng)
        ctx = _Ctx(rng, company_name(rng, english))
        for i in range(rng.randint(3, 12)):  # several articles of one document in a row
            if len(out) == n:
                break
            no = rng.randint(1, 60)
            head = f"{ctx.company} {title}, Section {no}. " if english else f"{ctx.company}{title} 第{cn_number(no)}条　"
            out.append(head + _article(ctx, topic, english))
    return out


def questions(n: int, seed: int = 10_000) -> list[str]:
    """``n`` questions in the passages' vocabulary (about a sixth in English)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        title, topic, english = _pick_topic(rng)
        ctx = _Ctx(rng, company_name(rng, english))
        q = rng.choice(topic["q"])
        q = _en_fill(ctx, q) if english else ctx.fill(q)
        if rng.random() < 0.3:
            q = (f"At {ctx.company}: " + q) if english else (ctx.company.replace("有限公司", "").replace("股份", "").replace("集团", "") + q)
        out.append(q)
    return out


def document_markup(index: int, seed: int = 0) -> tuple[str, str]:
    """(file stem, markup) of one generated policy document (4–6 chapters, 2–5 articles each,
    sometimes a table), in the markup of ``benchmarks/kbs/*/sources``."""
    rng = random.Random(f"{seed}-{index}")
    title, topic, english = _pick_topic(rng)
    company = company_name(rng, english)
    ctx = _Ctx(rng, company)
    dept = rng.choice(DEPTS)
    lines = [f"# {company} {title}" if english else f"# {company}{title}"]
    if english:
        lines.append(f"> Document No.: POL-{index:05d}　Version: {rng.randint(1, 5)}.0　Effective: 2025-01-01")
    else:
        lines.append(f"> 文件编号：GEN-{index:05d}　　版本：V{rng.randint(1, 5)}.0　　生效日期：2025年1月1日")
        lines.append(f"> 发布部门：{dept}")
    no = 1
    chapters = topic["ch"][:]
    for c, chapter in enumerate(chapters[: rng.randint(min(4, len(chapters)), len(chapters))]):
        lines.append(f"## {c + 1}. {chapter}" if english else f"## 第{cn_number(c + 1)}章　{chapter}")
        for _ in range(rng.randint(2, 5)):
            body = _article(ctx, topic, english)
            head = f"Section {no}. " if english else f"第{cn_number(no)}条　"
            lines.extend((head + body).split("\n"))
            no += 1
        if not english and rng.random() < 0.2:
            lines.append("| 项目 | 标准 | 审批人 |")
            for _ in range(rng.randint(2, 4)):
                lines.append(f"| {rng.choice(ROLES)} | {ctx.amount()} | {rng.choice(ROLES)} |")
    stem = f"{index:05d}_{title.replace(' ', '_').replace(':', '')}"
    return stem, "\n".join(lines) + "\n"


FORMATS = ("md", "docx", "pdf", "txt", "html")


def write_documents(folder: Path, n: int, seed: int = 0, formats: tuple[str, ...] = FORMATS) -> list[Path]:
    """Render ``n`` generated documents into ``folder``, cycling through ``formats`` with the
    renderers of ``benchmarks/kbs/build.py`` (so the real loaders read real office files)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "kbs"))
    import build as kbs_build  # benchmarks/kbs/build.py

    renderers = {"md": kbs_build.render_md, "docx": kbs_build.render_docx, "pdf": kbs_build.render_pdf,
                 "txt": _render_txt, "html": kbs_build.render_html}
    folder = Path(folder)
    src = folder / "_sources"
    src.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        stem, markup = document_markup(i, seed)
        source = src / f"{stem}.md"
        source.write_text(markup, encoding="utf-8")
        fmt = formats[i % len(formats)]
        path = folder / "docs" / f"{stem}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        renderers[fmt](source, path, {})
        out.append(path)
    return out


def _render_txt(source: Path, out: Path, record: dict | None = None) -> None:
    out.write_text(source.read_text(encoding="utf-8").replace("# ", "").replace("> ", ""), encoding="utf-8")
