"""Chain backends and the few operations every client needs: connect, send, call, time travel.

Two backends run the same bytecode:

* ``"embedded"``: web3's ``EthereumTesterProvider`` (eth-tester on py-evm), in this process. Each
  ``connect("embedded")`` creates a NEW, empty chain with 10 unlocked accounts of 1,000,000 ETH; keep the
  ``Web3`` object to keep the chain. Its chain id is eth-tester's fixed 131277322940537.
* any ``http(s)://`` URL: a JSON-RPC node, e.g. the Ganache of ``fedledger chain up``.
"""

from __future__ import annotations

import functools
import threading
import weakref
from contextlib import nullcontext
from typing import Any

from eth.vm.message import Message
from eth_abi.grammar import TupleType
from eth_abi.grammar import parse as parse_abi_type
from eth_account.signers.local import LocalAccount
from eth_tester import EthereumTester
from eth_typing import ChecksumAddress
from eth_utils import to_bytes, to_canonical_address
from eth_utils.abi import get_abi_output_types
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3
from web3.exceptions import TimeExhausted, Web3Exception
from web3.types import RPCEndpoint, TxParams, TxReceipt, Wei

from fedcore.errors import ChainError, ContractRevert
from ledger.reverts import to_revert

EMBEDDED = "embedded"
GAS_MARGIN = 1.2  # estimates are exact for the estimating state; leave room for state changed since
RECEIPT_TIMEOUT = 120

Sender = LocalAccount | str


def connect(rpc: str | None = None, *, timeout: float = 30) -> Web3:
    """Connect to a chain.

    Parameters
    ----------
    rpc : str or None
        None or ``"embedded"`` for a new in-process chain; an ``http://`` or ``https://`` JSON-RPC URL otherwise.
    timeout : float
        Seconds an HTTP request may take.

    Returns
    -------
    Web3
        A connected instance.

    Raises
    ------
    ChainError
        When the URL is not http(s) or nothing answers there.
    """
    if rpc in (None, "", EMBEDDED):
        return Web3(EthereumTesterProvider())
    if not rpc.startswith(("http://", "https://")):
        raise ChainError(f"unsupported chain URL {rpc!r}: use http(s)://host:port or 'embedded'")
    # The chain id is asked before every call and transaction (web3's validation middleware): one round trip each,
    # half of a round's requests on Anvil. A node's chain id does not change under a connection: ask once.
    w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": timeout}, cache_allowed_requests=True,
                                cacheable_requests={RPCEndpoint("eth_chainId")}))
    if not w3.is_connected():
        raise ChainError(f"no chain answers at {rpc} (start one with `fedledger chain up`)")
    return w3


def is_embedded(w3: Web3) -> bool:
    """True for the in-process eth-tester chain."""
    return isinstance(w3.provider, EthereumTesterProvider)


def _embedded_tester(w3: Web3) -> EthereumTester | None:
    """The eth-tester behind ``w3``, or None on a JSON-RPC chain."""
    return w3.provider.ethereum_tester if isinstance(w3.provider, EthereumTesterProvider) else None


