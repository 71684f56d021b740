"""Issue 12, attacks 2 (the visibility half) and 7: a participant reading a competitor's update before the round
closes, and anyone trying to exhaust the aggregator. One bounty of one round, real processes: Ganache,
``fedledger aggregator serve``, the four hospitals' ``fedledger node train``, and the attackers driven from here
over raw sockets and httpx (``mallory``, registered; ``outsider``, never joined).

Each attack is a function below; the test runs them against one open round, then checks that the attackers gained
nothing, the hospitals' updates are exactly the ones used (so they are paid as without the attackers), the bounty
completes, the books balance, every hospital claims, and ``audit verify --recompute`` passes.
"""

from __future__ import annotations

import hashlib
import json
import socket
import sqlite3
import time
from contextlib import closing
from urllib.parse import urlparse

import numpy as np

from fedcore import codec
from fedcore.protocol import MAX_PATH_NUMBER
from fedcore.signing import sign_upload

COMMIT_WINDOW = 75  # the nodes start after the resource attacks and must commit inside it on a busy 2-core machine
SLOTS, READ_TIMEOUT = 4, 2  # --max-concurrent-uploads, --upload-read-timeout
JUNK_UPLOADS, JUNK_BYTES = 20, 60 * 1024 * 1024
HALF_SENT = 30
RSS_BOUND = 64 * 1024 * 1024  # growth allowed over the junk uploads; buffering them would take 1.2 GiB


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes (Linux /proc)."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_upload(url: str, path: str, headers: dict[str, str]) -> socket.socket:
    """A connection with an upload's request line and headers sent, and no body yet."""
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=20)
    head = [f"POST {path} HTTP/1.1", f"Host: {parsed.hostname}", "Content-Type: application/octet-stream",
            *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    sock.sendall("\r\n".join(head).encode())
    return sock


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], dict, bool]:
    """(status, headers, JSON body, whether the server then closed the connection)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        body += sock.recv(65536)
    try:
        closed = sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        closed = False
    return int(lines[0].split()[1]), headers, json.loads(body or b"{}"), closed


def signed_headers(fed, account, bounty_id: int, round_: int, digest: bytes, length: int) -> dict[str, str]:
    signature = sign_upload(account, fed.w3.eth.chain_id, fed.ledger.address, bounty_id, round_, digest)
    return {"Content-Length": str(length), "X-Update-Sha256": digest.hex(), "X-Signature": signature}


# -- the attacks ---------------------------------------------------------------------------------------------
def huge_path_numbers(aggregator, bounty_id: int) -> None:
    """Round and bounty numbers past 2^32-1, past 2^63-1, or negative: 400 with a code, never a 500."""
    paths = [f"/bounties/{bounty_id}/rounds/{2**63}", f"/bounties/{bounty_id}/rounds/{2**64 + 1}",
             f"/bounties/{bounty_id}/rounds/{MAX_PATH_NUMBER + 1}", f"/bounties/{bounty_id}/rounds/-1",
             f"/bounties/{2**70}/task", "/bounties/-1/rounds/current",
             f"/bounties/{bounty_id}/rounds/{2**63}/updates/{'ab' * 32}"]
    for path in paths:
        answer = aggregator.http.get(path)
        assert answer.status_code == 400 and answer.json()["code"] == "malformed", (path, answer.text)
    posted = aggregator.http.post(f"/bounties/{bounty_id}/rounds/{2**64}/updates", content=b"x" * 160)
    assert posted.status_code == 400 and posted.json()["code"] == "malformed", posted.text


def junk_oversized_uploads(fed, aggregator, bounty_id: int) -> dict:
    """Twenty 60 MiB uploads (half declared by Content-Length, half chunked without one, all signed): each is refused
    before its body is buffered and its connection closed; the service's RSS stays bounded."""
    before = rss(aggregator.proc.pid)
    pushed = []
    for i in range(JUNK_UPLOADS):
        digest = hashlib.sha256(b"junk %d" % i).digest()
        account = fed.mallory if i % 2 else fed.outsider
        headers = signed_headers(fed, account, bounty_id, 1, digest, JUNK_BYTES)
        if i % 4 >= 2:  # chunked: no size to refuse up front, the signer is refused before a byte is read
            del headers["Content-Length"]
            headers["Transfer-Encoding"] = "chunked"
        with closing(open_upload(aggregator.url, f"/bounties/{bounty_id}/rounds/1/updates", headers)) as sock:
            status, _, body, closed = read_answer(sock)
            expected = (413, "too_large") if "Content-Length" in headers else (
                (403, "not_committed") if account is fed.mallory else (403, "not_registered"))
            assert (status, body["code"]) == expected and closed, (i, status, body, closed)
            sent = 0
            try:
                for _ in range(JUNK_BYTES // (1 << 20)):
                    sock.sendall(b"\0" * (1 << 20))
                    sent += 1 << 20
            except OSError:
                pass
            pushed.append(sent)
    after = rss(aggregator.proc.pid)
    assert after - before < RSS_BOUND, f"RSS grew from {before} to {after} bytes"
    assert max(pushed) < JUNK_BYTES, "a refused upload's connection kept taking its body"
    return {"rss_before_mib": before / 2**20, "rss_after_mib": after / 2**20, "max_bytes_pushed_after_refusal": max(pushed)}


def half_sent_bodies(fed, aggregator, bounty_id: int, update_size: int) -> dict:
    """Mallory commits, then opens many uploads that pass every header check and send half their body: one holds one
    upload slot (one per signer) until the read timeout (408, closed), every other one is answered 503 busy at once,
    and the other SLOTS - 1 slots stay free for the hospitals."""
    junk = b"\1" * update_size
    digest = hashlib.sha256(junk).digest()
    fed.ledger.as_sender(fed.mallory).commit_update(bounty_id, 1, fed.commitment(bounty_id, 1, fed.mallory.address, junk), 10)
    headers = signed_headers(fed, fed.mallory, bounty_id, 1, digest, update_size)
    started = time.monotonic()
    socks = [open_upload(aggregator.url, f"/bounties/{bounty_id}/rounds/1/updates", headers) for _ in range(HALF_SENT)]
    try:
        for sock in socks:
            sock.sendall(junk[: update_size // 2])
        answers = [read_answer(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    seconds = time.monotonic() - started
    codes = sorted((status, body["code"]) for status, _, body, _ in answers)
    assert codes == sorted([(408, "body_timeout")] + [(503, "busy")] * (HALF_SENT - 1)), codes
    assert all(closed for *_, closed in answers), "a stalled upload's connection was left open"
    assert all(int(h["retry-after"]) >= 1 for status, h, _, _ in answers if status == 503)
    assert seconds < READ_TIMEOUT + 15, seconds
    return {"half_sent": HALF_SENT, "timed_out": 1, "busy": HALF_SENT - 1, "all_answered_s": round(seconds, 1)}


def accepted(aggregator, address: str) -> bool:
    """Whether the aggregator accepted ``address``'s round-1 upload (its database: the API does not say while open)."""
    with closing(sqlite3.connect(f"file:{aggregator.state_dir / 'aggregator.sqlite'}?mode=ro", uri=True)) as db:
        return db.execute("SELECT 1 FROM uploads WHERE round = 1 AND institution = ?", (address,)).fetchone() is not None


def copy_before_close(fed, aggregator, bounty_id: int, state_root, victim) -> dict:
    """A bot that even knows the victim's update hash (read here from the victim's own disk) polls the round record and
    the update's URL while the window is open: no hash is listed, the bytes are refused. Returns the probe counts."""
    probes = 0
    while aggregator.current(bounty_id)["status"] == "open":
        update_file = state_root / victim.name / str(bounty_id) / "round-1.safetensors"
        if update_file.exists() and accepted(aggregator, victim.address):
            sha = hashlib.sha256(update_file.read_bytes()).hexdigest()
            download = aggregator.http.get(f"/bounties/{bounty_id}/rounds/1/updates/{sha}")
            listed = aggregator.http.get(f"/bounties/{bounty_id}/rounds/1").json()["uploads"]
            record = aggregator.http.get(f"/bounties/{bounty_id}/rounds/1").json()
            if record["step"] != "open":  # closed meanwhile (steps only move forward): the answers may be post-close
                break
            assert listed == [], listed
            assert download.status_code == 403 and download.json()["code"] == "round_open", download.text
            probes += 1
        time.sleep(0.2)
    return {"probes_refused_while_open": probes}


def test_service_attacks_gain_nothing(federation, procs, tmp_path):
    fed = federation
    t0 = time.monotonic()
    bounty_id = fed.create_bounty(procs, rounds=1, commit_window=COMMIT_WINDOW)
    # the round closes on its invited set or its window: mallory is invited, commits and never uploads, so the round
    # stays open for the whole window and the copy bot has every chance; a short grace keeps the module short
    aggregator = fed.start_aggregator(procs, bounty_id, tmp_path / "aggregator-state", extra=(
        "--upload-grace", 2, "--max-concurrent-uploads", SLOTS, "--upload-read-timeout", READ_TIMEOUT))
    fed.wait_until(lambda: aggregator.current(bounty_id)["status"] == "open", timeout=60, what="round 1 to open",
                   alive=(aggregator.proc,))
    model = aggregator.http.get(f"/bounties/{bounty_id}/model").content
    update_size = len(codec.encode({k: np.zeros_like(v) for k, v in codec.decode(model).items()}))

    huge_path_numbers(aggregator, bounty_id)
    measured = junk_oversized_uploads(fed, aggregator, bounty_id)
    measured |= half_sent_bodies(fed, aggregator, bounty_id, update_size)
    assert aggregator.proc.alive()

    state_root = tmp_path / "nodes"
    nodes = fed.start_nodes(procs, bounty_id, aggregator.url, state_root)
    measured |= copy_before_close(fed, aggregator, bounty_id, state_root, fed.hospitals["hungarian"])
    assert measured["probes_refused_while_open"] > 0, "the bot never saw the victim's upload accepted while open"
    fed.wait_completed(bounty_id, timeout=300, alive=(aggregator.proc,))
    for node in nodes.values():
        node.wait(120)

    books = fed.check_books(bounty_id, rounds=1)
    hospitals = {h.address for h in fed.hospitals.values()}
    record = aggregator.round_record(bounty_id, 1)
    assert {u["institution"] for u in record["used"]} == hospitals  # exactly the honest updates: paid as without us
    assert {u["institution"] for u in record["uploads"]} == hospitals  # listed once closed, for auditors
    assert set(record["excluded"]) == {fed.mallory.address}  # committed, never completed an upload
    assert set(books["credits"]) <= hospitals and fed.ledger.contribution_of(bounty_id, fed.mallory.address)[0] == 0
    fed.claim_all(procs, bounty_id, books["credits"])
    fed.audit_verify(procs, bounty_id, aggregator.url)
    print(json.dumps({**measured, "module_s": round(time.monotonic() - t0, 1)}))
