"""``RecordingSender``: remembers every call in memory (the demo and unit tests of jobs).

Not a stand-in for the fake WeCom server in adapter tests: it never touches HTTP. Failures can
be scripted with ``fail_next(n, error)``; appchat membership is tracked like the real service.
"""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

from platforms.base import SendError, SendResult
from platforms.wecom.groupops import AppchatGroupOps


@dataclass
class Call:
    method: str
    args: dict[str, Any]


@dataclass
class RecordingSender(AppchatGroupOps):
    calls: list[Call] = field(default_factory=list)
    chats: dict[str, dict[str, Any]] = field(default_factory=dict)
    _failures: list[SendError] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(1))

    def fail_next(self, n: int, error: SendError) -> None:
        with self._lock:
            self._failures.extend([error] * n)

    def _record(self, method: str, **args) -> SendResult:
        with self._lock:
            self.calls.append(Call(method, args))
            if self._failures:
                raise self._failures.pop(0)
            return SendResult(ok=True, errcode=0, errmsg="ok", msgid=f"rec-{next(self._ids)}")

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def send_text(self, user_ids: list[str], text: str) -> SendResult:
        return self._record("send_text", user_ids=list(user_ids), text=text)

    def send_markdown(self, user_ids: list[str], markdown: str) -> SendResult:
        return self._record("send_markdown", user_ids=list(user_ids), markdown=markdown)

    def send_card(self, user_ids: list[str], card: dict) -> SendResult:
        return self._record("send_card", user_ids=list(user_ids), card=card)

    def update_card(self, response_code: str, card: dict, user_ids: list[str] | None = None) -> SendResult:
        return self._record("update_card", response_code=response_code, card=card, user_ids=user_ids)

    def appchat_create(self, chat_id: str, name: str, owner: str, user_ids: list[str]) -> SendResult:
        r = self._record("appchat_create", chat_id=chat_id, name=name, owner=owner, user_ids=list(user_ids))
        self.chats[chat_id] = {"chatid": chat_id, "name": name, "owner": owner, "userlist": list(user_ids)}
        return r

    def appchat_update(self, chat_id: str, name: str | None = None, owner: str | None = None,
                       add_user_list: list[str] | None = None,
                       del_user_list: list[str] | None = None) -> SendResult:
        r = self._record("appchat_update", chat_id=chat_id, name=name, owner=owner, add_user_list=add_user_list,
                         del_user_list=del_user_list)
        chat = self.chats.setdefault(chat_id, {"chatid": chat_id, "name": chat_id, "owner": None, "userlist": []})
        if name is not None:
            chat["name"] = name
        if owner is not None:
            chat["owner"] = owner
        members = [u for u in chat["userlist"] if u not in set(del_user_list or ())]
        members += [u for u in (add_user_list or ()) if u not in members]
        chat["userlist"] = members
        return r

    def appchat_get(self, chat_id: str) -> dict:
        self._record("appchat_get", chat_id=chat_id)
        return dict(self.chats.get(chat_id) or {"chatid": chat_id, "name": "", "owner": None, "userlist": []})

    def appchat_send_text(self, chat_id: str, text: str) -> SendResult:
        return self._record("appchat_send_text", chat_id=chat_id, text=text)