# One lock per embedded chain: a transaction sent without a simulation (below) is undone by reverting to a snapshot,
# which would also undo a block another thread of this process mined meanwhile. Whatever mines takes it.
_EMBEDDED_LOCKS: weakref.WeakKeyDictionary[EthereumTester, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _mining(w3: Web3) -> Any:
    """The embedded chain's mining lock (a no-op context on a JSON-RPC chain)."""
    tester = _embedded_tester(w3)
    if tester is None:
        return nullcontext()
    with _LOCKS_GUARD:
        return _EMBEDDED_LOCKS.setdefault(tester, threading.RLock())


def _latest_header(tester: EthereumTester) -> Any:
    # eth-tester's "latest": the block before the pending one (py-evm's chain.get_block() is the pending block)
    chain = tester.backend.chain
    return chain.get_canonical_block_header_by_number(max(0, chain.get_block().number - 1))


def embedded_head(w3: Web3) -> str | None:
    """The hash of the embedded chain's latest block (None on a JSON-RPC chain).

    It keys what is read once per block: on the embedded chain a view is an EVM run in this process while the head
    costs nothing (a hash, not a number: reverting to a snapshot reuses numbers); a JSON-RPC node would charge a
    round trip for the head as for the view itself.
    """
    tester = _embedded_tester(w3)
    return None if tester is None else _latest_header(tester).hash.hex()


# Per embedded chain: the latest block's hash and a py-evm state at that block, which views run on (see _fast_view).
_VIEW_STATES: weakref.WeakKeyDictionary[EthereumTester, tuple[bytes, Any]] = weakref.WeakKeyDictionary()
_NO_ANSWER = object()


def _fast_view(contract_function_call: Any, sender: Sender) -> Any:
    """A view on the embedded chain's latest block, run as one EVM message on a state kept for that block; or
    ``_NO_ANSWER`` when the ordinary ``eth_call`` must answer (a revert, no code, another backend), so errors
    read exactly as before.

    eth-tester's ``eth_call`` builds a fresh state from the block's trie and runs a whole transaction (validation,
    gas purchase, refund) for every view: about 7 ms here where the message alone, on a state whose trie reads are
    cached since the block's first view, takes under 2 ms. Same block, same sender and origin, same code.
    """
    w3 = contract_function_call.w3
    tester = _embedded_tester(w3)
    if tester is None or not hasattr(tester.backend, "chain"):
        return _NO_ANSWER
    to = to_canonical_address(contract_function_call.address)
    origin = to_canonical_address(_address(sender))
    data = to_bytes(hexstr=contract_function_call._encode_transaction_data())
    with _mining(w3):  # the state is shared by this process's threads; mining moves the head
        header = _latest_header(tester)
        kept = _VIEW_STATES.get(tester)
        if kept is None or kept[0] != header.hash:
            kept = _VIEW_STATES[tester] = (header.hash, tester.backend.chain.get_vm(at_header=header).state)
        state = kept[1]
        snapshot = state.snapshot()
        try:
            code = state.get_code(to)
            message = Message(gas=header.gas_limit, to=to, sender=origin, value=0, data=data, code=code)
            context = state.get_transaction_context_class()(gas_price=0, origin=origin)
            computation = state.computation_class.apply_message(state, message, context)
        finally:
            state.revert(snapshot)
    if not code or computation.is_error:
        return _NO_ANSWER
    types = get_abi_output_types(contract_function_call.abi)
    values = tuple(_checksummed(_abi_type(t), v) for t, v in zip(types, w3.codec.decode(types, computation.output),
                                                                   strict=True))
    return values[0] if len(values) == 1 else values


@functools.lru_cache(maxsize=256)
def _abi_type(name: str) -> Any:
    return parse_abi_type(name)


def _checksummed(kind: Any, value: Any) -> Any:
    """Decoded ABI ``value`` with its addresses checksummed, as web3's eth_call returns them (its generic
    normalizer walks every value through several layers of formatters: a quarter of a struct view's cost)."""
    if kind.arrlist:
        return [_checksummed(kind.item_type, item) for item in value]
    if isinstance(kind, TupleType):
        return tuple(_checksummed(part, item) for part, item in zip(kind.components, value, strict=True))
    return Web3.to_checksum_address(value) if kind.base == "address" else value


def embedded_logs(w3: Web3, address: str, from_block: int, to_block: int | str = "latest") -> list[dict] | None:
    """Every log ``address`` emitted in blocks ``[from_block, to_block]`` of the embedded chain, as ``eth_getLogs``
    entries (undecoded), read from py-evm's receipts; None on a JSON-RPC chain.

    eth-tester's ``eth_getLogs`` looks every transaction of every block up by hash, scanning back from the head,
    and formats each receipt: about 2 ms a block here where the receipts themselves take 0.4 ms.
    """
    tester = _embedded_tester(w3)
    if tester is None or not hasattr(tester.backend, "chain"):
        return None
    chain = tester.backend.chain
    emitter = to_canonical_address(address)
    latest = max(0, chain.get_block().number - 1)
    last = latest if to_block == "latest" else min(int(to_block), latest)
    found: list[dict] = []
    with _mining(w3):
        for number in range(max(0, int(from_block)), last + 1):
            block = chain.get_canonical_block_by_number(number)
            index = 0
            for position, (tx, receipt) in enumerate(zip(block.transactions, block.get_receipts(chain.chaindb))):
                for log in receipt.logs:
                    if log.address == emitter:
                        found.append({
                            "address": Web3.to_checksum_address(log.address),
                            "topics": [HexBytes(topic.to_bytes(32, "big")) for topic in log.topics],
                            "data": HexBytes(log.data), "blockNumber": number, "blockHash": HexBytes(block.hash),
                            "transactionHash": HexBytes(tx.hash), "transactionIndex": position, "logIndex": index,
                        })
                    index += 1
    return found


def _rpc(w3: Web3, method: str, params: list) -> Any:
    response = w3.provider.make_request(RPCEndpoint(method), params)
    if "error" in response:
        raise ChainError(f"{method} failed: {response['error'].get('message', response['error'])}")
    return response.get("result")


def latest_timestamp(w3: Web3) -> int:
    """Timestamp (seconds) of the latest block (on the embedded chain from its header: eth-tester's
    ``eth_getBlockByNumber`` formats the whole block)."""
    tester = _embedded_tester(w3)
    if tester is not None and hasattr(tester.backend, "chain"):
        return int(_latest_header(tester).timestamp)
    return int(w3.eth.get_block("latest")["timestamp"])


def mine(w3: Web3, blocks: int = 1) -> None:
    """Mine ``blocks`` empty blocks."""
    tester = _embedded_tester(w3)
    if tester is not None:
        with _mining(w3):
            tester.mine_blocks(blocks)
    else:
        for _ in range(blocks):
            _rpc(w3, "evm_mine", [])


def advance_time(w3: Web3, seconds: int) -> int:
    """Move chain time forward by at least ``seconds`` and mine a block at the new time.

    Works on eth-tester (``time_travel``) and on Ganache, Anvil or Hardhat (``evm_increaseTime`` +
    ``evm_mine``; their later blocks keep the offset).

    Returns
    -------
    int
        The timestamp of the newly mined block.
    """
    if seconds < 0:
        raise ValueError("time only moves forward")
    tester = _embedded_tester(w3)
    if tester is not None:
        # eth-tester 0.13's time_travel(t) mines a block stamped t - 1, hence the + 1; and it refuses to
        # travel to or before the pending block's time, where a plain mine does the job.
        with _mining(w3):
            target = latest_timestamp(w3) + int(seconds) + 1
            if target <= tester.get_block_by_number("pending")["timestamp"]:
                tester.mine_blocks(1)
            else:
                tester.time_travel(target)
    else:
        _rpc(w3, "evm_increaseTime", [int(seconds)])
        _rpc(w3, "evm_mine", [])
    return latest_timestamp(w3)


def _address(sender: Sender) -> ChecksumAddress:
    return Web3.to_checksum_address(sender if isinstance(sender, str) else sender.address)


def _abi_of(call: Any) -> list:
    # ContractFunction carries the whole contract ABI as .contract_abi (its .abi is one entry);
    # ContractConstructor has the whole ABI as .abi.
    for attr in ("contract_abi", "abi"):
        abi = getattr(call, attr, None)
        if isinstance(abi, (list, tuple)):
            return list(abi)
    return []


def _raise_mapped(exc: Exception, abi: list, what: str = "transaction") -> None:
    """Re-raise ``exc`` as ContractRevert or ChainError if it is a chain failure; otherwise return."""
    revert = to_revert(exc, abi)
    if revert is not None:
        raise revert from None
    # eth-tester and py-evm raise their own ValidationError for an unaffordable or malformed transaction.
    if isinstance(exc, (Web3Exception, ConnectionError, OSError)) or type(exc).__module__.startswith(
        ("eth_tester", "eth_utils", "eth.")
    ):
        message = getattr(exc, "message", None) or str(exc)
        raise ChainError(f"chain refused the {what}: {message}".splitlines()[0]) from None


def call(contract_function_call: Any, sender: Sender | None = None, block: int | str = "latest") -> Any:
    """Run a view (or simulate a transaction) with ``eth_call``, mapping reverts to ``ContractRevert``."""
    if block == "latest" and sender is not None:
        found = _fast_view(contract_function_call, sender)
        if found is not _NO_ANSWER:
            return found
    params = {"from": _address(sender)} if sender is not None else {}
    try:
        return contract_function_call.call(params, block_identifier=block)
    except Exception as exc:
        _raise_mapped(exc, _abi_of(contract_function_call), "call")
        raise


def send_transaction(
    w3: Web3,
    contract_function_call: Any,
    sender: Sender,
    value: int = 0,
    gas: int | None = None,
    *,
    known_gas: int | None = None,
    errors_abi: list | None = None,
) -> TxReceipt:
    """Send a contract call (or constructor) as a transaction and wait for its receipt.

    Parameters
    ----------
    w3 : Web3
        The connected chain.
    contract_function_call : ContractFunction or ContractConstructor
        E.g. ``contract.functions.claim(bountyId)`` or ``Contract.constructor(*args)``.
    sender : LocalAccount or str
        A local account (the transaction is signed here and sent raw) or the address of an account the
        node holds unlocked (``eth_sendTransaction``).
    value : int
        Wei sent along.
    gas : int, optional
        Gas limit, sent as is (a revert is then mined, and replayed for its reason). When omitted, ``known_gas``
        or an estimate (with a 20% margin); either surfaces a revert before anything is mined.
    known_gas : int, optional
        A gas limit known in advance (``ledger.client.gas_limit``), sent instead of an estimate (py-evm estimates
        by a binary search of re-executions). On a JSON-RPC chain the transaction is simulated once with
        ``eth_call`` first; on the embedded chain it is sent under a snapshot, and a revert is named from the mined
        block and then undone (no block, no nonce, no fee remains). Either way nothing of a refused one stays.
    errors_abi : list of dict, optional
        Extra ABI entries to decode custom errors with (e.g. a token's errors bubbling up).

    Returns
    -------
    TxReceipt
        The receipt of a successful transaction (status 1).

    Raises
    ------
    ContractRevert
        When the contract reverts, by estimate or once mined (then replayed with ``eth_call`` to get the reason).
    ChainError
        When the node refuses the transaction (funds, nonce, connection) or no receipt comes in time.
    """
    abi = _abi_of(contract_function_call) + list(errors_abi or [])
    params: dict[str, Any] = {"from": _address(sender), "value": int(value)}
    tester = _embedded_tester(w3)
    if gas is None and known_gas is not None and tester is not None:
        # In process, a snapshot is free and the sender alone mines: send for real, and should it revert, name the
        # error from the mined block, then drop that block. One EVM run instead of a simulation and a run.
        with _mining(w3):
            snapshot = tester.take_snapshot()
            receipt = _submit(w3, contract_function_call, sender, {**params, "gas": int(known_gas)}, abi)
            if receipt["status"] != 1:
                try:
                    _replay_failure(w3, receipt, abi)
                finally:
                    tester.revert_to_snapshot(snapshot)
        return receipt
    try:
        if gas is None and known_gas is not None:
            # simulated in the block it would be mined in; a revert raises here, before anything is mined
            contract_function_call.call({**params, "gas": int(known_gas)}, block_identifier="pending")
            gas = known_gas
        elif gas is None:
            estimate = contract_function_call.estimate_gas(params)
            limit = w3.eth.get_block("latest")["gasLimit"]
            gas = min(int(estimate * GAS_MARGIN) + 10_000, limit)
    except Exception as exc:
        _raise_mapped(exc, abi)
        raise
    with _mining(w3):
        receipt = _submit(w3, contract_function_call, sender, {**params, "gas": int(gas)}, abi)
    if receipt["status"] != 1:
        _replay_failure(w3, receipt, abi)
    return receipt


def _submit(w3: Web3, contract_function_call: Any, sender: Sender, params: dict[str, Any], abi: list) -> TxReceipt:
    """Sign (or have the node sign) and send one transaction with its gas limit set; wait for its receipt."""
    try:
        if isinstance(sender, str):
            tx_hash = contract_function_call.transact(params)
        else:
            params = {**params, "nonce": w3.eth.get_transaction_count(params["from"], "pending")}
            tx = contract_function_call.build_transaction(params)
            tx_hash = w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
        return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT)
    except TimeExhausted:
        raise ChainError(f"no receipt within {RECEIPT_TIMEOUT}s for a transaction from {params['from']}") from None
    except Exception as exc:
        _raise_mapped(exc, abi)
        raise


