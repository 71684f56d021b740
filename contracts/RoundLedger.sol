// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {BountyEscrow} from "./BountyEscrow.sol";

/// @title RoundLedger
/// @notice The federated rounds of a bounty: the aggregator opens a round with the global-model hash; institutions
///         commit the sha256 of their update and their sample count inside the commit window, once; the aggregator
///         finalizes once with the new global-model hash and a signed fixed-point score per committed participant.
/// @dev Reward of a round = escrow / rounds left, so unspent rewards and rounding dust carry forward. It is split in
///      proportion to the positive scores (floor division); a participant whose score is zero or negative is never
///      credited. A round with no positive score credits nobody (its negative scores still lower reputations): its
///      whole reward stays in escrow for the rounds left, and after the last round the sponsor takes back what no
///      round credited (`refundRemainder`). The scorers post no positive score in a round that delivered no value to
///      the sponsor: one whose gain (validation utility of what entered the model minus that of the round's global
///      model) is not positive (`pay_only_gain` of the bounty's hashed round rules), or too small to tell the
///      participants apart (posted as all zeros). In the last round the dust goes to the best scorer, so a completed
///      bounty with any positive score strands nothing. Institutions pull their credit with `claim`. Reputation
///      follows the rule of `InstitutionRegistry`: towards 10_000 for a positive score, towards 0 for a negative one
///      (which the scorers post only for harm beyond its estimate's spread; a value within it goes on chain as 0).
abstract contract RoundLedger is BountyEscrow {
    /// @notice Scores are fixed point with 18 decimals; larger magnitudes are refused.
    int256 public constant MAX_ABS_SCORE = 1e36;

    /// @dev EIP-712 type an institution signs to have its commitment posted by someone else (the aggregator's batch).
    bytes32 private constant COMMITMENT_TYPEHASH =
        keccak256(
            "Commitment(uint256 bountyId,uint256 round,bytes32 updateHash,uint64 sampleCount,uint64 declaredEpsilon)"
        );

    /// @notice A commitment signed by its institution (EIP-712 `Commitment`, compact EIP-2098 signature `r`, `vs`).
    struct SignedCommitment {
        address institution;
        bytes32 updateHash;
        uint64 sampleCount;
        uint64 declaredEpsilon; // as in `commitUpdate`: cumulative, in millionths, 0 on a bounty without DP
        bytes32 r;
        bytes32 vs;
    }

    struct Round {
        bytes32 globalModelHash;
        bytes32 newModelHash;
        uint40 openedAt;
        uint40 commitDeadline;
        bool finalized;
    }

    /// @dev One slot per institution and bounty: unclaimed reward and cumulative positive score.
    struct Contribution {
        uint128 unclaimed;
        uint128 cumulativeScore;
    }

    /// @dev How a round's reward is split; kept in memory to stay within the EVM's stack.
    struct Split {
        uint256 positiveTotal;
        int256 bestScore;
        uint256 bestIndex;
        uint256 reward;
        uint256 dust; // goes to the best scorer in the last round
        uint256 reputationAlpha; // how far this round moves reputations, in basis points (see InstitutionRegistry)
    }

    mapping(uint256 => mapping(uint256 => Round)) private _rounds;
    mapping(uint256 => mapping(uint256 => mapping(address => bytes32))) private _commitments;
    mapping(uint256 => mapping(address => Contribution)) private _contributions;

    event RoundOpened(uint256 indexed bountyId, uint256 indexed round, bytes32 globalModelHash, uint256 commitDeadline);
    event UpdateCommitted(
        uint256 indexed bountyId,
        uint256 indexed round,
        address indexed institution,
        bytes32 updateHash,
        uint256 sampleCount,
        uint256 epsilon
    );
    /// @dev One per participant-round, so it is kept lean: `round` is data, not a topic (a topic costs 119 gas more);
    ///      filter by bounty or institution and read the round from the data.
    event ContributionScored(
        uint256 indexed bountyId, address indexed institution, uint256 round, int256 score, uint256 credit, uint16 reputation
    );
    event RoundFinalized(
        uint256 indexed bountyId, uint256 indexed round, bytes32 newModelHash, uint256 reward, uint256 credited, uint256 participants
    );
    /// @notice A round whose committee formed no quorum in time closed without an outcome; its reward carries over.
    event RoundLapsed(uint256 indexed bountyId, uint256 indexed round);
    event BountyCompleted(uint256 indexed bountyId, uint256 totalPositiveScore, uint256 remainder);
    event RewardClaimed(uint256 indexed bountyId, address indexed institution, address token, uint256 amount);

    error NotAggregator(uint256 bountyId, address caller);
    error PreviousRoundOpen(uint256 bountyId, uint256 round);
    error DeadlinePassed(uint256 bountyId, uint256 deadline);
    error ModelHashMismatch(uint256 bountyId, uint256 round, bytes32 expected, bytes32 given);
    error ZeroHash();
    error RoundNotOpen(uint256 bountyId, uint256 round);
    error RoundClosed(uint256 bountyId, uint256 round);
    error NotEligible(uint256 bountyId, address institution, uint256 reputation, uint256 minReputation);
    error AlreadyCommitted(uint256 bountyId, uint256 round, address institution);
    error ZeroSamples();
    error LengthMismatch(uint256 participants, uint256 scores);
    error ParticipantsNotSorted(uint256 index);
    error NotCommitted(uint256 bountyId, uint256 round, address institution);
    error DuplicateUpdateHash(uint256 bountyId, uint256 round, bytes32 updateHash);
    error ScoreOutOfRange(address institution, int256 score);
    error NothingToClaim(uint256 bountyId, address institution);
    error BadCommitmentSignature(uint256 bountyId, uint256 round, address institution);
    error RoundNotStalled(uint256 bountyId, uint256 round);
    error PrivacyBudgetExceeded(uint256 bountyId, address institution, uint256 declaredEpsilon, uint256 epsilonBudget);

    /// @notice The bounty's aggregator opens the next round, announcing the hash of the global model it serves.
    ///         From round 2 on, the hash must be the one the previous round finalized.
    /// @param bountyId The bounty.
    /// @param globalModelHash sha256 of the global model the round trains from.
    /// @return round The round number (from 1).
    function openRound(uint256 bountyId, bytes32 globalModelHash) external returns (uint256 round) {
        Bounty storage b = _activeBounty(bountyId);
        if (msg.sender != b.aggregator) revert NotAggregator(bountyId, msg.sender);
        // An active bounty has a round left to open: finalizing the last one completes it.
        if (b.roundsOpened != b.roundsFinalized) revert PreviousRoundOpen(bountyId, b.roundsOpened);
        if (block.timestamp > b.deadline) revert DeadlinePassed(bountyId, b.deadline);
        if (globalModelHash == bytes32(0)) revert ZeroHash();
        round = b.roundsOpened + 1;
        if (round > 1) {
            bytes32 expected = _rounds[bountyId][round - 1].newModelHash;
            if (globalModelHash != expected) revert ModelHashMismatch(bountyId, round, expected, globalModelHash);
        }
        b.roundsOpened = uint32(round);
        uint256 commitDeadline = block.timestamp + b.commitWindow;
        _rounds[bountyId][round] = Round({
            globalModelHash: globalModelHash,
            newModelHash: bytes32(0),
            openedAt: uint40(block.timestamp),
            commitDeadline: uint40(commitDeadline),
            finalized: false
        });
        emit RoundOpened(bountyId, round, globalModelHash, commitDeadline);
    }

    /// @notice A registered, active institution staking at least `minStake`, with enough reputation, commits the
    ///         sha256 of its update and its sample count, once per round, before the commit window closes and before finalization.
    /// @param bountyId The bounty.
    /// @param round The open round.
    /// @param updateHash sha256 of the update the institution will upload.
    /// @param sampleCount How many training samples the update was computed on (not zero).
    /// @param declaredEpsilon The institution's cumulative differential-privacy epsilon over the bounty's rounds up
    ///        to this one, in millionths; at most the bounty's `epsilonBudget` (0 on a bounty without DP).
    function commitUpdate(uint256 bountyId, uint256 round, bytes32 updateHash, uint64 sampleCount, uint64 declaredEpsilon)
        external
    {
        (Bounty storage b, mapping(address => bytes32) storage roundCommitments) = _commitWindow(bountyId, round);
        if (roundCommitments[msg.sender] != bytes32(0)) revert AlreadyCommitted(bountyId, round, msg.sender);
        _commit(bountyId, round, b, roundCommitments, msg.sender, updateHash, sampleCount, declaredEpsilon);
    }

    /// @notice Post commitments that institutions signed (EIP-712 `Commitment`) in one transaction, under the same
    ///         rules as `commitUpdate`: an open commit window, an eligible institution, one commitment per institution
    ///         and round, a declared cumulative epsilon within the bounty's privacy budget. Anyone may post (normally
    ///         the aggregator); an institution may always commit itself instead. An institution that already
    ///         committed this round is skipped, so its own commit can never make the batch fail; a bad signature
    ///         (over any field, the declared epsilon included), an ineligible institution or a declaration over
    ///         budget (`PrivacyBudgetExceeded`) reverts the whole batch, which the poster then retries without it.
    /// @param bountyId The bounty.
    /// @param round The open round.
    /// @param commitments The signed commitments (institution, update hash, sample count, declared epsilon,
    ///        compact signature).
    /// @return posted How many were recorded (the others were already committed).
    function commitUpdatesSigned(uint256 bountyId, uint256 round, SignedCommitment[] calldata commitments)
        external
        returns (uint256 posted)
    {
        (Bounty storage b, mapping(address => bytes32) storage roundCommitments) = _commitWindow(bountyId, round);
        for (uint256 i = 0; i < commitments.length; ++i) {
            SignedCommitment calldata c = commitments[i];
            bytes32 digest = _hashTypedDataV4(
                keccak256(
                    abi.encode(COMMITMENT_TYPEHASH, bountyId, round, c.updateHash, c.sampleCount, c.declaredEpsilon)
                )
            );
            (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, c.r, c.vs);
            if (err != ECDSA.RecoverError.NoError || signer != c.institution) {
                revert BadCommitmentSignature(bountyId, round, c.institution);
            }
            if (roundCommitments[c.institution] != bytes32(0)) continue;
            _commit(
                bountyId, round, b, roundCommitments, c.institution, c.updateHash, c.sampleCount, c.declaredEpsilon
            );
            ++posted;
        }
    }

    /// @notice The aggregator of a bounty it decides alone (quorum 1) finalizes the open round once: it posts the new global-model hash and a
    ///         score per kept participant. Participants must be committed and listed by strictly ascending
    ///         update hash, so no one is listed twice and a copied hash is refused. The round's reward is credited in
    ///         proportion to the positive scores and reputations move by the sign of each score; a round with no
    ///         positive score (the scorers' post for a round whose gain is not positive) credits nobody, moves no
    ///         reputation and carries its reward to the rounds left.
    /// @param bountyId The bounty.
    /// @param round The open round.
    /// @param newModelHash sha256 of the aggregated global model.
    /// @param participants Committed institutions whose updates were kept, ordered by strictly ascending update hash.
    /// @param scores Their contribution scores, fixed point with 18 decimals, signed.
    function finalizeRound(
        uint256 bountyId,
        uint256 round,
        bytes32 newModelHash,
        address[] calldata participants,
        int256[] calldata scores
    ) external {
        Bounty storage b = _activeBounty(bountyId);
        if (msg.sender != b.aggregator) revert NotAggregator(bountyId, msg.sender);
        if (b.quorum > 1) revert QuorumNotReached(bountyId, round, 1, b.quorum);
        _finalize(bountyId, round, b, newModelHash, participants, scores);
    }

    /// @notice A member of the bounty's scoring committee finalizes the open round once with the outcome a quorum
    ///         of members signed (EIP-712 `Outcome`, see `outcomeDigest`). The caller counts as one attestation;
    ///         signatures by non-members, by a member already counted, or over another outcome do not count.
    ///         Each counted member is recorded in an `OutcomeAttested` event. Arguments as in `finalizeRound`.
    /// @param bountyId The bounty.
    /// @param round The open round.
    /// @param newModelHash sha256 of the aggregated global model.
    /// @param participants Committed institutions whose updates were kept, ordered by strictly ascending update hash.
    /// @param scores Their contribution scores, fixed point with 18 decimals, signed.
    /// @param attestations Other members' 65-byte signatures over the outcome digest.
    function finalizeRoundAttested(
        uint256 bountyId,
        uint256 round,
        bytes32 newModelHash,
        address[] calldata participants,
        int256[] calldata scores,
        bytes[] calldata attestations
    ) external {
        Bounty storage b = _activeBounty(bountyId);
        bytes32 digest = outcomeDigest(bountyId, round, newModelHash, participants, scores);
        _requireQuorum(bountyId, round, b.aggregator, b.quorum, digest, attestations);
        _finalize(bountyId, round, b, newModelHash, participants, scores);
    }

    /// @notice A committee member records that it computed another outcome for a round (its outcome digest).
    /// @param bountyId The bounty.
    /// @param round The round.
    /// @param digest The member's own outcome digest (see `outcomeDigest`).
    function recordDissent(uint256 bountyId, uint256 round, bytes32 digest) external {
        Bounty storage b = _bounty(bountyId);
        if (_rounds[bountyId][round].openedAt == 0) revert RoundNotOpen(bountyId, round);
        _recordDissent(bountyId, round, b.aggregator, digest);
    }

    /// @notice Anyone closes a stalled round (its commit window plus the recovery grace passed without a quorum's
    ///         outcome): nothing is credited, the reward carries to the next round, and the next round trains from
    ///         the same global model. Lapsing the last round completes the bounty; the sponsor then takes back the
    ///         escrow with `refundRemainder` (or cancels after the deadline, as ever).
    /// @param bountyId The bounty whose open round has stalled.
    function lapseRound(uint256 bountyId) external {
        Bounty storage b = _activeBounty(bountyId);
        uint256 round = b.roundsOpened;
        if (!_openRoundStalled(bountyId, b)) revert RoundNotStalled(bountyId, round);
        Round storage r = _rounds[bountyId][round];
        r.newModelHash = r.globalModelHash;
        r.finalized = true;
        b.roundsFinalized += 1;
        emit RoundLapsed(bountyId, round);
        if (b.roundsFinalized == b.numRounds) {
            b.status = BountyStatus.Completed;
            emit BountyCompleted(bountyId, b.totalPositiveScore, _escrowed(b));
        }
    }

    /// @notice Withdraw everything credited to the caller by `bountyId`'s rounds, in the bounty's asset.
    /// @param bountyId The bounty.
    function claim(uint256 bountyId) external nonReentrant {
        Bounty storage b = _bounty(bountyId);
        Contribution storage c = _contributions[bountyId][msg.sender];
        uint256 amount = c.unclaimed;
        if (amount == 0) revert NothingToClaim(bountyId, msg.sender);
        c.unclaimed = 0;
        emit RewardClaimed(bountyId, msg.sender, b.token, amount);
        _payOut(b.token, msg.sender, amount);
    }

    /// @notice A round's record: the global-model hash it opened with, the one it finalized with, its times.
    /// @param bountyId The bounty.
    /// @param round The round number (from 1).
    /// @return The round's record (all zero for a round not opened).
    function getRound(uint256 bountyId, uint256 round) external view returns (Round memory) {
        return _rounds[bountyId][round];
    }

    /// @notice The update hash `institution` committed in a round (zero when it did not commit).
    /// @param bountyId The bounty.
    /// @param round The round number.
    /// @param institution The institution.
    /// @return The committed update hash.
    function commitmentOf(uint256 bountyId, uint256 round, address institution) external view returns (bytes32) {
        return _commitments[bountyId][round][institution];
    }

    /// @notice An institution's unclaimed reward and cumulative positive score in a bounty.
    /// @param bountyId The bounty.
    /// @param institution The institution.
    /// @return unclaimed Reward credited and not yet claimed, in the bounty's asset.
    /// @return cumulativeScore Sum of its positive scores over the bounty's rounds.
    function contributionOf(uint256 bountyId, address institution) external view returns (uint256 unclaimed, uint256 cumulativeScore) {
        Contribution storage c = _contributions[bountyId][institution];
        return (c.unclaimed, c.cumulativeScore);
    }

    /// @notice A completed bounty's final scores, which fix each contributor's share of the revenue its model earns:
    ///         no round can follow completion, so both numbers are frozen.
    /// @param bountyId The completed bounty.
    /// @param institution The contributor (any address: one that never scored has score 0).
    /// @return score The institution's cumulative positive score in the bounty.
    /// @return totalScore The bounty's total positive score (0 when no update scored above zero).
    function finalScores(uint256 bountyId, address institution) external view returns (uint256 score, uint256 totalScore) {
        Bounty storage b = _bounty(bountyId);
        if (b.status != BountyStatus.Completed) revert BountyNotCompleted(bountyId, b.status);
        return (_contributions[bountyId][institution].cumulativeScore, b.totalPositiveScore);
    }

    /// @dev The bounty (active) and the round's commitments, when the round's commit window is open.
    function _commitWindow(uint256 bountyId, uint256 round)
        private
        view
        returns (Bounty storage b, mapping(address => bytes32) storage roundCommitments)
    {
        b = _activeBounty(bountyId);
        Round storage r = _rounds[bountyId][round];
        if (r.openedAt == 0) revert RoundNotOpen(bountyId, round);
        if (r.finalized || block.timestamp > r.commitDeadline) revert RoundClosed(bountyId, round);
        roundCommitments = _commitments[bountyId][round];
    }

    /// @dev Records one commitment of an eligible institution that has not committed this round.
    function _commit(
        uint256 bountyId,
        uint256 round,
        Bounty storage b,
        mapping(address => bytes32) storage roundCommitments,
        address institution,
        bytes32 updateHash,
        uint64 sampleCount,
        uint64 declaredEpsilon
    ) private {
        uint16 reputation = _committerReputation(institution);
        if (reputation < b.minReputation) revert NotEligible(bountyId, institution, reputation, b.minReputation);
        if (updateHash == bytes32(0)) revert ZeroHash();
        if (sampleCount == 0) revert ZeroSamples();
        // Read the budget only when something is declared: commitments without DP pay no extra storage read.
        if (declaredEpsilon != 0 && declaredEpsilon > b.epsilonBudget) {
            revert PrivacyBudgetExceeded(bountyId, institution, declaredEpsilon, b.epsilonBudget);
        }
        roundCommitments[institution] = updateHash;
        emit UpdateCommitted(bountyId, round, institution, updateHash, sampleCount, declaredEpsilon);
    }

    /// @dev Settles a round whose outcome the caller is entitled to post (see the two finalize functions).
    function _finalize(
        uint256 bountyId,
        uint256 round,
        Bounty storage b,
        bytes32 newModelHash,
        address[] calldata participants,
        int256[] calldata scores
    ) private {
        Round storage r = _rounds[bountyId][round];
        if (r.openedAt == 0) revert RoundNotOpen(bountyId, round);
        if (r.finalized) revert RoundClosed(bountyId, round);
        if (newModelHash == bytes32(0)) revert ZeroHash();
        if (participants.length != scores.length) revert LengthMismatch(participants.length, scores.length);

        Split memory split = _checkParticipants(bountyId, round, participants, scores);

        // Effects.
        r.newModelHash = newModelHash;
        r.finalized = true;
        uint256 roundsLeft = b.numRounds - b.roundsFinalized;
        split.reward = _escrowed(b) / roundsLeft;
        // A round that pays nobody still judges: its negative scores (harm beyond the estimate's spread, posted by
        // the scorers) move reputation towards 0 in proportion to the reward at stake, as in a round that pays.
        split.reputationAlpha = _reputationAlpha(b.token, split.reward);
        if (split.positiveTotal != 0 && roundsLeft == 1) {
            split.dust = split.reward - _sumOfFloors(split.reward, scores, split.positiveTotal);
        }
        uint256 credited = _credit(bountyId, round, participants, scores, split);
        b.credited += uint128(credited);
        b.totalPositiveScore = SafeCast.toUint128(uint256(b.totalPositiveScore) + split.positiveTotal);
        b.roundsFinalized += 1;
        emit RoundFinalized(bountyId, round, newModelHash, split.reward, credited, participants.length);
        if (roundsLeft == 1) {
            b.status = BountyStatus.Completed;
            emit BountyCompleted(bountyId, b.totalPositiveScore, _escrowed(b));
        }
    }

    /// @dev Checks every participant and returns the positive total and the best scorer (who takes the last round's dust). Requiring the participants'
    ///      update hashes to be strictly ascending rules out, with one comparison each, both a participant listed
    ///      twice and two participants holding the same (copied) update hash.
    function _checkParticipants(uint256 bountyId, uint256 round, address[] calldata participants, int256[] calldata scores)
        private
        view
        returns (Split memory split)
    {
        mapping(address => bytes32) storage roundCommitments = _commitments[bountyId][round];
        bytes32 previous = bytes32(0);
        for (uint256 i = 0; i < participants.length; ++i) {
            address p = participants[i];
            bytes32 h = roundCommitments[p];
            if (h == bytes32(0)) revert NotCommitted(bountyId, round, p);
            if (h == previous) revert DuplicateUpdateHash(bountyId, round, h);
            if (h < previous) revert ParticipantsNotSorted(i);
            previous = h;
            int256 s = scores[i];
            if (s > MAX_ABS_SCORE || s < -MAX_ABS_SCORE) revert ScoreOutOfRange(p, s);
            if (s > 0) split.positiveTotal += uint256(s);
            if (s > split.bestScore) {
                split.bestScore = s;
                split.bestIndex = i;
            }
        }
    }

    /// @dev Credits each participant its share, updates reputations, and returns the total credited.
    function _credit(
        uint256 bountyId,
        uint256 round,
        address[] calldata participants,
        int256[] calldata scores,
        Split memory split
    ) private returns (uint256 credited) {
        mapping(address => Contribution) storage bountyContributions = _contributions[bountyId];
        for (uint256 i = 0; i < participants.length; ++i) {
            int256 score = scores[i];
            uint256 credit = 0;
            if (score > 0) {
                credit = _share(split.reward, uint256(score), split.positiveTotal);
                if (i == split.bestIndex) credit += split.dust;
                Contribution storage c = bountyContributions[participants[i]];
                // credit <= escrow < 2**128 and score <= MAX_ABS_SCORE < 2**120: the casts are exact, the sums checked.
                c.unclaimed += uint128(credit);
                c.cumulativeScore += uint128(uint256(score));
            }
            credited += credit;
            uint16 reputation = _updateReputation(participants[i], score, split.reputationAlpha);
            emit ContributionScored(bountyId, participants[i], round, score, credit, reputation);
        }
    }

    function _openRoundStalled(uint256 bountyId, Bounty storage b) internal view override returns (bool) {
        if (b.roundsOpened == b.roundsFinalized) return false;
        return block.timestamp > uint256(_rounds[bountyId][b.roundsOpened].commitDeadline) + b.recoveryGrace;
    }

    function _sumOfFloors(uint256 reward, int256[] calldata scores, uint256 positiveTotal) private pure returns (uint256 sum) {
        for (uint256 i = 0; i < scores.length; ++i) {
            if (scores[i] > 0) sum += _share(reward, uint256(scores[i]), positiveTotal);
        }
    }

    /// @dev floor(reward * score / total). reward <= escrow < 2**128 and score <= MAX_ABS_SCORE < 2**120, so the
    ///      product fits 256 bits: a plain multiplication, cheaper per participant than a full-width mulDiv.
    function _share(uint256 reward, uint256 score, uint256 total) private pure returns (uint256) {
        unchecked {
            return (reward * score) / total;
        }
    }
}
