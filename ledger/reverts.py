"""Turn the many shapes of a failed call or transaction into one ``ContractRevert(name, args)``.

How a revert reaches Python differs by backend (checked with web3 7.16, eth-tester 0.13, Ganache 7.9.2):

* eth-tester (embedded): mostly a raw ``eth_tester.exceptions.TransactionFailed`` whose first argument is
  the text ``"execution reverted: b'...'"`` (the ``repr`` of the revert bytes), or
  ``"execution reverted: <reason>"`` when the data was ``Error(string)`` (already decoded). A Panic from
  ``eth_call`` comes as web3's ``ContractPanicError`` with ``.data`` hex.
* Ganache, ``eth_call``: ``ContractCustomError`` / ``ContractPanicError`` with ``.data`` the revert hex;
  ``Error(string)`` and a bare ``revert()`` come as ``Web3RPCError`` whose ``rpc_response["error"]["data"]``
  is the hex.
* Ganache, ``eth_estimateGas`` (hence ``transact``): ``ContractLogicError`` whose ``.data`` is a dict with
  the revert hex under ``"result"``.

All of them are reduced to the revert bytes, then decoded against the ``type: "error"`` entries of an ABI
plus the built-in ``Error(string)`` and ``Panic(uint256)``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from typing import Any

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from eth_utils.abi import collapse_if_tuple

from fedcore.errors import ContractRevert

_PREFIX = "execution reverted"
ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)

PANIC_CODES = {
    0x00: "generic compiler panic",
    0x01: "assert failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupt storage byte array",
    0x31: "pop on empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to an uninitialised function pointer",
}


def _hex_bytes(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            return None
    if isinstance(value, dict):
        # Ganache's eth_estimateGas error: {"result": "0x...", "programCounter": ..., ...}
        for key in ("result", "data"):
            found = _hex_bytes(value.get(key))
            if found is not None:
                return found
    return None


def revert_data(exc: BaseException) -> bytes | str | None:
    """Extract what a failed call reverted with.

    Returns
    -------
    bytes or str or None
        The raw revert bytes; or a ``str`` when the backend already decoded ``Error(string)`` into its
        reason (eth-tester); or None when ``exc`` is not a revert at all (a connection error, a nonce or
        balance problem...).
    """
    # web3's ContractLogicError family, Ganache's estimate-gas dict
    found = _hex_bytes(getattr(exc, "data", None))
    if found is not None:
        return found
    # Web3RPCError from Ganache's eth_call: only a revert when the node says so
    rpc = getattr(exc, "rpc_response", None)
    if isinstance(rpc, dict) and isinstance(rpc.get("error"), dict):
        error = rpc["error"]
        if "revert" in str(error.get("message", "")):
            found = _hex_bytes(error.get("data"))
            return found if found is not None else b""
        return None
    # eth-tester's TransactionFailed: "execution reverted: b'...'" or "execution reverted: reason"
    if type(exc).__name__ == "TransactionFailed" or str(getattr(exc, "message", "")).startswith(_PREFIX):
        text = exc.args[0] if exc.args else ""
        if isinstance(text, Exception):  # eth-tester sometimes wraps the error
            text = text.args[0] if text.args else ""
        if isinstance(text, (bytes, bytearray)):
            return bytes(text)
        text = str(text)
        if text.startswith(_PREFIX):
            text = text[len(_PREFIX):].lstrip(":").strip()
        if text[:2] in ("b'", 'b"'):
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                pass
        return text
    return None


def normalize_abi_value(abi_input: dict, value: Any) -> Any:
    """Make one decoded ABI value readable and JSON-friendly.

    Addresses become checksummed strings, ``bytes``/``bytesN`` ``0x`` hex, arrays lists and structs
    dicts by component name; numbers, bools and strings stay as they are.
    """
    abi_type = abi_input["type"]
    if abi_type.endswith("]"):
        inner = {**abi_input, "type": abi_type[: abi_type.rindex("[")]}
        return [normalize_abi_value(inner, v) for v in value]
    if abi_type == "tuple":
        components = abi_input.get("components", [])
        return {c.get("name") or str(i): normalize_abi_value(c, v) for i, (c, v) in enumerate(zip(components, value))}
    if abi_type == "address":
        return to_checksum_address(value)
    if abi_type.startswith("bytes"):
        return "0x" + bytes(value).hex()
    return value


def _selectors(abi: Iterable[dict]) -> dict[bytes, dict]:
    table = {}
    for entry in abi:
        if entry.get("type") == "error":
            types = ",".join(collapse_if_tuple(i) for i in entry.get("inputs", []))
            table[function_signature_to_4byte_selector(f"{entry['name']}({types})")] = entry
    return table


def decode_revert(data: bytes | str, abi: Iterable[dict] = ()) -> ContractRevert:
    """Decode revert data into a ``ContractRevert``.

    Parameters
    ----------
    data : bytes or str
        Raw revert bytes, or an already decoded ``Error(string)`` reason.
    abi : iterable of dict
        ABI entries to match custom errors against (several contracts' ABIs may be concatenated).

    Returns
    -------
    ContractRevert
        ``name`` is the custom error's name with ``error_args`` by input name; ``"Error"`` with
        ``{"reason": str}`` for ``require(cond, "...")``; ``"Panic"`` with ``{"code": int}``;
        ``"Revert"`` with ``{}`` for a revert without data; ``"UnknownError"`` with ``{"data": hex}``
        for a selector not in ``abi``.
    """
    if isinstance(data, str):
        return ContractRevert("Error", {"reason": data}, f"contract reverted: {data}")
    if not data:
        return ContractRevert("Revert", {}, "contract reverted without a reason")
    selector, body = data[:4], data[4:]
    try:
        if selector == ERROR_STRING:
            (reason,) = decode(["string"], body)
            return ContractRevert("Error", {"reason": reason}, f"contract reverted: {reason}")
        if selector == PANIC:
            (code,) = decode(["uint256"], body)
            return ContractRevert(
                "Panic", {"code": code}, f"contract panicked: 0x{code:02x} {PANIC_CODES.get(code, 'unknown panic')}"
            )
        entry = _selectors(abi).get(selector)
        if entry is not None:
            inputs = entry.get("inputs", [])
            values = decode([collapse_if_tuple(i) for i in inputs], body)
            return ContractRevert(
                entry["name"],
                {i.get("name") or f"arg{n}": normalize_abi_value(i, v) for n, (i, v) in enumerate(zip(inputs, values))},
            )
    except DecodingError:
        pass
    return ContractRevert("UnknownError", {"data": "0x" + data.hex()})


def to_revert(exc: BaseException, abi: Iterable[dict] = ()) -> ContractRevert | None:
    """The ``ContractRevert`` an exception stands for, or None if it is not a revert.

    Examples
    --------
    >>> try:
    ...     contract.functions.store(1, 11, "x").call()
    ... except Exception as exc:
    ...     revert = to_revert(exc, contract.abi)
    ...     if revert is None:
    ...         raise
    ...     raise revert from None
    """
    if isinstance(exc, ContractRevert):
        return exc
    data = revert_data(exc)
    return None if data is None else decode_revert(data, abi)
