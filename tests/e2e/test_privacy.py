"""No training record ever leaves a hospital: every byte a node sends is captured and searched for its rows.

Each of the four ``fedledger node train`` processes talks to the aggregator and to the chain only through two
recording proxies started by this test (one in front of the aggregator's HTTP service, one in front of Ganache's
JSON-RPC): every request line, header and body it sends is kept. After a real round (aggregated, scored, finalized
on chain), the test searches, for every row of the hospital's CSV, every encoding of it the code uses:

* the row as text (the CSV line itself, and its values joined by commas);
* the row's values (features in the task's order, with and without the label; all CSV columns) as float32 and
  float64 bytes, raw and standardized as the node standardizes them (``node.site.load_site``);
* each of those byte strings as hex (JSON-RPC carries transactions as hex);

in: every captured request (headers and bodies), the calldata of every transaction the hospital's address sent,
read back from the chain, the node's log, every file of its state folder, and the aggregator's log and state folder.
A positive control plants one row in a copy of a captured upload and checks that the search finds it.

It runs twice: nodes committing on chain themselves on a bounty without DP, and nodes training under DP that sign
their commitments (``--gasless``, the declared epsilon in the signed struct) for the aggregator's batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

pytestmark = [pytest.mark.ganache, pytest.mark.slow, pytest.mark.timeout(600)]

COMMIT_WINDOW = 60


class RecordingProxy:
    """An HTTP proxy on 127.0.0.1 that forwards every request to ``upstream`` and keeps its raw bytes."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.requests: list[tuple[str, bytes, bytes]] = []  # (method and path, request line and headers, body)
        proxy = self
        client = httpx.Client(timeout=120)

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                head = (self.requestline + "\r\n" + str(self.headers)).encode("latin-1")
                proxy.requests.append((f"{self.command} {self.path}", head, body))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                upstream = client.request(self.command, proxy.upstream + self.path, content=body, headers=headers)
                self.send_response(upstream.status_code)
                for key, value in upstream.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(upstream.content)))
                self.end_headers()
                self.wfile.write(upstream.content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.client = client
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.client.close()


def record_encodings(csv_path: Path, task_path: Path) -> list[tuple[str, bytes]]:
    """(description, needle) for every row of the CSV in every encoding the code uses (see the module docstring)."""
    from fedcore.task import TaskSpec
    from node.site import load_site

    spec = TaskSpec.load(task_path)
    lines = csv_path.read_text().strip().splitlines()
    header = lines[0].split(",")
    raw = np.array([[float(v) for v in line.split(",")] for line in lines[1:]])
    features = raw[:, [header.index(c) for c in spec.feature_columns]]
    labels = raw[:, header.index(spec.label_column)]
    site = load_site(csv_path, spec)
    assert site.n_rows == len(raw)  # the rows the node trains on are the file's rows, in order
    needles: list[tuple[str, bytes]] = []
    for i, line in enumerate(lines[1:]):
        arrays = {
            "all columns": raw[i],
            "features": features[i],
            "features + label": np.append(features[i], labels[i]),
            "standardized features": site.X[i].astype(np.float64),
            "standardized features + label": np.append(site.X[i].astype(np.float64), site.y[i]),
        }
        binary = [(f"row {i} {what} as {dtype.__name__}", values.astype(dtype).tobytes())
                  for what, values in arrays.items() for dtype in (np.float32, np.float64)]
        text = [(f"row {i} CSV line", line.encode()),
                (f"row {i} features as text", ",".join(repr(float(v)) for v in features[i]).encode()),
                (f"row {i} standardized features as text", ",".join(repr(float(v)) for v in site.X[i]).encode())]
        needles += binary + text + [(f"{what} as hex", value.hex().encode()) for what, value in binary]
    return needles


def leaks(needles: list[tuple[str, bytes]], haystacks: dict[str, bytes]) -> list[str]:
    """Every (needle, place) where a record was found."""
    return [f"{what} in {where}" for where, blob in haystacks.items() for what, needle in needles if needle in blob]


def _files(root: Path, label: str) -> dict[str, bytes]:
    return {f"{label} {path.relative_to(root)}": path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _under_dp(fed, root: Path, epsilon: float = 10.0):
    """The federation with a task that asks for DP (its own task, validation and rules files under ``root``)."""
    from fedcore.task import PrivacySettings, TaskSpec

    root.mkdir()
    spec = TaskSpec.load(fed.data / "task.json")
    dataclasses.replace(spec, privacy=PrivacySettings(epsilon=epsilon, delta=1e-4, max_grad_norm=1.0, rounds=1)).save(
        root / "task.json")
    shutil.copy(fed.data / "validation.csv", root / "validation.csv")
    return dataclasses.replace(fed, data=root)


@pytest.mark.parametrize("mode", ["self-commit", "gasless-dp"])
def test_no_training_record_leaves_a_hospital(federation, procs, tmp_path, mode):
    gasless = mode == "gasless-dp"
    fed = _under_dp(federation, tmp_path / "dp-task") if gasless else federation
    bounty_id = fed.create_bounty(procs, rounds=1, commit_window=COMMIT_WINDOW)
    budget = fed.ledger.bounty(bounty_id).epsilon_budget
    assert (budget > 0) == gasless
    aggregator = fed.start_aggregator(procs, bounty_id, tmp_path / "aggregator-state")
    fed.wait_until(lambda: aggregator.current(bounty_id)["status"] == "open", timeout=60, what="round 1 to open",
                   alive=(aggregator.proc,))
    state_root = tmp_path / "nodes"
    proxies = {h: (RecordingProxy(aggregator.url), RecordingProxy(fed.rpc)) for h in fed.hospitals}
    try:
        nodes = {}
        for h, (to_aggregator, to_chain) in proxies.items():
            args = fed.node_args(h, bounty_id, to_aggregator.url, state_root) + (["--gasless"] if gasless else [])
            args[args.index("--rpc") + 1] = to_chain.url
            nodes[h] = procs.start(f"node-{h}", *args)
        fed.wait_completed(bounty_id, timeout=400, alive=(aggregator.proc,))
        for proc in nodes.values():
            assert proc.wait(180) == 0, proc.tail()
    finally:
        for pair in proxies.values():
            for proxy in pair:
                proxy.close()

    books = fed.check_books(bounty_id, rounds=1)
    committers = {e["institution"]: fed.w3.eth.get_transaction("0x" + e["transactionHash"].removeprefix("0x"))["from"]
                  for e in books["committed"]}
    assert set(committers) == {hospital.address for hospital in fed.hospitals.values()}
    if gasless:  # every commitment went on chain in the aggregator's batch, each declaring the epsilon it signed
        assert set(committers.values()) == {fed.aggregator_address}
        assert len({e["transactionHash"] for e in books["committed"]}) == 1
        assert all(0 < e["epsilon"] <= budget for e in books["committed"])
    else:
        assert all(committers[a] == a for a in committers) and all(e["epsilon"] == 0 for e in books["committed"])
    used = {u["institution"]: u["sha256"] for u in aggregator.round_record(bounty_id, 1)["used"]}
    aggregator_files = {**_files(aggregator.state_dir, "aggregator state"), "aggregator log": aggregator.proc.out.read_bytes()}
    for h, hospital in fed.hospitals.items():
        to_aggregator, to_chain = proxies[h]
        # the capture is real: the node reached both services through it, and its upload is what was used
        uploads = [body for path, _, body in to_aggregator.requests if path.startswith("POST") and "/updates" in path]
        assert len(uploads) == 1 and to_chain.requests
        body = uploads[0]
        assert "0x" + hashlib.sha256(body).hexdigest() == used[hospital.address]
        sent = [tx for block in range(fed.w3.eth.block_number + 1)
                for tx in fed.w3.eth.get_block(block, full_transactions=True)["transactions"] if tx["from"] == hospital.address]
        assert any(e["institution"] == hospital.address for e in books["committed"]) and sent
        haystacks = {
            **{f"request {i} to the aggregator ({path})": head + body for i, (path, head, body) in enumerate(to_aggregator.requests)},
            **{f"request {i} to the chain": head + body for i, (_, head, body) in enumerate(to_chain.requests)},
            **{f"calldata of transaction {tx['hash'].hex()}": bytes(tx["input"]) for tx in sent},
            f"node-{h} log": nodes[h].out.read_bytes(),
            **_files(state_root / h, f"{h} state folder"),
            **aggregator_files,
        }
        needles = record_encodings(hospital.data, fed.data / "task.json")
        assert len(needles) == hospital.rows * 23
        assert leaks(needles, haystacks) == []
        # positive control: a row planted in a captured upload is found, in each of its encodings
        planted = {"planted upload": body[:40] + b"".join(n for _, n in needles[:23]) + body[40:]}
        assert len(leaks(needles[:23], planted)) == 23
