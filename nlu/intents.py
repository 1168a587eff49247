"""The intent grammar: one row per intent, one phrase per word. Adding a phrasing is adding a word.

Phrases are written in simplified Chinese (input is folded to simplified before matching, and
the cheap pre-filter also knows their traditional forms). ``…`` in a phrase is a short gap
(at most twelve characters, no clause break): ``我…几个群`` matches 我有几个群, 我现在在几个群.

Columns:

- ``verbs``: the phrases that say the intent (synonyms and common typos alike); ``~`` marks a weak
  phrase that counts only with a period (renewals) or a group suffix (续, 用到, 有用), ``~~`` one
  that counts only with a group suffix (改到: 会议改到明天 is no command);
- ``reason_verbs``: phrases that also carry the reason (还要用: "keep, it is still needed");
- ``alone``: phrases that count only when they are (nearly) the whole message (轻, 重, 你好 …);
- ``alone_means``: phrases that mean another intent when said alone (不用了 alone is 算了);
- ``with_period``: the intent meant when a period is said too (还得用一个月 is a renewal);
- ``statements``: phrases that only state a fact after a subject that names no group
  (秋粮收购已经结束了, 物资清点完毕): a command only when said first (完成 秋粮) or of a 群/专班;
- ``slots``: what to extract: group, target (merge), period, reason, text, fields, value;
- ``tier``: when several intents are said, the lowest tier wins (an action over 你好);
- ``consequential``: acting on a fuzzy group match needs a confirmation (完成, 合并, 保护).
"""
from __future__ import annotations

from dataclasses import dataclass, field


def combos(heads: str, tails: str) -> str:
    """Every head followed by every tail: 别/不要/不能 × 解散/撤/删 (negations of a verb)."""
    return " ".join(h + t for h in heads.split() for t in tails.split())


NEGATIONS = "别 不要 不能 不用 先别 暂不 暂时不 不许 不准 千万别 请勿 不可 不必 先不 先不要 请不要 请别 不得"
DISSOLVE = "解散 撤 撤掉 删 删掉 删除 散 关 关掉 关闭 停用 撤销 清理 注销"


@dataclass(frozen=True)
class Intent:
    name: str
    verbs: str
    slots: tuple[str, ...] = ()
    tier: int = 1
    reason_verbs: str = ""
    alone: str = ""
    alone_means: dict[str, str] = field(default_factory=dict)
    with_period: str = ""
    statements: str = ""
    values: dict[str, int] = field(default_factory=dict)
    consequential: bool = False
    summary: str = ""


