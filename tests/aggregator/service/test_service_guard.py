"""The service protecting itself, on the real app and a real embedded chain: uploads sealed until the round
closes, the signer and its commitment checked on the headers before a byte of the body is read, the size capped
by the model's encoded size, bounded upload slots, a body-read timeout, and range-checked path numbers.

The "before the body is read" and "slot held" cases drive the ASGI app directly with a ``receive`` that records
whether the body was asked for (a TestClient hands the app the whole body at once, so it cannot show that).
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from aggregator.service.app import create_app
from aggregator.service.coordinator import Coordinator
from fedcore import codec
from fedcore.protocol import MAX_PATH_NUMBER, ErrorBody, RejectionCode
from node.remote import AggregatorClient


@pytest.fixture
def open_round(harness):
    """Round 1 open; the context and a TestClient."""
    def make(**settings):
        context = harness.context(**settings)
        assert Coordinator(context).step() == "opened"
        return context, harness.client(context)
    return make


def code_of(response) -> RejectionCode:
    return ErrorBody.model_validate_json(response.content).code


class AsgiUpload:
    """One upload sent straight to the ASGI app: ``receive`` counts how often the body is asked for and, with
    ``stall``, never delivers it (a half-sent body)."""

    def __init__(self, app, path: str, headers: dict[str, str], body: bytes, *, stall: bool = False):
        self.app, self.path, self.body, self.stall = app, path, body, stall
        self.headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        self.body_requests = 0
        self.reading = asyncio.Event()
        self.messages: list[dict] = []

    async def receive(self):
        self.body_requests += 1
        self.reading.set()
        if self.stall:
            await asyncio.Event().wait()  # the rest of the body never comes
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message):
        self.messages.append(message)

    async def run(self):
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": self.path, "raw_path": self.path.encode(), "query_string": b"", "root_path": "",
                 "headers": self.headers, "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "app": self.app}
        await self.app(scope, self.receive, self.send)

    @property
    def status(self) -> int:
        return next(m["status"] for m in self.messages if m["type"] == "http.response.start")

    @property
    def response_headers(self) -> dict[str, str]:
        start = next(m for m in self.messages if m["type"] == "http.response.start")
        return {k.decode().lower(): v.decode() for k, v in start["headers"]}

    @property
    def code(self) -> RejectionCode:
        body = b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")
        return ErrorBody.model_validate_json(body).code


def upload_headers(h, account, data: bytes, *, length: int | None = None) -> dict[str, str]:
    return {"content-type": "application/octet-stream", "content-length": str(len(data) if length is None else length),
            "x-update-sha256": hashlib.sha256(data).hexdigest(), "x-signature": h.sign(account, 1, data)}


def test_uploads_are_sealed_until_the_round_closes(harness, open_round):
    context, client = open_round()
    data = harness.update(0.03)
    harness.commit(harness.insts[0], 1, data)
    assert harness.upload(client, harness.insts[0], 1, data).status_code == 202
    sha = hashlib.sha256(data).hexdigest()
    base = f"/bounties/{harness.bounty_id}/rounds/1"
    assert client.get(base).json()["uploads"] == []
    assert client.get(f"/bounties/{harness.bounty_id}/rounds/current").json()["uploads"] == 1  # a count, no hash
    for probe in (sha, "cd" * 32):  # an accepted hash and an unknown one get the same answer: a probe learns nothing
        refused = client.get(f"{base}/updates/{probe}")
        assert refused.status_code == 403 and code_of(refused) == RejectionCode.ROUND_OPEN
    context.state.begin_scoring(1)
    assert [u["sha256"] for u in client.get(base).json()["uploads"]] == ["0x" + sha]
    assert client.get(f"{base}/updates/{sha}").content == data
    assert code_of(client.get(f"{base}/updates/{'cd' * 32}")) == RejectionCode.NOT_FOUND


@pytest.mark.parametrize("path", [
    "/bounties/{b}/rounds/{big}", "/bounties/{b}/rounds/{huge}", "/bounties/{b}/rounds/-1", "/bounties/{b}/rounds/0",
    "/bounties/{big}/task", "/bounties/-3/rounds/current", "/bounties/{b}/rounds/{huge}/updates/" + "ab" * 32,
    "/bounties/{huge}/model",
])
def test_path_numbers_out_of_range_are_400_never_500(harness, open_round, path):
    _, client = open_round()
    url = path.format(b=harness.bounty_id, big=MAX_PATH_NUMBER + 1, huge=2**64 + 5)
    response = client.get(url)
    assert response.status_code == 400 and code_of(response) == RejectionCode.MALFORMED, response.text
    assert "malformed request" in response.json()["detail"]


def test_upload_with_a_huge_round_number_is_400(harness, open_round):
    context, client = open_round()
    data = harness.update()
    response = client.post(f"/bounties/{harness.bounty_id}/rounds/{2**63}/updates", content=data,
                           headers=upload_headers(harness, harness.insts[0], data))
    assert response.status_code == 400 and code_of(response) == RejectionCode.MALFORMED
    assert response.headers["connection"] == "close"
    assert context.state.uploads(1) == []


def test_the_limit_is_the_models_encoded_size(harness, open_round):
    context, client = open_round()  # --max-upload-bytes keeps its 64 MiB default
    assert context.update_size == len(harness.update()) == 160
    junk = b"\0" * (context.update_size + 1)
    refused = client.post(f"/bounties/{harness.bounty_id}/rounds/1/updates", content=junk,
                          headers=upload_headers(harness, harness.outsider, junk))
    assert refused.status_code == 413 and code_of(refused) == RejectionCode.TOO_LARGE
    assert "over the limit of 160 bytes" in refused.json()["detail"]


def test_the_signer_is_refused_before_the_body_is_read(harness, open_round):
    context, _ = open_round()
    app = create_app(context=context, run_coordinator=False)
    data = harness.update(0.04)
    path = f"/bounties/{harness.bounty_id}/rounds/1/updates"
    harness.commit(harness.insts[1], 1, harness.update(0.05))
    cases = {
        "outsider": (upload_headers(harness, harness.outsider, data), RejectionCode.NOT_REGISTERED),
        "not committed": (upload_headers(harness, harness.insts[0], data), RejectionCode.NOT_COMMITTED),
        "commitment differs": (upload_headers(harness, harness.insts[1], data), RejectionCode.HASH_MISMATCH),
        "no hash header": ({k: v for k, v in upload_headers(harness, harness.insts[1], data).items()
                            if k != "x-update-sha256"}, RejectionCode.MALFORMED),
    }
    for name, (headers, code) in cases.items():
        upload = AsgiUpload(app, path, headers, data, stall=True)
        asyncio.run(asyncio.wait_for(upload.run(), 30))
        assert (upload.code, upload.body_requests) == (code, 0), name
        assert upload.response_headers["connection"] == "close"
    assert context.state.uploads(1) == []


def test_a_body_other_than_announced_is_refused(harness, open_round):
    context, client = open_round()
    announced, sent = harness.update(0.06), harness.update(0.07)
    harness.commit(harness.insts[0], 1, announced)
    headers = upload_headers(harness, harness.insts[0], announced)
    response = client.post(f"/bounties/{harness.bounty_id}/rounds/1/updates", content=sent, headers=headers)
    assert response.status_code == 409 and code_of(response) == RejectionCode.HASH_MISMATCH
    assert "the body hashes to 0x" + hashlib.sha256(sent).hexdigest() in response.json()["detail"]
    assert context.state.uploads(1) == [] and not (context.blobs.root / "updates" / hashlib.sha256(sent).hexdigest()).exists()


def test_a_half_sent_body_holds_the_only_slot_then_times_out(harness, open_round):
    context, client = open_round(max_concurrent_uploads=1, upload_read_timeout=1.0)
    app = create_app(context=context, run_coordinator=False)
    path = f"/bounties/{harness.bounty_id}/rounds/1/updates"
    stalled_data, waiting_data = harness.update(0.08), harness.update(0.09)
    harness.commit(harness.insts[0], 1, stalled_data)
    harness.commit(harness.insts[1], 1, waiting_data)

    async def scenario():
        stalled = AsgiUpload(app, path, upload_headers(harness, harness.insts[0], stalled_data), stalled_data, stall=True)
        task = asyncio.create_task(stalled.run())
        await asyncio.wait_for(stalled.reading.wait(), 30)  # it passed the header checks and holds the slot
        second = AsgiUpload(app, path, upload_headers(harness, harness.insts[1], waiting_data), waiting_data)
        await second.run()
        await asyncio.wait_for(task, 30)
        return stalled, second

    stalled, second = asyncio.run(scenario())
    assert (second.status, second.code, second.body_requests) == (503, RejectionCode.BUSY, 0)
    assert int(second.response_headers["retry-after"]) >= 1
    assert (stalled.status, stalled.code) == (408, RejectionCode.BODY_TIMEOUT)
    assert context.state.uploads(1) == []
    # the slot is free again: the waiting institution gets in
    assert harness.upload(client, harness.insts[1], 1, waiting_data).status_code == 202


def test_the_node_client_sends_what_the_service_checks(harness, open_round):
    context, client = open_round()
    data = harness.update(0.11)
    harness.commit(harness.insts[2], 1, data)
    with AggregatorClient("http://testserver", transport=client._transport, retries=0) as node:
        accepted = node.upload(harness.bounty_id, 1, data, harness.sign(harness.insts[2], 1, data))
    assert accepted.sha256 == codec.update_hash_hex(data) and accepted.institution == harness.insts[2].address
    assert [u.institution for u in context.state.uploads(1)] == [harness.insts[2].address]


def test_one_signer_holds_at_most_one_slot(harness, open_round):
    context, client = open_round(max_concurrent_uploads=3, upload_read_timeout=1.0)
    app = create_app(context=context, run_coordinator=False)
    path = f"/bounties/{harness.bounty_id}/rounds/1/updates"
    data = harness.update(0.12)
    harness.commit(harness.insts[0], 1, data)
    headers = upload_headers(harness, harness.insts[0], data)

    async def scenario():
        stalled = AsgiUpload(app, path, headers, data, stall=True)
        task = asyncio.create_task(stalled.run())
        await asyncio.wait_for(stalled.reading.wait(), 30)
        again = AsgiUpload(app, path, headers, data)  # the same signer, while its first body is still coming
        await again.run()
        await asyncio.wait_for(task, 30)
        return stalled, again

    stalled, again = asyncio.run(scenario())
    assert (again.status, again.code, again.body_requests) == (503, RejectionCode.BUSY, 0)
    assert (stalled.status, stalled.code) == (408, RejectionCode.BODY_TIMEOUT)
    assert harness.upload(client, harness.insts[0], 1, data).status_code == 202  # its own retry gets in afterwards
