// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {InstitutionRegistry} from "./InstitutionRegistry.sol";
import {ScoringCommittee} from "./ScoringCommittee.sol";

/// @title BountyEscrow
/// @notice Sponsors publish a task as a bounty and escrow its reward in ETH or one ERC-20 token; anyone may top it up.
///         The sponsor cancels and is refunded what is not yet credited: before the first round opens, after the
///         deadline, or when the open round is stalled (its commit window plus the bounty's recovery grace has passed
///         and it is still not finalized).
/// @dev Money invariant, per bounty and at every step: credited + refunded + escrowed == funded.
///      Tokens that deliver less than the amount asked for are rejected (see AssetTransfers).
abstract contract BountyEscrow is InstitutionRegistry, ScoringCommittee {
    enum BountyStatus {
        None,
        Active,
        Completed,
        Cancelled
    }

    /// @dev Packed so that a commit reads one bounty slot (aggregator, window, deadline, status, minReputation).
    struct Bounty {
        address sponsor;
        uint32 numRounds;
        uint32 roundsOpened;
        uint32 roundsFinalized;
        address aggregator;
        uint32 commitWindow;
        uint40 deadline;
        BountyStatus status;
        uint16 minReputation;
        address token; // address(0) for ETH
        uint32 recoveryGrace; // seconds after an open round's commit window before the sponsor may recover the bounty
        uint8 quorum; // matching scorer attestations a round needs (1: the aggregator alone); see ScoringCommittee
        uint56 epsilonBudget; // differential privacy: the largest cumulative epsilon a commitment may declare, in millionths (0: no DP)
        uint128 funded;
        uint128 credited;
        uint128 refunded;
        uint128 totalPositiveScore; // frozen at completion: the revenue splitter's denominator (see `finalScores`)
        bytes32 taskSpecHash;
        bytes32 validationSetHash;
        bytes32 rulesHash; // its own slot, written once: commit and finalize never read it
    }

    /// @notice What a sponsor fixes when creating a bounty.
    /// @dev `rulesHash` is the sha256 of the canonical JSON of the fully resolved scoring rules (strategy, estimator,
    ///      utility, scale, seed, version), so nobody can choose the rules after seeing the updates.
    ///      `epsilonBudget` (millionths of epsilon, 0 for none) is the differential-privacy budget per institution
    ///      for the whole bounty, the task's `privacy.epsilon`: a commitment declaring more is refused.
    struct BountyParams {
        bytes32 taskSpecHash;
        bytes32 validationSetHash;
        bytes32 rulesHash;
        address aggregator;
        uint32 numRounds;
        uint32 commitWindow;
        uint40 deadline;
        uint16 minReputation;
        address token;
        uint32 recoveryGrace;
        address[] scorers; // the committee besides the aggregator (may be empty: the aggregator alone decides)
        uint8 quorum; // matching attestations needed to finalize a round, 1..scorers.length + 1
        uint64 epsilonBudget;
    }

    mapping(uint256 => Bounty) internal _bounties;
    uint256 private _bountyCount;

    event BountyCreated(
        uint256 indexed bountyId,
        address indexed sponsor,
        address indexed aggregator,
        address token,
        bytes32 taskSpecHash,
        bytes32 validationSetHash,
        bytes32 rulesHash,
        uint32 numRounds,
        uint32 commitWindow,
        uint40 deadline,
        uint16 minReputation,
        uint32 recoveryGrace,
        uint64 epsilonBudget
    );
    event BountyFunded(uint256 indexed bountyId, address indexed funder, uint256 amount);
    event BountyCancelled(uint256 indexed bountyId, address indexed sponsor, uint256 refunded);
    event RemainderRefunded(uint256 indexed bountyId, address indexed sponsor, uint256 amount);

    error UnknownBounty(uint256 bountyId);
    error BountyNotActive(uint256 bountyId, BountyStatus status);
    error BountyNotCompleted(uint256 bountyId, BountyStatus status);
    error ZeroAggregator();
    error ZeroRounds();
    error ZeroCommitWindow();
    error DeadlineNotInFuture(uint256 deadline, uint256 currentTime);
    error MinReputationTooHigh(uint256 minReputation, uint256 maximum);
    error ZeroSpecHash();
    error ZeroRulesHash();
    error ZeroRecoveryGrace();
    error NotSponsor(uint256 bountyId, address caller);
    error CancelNotAllowed(uint256 bountyId, uint256 deadline);
    error NothingToRefund(uint256 bountyId);
    error ZeroAmount();

    /// @notice Create a bounty and escrow `initialFunding` of its reward asset (send it as `msg.value` for ETH;
    ///         approve this contract first for a token).
    /// @param p The bounty's fixed terms: task, validation-set and scoring-rules hashes, aggregator, rounds, commit
    ///        window, deadline, minimum reputation, reward token (address(0) for ETH), recovery grace (seconds
    ///        after an open round's commit window from which the sponsor may cancel if the round is not finalized),
    ///        differential-privacy budget (millionths of epsilon; 0: the task has no DP), and the scoring committee:
    ///        scorers besides the aggregator and the quorum of matching attestations.
    /// @param initialFunding Reward escrowed now, in wei or token units (may be zero).
    /// @return bountyId The new bounty's id (ids start at 1).
    function createBounty(BountyParams calldata p, uint256 initialFunding)
        external
        payable
        nonReentrant
        returns (uint256 bountyId)
    {
        if (p.aggregator == address(0)) revert ZeroAggregator();
        if (p.numRounds == 0) revert ZeroRounds();
        if (p.commitWindow == 0) revert ZeroCommitWindow();
        if (p.deadline <= block.timestamp) revert DeadlineNotInFuture(p.deadline, block.timestamp);
        if (p.minReputation > REPUTATION_ONE) revert MinReputationTooHigh(p.minReputation, REPUTATION_ONE);
        if (p.taskSpecHash == bytes32(0) || p.validationSetHash == bytes32(0)) revert ZeroSpecHash();
        if (p.rulesHash == bytes32(0)) revert ZeroRulesHash();
        if (p.recoveryGrace == 0) revert ZeroRecoveryGrace();
        bountyId = ++_bountyCount;
        Bounty storage b = _bounties[bountyId];
        b.sponsor = msg.sender;
        b.numRounds = p.numRounds;
        b.aggregator = p.aggregator;
        b.commitWindow = p.commitWindow;
        b.deadline = p.deadline;
        b.status = BountyStatus.Active;
        b.minReputation = p.minReputation;
        b.token = p.token;
        b.recoveryGrace = p.recoveryGrace;
        b.epsilonBudget = SafeCast.toUint56(p.epsilonBudget);
        b.taskSpecHash = p.taskSpecHash;
        b.validationSetHash = p.validationSetHash;
        b.rulesHash = p.rulesHash;
        emit BountyCreated(
            bountyId,
            msg.sender,
            p.aggregator,
            p.token,
            p.taskSpecHash,
            p.validationSetHash,
            p.rulesHash,
            p.numRounds,
            p.commitWindow,
            p.deadline,
            p.minReputation,
            p.recoveryGrace,
            p.epsilonBudget
        );
        b.quorum = p.quorum;
        _nameCommittee(bountyId, p.aggregator, p.scorers, p.quorum);
        _fund(bountyId, b, initialFunding);
    }

    /// @notice Top up an active bounty with `amount` (as `msg.value` for ETH; approve first for a token). Anyone may fund.
    /// @param bountyId The bounty to top up.
    /// @param amount How much to add, in wei or token units (not zero).
    function fundBounty(uint256 bountyId, uint256 amount) external payable nonReentrant {
        Bounty storage b = _activeBounty(bountyId);
        if (amount == 0) revert ZeroAmount();
        _fund(bountyId, b, amount);
    }

    /// @notice The sponsor cancels a bounty and is refunded everything not yet credited to institutions; credited
    ///         rewards stay claimable. Allowed before its first round opens, after its deadline, or when its open
    ///         round is stalled: more than `recoveryGrace` seconds past that round's commit window and still not
    ///         finalized (a round that can never be finalized must not freeze the escrow until the deadline).
    /// @param bountyId The bounty to cancel.
    function cancelBounty(uint256 bountyId) external nonReentrant {
        Bounty storage b = _activeBounty(bountyId);
        if (msg.sender != b.sponsor) revert NotSponsor(bountyId, msg.sender);
        if (b.roundsOpened != 0 && block.timestamp <= b.deadline && !_openRoundStalled(bountyId, b)) {
            revert CancelNotAllowed(bountyId, b.deadline);
        }
        uint256 amount = _escrowed(b);
        b.status = BountyStatus.Cancelled;
        b.refunded += uint128(amount);
        emit BountyCancelled(bountyId, msg.sender, amount);
        _payOut(b.token, msg.sender, amount);
    }

    /// @notice After completion, the sponsor takes back what no round could credit (a round in which no update
    ///         scored above zero credits nothing).
    /// @param bountyId The completed bounty.
    function refundRemainder(uint256 bountyId) external nonReentrant {
        Bounty storage b = _bounty(bountyId);
        if (b.status != BountyStatus.Completed) revert BountyNotCompleted(bountyId, b.status);
        if (msg.sender != b.sponsor) revert NotSponsor(bountyId, msg.sender);
        uint256 amount = _escrowed(b);
        if (amount == 0) revert NothingToRefund(bountyId);
        b.refunded += uint128(amount);
        emit RemainderRefunded(bountyId, msg.sender, amount);
        _payOut(b.token, msg.sender, amount);
    }

    /// @notice A bounty's full record.
    /// @param bountyId The bounty.
    /// @return The bounty's terms, progress, status and books.
    function getBounty(uint256 bountyId) external view returns (Bounty memory) {
        return _bounty(bountyId);
    }

    /// @notice Reward still held for the bounty's coming rounds: funded - credited - refunded.
    /// @param bountyId The bounty.
    /// @return The escrowed amount, in wei or token units.
    function escrowOf(uint256 bountyId) external view returns (uint256) {
        return _escrowed(_bounty(bountyId));
    }

    /// @notice How many bounties exist; ids run from 1 to this number.
    /// @return The number of bounties created.
    function bountyCount() external view returns (uint256) {
        return _bountyCount;
    }

    function _bounty(uint256 bountyId) internal view returns (Bounty storage b) {
        b = _bounties[bountyId];
        if (b.status == BountyStatus.None) revert UnknownBounty(bountyId);
    }

    function _activeBounty(uint256 bountyId) internal view returns (Bounty storage b) {
        b = _bounty(bountyId);
        if (b.status != BountyStatus.Active) revert BountyNotActive(bountyId, b.status);
    }

    /// @dev Whether the bounty's open round (if any) is past its commit window plus the bounty's recovery grace.
    function _openRoundStalled(uint256 bountyId, Bounty storage b) internal view virtual returns (bool);

    function _escrowed(Bounty storage b) internal view returns (uint256) {
        return uint256(b.funded) - b.credited - b.refunded;
    }

    function _fund(uint256 bountyId, Bounty storage b, uint256 amount) private {
        _receive(b.token, amount);
        b.funded = SafeCast.toUint128(uint256(b.funded) + amount);
        if (amount != 0) emit BountyFunded(bountyId, msg.sender, amount);
    }
}