INTENTS: tuple[Intent, ...] = (
    Intent("register", slots=("fields",), summary="登记一个工作群", verbs="""
        报备 登记 备案 备个案 报个备 报一下备 报个群 登个记 登记一下 报备一下 入册 建档 注册 注册一个群
        新群登记 申报 登录一个群 新建了个群 建了个群 建了一个群 新建了一个群
        报被 抱备 报倍 豹备 登纪 登计 灯记 等级一个群
    """),
    Intent("create", slots=("name", "members", "period"), summary="建一个临时群", verbs="""
        建群 建个群 建一个群 拉个群 拉群 拉一个群 新建群 新建一个群 新建个群 创建群 创建一个群 创建个群 组个群 组建一个群
        建立一个群 开个群 开一个群 新开一个群 帮我建群 帮忙建群 建个新群 拉个新群 见群 建裙
    """),
    Intent("renew", slots=("group", "period"), summary="延长临时群", verbs="""
        延期 延长 续期 ~续 ~延 ~再用 顺延 往后延 往后推 往后挪 推迟 推后 延到 延至 延后 延一下 展期 宽限
        ~多用 续上 续一下 续一续 加期 延续 还要再用 ~再开 ~用到 保留到 ~留到 ~开到 ~撑到 ~放到 续用
        续个期 延个期 延一延 续费 接着用到 ~多留 ~多开
        ~~改到 ~~改为 ~~改成 ~~调到 ~~调整到 ~~调整为 ~~更改为 ~~定到 ~~放宽到 期限改到 到期时间改为 期限延长
        续其 延其 廷期 沿期 延场 续器 绪期 续斯 延欺 严期 言期 研期 盐期 叙期 序期 续旗 延气 延迟
    """),
    Intent("done", slots=("group",), consequential=True, summary="任务完成，解散临时群", verbs="""
        完成 结束 完结 不用了 用不着了 不需要了 不再需要 用不上了 可以解散 解散吧 解散 可以撤了 撤群 撤了吧
        散了吧 可以散了 关掉 关闭 办完了 干完了 弄完了 搞完了 做完了 忙完了 完工 收官 告一段落 结项 用完了
        任务完成 可以关了 停用 不要这个群了 没必要留了 完事 完事了 结束了 收尾了 可以撤销了 可以删了 删群 散群
        完城 完呈 结速 结素 解撒 借散 解伞 完程 完承 玩成 解三 接散 结术 完毕 已完毕 可以结束 结束吧 收工
    """, alone_means={"不用了": "cancel", "不需要了": "cancel", "用不着了": "cancel", "完成": "confirm"},
        statements="""完成 结束 完结 办完了 干完了 弄完了 搞完了 做完了 忙完了 完工 收官 告一段落 结项 完事 完事了 结束了
        收尾了 完毕 已完毕 收工 任务完成 可以结束 结束吧"""),
    Intent("keep", slots=("group", "reason"), summary="保留群（不同意解散）", verbs="""
        保留 别解散 不要解散 不能解散 先别解散 不用解散 暂不解散 不解散 先不解散 别散 不要散 别撤 不要撤
        留着 先留着 留下 保住 暂时保留 继续保留 要保留 请保留 保流 宝留 报留 保溜 保六 保刘 宝流 保存 留著 先留著
    """ + combos(NEGATIONS, DISSOLVE) + """ 千万不要解散 千万不能解散 一定不要解散 不同意解散 反对解散""",
        with_period="renew", reason_verbs="""
        还要用 还在用 继续用 还有用 ~有用 还得用 仍在使用 继续使用 还需要 还没完 没完成
        还没结束 没结束 还在进行 一直在用 正在用 天天在用 经常用 还在使用 正在使用 常用 ~在用 还会用 还要继续用
    """),
    Intent("restore", slots=("group",), summary="恢复已解散的群", verbs="""
        恢复 找回 还原 复原 恢复一下 重新启用 重新开启 撤销解散 取消解散 解散错了 不该解散 拿回来 弄回来
        重新打开 再启用 复活 误删了 误删 删错了 解散早了 恢服 灰复 恢夏 恢付 ~回复
    """),
    Intent("merge", slots=("group", "target"), consequential=True, summary="管理员合并重复群", verbs="""
        合并到 合并进 合并入 合并至 并到 并入 并进 合到 合进 合入 归并到 整合到 归到 迁到 并过去 合过去
        并给 转到 挪到 合并 整合 归并 合成一个 合二为一 和并 合井 合并成
    """),
    Intent("unprotect", slots=("group",), consequential=True, summary="取消常设群", verbs="""
        取消保护 撤销保护 解除保护 去掉保护 不再保护 不用保护 取消常设 撤销常设 不再常设 不是常设 不再是常设 不要常设 不作为常设 不用常设 不算常设 改为临时
        改成临时 转临时 转为临时 设为临时 设成临时 取消…保护 撤销…保护 解除…保护 去掉…保护 取消…常设 撤销…常设
    """),
    Intent("protect", slots=("group",), consequential=True, summary="管理员设为常设群", verbs="""
        保护 设为常设 设成常设 列为常设 改为常设 改成常设 转常设 转为常设 定为常设 作为常设 算常设 常设
        长期保留 永久保留 一直保留 设为长期 保护起来 加保护 保户 宝护
    """),
    Intent("useless", slots=("group",), summary="匿名反映某个群没用", verbs="""
        这个群没用 这个群没有用 此群没用 该群没用 没用 没有用 没啥用 没什么用 无用 用处不大 没必要 形同虚设
        摆设 僵尸群 没人说话 早就不用 早没人用 没人用 白建 多余 纯属负担 有没有都行 没有必要 没作用
        没有什么用 没什么用处 没啥用处 没有任何用 没多大用 没太大用 没用处 作用不大 没什么作用 没有作用 没有意义
        没意义 没什么意义 意义不大 纯属多余 可有可无 没啥作用 没有啥用 没有啥作用 没多少用 没…作用 没…用处
    """),
    Intent("report", slots=("text",), summary="匿名反映形式主义要求", verbs="""
        反映 举报 投诉 吐槽 反馈 我要反映 爆料 提意见 提个意见 反应一下 反应个情况 反应 反映一下 反映个情况
        匿名反映 返映 饭映
    """),
    Intent("confirm_order", slots=("group",), summary="告知已手动解散", verbs="""
        已解散 已经解散 解散好了 解散完了 已手动解散 我解散了 已经散了 群散了 我已解散 已经删了 已删群
        已经解散了 解散掉了 己解散 按要求解散 已按要求解散 已按通知解散 按通知解散了 已…手动解散 已经手动解散 手动解散了 已手动解散了 亲自解散了 自己解散了 已经删除了
    """),
    Intent("undo", tier=1, summary="撤销刚才的操作", verbs="""
        撤销 撤回 弄错了 搞错了 点错了 说错了 反悔 刚才的不算 不算数 撤销刚才 取消刚才 撤消 撒销
    """),
    Intent("mine", tier=2, summary="我的群", verbs="""
        我的群 我…哪些群 我…哪几个群 我…几个群 我…多少…群 我…什么群 我建的群 我所在的群 我在的群 群列表 我的群组
        我名下…群 我管的群 我…群列表 我…群清单 我…群有哪些 我…群有几个 我…加了…群 我…进了…群 哪些群有我
        我的群聊 我得群 我滴群
    """),
    Intent("dashboard", tier=2, summary="看板登录链接", verbs="""
        看板 治理看板 数据看板 仪表盘 大屏 登录链接 后台链接 看版 看扳
    """),
    Intent("help", tier=3, summary="看我能做什么", verbs="""
        帮助 怎么用 菜单 选单 help 能做什么 会做什么 会什么 能干什么 能干嘛 有什么功能 有哪些功能 功能列表
        使用说明 说明书 教程 怎么操作 咋用 如何使用 怎么使用 用法 指令 命令 有啥用 你是谁 干什么的 是干嘛的
        能帮我做什么 可以做什么 能做啥 会干啥 可以干什么 有什么用 能干啥 咋操作 咋整 怎么搞 如何操作 帮主 帮住 菜丹 怎么弄 咋弄 怎么办理 什么功能 功能介绍 使用方法 操作说明
    """, alone="? 帮忙 说明 功能 指南"),
    Intent("cancel", tier=3, summary="取消", verbs="""
        算了 取消 不要了 退出 不弄了 不办了 先不了 先不弄 别弄了 不登记了 不报了 不报备了 不登记 不报备
        不延期 不续期 不续了 不延了 不合并 不合并了 不恢复 不恢复了 停止 放弃 不改了 不用管了 当我没说 没事了 再说吧
        取销 算啦 不用登记
    """, alone="停 不了 不用 没事"),
    Intent("confirm", tier=3, slots=("group",), summary="确认", verbs="""
        确认 确定 确认解散 确认合并 确认完成 确认保护 没错 是的 对的 就是它 就是这个 就这个 确认无误 是这个
        同意 没问题 确实 正确 确认一下 确认了 确人 却认
    """, alone="是 对 对对 嗯确认 yes"),
    Intent("continue", tier=3, summary="继续刚才的对话", verbs="""
        继续 接着 接著 继续登记 接着填 接着来 往下 下一步 继续吧
    """),
    Intent("greet", tier=4, summary="打招呼", verbs="""
        你好 您好 妳好 在吗 在不在 哈喽 早上好 上午好 下午好 晚上好 你好呀 您好呀 hello hi 嗨 你们好 大家好
    """, alone="早 在 喂 hey 您 你"),
    Intent("pulse", tier=4, slots=("value",), summary="负担脉搏的回答", verbs="", alone="""
        轻 适中 重 负担轻 负担重 负担适中 很重 太重了 太重 挺重 有点重 比较重 很轻 比较轻 挺轻 不重 轻松 还行 一般
        中 中等 还好 重重 适中吧 轻吧 重吧
    """, values={"轻": 1, "负担轻": 1, "很轻": 1, "比较轻": 1, "挺轻": 1, "不重": 1, "轻松": 1, "轻吧": 1,
                 "适中": 2, "负担适中": 2, "还行": 2, "一般": 2, "中": 2, "中等": 2, "还好": 2, "适中吧": 2,
                 "重": 3, "负担重": 3, "很重": 3, "太重了": 3, "太重": 3, "挺重": 3, "有点重": 3, "比较重": 3,
                 "重重": 3, "重吧": 3}),
)

