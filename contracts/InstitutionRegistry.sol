// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {AssetTransfers} from "./AssetTransfers.sol";
import {Governed} from "./Governed.sol";

/// @title InstitutionRegistry
/// @notice Institutions join with an ETH stake, leave after a cooldown, and carry a reputation that only
///         round finalization changes. Governance (handed over in two steps) may slash stake for proven misbehaviour.
/// @dev Reputation is fixed point in basis points: 0 = none, 10_000 = perfect. It measures reliability, the
///      record of delivering value, not the size of the value: an institution that keeps delivering positive
///      value keeps a high reputation even when another delivers more, and one that delivers harm loses it. Each
///      finalized round moves each participant's reputation 20% of the way towards a target set by the sign of its
///      score (an exponential moving average): rep' = rep + (target - rep) * alpha / 10_000, the step floored in
///      magnitude, where target = 10_000 for a positive score and 0 for a negative one; a score of exactly 0 leaves
///      the reputation unchanged. Under the bounty's hashed round rules (`zero_within_spread`) the scorers post a
///      negative value that lies within its estimate's spread (not told apart from zero, the contribution gate's own
///      test) as 0, so only harm beyond that spread lowers a reputation. A round with no positive score pays nobody
///      and carries its reward forward (see RoundLedger), yet its negative scores still lower reputations: harm is
///      judged whether or not anyone is paid. A new institution starts at 5_000; leaving keeps the reputation, so
///      leaving and re-joining cannot launder it.
///      Reputation cannot be bought with fake bounties: alpha = 2_000 * min(reward, floor) / floor, where reward is
///      the round's reward and floor is the reputation floor governance fixes for the bounty's asset
///      (`reputationFloor`). A round paying nothing (a zero-funded bounty) moves no reputation, a round paying less
///      than the floor moves it in proportion, and an asset without a floor (every ERC-20 until governance sets one)
///      moves none. An institution can commit only while its stake is at least `minStake`: slashed below it, it
///      must top up by leaving and re-joining.
abstract contract InstitutionRegistry is ReentrancyGuard, Governed, AssetTransfers {
    /// @notice A perfect reputation, in basis points.
    uint16 public constant REPUTATION_ONE = 10_000;
    /// @notice The reputation a first-time institution starts with.
    uint16 public constant INITIAL_REPUTATION = 5_000;
    /// @notice How far each finalized round moves a reputation towards its target, in basis points.
    uint16 public constant REPUTATION_ALPHA_BPS = 2_000;

    struct Institution {
        uint96 stake;
        uint16 reputation;
        uint40 joinedAt;
        uint40 leaveRequestedAt; // 0 while active
        bool registered;
        bool everJoined;
    }

    uint256 private immutable _minStake;
    uint256 private immutable _leaveCooldown;
    mapping(address => Institution) private _institutions;
    uint256 private _slashedBalance;
    mapping(address => uint256) private _reputationFloor; // by reward asset, address(0) for ETH; 0 = moves none

    event InstitutionJoined(address indexed institution, uint256 stake, uint16 reputation, string name, string metadataURI);
    event LeaveRequested(address indexed institution, uint256 availableAt);
    event StakeWithdrawn(address indexed institution, uint256 amount);
    event InstitutionSlashed(address indexed institution, uint256 amount, bytes32 indexed evidenceHash);
    event SlashedFundsWithdrawn(address indexed to, uint256 amount);
    event ReputationFloorSet(address indexed token, uint256 floor);

    error AlreadyRegistered(address institution);
    error NotRegistered(address institution);
    error StakeTooLow(uint256 sent, uint256 minimum);
    error LeaveAlreadyRequested(address institution);
    error LeaveNotRequested(address institution);
    error CooldownNotOver(address institution, uint256 availableAt);
    error SlashExceedsStake(address institution, uint256 amount, uint256 stake);
    error NothingToWithdraw(address caller);
    error StakeBelowMinimum(address institution, uint256 stake, uint256 minimum);

    /// @param governance_ May slash stake for proven misbehaviour and withdraw slashed funds (not zero).
    /// @param minStake_ Minimum stake to join, in wei.
    /// @param leaveCooldown_ Seconds between `requestLeave` and `withdrawStake`.
    /// @param ethReputationFloor_ Round reward, in wei, from which an ETH bounty's round moves reputation fully.
    constructor(address governance_, uint256 minStake_, uint256 leaveCooldown_, uint256 ethReputationFloor_)
        Governed(governance_)
    {
        _minStake = minStake_;
        _leaveCooldown = leaveCooldown_;
        _reputationFloor[address(0)] = ethReputationFloor_;
        emit ReputationFloorSet(address(0), ethReputationFloor_);
    }

    /// @notice Join the federation, staking `msg.value` (at least `minStake()`).
    /// @param name Human-readable institution name (kept in the event log only).
    /// @param metadataURI Where the institution publishes its details (kept in the event log only).
    function join(string calldata name, string calldata metadataURI) external payable {
        Institution storage inst = _institutions[msg.sender];
        if (inst.registered) revert AlreadyRegistered(msg.sender);
        if (msg.value < _minStake) revert StakeTooLow(msg.value, _minStake);
        inst.stake = SafeCast.toUint96(msg.value);
        if (!inst.everJoined) {
            inst.reputation = INITIAL_REPUTATION;
            inst.everJoined = true;
        }
        inst.joinedAt = uint40(block.timestamp);
        inst.leaveRequestedAt = 0;
        inst.registered = true;
        emit InstitutionJoined(msg.sender, msg.value, inst.reputation, name, metadataURI);
    }

    /// @notice Start leaving: the institution can no longer commit, and may withdraw its stake after the cooldown.
    function requestLeave() external {
        Institution storage inst = _institutions[msg.sender];
        if (!inst.registered) revert NotRegistered(msg.sender);
        if (inst.leaveRequestedAt != 0) revert LeaveAlreadyRequested(msg.sender);
        inst.leaveRequestedAt = uint40(block.timestamp);
        emit LeaveRequested(msg.sender, block.timestamp + _leaveCooldown);
    }

    /// @notice Withdraw the whole remaining stake once the leave cooldown is over; the institution is then unregistered.
    function withdrawStake() external nonReentrant {
        Institution storage inst = _institutions[msg.sender];
        if (!inst.registered) revert NotRegistered(msg.sender);
        if (inst.leaveRequestedAt == 0) revert LeaveNotRequested(msg.sender);
        uint256 availableAt = uint256(inst.leaveRequestedAt) + _leaveCooldown;
        if (block.timestamp < availableAt) revert CooldownNotOver(msg.sender, availableAt);
        uint256 amount = inst.stake;
        inst.stake = 0;
        inst.registered = false;
        emit StakeWithdrawn(msg.sender, amount);
        _sendEth(msg.sender, amount);
    }

    /// @notice Governance slashes `amount` of an institution's stake for proven misbehaviour.
    /// @param institution The institution to slash.
    /// @param amount Stake to take, in wei (at most its stake).
    /// @param evidenceHash Hash of the published evidence (for example the offending update and the audit report).
    function slash(address institution, uint256 amount, bytes32 evidenceHash) external onlyGovernance {
        Institution storage inst = _institutions[institution];
        if (!inst.registered) revert NotRegistered(institution);
        if (amount > inst.stake) revert SlashExceedsStake(institution, amount, inst.stake);
        inst.stake -= uint96(amount);
        _slashedBalance += amount;
        emit InstitutionSlashed(institution, amount, evidenceHash);
    }

    /// @notice Governance withdraws all slashed stake to `to`.
    /// @param to Who receives the slashed stake.
    function withdrawSlashed(address to) external onlyGovernance nonReentrant {
        uint256 amount = _slashedBalance;
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        _slashedBalance = 0;
        emit SlashedFundsWithdrawn(to, amount);
        _sendEth(to, amount);
    }

    /// @notice Governance fixes, for one reward asset, the round reward from which a round moves reputation fully;
    ///         below it a round moves reputation in proportion to its reward, and 0 makes the asset move none.
    /// @param token The reward asset (address(0) for ETH).
    /// @param floor The round reward, in wei or token units, of a full reputation step.
    function setReputationFloor(address token, uint256 floor) external onlyGovernance {
        _reputationFloor[token] = floor;
        emit ReputationFloorSet(token, floor);
    }

    /// @notice The round reward from which a bounty in `token` moves reputation fully (0: it moves none).
    /// @param token The reward asset (address(0) for ETH).
    /// @return The floor, in wei or token units.
    function reputationFloor(address token) external view returns (uint256) {
        return _reputationFloor[token];
    }

    /// @notice Institutions' records (stake, reputation, join and leave times, registration), several in one call:
    ///         a coordinator checks every candidate each round.
    /// @param institutions The institutions' addresses.
    /// @return records Their records, in the order asked (all zero for an address that never joined).
    function getInstitutionRecords(address[] calldata institutions)
        external
        view
        returns (Institution[] memory records)
    {
        records = new Institution[](institutions.length);
        for (uint256 i; i < institutions.length; ++i) {
            records[i] = _institutions[institutions[i]];
        }
    }

    /// @notice The minimum stake to join, in wei.
    /// @return The minimum stake.
    function minStake() external view returns (uint256) {
        return _minStake;
    }

    /// @notice Seconds between `requestLeave` and `withdrawStake`.
    /// @return The cooldown in seconds.
    function leaveCooldown() external view returns (uint256) {
        return _leaveCooldown;
    }

    /// @notice Slashed stake not yet withdrawn by governance, in wei.
    /// @return The slashed balance.
    function slashedBalance() external view returns (uint256) {
        return _slashedBalance;
    }

    /// @dev An institution may commit while registered, not leaving and staking at least `minStake` (reverts
    ///      otherwise); returns its reputation, which the caller checks against the bounty's minimum.
    function _committerReputation(address institution) internal view returns (uint16) {
        Institution storage inst = _institutions[institution];
        if (!inst.registered || inst.leaveRequestedAt != 0) revert NotRegistered(institution);
        if (inst.stake < _minStake) revert StakeBelowMinimum(institution, inst.stake, _minStake);
        return inst.reputation;
    }

    /// @dev How far (basis points) a round paying `reward` in `token` moves reputation: the rule on the contract.
    function _reputationAlpha(address token, uint256 reward) internal view returns (uint256) {
        uint256 floor = _reputationFloor[token];
        if (floor == 0) return 0;
        return (REPUTATION_ALPHA_BPS * Math.min(reward, floor)) / floor;
    }

    /// @dev The moving-average rule documented on the contract, for a round that pays: returns the new reputation
    ///      (unchanged, and not written, when alpha or the score is 0). Callers guarantee alpha <= REPUTATION_ALPHA_BPS.
    function _updateReputation(address institution, int256 score, uint256 alpha) internal returns (uint16 updated) {
        Institution storage inst = _institutions[institution];
        uint256 current = inst.reputation;
        if (alpha == 0 || score == 0) return uint16(current);
        unchecked {
            // current <= 10_000 and alpha <= 2_000, so neither branch can overflow or underflow.
            updated = score > 0
                ? uint16(current + ((REPUTATION_ONE - current) * alpha) / REPUTATION_ONE)
                : uint16(current - (current * alpha) / REPUTATION_ONE);
        }
        inst.reputation = updated;
    }
}
