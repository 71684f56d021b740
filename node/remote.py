"""The node's HTTP client to the aggregator service.

Only three things ever go to the aggregator: GET requests without a body, and the update bytes
(POSTed raw, with the upload signature in a header). Every JSON answer is parsed with the models of
:mod:`fedcore.protocol`. Connection failures, timeouts and 502/503/504 answers are retried with exponential
backoff (at least the ``Retry-After`` the service asks for); a 4xx answer becomes a one-line
:class:`AggregatorRefused` carrying the service's ``detail`` and its :class:`~fedcore.protocol.RejectionCode`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from fedcore.codec import DEFAULT_MAX_BYTES, update_hash_hex
from fedcore.errors import ConfigError, NodeError
from fedcore.protocol import (
    COMMITMENT_SIGNATURE_HEADER,
    DECLARED_EPSILON_HEADER,
    SAMPLE_COUNT_HEADER,
    SIGNATURE_HEADER,
    UPDATE_SHA_HEADER,
    ErrorBody,
    Health,
    RejectionCode,
    RoundInfo,
    TaskInfo,
    UploadAccepted,
)
from fedcore.rules import RoundRules
from fedcore.task import TaskSpec

log = logging.getLogger("fedledger.node.remote")

RETRY_STATUS = frozenset({502, 503, 504})
DEFAULT_RETRIES = 4
Body = TypeVar("Body", bound=BaseModel)


class AggregatorUnavailable(NodeError):
    """The aggregator could not be reached, timed out, or failed (5xx), after the retries: worth trying later."""


class AggregatorRefused(NodeError):
    """The aggregator answered 4xx. ``status`` is the HTTP code, ``detail`` its explanation, ``code`` why
    (None when the answer was not the protocol's error body, e.g. from a proxy)."""

    def __init__(self, message: str, *, status: int, detail: str, code: RejectionCode | None = None):
        super().__init__(message)
        self.status = status
        self.detail = detail
        self.code = code


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
        retries: int = DEFAULT_RETRIES,
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

    def __enter__(self) -> AggregatorClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        stream = kwargs.pop("_stream", False)
        attempt = 0
        while True:
            wait = min(self.backoff * 2**attempt, 30.0)
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
                wait = max(wait, _retry_after(response))
            self._sleep(wait)
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
        error = _error_body(response)
        detail = error.detail if error else " ".join((response.reason_phrase or "error").split())
        if response.status_code < 500:
            raise AggregatorRefused(
                f"aggregator refused {what}: {response.status_code} {detail}",
                status=response.status_code, detail=detail, code=error.code if error else None,
            )
        raise AggregatorUnavailable(f"aggregator failed {what}: {response.status_code} {detail}")

    def _parsed(self, model: type[Body], response: httpx.Response, what: str) -> Body:
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            raise NodeError(f"aggregator sent a malformed answer for {what}") from None

    def _get(self, model: type[Body], path: str, what: str) -> Body:
        return self._parsed(model, self._request("GET", path, what), what)

    # -- API ----------------------------------------------------------------------------------------
    def health(self) -> Health:
        """Which bounty, chain and ledger the aggregator serves."""
        return self._get(Health, "/health", "the health check")

    def task(self, bounty_id: int) -> TaskSpec:
        """The bounty's task spec (check ``task_hash`` of it against the chain before training)."""
        info = self._get(TaskInfo, f"/bounties/{int(bounty_id)}/task", f"the task of bounty {bounty_id}")
        return TaskSpec.from_dict(info.model_dump())

    def rules(self, bounty_id: int) -> RoundRules:
        """The bounty's round rules (check ``rules_hash`` of them against the chain before training)."""
        what = f"the round rules of bounty {bounty_id}"
        try:
            return RoundRules.from_json(self._request("GET", f"/bounties/{int(bounty_id)}/rules", what).content)
        except ConfigError as error:
            raise NodeError(f"aggregator sent malformed {what}: {error}") from None

    def current_round(self, bounty_id: int) -> RoundInfo:
        """The bounty's current round as the aggregator sees it (with the round's fit config)."""
        return self._get(RoundInfo, f"/bounties/{int(bounty_id)}/rounds/current",
                         f"the current round of bounty {bounty_id}")

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

    def model_by_hash(self, bounty_id: int, sha256: str) -> bytes:
        """Download a stored model by its sha256 (e.g. the final global model whose hash the chain holds)."""
        what = f"model {sha256} of bounty {bounty_id}"
        return self._request("GET", f"/bounties/{int(bounty_id)}/models/{sha256}", what, _stream=True).content

    def upload(self, bounty_id: int, round_: int, data: bytes, signature: str,
               signed_commitment: tuple[str, int, int] | None = None) -> UploadAccepted:
        """POST the update bytes (the body is exactly ``data``) with their sha256 and the signature in headers, so
        the aggregator checks the signer before reading the body; returns the 202 answer.

        ``signed_commitment``: (EIP-712 signature as 0x hex, sample count, declared epsilon in millionths) of a
        gasless commitment (:func:`fedcore.commitments.sign_commitment`), for an institution that did not commit
        on chain itself.
        A second upload for the round is refused with ``RejectionCode.DUPLICATE_UPLOAD`` and changes nothing.
        """
        what = f"the update for bounty {bounty_id} round {round_}"
        headers = {SIGNATURE_HEADER: signature, UPDATE_SHA_HEADER: update_hash_hex(data),
                   "Content-Type": "application/octet-stream"}
        if signed_commitment is not None:
            headers[COMMITMENT_SIGNATURE_HEADER], samples, declared = signed_commitment
            headers[SAMPLE_COUNT_HEADER] = str(int(samples))
            headers[DECLARED_EPSILON_HEADER] = str(int(declared))
        response = self._request(
            "POST", f"/bounties/{int(bounty_id)}/rounds/{int(round_)}/updates", what,
            content=bytes(data), headers=headers,
        )
        return self._parsed(UploadAccepted, response, what)


def _retry_after(response: httpx.Response) -> float:
    """Seconds the service asked to wait (``Retry-After``, e.g. when its upload slots are busy), capped at 30."""
    value = (response.headers.get("retry-after") or "").strip()
    return min(float(value), 30.0) if value.isdigit() else 0.0


def _error_body(response: httpx.Response) -> ErrorBody | None:
    """The protocol's error body, squashed to one line, or None when the answer is something else."""
    try:
        error = ErrorBody.model_validate_json(response.content)
    except ValidationError:
        return None
    return error.model_copy(update={"detail": " ".join(error.detail.split())[:300]})


__all__ = ["AggregatorClient", "AggregatorRefused", "AggregatorUnavailable", "ModelDownload"]
