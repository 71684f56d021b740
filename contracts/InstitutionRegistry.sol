// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {AssetTransfers} from "./AssetTransfers.sol";
import {Governed} from "./Governed.sol";

/// @title InstitutionRegistry
/// @notice Institutions join with an ETH stake, leave after a cooldown, and carry a reputation that only
///         round finalization changes. Governance (handed over in two steps) may slash stake for proven misbehaviour.
/// @dev Reputation is fixed point in basis points: 0 = none, 10_000 = perfect. Each finalized round moves a
///      participant's reputation 20% of the way towards its normalized score (an exponential moving average):
///      rep' = rep + (target - rep) * 2_000 / 10_000, where target = 10_000 * score / bestScore for a positive
///      score and 0 otherwise. A new institution starts at 5_000; leaving keeps the reputation, so leaving and
///      re-joining cannot launder it.
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

    event InstitutionJoined(address indexed institution, uint256 stake, uint16 reputation, string name, string metadataURI);
    event LeaveRequested(address indexed institution, uint256 availableAt);
    event StakeWithdrawn(address indexed institution, uint256 amount);
    event InstitutionSlashed(address indexed institution, uint256 amount, bytes32 indexed evidenceHash);
    event SlashedFundsWithdrawn(address indexed to, uint256 amount);

    error AlreadyRegistered(address institution);
    error NotRegistered(address institution);
    error StakeTooLow(uint256 sent, uint256 minimum);
    error LeaveAlreadyRequested(address institution);
    error LeaveNotRequested(address institution);
    error CooldownNotOver(address institution, uint256 availableAt);
    error SlashExceedsStake(address institution, uint256 amount, uint256 stake);
    error NothingToWithdraw(address caller);

    /// @param governance_ May slash stake for proven misbehaviour and withdraw slashed funds (not zero).
    /// @param minStake_ Minimum stake to join, in wei.
    /// @param leaveCooldown_ Seconds between `requestLeave` and `withdrawStake`.
    constructor(address governance_, uint256 minStake_, uint256 leaveCooldown_) Governed(governance_) {
        _minStake = minStake_;
        _leaveCooldown = leaveCooldown_;
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

    /// @notice An institution's record (stake, reputation, join and leave times, registration).
    /// @param institution The institution's address.
    /// @return The record (all zero for an address that never joined).
    function getInstitution(address institution) external view returns (Institution memory) {
        return _institutions[institution];
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

    /// @dev An institution may commit while registered and not leaving, with at least `minReputation`.
    function _activeReputation(address institution) internal view returns (bool active, uint16 reputation) {
        Institution storage inst = _institutions[institution];
        return (inst.registered && inst.leaveRequestedAt == 0, inst.reputation);
    }

    /// @dev The moving-average rule documented on the contract; returns the new reputation.
    ///      Callers guarantee score <= bestScore, so the target lies in [0, REPUTATION_ONE].
    function _updateReputation(address institution, int256 score, int256 bestScore) internal returns (uint16 updated) {
        Institution storage inst = _institutions[institution];
        uint256 current = inst.reputation;
        uint256 target = score > 0 ? (uint256(score) * REPUTATION_ONE) / uint256(bestScore) : 0;
        unchecked {
            // |target - current| <= 10_000, so neither branch can overflow or underflow.
            updated = target >= current
                ? uint16(current + ((target - current) * REPUTATION_ALPHA_BPS) / REPUTATION_ONE)
                : uint16(current - ((current - target) * REPUTATION_ALPHA_BPS) / REPUTATION_ONE);
        }
        inst.reputation = updated;
    }
}
