"""The demo's invariants, with a small county."""
from bot.demo import DemoConfig, run_demo


def test_demo_invariants(tmp_path):
    r = run_demo(DemoConfig(seed=3, weeks=4, towns=1, villages=2, progress=False,
                            database_url=f"sqlite:///{tmp_path / 'demo.db'}"))
    assert r["protected_dissolved"] == 0
    assert r["messages_outside_working_time"] == 0
    assert r["groups_after"] < r["groups_before"]
    assert r["groups_per_cadre_max_before"] >= 50  # the town head of the articles
    for key in ("groups_per_cadre_median_before", "groups_per_cadre_median_after", "groups_dissolved",
                "groups_kept", "groups_restored", "bot_messages_per_cadre_week"):
        assert key in r
