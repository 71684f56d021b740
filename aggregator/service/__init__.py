"""The aggregator service: a FastAPI app plus the round coordinator that runs beside it.

Run it with ``fedledger aggregator serve`` (options in :mod:`aggregator.cli`, settings in
:mod:`~aggregator.service.settings`); the OpenAPI document is at ``/openapi.json`` and ``/docs``.

HTTP contract
-------------
Every body is a model of :mod:`fedcore.protocol` (the one definition the node and the auditor parse with).
Hashes are ``0x`` + 64 lowercase hex; addresses are checksummed; every error is
``{"detail": "one line", "code": RejectionCode}`` (:class:`~fedcore.protocol.ErrorBody`): branch on the code.

``GET /health``
    ``Health``: ``{"status": "ok", "bounty_id", "chain_id", "ledger", "aggregator", "coordinator", "last_error"}``
``GET /bounties/{id}/task``
    ``TaskInfo`` = ``TaskSpec.to_dict()``; ``task_hash(TaskSpec.from_dict(json))`` is the bounty's ``taskSpecHash``.
``GET /bounties/{id}/rounds/current``
    ``RoundInfo``: ``{"bounty_id", "round", "status", "global_model_hash", "new_model_hash", "commit_deadline",
    "selected", "uploads", "fit_config"}``; ``status`` (``RoundStatus``) is ``waiting`` (round 0, no round yet: hash
    null, deadline 0), ``open``, ``scoring``, ``finalized``, ``completed``, ``cancelled`` or ``expired``. Train only
    when ``open`` and selected, with ``fit_config`` (``FitConfig``: the bounty's rules' ``fit_config()``, e.g.
    FedProx's ``fedprox_mu``; see :meth:`fedcore.rules.RoundRules.fit_config`).
``GET /bounties/{id}/model``
    The current round's global model (safetensors), headers ``X-Model-Sha256`` and ``X-Round``; compare the
    sha256 of the bytes with the chain's ``getRound(id, round).globalModelHash``. 404 before the first round.
``POST /bounties/{id}/rounds/{r}/updates``
    Body: the update's canonical safetensors bytes (``fedcore.codec.encode`` of ``w_local - w_global``, float32,
    the model's tensor names and shapes; never larger than the model's encoded size). Headers ``X-Update-Sha256``
    (sha256 of the body) and ``X-Signature``: ``fedcore.signing.sign_upload(account, chain_id, ledger_address, id,
    r, sha256(body))``; the signer and its commitment are checked on them before the body is read. Commit
    ``sha256(body)`` on chain first. 202 ``UploadAccepted`` ``{"sha256", "institution", "status": "accepted",
    "round"}``; refusals by code: 400 ``malformed``, 401 ``unsigned`` / ``bad_signature``, 403 ``not_registered`` /
    ``not_committed`` / ``not_selected`` / ``not_eligible`` (a gasless commitment the contract would refuse: stake,
    reputation, privacy budget), 404 ``unknown_bounty``, 408 ``body_timeout``, 409 ``hash_mismatch`` /
    ``round_closed`` / ``duplicate_upload`` (the signer's update is already in), 413 ``too_large``, 503 ``busy``
    (with ``Retry-After``) / ``unavailable``. A refused upload changes nothing and its connection is closed.
``GET /bounties/{id}/rounds/{r}``
    The round's record (:class:`~fedcore.protocol.RoundReport`): uploads (an empty list while the round is open),
    used updates with sample counts, exclusions and why, scores (fixed point as decimal strings), settings
    (strategy, scorer, seed), optimizer-state hashes, transactions, journal.
``GET /bounties/{id}/rounds/{r}/updates/{sha256}``, ``GET /bounties/{id}/models/{sha256}``, ``GET .../states/{sha256}``
    Stored bytes by hash (64 hex, ``0x`` optional), for auditors; a round's updates only once it is closed (403
    ``round_open`` for any hash before; on a bounty with a scoring committee, until the round is finalized or
    lapsed). Path numbers (bounty, round) outside 1..2**32-1 are 400 ``malformed``.
``GET /bounties/{id}/rounds/{r}/committee/updates``, ``GET .../committee/updates/{sha256}``
    A closed round's accepted uploads (``CommitteeRound``) and their bytes, for the bounty's scoring committee only:
    headers ``X-Scorer-Signature`` (``fedcore.attestations.sign_fetch`` over ``list`` or the bare sha256, at most
    5 minutes old) and ``X-Scorer-Time``; 401 ``unsigned`` / ``bad_signature``, 403 ``not_scorer`` (not on the
    chain's ``CommitteeNamed``), 403 ``round_open`` until the round's commit window closed on chain and uploads closed.
``POST /bounties/{id}/rounds/{r}/attestations``
    ``AttestationBody`` ``{"scorer", "signature", "outcome": {"new_model_hash", "participants", "scores"}}``: a member's
    EIP-712 signature over the outcome it computed; 202 ``AttestationInfo`` (``matches`` the aggregator's own outcome,
    null before it scored); 401 ``bad_signature`` (does not recover to ``scorer``), 403 ``not_scorer``, 409
    ``round_closed``. Kept in the round state; the coordinator finalizes once ``quorum - 1`` members match.

Modules
-------
* :mod:`~aggregator.service.context`: the startup checks and the objects requests and rounds share;
* :mod:`~aggregator.service.app`: ``create_app(settings)``, one router per resource in ``routers/``;
* :mod:`~aggregator.service.coordinator`: opens, closes, aggregates, scores and finalizes rounds, restart-safe
  through :mod:`~aggregator.service.state` (SQLite) and :mod:`~aggregator.service.store` (content-addressed files);
* :mod:`~aggregator.service.verify`: the checks an upload passes before it is stored, and the ones a round's
  uploads pass again before they are used; :mod:`~aggregator.service.selection`: who is invited;
* :mod:`~aggregator.service.gateway`: the bounty on chain; :mod:`fedcore.population`: the validation CSV, scaled
  and weighted as the task declares.

Nothing here imports ``node``: the two sides share only ``fedcore`` and ``ledger``.
"""
