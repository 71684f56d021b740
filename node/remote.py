"""The node's HTTP client to the aggregator service.

Only three things ever go to the aggregator: GET requests without a body, and the update bytes
(POSTed raw, with the upload signature in a header). Connection failures, timeouts and 502/503/504
answers are retried with exponential backoff; a 4xx answer becomes a one-line :class:`NodeError`
carrying the service's ``detail``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx

from fedcore.codec import DEFAULT_MAX_BYTES
from fedcore.errors import NodeError

log = logging.getLogger("fedledger.node.remote")

RETRY_STATUS = frozenset({502, 503, 504})
ROUND_STATUSES = ("waiting", "open", "scoring", "finalized", "completed")


class AggregatorUnavailable(NodeError):
    """The aggregator could not be reached, timed out, or failed (5xx), after the retries: worth trying later."""


class AggregatorRefused(NodeError):
    """The aggregator answered 4xx. ``status`` is the HTTP code, ``detail`` its explanation."""

    def __init__(self, message: str, *, status: int, detail: str):
        super().__init__(message)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class RoundInfo:
    """``GET /bounties/{id}/rounds/current``.

    Attributes
    ----------
    round : int
        The current round number (0 before the first round opens).
    status : str
        ``waiting``, ``open``, ``scoring``, ``finalized`` or ``completed``.
    global_model_hash : str
        ``0x`` hex of the round's global model.
    commit_deadline : int
        Unix time the commit window closes.
    selected : tuple of str
        Addresses selected for the round (lowercase); empty means everyone.
    config : dict
        Per-round training overrides handed out by the strategy (e.g. ``{"fedprox_mu": 0.01}``), if any.
    """

    round: int
    status: str
    global_model_hash: str
    commit_deadline: int
    selected: tuple[str, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)

    def selects(self, address: str) -> bool:
        return not self.selected or address.lower() in self.selected


@dataclass(frozen=True)
class ModelDownload:
    """``GET /bounties/{id}/model``: the bytes and what the headers claim about them."""

    data: bytes
    sha256: str
    round: int | None


class AggregatorClient:
    """HTTP client for one aggregator service.

    Parameters
    ----------
    base_url : str
        E.g. ``http://127.0.0.1:8000``.
    timeout : float
        Seconds for connect, read and write of one request.
    retries : int
        Extra attempts after a connection failure, timeout or 502/503/504.
    backoff : float
        First wait in seconds; doubles each attempt (capped at 30 s).
    max_model_bytes : int
        Larger model downloads are refused.
    transport : httpx.BaseTransport, optional
        For tests.
    sleep : callable
        Wait function (for tests).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_model_bytes: int = DEFAULT_MAX_BYTES,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise NodeError(f"unsupported aggregator URL {base_url!r}: use http(s)://host:port")
        self.base_url = base_url.rstrip("/")
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.max_model_bytes = int(max_model_bytes)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url, timeout=httpx.Timeout(timeout), transport=transport, follow_redirects=False,
            headers={"User-Agent": "fedledger-node"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "AggregatorClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        stream = kwargs.pop("_stream", False)
        attempt = 0
        while True:
            try:
                if stream:
                    response = self._get_limited(path)
                else:
                    response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise AggregatorUnavailable(
                        f"aggregator at {self.base_url} unreachable ({what}) after {attempt + 1} attempts: {reason}"
                    ) from None
                log.info("aggregator unreachable (%s), retrying: %s", what, type(exc).__name__)
            else:
                if response.status_code not in RETRY_STATUS or attempt >= self.retries:
                    return self._checked(response, what)
                log.info("aggregator answered %s (%s), retrying", response.status_code, what)
            self._sleep(min(self.backoff * 2**attempt, 30.0))
            attempt += 1

    def _get_limited(self, path: str) -> httpx.Response:
        with self._http.stream("GET", path) as response:
            declared = response.headers.get("content-length")
            if response.status_code == 200 and declared and declared.isdigit() and int(declared) > self.max_model_bytes:
                raise NodeError(f"aggregator model is {declared} bytes, over the limit of {self.max_model_bytes}")
            chunks, size = [], 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if response.status_code == 200 and size > self.max_model_bytes:
                    raise NodeError(f"aggregator model is over the limit of {self.max_model_bytes} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
        return httpx.Response(response.status_code, headers=response.headers, content=body, request=response.request)

    def _checked(self, response: httpx.Response, what: str) -> httpx.Response:
        if response.status_code < 400:
            return response
        detail = _detail(response)
        if response.status_code < 500:
            raise AggregatorRefused(
                f"aggregator refused {what}: {response.status_code} {detail}",
                status=response.status_code, detail=detail,
            )
        raise AggregatorUnavailable(f"aggregator failed {what}: {response.status_code} {detail}")

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise NodeError(f"aggregator sent malformed JSON for {what}") from None

    # -- API ----------------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``{"status", "bounty_id", "chain_id", "ledger"}``."""
        data = self._json(self._request("GET", "/health", "the health check"), "the health check")
        if not isinstance(data, dict):
            raise NodeError("aggregator sent a malformed health answer")
        return data

    def task(self, bounty_id: int) -> dict[str, Any]:
        """The bounty's task spec as a dict (build it with ``TaskSpec.from_dict``)."""
        what = f"the task of bounty {bounty_id}"
        data = self._json(self._request("GET", f"/bounties/{int(bounty_id)}/task", what), what)
        if not isinstance(data, dict):
            raise NodeError(f"aggregator sent a malformed task spec for bounty {bounty_id}")
        return data

    def current_round(self, bounty_id: int) -> RoundInfo:
        """The bounty's current round as the aggregator sees it."""
        what = f"the current round of bounty {bounty_id}"
        data = self._json(self._request("GET", f"/bounties/{int(bounty_id)}/rounds/current", what), what)
        try:
            selected = tuple(str(a).lower() for a in (data.get("selected") or ()))
            config = data.get("config") or {}
            if not isinstance(config, dict):
                raise TypeError("config")
            info = RoundInfo(
                round=int(data["round"]),
                status=str(data["status"]),
                global_model_hash=str(data.get("global_model_hash") or "").lower(),
                commit_deadline=int(data.get("commit_deadline") or 0),
                selected=selected,
                config=dict(config),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise NodeError(f"aggregator sent a malformed answer for {what}") from None
        return info

    def model(self, bounty_id: int) -> ModelDownload:
        """Download the current global model (safetensors bytes), at most ``max_model_bytes``."""
        what = f"the model of bounty {bounty_id}"
        response = self._request("GET", f"/bounties/{int(bounty_id)}/model", what, _stream=True)
        round_header = response.headers.get("x-round")
        try:
            round_ = int(round_header) if round_header is not None else None
        except ValueError:
            raise NodeError(f"aggregator sent a malformed X-Round header for {what}") from None
        return ModelDownload(
            data=response.content, sha256=(response.headers.get("x-model-sha256") or "").lower(), round=round_
        )

    def upload(self, bounty_id: int, round_: int, data: bytes, signature: str) -> dict[str, Any]:
        """POST the update bytes (the body is exactly ``data``); returns the 202 answer.

        Uploading the same bytes twice is harmless: the aggregator content-addresses updates by sha256.
        """
        what = f"the update for bounty {bounty_id} round {round_}"
        response = self._request(
            "POST", f"/bounties/{int(bounty_id)}/rounds/{int(round_)}/updates", what,
            content=bytes(data), headers={"X-Signature": signature, "Content-Type": "application/octet-stream"},
        )
        answer = self._json(response, what) if response.content else {}
        return answer if isinstance(answer, dict) else {}


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and "detail" in data:
        detail = data["detail"]
        if isinstance(detail, list):  # FastAPI validation errors
            detail = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
        text = str(detail)
    else:
        text = response.reason_phrase or "error"
    return " ".join(text.split())[:300]


__all__ = ["AggregatorClient", "AggregatorRefused", "AggregatorUnavailable", "ModelDownload", "RoundInfo"]
