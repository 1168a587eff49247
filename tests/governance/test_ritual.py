import pytest

from governance.ritual import RitualCounter, is_ritual, ritual_stats

RITUAL = [
    "收到", "签到", "已阅", "好的", "谢谢", "1", "👍", "[强]", "OK", "ok", "ＯＫ", "收到，马上落实",
    "收到，马上落实！", "已签到", "收到收到", "好", "嗯", "明白", "遵照执行", "坚决落实！！",
    "👍👍👍", "[抱拳][抱拳]", "  收到  ", "收到 收到", "🙏", "+1", "111", "好的👌", "领导辛苦了",
    "张三签到", "签到：李明",
    # traditional characters
    "收到，馬上落實！", "已簽到", "遵照執行", "堅決落實", "領導辛苦了", "謝謝",
    # full-width punctuation / spaces
    "收到！！！", "收到。", "　收到　",
]
WORK = [
    "明天上午9点在村委会开会，请各组长带上台账",
    "明天上午9點在村委會開會，請各組長帶上台賬",
    "下午3点前把防汛值班表发给我",
    "请于周五前上报低保户名单",
    "表格已发群里",
    "2",
    "收到，明天上午去三组走访困难户并核对名单",
]


@pytest.mark.parametrize("text", RITUAL)
def test_ritual_messages(text):
    assert is_ritual(text) is True


@pytest.mark.parametrize("text", WORK)
def test_work_messages(text):
    assert is_ritual(text) is False


def test_empty_message_is_ritual():
    assert is_ritual("") is True
    assert is_ritual("   ") is True


def test_counter_counts_and_share():
    counter = RitualCounter()
    for text in ["收到", "签到", "明天开会讨论防汛方案", "好的"]:
        counter.add("g1", text)
    counter.add("g2", "请各村上报名单")
    s1, s2 = counter.stats("g1"), counter.stats("g2")
    assert (s1.total, s1.ritual, s1.work, s1.share) == (4, 3, 1, 0.75)
    assert (s2.total, s2.ritual, s2.share) == (1, 0, 0.0)
    assert counter.stats("missing").share == 0.0


def test_ritual_stats_function():
    stats = ritual_stats([("a", "收到"), ("a", "1"), ("b", "收到")])
    assert stats["a"].ritual == 2 and stats["a"].total == 2 and stats["b"].total == 1


def test_fast_enough():
    import time

    is_ritual("预热一下分词器的加载")
    texts = [f"收到{i % 7}" for i in range(50_000)] + ["收到"] * 50_000
    t0 = time.perf_counter()
    for t in texts:
        is_ritual(t)
    assert time.perf_counter() - t0 < 2.0
