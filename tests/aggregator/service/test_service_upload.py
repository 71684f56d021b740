"""The upload endpoint and the read endpoints, over TestClient, with real signatures on a real embedded chain.

Every rejection answers ``{"detail": one line, "code": RejectionCode}`` with the code's status and changes no state:
no upload row, no stored blob.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from aggregator.service.coordinator import Coordinator
from aggregator.service.deps import get_context, get_upload_limit
from fedcore import codec
from fedcore.errors import ChainError
from fedcore.protocol import ErrorBody, FitConfig, RejectionCode, RoundInfo, RoundReport
from fedcore.task import TaskSpec, task_hash
from tests.aggregator.service.conftest import SERVICE_PATHS


@pytest.fixture
def service(harness, counting_compute):
    """Round 1 open, a TestClient on the app (no background coordinator)."""
    context = harness.context()
    coordinator = Coordinator(context, compute=counting_compute)
    assert coordinator.step() == "opened"
    client = harness.client(context)
    return harness, context, coordinator, client


def stored_updates(context) -> list:
    return sorted(p.name for p in (context.blobs.root / "updates").iterdir())


def assert_one_line(response, status: int, code: RejectionCode, *fragments: str) -> None:
    assert response.status_code == status, response.text
    body = ErrorBody.model_validate_json(response.content)
    assert body.code == code, body
    assert "\n" not in body.detail and body.detail
    for fragment in fragments:
        assert fragment in body.detail, body.detail


def test_accepts_a_committed_upload_and_refuses_it_twice(service):
    h, context, _, client = service
    data = h.update(0.02)
    h.commit(h.insts[0], 1, data)
    first = h.upload(client, h.insts[0], 1, data)
    assert first.status_code == 202
    sha = hashlib.sha256(data).hexdigest()
    assert first.json() == {"sha256": "0x" + sha, "institution": h.insts[0].address, "status": "accepted", "round": 1}
    assert stored_updates(context) == [sha]
    journal = context.state.journal()
    again = h.upload(client, h.insts[0], 1, data)
    assert_one_line(again, 409, RejectionCode.DUPLICATE_UPLOAD, "already has update 0x" + sha)
    assert stored_updates(context) == [sha] and len(context.state.uploads(1)) == 1
    assert context.state.journal() == journal
    assert len(context.state.uploads(1)) == 1
    current = client.get(f"/bounties/{h.bounty_id}/rounds/current").json()
    assert current["uploads"] == 1
    # sealed while the round is open: neither the hash nor the bytes are served
    assert client.get(f"/bounties/{h.bounty_id}/rounds/1").json()["uploads"] == []
    assert_one_line(client.get(f"/bounties/{h.bounty_id}/rounds/1/updates/{sha}"), 403, RejectionCode.ROUND_OPEN, "sealed")
    context.state.begin_scoring(1)
    assert [u["sha256"] for u in client.get(f"/bounties/{h.bounty_id}/rounds/1").json()["uploads"]] == ["0x" + sha]
    download = client.get(f"/bounties/{h.bounty_id}/rounds/1/updates/{sha}")
    assert download.status_code == 200 and download.content == data
    assert client.get(f"/bounties/{h.bounty_id}/rounds/1/updates/0x{sha}").content == data


# Each case sets up what it needs and returns the response; expected status and a fragment of the detail.
def _unknown_bounty(h, client):
    data = h.update()
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 1, data, bounty_id=99)


def _missing_signature(h, client):
    data = h.update()
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 1, data, signature=None)


def _malformed_signature(h, client):
    data = h.update()
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 1, data, signature="0x1234")


def _unrecoverable_signature(h, client):
    data = h.update()
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 1, data, signature="0x" + "00" * 65)


def _unregistered_signer(h, client):
    return h.upload(client, h.outsider, 1, h.update())


def _not_committed(h, client):
    return h.upload(client, h.insts[1], 1, h.update())


def _signature_for_another_round(h, client):
    data = h.update()
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 1, data, signature=h.sign(h.insts[0], 2, data))


def _hash_mismatch(h, client):
    h.commit(h.insts[0], 1, h.update(0.5))
    return h.upload(client, h.insts[0], 1, h.update(0.25))


def _wrong_round(h, client):
    data = h.update()
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 2, data)


def _committed_garbage(h, client):
    data = b"this is not safetensors at all"
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 1, data)


def _wrong_shape(h, client):  # smaller than the model: a larger one is refused by size first
    data = h.update(shapes=((1,), (1, 2)))
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 1, data)


def _wrong_names(h, client):
    data = h.update(names=("bias", "weight"))
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 1, data)


def _wrong_dtype(h, client):
    data = h.update(dtype=np.float16)
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 1, data)


def _nan(h, client):
    data = h.update(nan=True)
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 1, data)


def _empty_body(h, client):
    return h.upload(client, h.insts[0], 1, b"")


def _too_large_by_content_length(h, client):
    client.app.dependency_overrides[get_upload_limit] = lambda: 100
    data = h.update()  # 160 bytes
    h.commit(h.insts[0], 1, data)
    return h.upload(client, h.insts[0], 1, data)


def _too_large_streamed(h, client):
    client.app.dependency_overrides[get_upload_limit] = lambda: 100
    data = h.update()
    h.commit(h.insts[0], 1, data)
    chunks = iter([data[:80], data[80:]])  # a generator body is sent chunked, without Content-Length
    return client.post(f"/bounties/{h.bounty_id}/rounds/1/updates", content=chunks,
                       headers={"X-Signature": h.sign(h.insts[0], 1, data), "X-Update-Sha256": hashlib.sha256(data).hexdigest()})


CASES = {
    "unknown bounty": (_unknown_bounty, 404, RejectionCode.UNKNOWN_BOUNTY, "unknown bounty 99"),
    "missing signature": (_missing_signature, 401, RejectionCode.UNSIGNED, "missing X-Signature"),
    "malformed signature": (_malformed_signature, 401, RejectionCode.BAD_SIGNATURE, "malformed X-Signature"),
    "unrecoverable signature": (_unrecoverable_signature, 401, RejectionCode.BAD_SIGNATURE, "does not verify"),
    "unregistered signer": (_unregistered_signer, 403, RejectionCode.NOT_REGISTERED, "not a registered institution"),
    "not committed": (_not_committed, 403, RejectionCode.NOT_COMMITTED, "has not committed"),
    "signature for another round": (_signature_for_another_round, 403, RejectionCode.NOT_REGISTERED, ""),
    "hash mismatch": (_hash_mismatch, 409, RejectionCode.HASH_MISMATCH, "does not match"),
    "wrong round": (_wrong_round, 409, RejectionCode.ROUND_CLOSED, "round 2 is not open"),
    "committed garbage": (_committed_garbage, 400, RejectionCode.MALFORMED, "not safetensors"),
    "wrong shape": (_wrong_shape, 400, RejectionCode.MALFORMED, "shape"),
    "wrong names": (_wrong_names, 400, RejectionCode.MALFORMED, "missing tensor"),
    "wrong dtype": (_wrong_dtype, 400, RejectionCode.MALFORMED, "dtype"),
    "NaN": (_nan, 400, RejectionCode.MALFORMED, "NaN"),
    "empty body": (_empty_body, 400, RejectionCode.MALFORMED, "empty body"),
    "too large (Content-Length)": (_too_large_by_content_length, 413, RejectionCode.TOO_LARGE, "over the limit of 100"),
    "too large (streamed)": (_too_large_streamed, 413, RejectionCode.TOO_LARGE, "over the limit of 100"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rejections_are_one_line_and_change_nothing(service, case):
    h, context, _, client = service
    make, status, code, fragment = CASES[case]
    journal_before = context.state.journal()
    response = make(h, client)
    assert_one_line(response, status, code, fragment)
    assert context.state.uploads(1) == [] and context.state.uploads(2) == []
    assert stored_updates(context) == []
    assert context.state.journal() == journal_before
    assert context.state.round(1).step == "open"


def test_uploads_are_refused_once_the_round_closes(service):
    h, context, coordinator, client = service
    early, late = h.update(0.1), h.update(0.2)
    h.commit(h.insts[0], 1, early)
    h.commit(h.insts[1], 1, late)
    assert h.upload(client, h.insts[0], 1, early).status_code == 202
    context.state.begin_scoring(1)
    assert_one_line(h.upload(client, h.insts[1], 1, late), 409, RejectionCode.ROUND_CLOSED, "round 1 is not open", "scoring")
    assert [u.institution for u in context.state.uploads(1)] == [h.insts[0].address]
    # a retry after a lost response learns that the upload got in
    assert_one_line(h.upload(client, h.insts[0], 1, early), 409, RejectionCode.DUPLICATE_UPLOAD, "already has update")


def test_chain_failure_is_503(service, monkeypatch):
    h, context, _, client = service
    data = h.update()
    h.commit(h.insts[0], 1, data)

    def down(*args, **kwargs):
        raise ChainError("no chain answers at http://127.0.0.1:1")

    monkeypatch.setattr(context.ledger, "institution", down)
    assert_one_line(h.upload(client, h.insts[0], 1, data), 503, RejectionCode.UNAVAILABLE, "chain unavailable")
    assert context.state.uploads(1) == []


def test_read_endpoints(service):
    h, context, _, client = service
    b = h.bounty_id
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["bounty_id"] == b
    assert health["chain_id"] == h.w3.eth.chain_id and health["ledger"] == h.ledger.address
    assert health["aggregator"] == h.aggregator.address

    task = client.get(f"/bounties/{b}/task").json()
    assert task_hash(TaskSpec.from_dict(task)) == bytes(h.ledger.bounty(b).task_spec_hash)

    current = client.get(f"/bounties/{b}/rounds/current").json()
    assert RoundInfo.model_validate(current).fit_config.overrides() == {}  # FedAvg hands out no overrides
    chain_round = h.ledger.round(b, 1)
    assert current["round"] == 1 and current["status"] == "open"
    assert current["global_model_hash"] == "0x" + bytes(chain_round.global_model_hash).hex()
    assert current["commit_deadline"] == chain_round.commit_deadline
    assert current["selected"] == sorted(i.address for i in h.insts)

    model = client.get(f"/bounties/{b}/model")
    assert model.status_code == 200 and model.headers["content-type"] == "application/octet-stream"
    assert model.headers["X-Model-Sha256"] == current["global_model_hash"] and model.headers["X-Round"] == "1"
    assert "0x" + hashlib.sha256(model.content).hexdigest() == current["global_model_hash"]
    assert set(codec.decode(model.content, expected=context.expected)) == set(context.expected)
    assert client.get(f"/bounties/{b}/models/{current['global_model_hash']}").content == model.content

    record = client.get(f"/bounties/{b}/rounds/1").json()
    RoundReport.model_validate(record)
    assert record["step"] == "open" and record["open_tx"].startswith("0x") and record["used"] is None

    assert_one_line(client.get(f"/bounties/{b}/rounds/7"), 404, RejectionCode.NOT_FOUND, "round 7")
    assert_one_line(client.get(f"/bounties/{b}/models/{'ab' * 32}"), 404, RejectionCode.NOT_FOUND, "no model")
    assert_one_line(client.get(f"/bounties/{b}/rounds/1/updates/{'ab' * 32}"), 403, RejectionCode.ROUND_OPEN, "sealed")
    assert_one_line(client.get(f"/bounties/{b}/rounds/7/updates/{'ab' * 32}"), 404, RejectionCode.NOT_FOUND, "was accepted")
    assert_one_line(client.get(f"/bounties/{b + 1}/task"), 404, RejectionCode.UNKNOWN_BOUNTY, "unknown bounty")
    assert_one_line(client.get("/bounties/abc/task"), 400, RejectionCode.MALFORMED, "malformed request")
    assert_one_line(client.get(f"/bounties/{b}/models/xyz"), 400, RejectionCode.MALFORMED, "malformed request")


def test_waiting_before_the_first_round(harness):
    context = harness.context()
    client = harness.client(context)
    current = client.get(f"/bounties/{harness.bounty_id}/rounds/current").json()
    assert current == {"bounty_id": harness.bounty_id, "round": 0, "status": "waiting", "global_model_hash": None,
                       "new_model_hash": None, "commit_deadline": 0, "selected": [], "uploads": 0,
                       "fit_config": FitConfig().model_dump(mode="json")}
    assert_one_line(client.get(f"/bounties/{harness.bounty_id}/model"), 404, RejectionCode.NOT_FOUND, "no round")
    data = harness.update()
    assert_one_line(harness.upload(client, harness.insts[0], 1, data), 409, RejectionCode.ROUND_CLOSED, "no round has been opened")


def test_dependency_override_of_the_context(service, harness):
    """The app reads everything through get_context: a test can swap the whole service state."""
    _, context, _, client = service
    other = harness.context(state_dir=harness.tmp / "other-state")
    client.app.dependency_overrides[get_context] = lambda: other
    assert client.get(f"/bounties/{harness.bounty_id}/rounds/current").json()["status"] == "waiting"
    client.app.dependency_overrides.clear()
    assert client.get(f"/bounties/{harness.bounty_id}/rounds/current").json()["status"] == "open"


def test_openapi_documents_every_endpoint(service):
    _, _, _, client = service
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert set(paths) == SERVICE_PATHS
    upload = paths["/bounties/{bounty_id}/rounds/{round}/updates"]["post"]
    assert "application/octet-stream" in upload["requestBody"]["content"]
    assert {"202", "400", "401", "403", "404", "408", "409", "413", "503"} <= set(upload["responses"])
    assert {"X-Signature", "X-Update-Sha256"} <= {p["name"] for p in upload["parameters"]}
