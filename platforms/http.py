"""``PooledHTTP``: the part of ``requests.Session`` that wechatpy's client and ``WeComSender`` use,
on a urllib3 connection pool directly.

Why: the outbox sends thousands of messages a second through ``WeComSender`` from many worker
threads under one interpreter lock, and requests' own layer (preparing the request, merging
settings, cookies, hooks, building the response) cost about as much CPU per call as urllib3's
whole exchange. urllib3 is what requests sends with; this skips only requests' layer.

Kept from requests, so callers and their error handling are unchanged: ``request``/``get``/
``post`` with ``params``, ``data``, ``json`` and ``timeout``; a response with ``status_code``,
``content``, ``text``, ``headers``, ``json()`` and ``raise_for_status()`` (raising
``requests.HTTPError`` with the response); failures raised as requests raises them for
urllib3's errors: ``requests.ConnectTimeout`` and ``requests.ReadTimeout`` for timeouts,
``requests.ConnectionError`` for everything else on the wire (refused, unreachable, dropped).
No retries, as before (``max_retries=0``): whether to retry is the outbox's decision. Proxies
are not handled here: ``WeComSender`` keeps a ``requests.Session`` when the environment names
a proxy for the API base.
"""
from __future__ import annotations

import json as _json
from urllib.parse import urlencode

import requests
import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, TimeoutError

HEADERS = {"User-Agent": "qunzhi", "Accept-Encoding": "gzip, deflate", "Accept": "*/*", "Connection": "keep-alive"}


class Response:
    __slots__ = ("status_code", "content", "headers", "url", "reason", "request")

    def __init__(self, status_code: int, content: bytes, headers, url: str, reason: str | None):
        self.status_code, self.content, self.headers = status_code, content, headers
        self.url, self.reason = url, reason
        self.request = None  # wechatpy copies it into its exceptions; nothing reads it

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return _json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(f"{self.status_code} {self.reason or ''} for url: {_redact(self.url)}",
                                     response=self)


def _redact(url: str) -> str:
    """The URL without its query: it carries the access token or the corp secret."""
    return url.split("?", 1)[0]


class PooledHTTP:
    def __init__(self, *, pool_size: int, verify: bool | str = True):
        kw: dict = {"num_pools": 4, "maxsize": pool_size, "block": False, "retries": False}
        if verify is False:
            kw["cert_reqs"] = "CERT_NONE"
        elif isinstance(verify, str):
            kw["ca_certs"] = verify
        self.pool = urllib3.PoolManager(**kw)

    def request(self, method: str, url: str, *, params=None, data=None, json=None, timeout=None,
                headers=None) -> Response:
        method = method.upper()
        if params:
            url = url + ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        hdrs = {**HEADERS, **(headers or {})}
        body = data
        if json is not None:
            body = _json.dumps(json).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        elif isinstance(body, dict):
            body = urlencode(body, doseq=True).encode()
            hdrs.setdefault("Content-Type", "application/x-www-form-urlencoded")
        try:
            r = self.pool.request(method, url, body=body, headers=hdrs, timeout=timeout, retries=False,
                                  redirect=False)
        except NewConnectionError as e:  # a subclass of ConnectTimeoutError, but not a timeout
            raise requests.ConnectionError(f"{method} {_redact(url)}: {type(e).__name__}") from None
        except ConnectTimeoutError as e:
            raise requests.ConnectTimeout(f"{method} {_redact(url)}: {type(e).__name__}") from None
        except TimeoutError as e:
            raise requests.ReadTimeout(f"{method} {_redact(url)}: {type(e).__name__}") from None
        except HTTPError as e:
            raise requests.ConnectionError(f"{method} {_redact(url)}: {type(e).__name__}") from None
        return Response(r.status, r.data, r.headers, url, r.reason)

    def get(self, url: str, **kw) -> Response:
        return self.request("GET", url, **kw)

    def post(self, url: str, **kw) -> Response:
        return self.request("POST", url, **kw)

    def close(self) -> None:
        self.pool.clear()


def answered(what: str, call, *, detail: bool = False):
    """Make one HTTP call (``call()``) and map what did not work to the outbox's errors: a
    timeout or a connection error, 5xx and 429 are transient (retried); any other 4xx is
    permanent. Returns the response otherwise (the caller reads its body)."""
    from platforms.base import PermanentSendError, TransientSendError

    try:
        res = call()
    except requests.Timeout as e:
        raise TransientSendError(f"{what} timed out: {e}", timeout=True) from None
    except requests.RequestException as e:
        raise TransientSendError(f"{what} unreachable: {e}") from None
    if res.status_code >= 500 or res.status_code == 429:
        raise TransientSendError(f"{what} HTTP {res.status_code}", http_status=res.status_code)
    if res.status_code >= 400:
        more = f": {res.text[:200]}" if detail else ""
        raise PermanentSendError(f"{what} HTTP {res.status_code}{more}", http_status=res.status_code)
    return res
