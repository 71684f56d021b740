"""Settings of ``fedledger aggregator serve``, from the environment and the command line.

Every field can be set by an environment variable ``FEDLEDGER_<FIELD IN UPPER CASE>`` (e.g.
``FEDLEDGER_BOUNTY``, ``FEDLEDGER_STATE_DIR``, ``FEDLEDGER_MAX_UPLOAD_BYTES``) and by the matching
``--option`` of the CLI, which wins. The keystore password comes from ``--password-file`` /
``FEDLEDGER_PASSWORD_FILE`` or ``FEDLEDGER_PASSWORD`` and is never printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from fedcore.codec import DEFAULT_MAX_BYTES
from fedcore.errors import ConfigError

ENV_PREFIX = "FEDLEDGER_"
DEFAULT_RPC = "http://127.0.0.1:8545"
DEFAULT_PORT = 8000
DEFAULT_STATE_DIR = "aggregator-state"

# Env var -> field, where the name is not simply FEDLEDGER_<FIELD>.
_ENV_ALIASES = {"FEDLEDGER_BOUNTY": "bounty_id", "FEDLEDGER_TASK": "task_path",
                "FEDLEDGER_VALIDATION": "validation_path", "FEDLEDGER_KEYSTORE": "keystore_path",
                "FEDLEDGER_RULES": "rules_path"}


class AggregatorSettings(BaseModel):
    """Everything ``fedledger aggregator serve`` needs.

    Attributes
    ----------
    bounty_id : int
        The bounty this aggregator runs (it must be the bounty's on-chain aggregator).
    task_path, validation_path, keystore_path : Path
        The task spec JSON (its ``task_hash`` must equal the bounty's ``taskSpecHash``), the validation CSV
        (the sha256 of its bytes must equal the bounty's ``validationSetHash``), the encrypted keystore.
    password_file : Path, optional
        File holding the keystore password (first line); else ``password`` (``FEDLEDGER_PASSWORD``).
    rpc, deployment : str, Path
        The chain's JSON-RPC URL and the deployment file (default ``$FEDLEDGER_DEPLOYMENT`` or ./deployment.json).
    state_dir : Path
        ``aggregator.sqlite`` and the content-addressed ``updates/``, ``models/``, ``states/``.
    host, port : str, int
        Where the HTTP API listens.
    rules_path : Path
        The bounty's round rules JSON (strategy, estimator, utility metric, scoring seed); it must hash to the
        bounty's ``rulesHash``.
    max_upload_bytes : int
        Uploads larger than this are refused with 413 before being read in full (the model's own encoded size
        caps it further: no valid update is larger).
    max_concurrent_uploads : int
        Upload bodies read at the same time; one more is answered 503 ``busy`` with ``Retry-After``.
    upload_read_timeout : float
        Seconds an upload body may take to arrive in full; a slower (or half-sent) body is answered 408 and its
        connection closed.
    max_connections : int
        Open HTTP connections the server accepts at once (uvicorn's ``limit_concurrency``); more get 503.
    seed : int
        Seed of reputation sampling (the initial model and the scoring seeds are fixed by the task and the rules).
    selection : "all" or "reputation"; clients_per_round : int, optional
        Who is invited each round: every eligible institution, or ``clients_per_round`` of them sampled
        with probability proportional to reputation (+1 basis point, so a zero reputation keeps a chance).
    upload_grace : float
        Seconds to wait, after the commit window closed, for committed institutions still uploading.
    commit_batch_margin : float
        Seconds before the commit window closes at which the gasless commitments handed over with uploads are
        posted in one batch (earlier when every invitee has uploaded).
    poll_interval : float
        Seconds between two looks at the chain while a round is open.
    wall_clock : bool
        Treat the commit window as closed also when this machine's clock is past the deadline (an idle
        development chain mines no block, so its latest timestamp stands still).
    exit_when_complete : bool
        Stop the server once the bounty is completed or cancelled.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bounty_id: int = Field(ge=1)
    task_path: Path
    validation_path: Path
    rules_path: Path
    keystore_path: Path
    password_file: Path | None = None
    password: SecretStr | None = None
    rpc: str = DEFAULT_RPC
    deployment: Path | None = None
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    host: str = "127.0.0.1"
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535)
    max_upload_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=64)
    max_concurrent_uploads: int = Field(default=8, ge=1)
    upload_read_timeout: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=256, ge=8)
    seed: int = Field(default=0, ge=0)
    selection: Literal["all", "reputation"] = "all"
    clients_per_round: int | None = Field(default=None, ge=1)
    upload_grace: float = Field(default=30.0, ge=0)
    commit_batch_margin: float = Field(default=10.0, ge=0)
    poll_interval: float = Field(default=1.0, gt=0)
    wall_clock: bool = True
    exit_when_complete: bool = False
    log_level: str = "info"

    @model_validator(mode="after")
    def _selection_needs_k(self) -> AggregatorSettings:
        if self.selection == "reputation" and self.clients_per_round is None:
            raise ValueError("--selection reputation needs --clients-per-round K")
        return self

    def resolve_password(self) -> str:
        """The keystore password: the first line of ``password_file``, else ``password``.

        Raises
        ------
        ConfigError
            When neither is given or the file cannot be read.
        """
        if self.password_file is not None:
            try:
                text = Path(self.password_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"cannot read password file {self.password_file}: {exc.strerror}") from None
            lines = text.splitlines()
            return lines[0] if lines else ""
        if self.password is not None:
            return self.password.get_secret_value()
        raise ConfigError("no keystore password: pass --password-file FILE or set FEDLEDGER_PASSWORD")

    def public(self) -> dict[str, Any]:
        """The settings without secrets, JSON-ready (for logs and the round records)."""
        return self.model_dump(mode="json", exclude={"password"})


def _field_for_env(name: str) -> str | None:
    if name in _ENV_ALIASES:
        return _ENV_ALIASES[name]
    if not name.startswith(ENV_PREFIX):
        return None
    field = name[len(ENV_PREFIX):].lower()
    return field if field in AggregatorSettings.model_fields else None


def load_settings(
    overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> AggregatorSettings:
    """Settings from ``FEDLEDGER_*`` environment variables, overridden by ``overrides`` (None values ignored).

    Raises
    ------
    ConfigError
        One line naming the first missing or invalid setting and how to set it.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, raw in environ.items():
        field = _field_for_env(name)
        if field is not None:
            values[field] = raw  # pydantic parses "8000", "true", "0.5"
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    try:
        return AggregatorSettings(**values)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def _one_line(exc: ValidationError) -> str:
    error = exc.errors()[0]
    location = [str(part) for part in error.get("loc", ()) if part != "__root__"]
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if not location:
        return f"aggregator settings: {message}"
    field = location[0]
    option = "--" + {"bounty_id": "bounty", "task_path": "task", "validation_path": "validation",
                     "keystore_path": "keystore", "rules_path": "rules"}.get(field, field).replace("_", "-")
    env = {v: k for k, v in _ENV_ALIASES.items()}.get(field, ENV_PREFIX + field.upper())
    if error.get("type") == "missing":
        return f"missing setting {option} (or {env})"
    return f"invalid {option} ({env}): {message}"
