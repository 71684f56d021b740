// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

/// @title ScoringCommittee
/// @notice Who may decide a bounty's rounds: its aggregator plus the scorers the sponsor names at creation, and how
///         many of them (the quorum) must sign the same round outcome before it is finalized.
/// @dev Signatures are EIP-712 over the domain ("FedLedger", "1", chainId, this contract), so an attestation or a
///      signed commitment cannot be replayed on another chain or deployment; the structs carry the bounty and the round.
///      Seat 0 is the aggregator; listed scorers sit at seats 1..n. A bitmask of seats counts each scorer once.
abstract contract ScoringCommittee is EIP712 {
    /// @notice At most this many scorers besides the aggregator.
    uint256 private constant MAX_SCORERS = 15;

    /// @dev EIP-712 type of a round's outcome; the arrays are hashed as EIP-712 arrays of 32-byte words.
    bytes32 private constant OUTCOME_TYPEHASH = keccak256(
        "Outcome(uint256 bountyId,uint256 round,bytes32 newModelHash,address[] participants,int256[] scores)"
    );

    mapping(uint256 => uint8) private _committeeSizes; // scorers besides the aggregator
    mapping(uint256 => mapping(address => uint8)) private _seats; // listed scorer => seat (1..size); 0 = none

    /// @notice A bounty with scorers besides its aggregator names them and its quorum (bounties without emit nothing:
    ///         their aggregator alone decides, quorum 1).
    event CommitteeNamed(uint256 indexed bountyId, address[] scorers, uint8 quorum);
    /// @notice A committee member attested the outcome a round was finalized with.
    event OutcomeAttested(uint256 indexed bountyId, uint256 indexed round, address indexed scorer, bytes32 outcomeDigest);
    /// @notice A committee member put on record that it computed another outcome for a round.
    event ScorerDissented(uint256 indexed bountyId, uint256 indexed round, address indexed scorer, bytes32 outcomeDigest);

    error InvalidQuorum(uint256 quorum, uint256 committeeSize);
    error TooManyScorers(uint256 given, uint256 maximum);
    error InvalidScorer(address scorer);
    error NotScorer(uint256 bountyId, address caller);
    error QuorumNotReached(uint256 bountyId, uint256 round, uint256 matching, uint256 quorum);

    /// @notice How many scorers sit besides a bounty's aggregator (its quorum is in `getBounty`).
    /// @param bountyId The bounty.
    /// @return The number of listed scorers.
    function scorerCount(uint256 bountyId) external view returns (uint256) {
        return _committeeSizes[bountyId];
    }

    /// @notice The EIP-712 digest a scorer signs to attest a round's outcome.
    /// @param bountyId The bounty.
    /// @param round The round.
    /// @param newModelHash sha256 of the aggregated global model.
    /// @param participants The kept participants, in the order `finalizeRound` takes them.
    /// @param scores Their fixed-point scores, in the same order.
    /// @return The digest (to sign without any prefix).
    function outcomeDigest(
        uint256 bountyId,
        uint256 round,
        bytes32 newModelHash,
        address[] calldata participants,
        int256[] calldata scores
    ) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    OUTCOME_TYPEHASH,
                    bountyId,
                    round,
                    newModelHash,
                    keccak256(abi.encodePacked(participants)),
                    keccak256(abi.encodePacked(scores))
                )
            )
        );
    }

    /// @dev Seats the committee of a new bounty; `scorers` must be distinct, non-zero and not the aggregator.
    function _nameCommittee(uint256 bountyId, address aggregator, address[] calldata scorers, uint8 quorum) internal {
        if (scorers.length > MAX_SCORERS) revert TooManyScorers(scorers.length, MAX_SCORERS);
        if (quorum == 0 || quorum > scorers.length + 1) revert InvalidQuorum(quorum, scorers.length + 1);
        if (scorers.length == 0) return; // the aggregator alone: nothing to store
        mapping(address => uint8) storage seats = _seats[bountyId];
        for (uint256 i = 0; i < scorers.length; ++i) {
            address s = scorers[i];
            if (s == address(0) || s == aggregator || seats[s] != 0) revert InvalidScorer(s);
            seats[s] = uint8(i + 1);
        }
        _committeeSizes[bountyId] = uint8(scorers.length);
        emit CommitteeNamed(bountyId, scorers, quorum);
    }

    /// @dev The caller's seat bit (reverts for a non-member): the caller counts as one attestation of what it submits.
    function _callerSeat(uint256 bountyId, address aggregator) internal view returns (uint256) {
        if (msg.sender == aggregator) return 1;
        uint8 seat = _seats[bountyId][msg.sender];
        if (seat == 0) revert NotScorer(bountyId, msg.sender);
        return 1 << seat;
    }

    /// @dev Requires the quorum: the caller plus every distinct member whose signature recovers over `digest`.
    ///      Signatures by non-members, or by a member already counted, do not count. Emits one `OutcomeAttested`
    ///      per counted member.
    function _requireQuorum(
        uint256 bountyId,
        uint256 round,
        address aggregator,
        uint256 quorum,
        bytes32 digest,
        bytes[] calldata attestations
    ) internal {
        uint256 counted = _callerSeat(bountyId, aggregator);
        uint256 matching = 1;
        emit OutcomeAttested(bountyId, round, msg.sender, digest);
        mapping(address => uint8) storage seats = _seats[bountyId];
        for (uint256 i = 0; i < attestations.length; ++i) {
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, attestations[i]);
            if (err != ECDSA.RecoverError.NoError) continue;
            uint256 bit = signer == aggregator ? 1 : (seats[signer] == 0 ? 0 : 1 << seats[signer]);
            if (bit == 0 || counted & bit != 0) continue;
            counted |= bit;
            ++matching;
            emit OutcomeAttested(bountyId, round, signer, digest);
        }
        if (matching < quorum) revert QuorumNotReached(bountyId, round, matching, quorum);
    }

    /// @dev A committee member puts its own outcome digest for a round on record.
    function _recordDissent(uint256 bountyId, uint256 round, address aggregator, bytes32 digest) internal {
        _callerSeat(bountyId, aggregator);
        emit ScorerDissented(bountyId, round, msg.sender, digest);
    }
}