BY_NAME = {i.name: i for i in INTENTS}

# Said before an "alone" answer without changing it: 负担很重, 我觉得适中.
ALONE_LEADS = ("我觉得", "感觉", "觉得", "负担", "本周", "这周", "我的负担", "还是")

# Said around a command without changing it (stripped at the edges of a slot).
FILLERS = frozenset("""
    我 我要 我想 我们 咱 咱们 想 要 需要 帮 帮我 帮忙 帮个忙 请 请你 请帮 请帮我 麻烦 麻烦你 你 您 你帮 您帮 把 将 给 给我
    替我 那个 这个 这 那 一下 下 吧 了 啊 呀 呢 哦 噢 吗 嘛 啦 哈 的 地 得 可以 能 能不能 可不可以 行吗 好吗 行不行
    一个 个 再 都 就 先 已经 现在 马上 赶紧 任务 工作 谢谢 感谢 好的 好 嗯 请问 就是 一声 一起 也 又 还 呗 咯 喽 哟
    拜托 劳驾 辛苦 辛苦了 老师 领导 同志 一下子 下子 把它 它 吧吧 哈哈 ok 能否 能不 了吧 一个群 个群 下群 啊啊
    这个群 那个群 的群 群 去 来 让 由 被 为 用 里 上 中 内 之 其 及 和 跟 与 同 或 在 是 有 这边 那边 目前 今天 做 做个 做一下 新建的 刚建的 新建 刚建 新 刚 刚才 刚刚
    事 事情 任务已经 已 都已经 其实 应该 估计 可能 大概 尽快 立刻 立即 一直 然后 所以 因为 但是 不过
""".split())

