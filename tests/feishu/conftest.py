"""The Feishu tests run on a machine shared with other suites: a slow moment must not turn a
callback into Feishu's retry signal (503) in a test about something else. Production's 2.5 s is
checked by ``test_inbound.test_reply_deadline_under_feishus_three_seconds`` (not patched there)."""
import pytest


@pytest.fixture(autouse=True)
def _patient_deadline(request, monkeypatch):
    if request.node.name.startswith("test_reply_deadline"):
        return
    from platforms.feishu import platform

    monkeypatch.setattr(platform, "reply_deadline", 30.0)