def _replay_failure(w3: Web3, receipt: TxReceipt, abi: list) -> None:
    """A mined transaction failed: re-run it to learn why, then raise.

    First on the mined block itself, whose timestamp is the one the transaction saw: a revert that depends on
    ``block.timestamp`` (``DeadlinePassed``, ``RoundClosed`` for a commit mined just after the window closed) does
    not happen on the parent block, where a later check of the same call may revert instead and name the wrong reason.
    A reverted transaction changed no contract state, so that replay sees what it saw unless another transaction of
    the same block changed it; if it then passes, the parent block's state is tried.
    """
    tx = w3.eth.get_transaction(receipt["transactionHash"])
    request: TxParams = {"from": tx["from"], "value": tx["value"], "data": tx["input"], "gas": tx["gas"]}
    if tx.get("to"):
        request["to"] = tx["to"]
    for block in dict.fromkeys((receipt["blockNumber"], max(receipt["blockNumber"] - 1, 0))):
        try:
            w3.eth.call(request, block_identifier=block)
        except Exception as exc:
            _raise_mapped(exc, abi)
            raise
    raise ChainError(
        f"transaction {receipt['transactionHash'].hex()} failed "
        f"(status 0, gas used {receipt['gasUsed']} of {tx['gas']})"
    )


def fund_account(w3: Web3, to: str, wei: int) -> TxReceipt:
    """Send ``wei`` to ``to`` from the node's first unlocked account (embedded chain, Ganache).

    Raises
    ------
    ChainError
        When the node holds no unlocked account.
    """
    accounts = w3.eth.accounts
    if not accounts:
        raise ChainError("the chain has no unlocked account to fund from")
    try:
        with _mining(w3):
            tx_hash = w3.eth.send_transaction(
                {"from": accounts[0], "to": Web3.to_checksum_address(to), "value": Wei(int(wei)), "gas": 21_000}
            )
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT)
    except Exception as exc:
        _raise_mapped(exc, [])
        raise
    if receipt["status"] != 1:
        raise ChainError(f"funding {to} failed")
    return receipt


__all__ = [
    "EMBEDDED",
    "ContractRevert",
    "advance_time",
    "call",
    "connect",
    "embedded_logs",
    "fund_account",
    "is_embedded",
    "latest_timestamp",
    "mine",
    "send_transaction",
]