# Merge phrases that say no direction: 合并 A 和 B / 把 A 和 B 合并 (the first is merged into the second);
# every other merge phrase points at its target (A 并到 B).
MERGE_UNDIRECTED = "合并 整合 归并 合成一个 合二为一 和并 合井 合并成"

# A verb followed by one of these is a noun (登记工作完成了, 完成情况): no verb.
NOMINAL_AFTER = ("工作", "任务", "的事", "事宜", "情况", "进度", "信息", "材料", "表", "通知", "率", "数", "人员")

# A "group" that is a common work noun: 明天的会议延期到下周一, 本次检查结束 are no commands.
NON_GROUP_NOUNS = ("会议", "会", "活动", "检查", "培训", "考核", "材料", "报表", "时间", "截止时间", "调度会", "例会",
                   "讲座", "学习", "督查", "验收", "评比", "比赛", "考试", "值班", "上报", "统计", "走访", "任务")

# Where a group name ends (its suffix) and words that mean "the group this message is in".
GROUP_SUFFIXES = ("专班群", "工作群", "微信群", "群聊", "工作组", "领导小组", "小组", "指挥部", "专班", "群")
THIS_GROUP = frozenset("这个群 这群 本群 此群 该群 这个 本 群 咱们群 我们群 咱群 群里 这个群里 这里 这儿".split())

# Words naming a registration field (a value runs until the next one).
FIELD_KEYS = {
    "名称": "name", "群名": "name", "群名称": "name", "名字": "name", "群的名字": "name", "叫": "name",
    "用途": "purpose", "目的": "purpose", "作用": "purpose", "用于": "purpose", "干什么": "purpose",
    "单位": "unit", "部门": "unit", "所属单位": "unit", "归属": "unit",
    "类别": "category", "类型": "category", "分类": "category", "性质": "category",
    "到期": "expires", "期限": "expires", "截止": "expires", "到期日期": "expires", "到期时间": "expires",
    "结束": "expires", "有效期": "expires", "截至": "expires",
}
# Words naming a 建群 field: the members (split at 、，and spaces) and the end date.
CREATE_KEYS = {
    "名称": "name", "群名": "name", "群名称": "name", "名字": "name", "叫": "name",
    "成员": "members", "人员": "members", "群成员": "members", "拉上": "members", "拉": "members", "加上": "members",
    "到期": "expires", "期限": "expires", "截止": "expires", "到期时间": "expires", "有效期": "expires",
    "用途": "purpose", "目的": "purpose",
}
CATEGORY_WORDS = ("临时群", "常设群", "领导班子群", "机关群", "脱贫攻坚群", "临时", "常设", "长期群", "长期")
