"""``Rejected``: a refused request, with its :class:`~fedcore.protocol.RejectionCode`
(the code decides the HTTP status)."""

from __future__ import annotations

from typing import Any

from fedcore.errors import AggregatorError
from fedcore.protocol import REJECTION_STATUS, ErrorBody, RejectionCode


class Rejected(AggregatorError):
    """A request refused with a code and one line of detail; the app answers it as :class:`ErrorBody`."""

    def __init__(self, code: RejectionCode, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.code = RejectionCode(code)
        self.status_code = REJECTION_STATUS[self.code]
        self.detail = detail
        self.headers = dict(headers or {})  # e.g. Retry-After for BUSY

    def body(self) -> ErrorBody:
        return ErrorBody(detail=self.detail, code=self.code)


def error_responses(*codes: RejectionCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the codes a route may answer with, grouped by status."""
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(REJECTION_STATUS[code], []).append(code.value)
    return {status: {"model": ErrorBody, "description": "code: " + ", ".join(names)}
            for status, names in by_status.items()}
