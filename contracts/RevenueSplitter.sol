// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {AssetTransfers} from "./AssetTransfers.sol";

/// @notice What the splitter reads from the ledger: a completed bounty's frozen scores.
interface IFinalScores {
    /// @notice A completed bounty's final scores (reverts `BountyNotCompleted` or `UnknownBounty` otherwise).
    /// @param bountyId The completed bounty.
    /// @param institution The contributor.
    /// @return score The institution's cumulative positive score.
    /// @return totalScore The bounty's total positive score.
    function finalScores(uint256 bountyId, address institution) external view returns (uint256 score, uint256 totalScore);
}

/// @title RevenueSplitter
/// @notice Once a bounty is complete, anyone may pay revenue earned by the finished model into it (ETH or any
///         ERC-20, any number of payments). Each institution may pull its share: revenue * its cumulative positive
///         score / the bounty's total positive score, both read from the ledger, where completion froze them.
/// @dev Deployed apart from the ledger so that revenue and bounty escrow never share a balance: this contract
///      holds revenue only. Shares are computed on the running total (as a payment splitter does), so the rounding
///      dust of one payment becomes claimable with the next; what is paid in and not yet released is
///      `revenueTotal - revenueReleased`.
contract RevenueSplitter is ReentrancyGuard, AssetTransfers {
    IFinalScores private immutable _ledger;
    mapping(uint256 => mapping(address => uint256)) private _revenueTotal;
    mapping(uint256 => mapping(address => uint256)) private _revenueReleasedTotal;
    mapping(uint256 => mapping(address => mapping(address => uint256))) private _revenueReleased;

    event RevenuePaid(uint256 indexed bountyId, address indexed payer, address indexed token, uint256 amount);
    event RevenueClaimed(uint256 indexed bountyId, address indexed institution, address indexed token, uint256 amount);

    error ZeroLedger();
    error NoContributors(uint256 bountyId);
    error NothingDue(uint256 bountyId, address token, address institution);
    error ZeroAmount();

    /// @param ledger_ The FedLedger whose completed bounties' scores split the revenue.
    constructor(address ledger_) {
        if (ledger_ == address(0)) revert ZeroLedger();
        _ledger = IFinalScores(ledger_);
    }

    /// @notice Pay `amount` of revenue in `token` (address(0) and `msg.value` for ETH) into a completed bounty.
    /// @param bountyId The completed bounty whose model earned the revenue.
    /// @param token The revenue's asset, address(0) for ETH (approve this contract first for a token).
    /// @param amount How much, in wei or token units (not zero).
    function payRevenue(uint256 bountyId, address token, uint256 amount) external payable nonReentrant {
        (, uint256 totalScore) = _ledger.finalScores(bountyId, address(0));
        if (totalScore == 0) revert NoContributors(bountyId);
        if (amount == 0) revert ZeroAmount();
        _receive(token, amount);
        _revenueTotal[bountyId][token] += amount;
        emit RevenuePaid(bountyId, msg.sender, token, amount);
    }

    /// @notice Withdraw the caller's due share of the bounty's revenue in `token` (address(0) for ETH).
    /// @param bountyId The bounty.
    /// @param token The revenue's asset, address(0) for ETH.
    function claimRevenue(uint256 bountyId, address token) external nonReentrant {
        uint256 amount = revenueDue(bountyId, token, msg.sender);
        if (amount == 0) revert NothingDue(bountyId, token, msg.sender);
        _revenueReleased[bountyId][token][msg.sender] += amount;
        _revenueReleasedTotal[bountyId][token] += amount;
        emit RevenueClaimed(bountyId, msg.sender, token, amount);
        _payOut(token, msg.sender, amount);
    }

    /// @notice Revenue in `token` that `institution` may claim now.
    /// @param bountyId The bounty.
    /// @param token The revenue's asset, address(0) for ETH.
    /// @param institution The contributor.
    /// @return The amount it may claim.
    function revenueDue(uint256 bountyId, address token, address institution) public view returns (uint256) {
        uint256 total = _revenueTotal[bountyId][token];
        if (total == 0) return 0; // nothing paid in (only a completed bounty with contributors can be paid)
        (uint256 score, uint256 totalScore) = _ledger.finalScores(bountyId, institution);
        return Math.mulDiv(total, score, totalScore) - _revenueReleased[bountyId][token][institution];
    }

    /// @notice All revenue ever paid into a bounty in `token`.
    /// @param bountyId The bounty.
    /// @param token The revenue's asset, address(0) for ETH.
    /// @return The total paid in.
    function revenueTotal(uint256 bountyId, address token) external view returns (uint256) {
        return _revenueTotal[bountyId][token];
    }

    /// @notice All revenue in `token` already claimed from a bounty.
    /// @param bountyId The bounty.
    /// @param token The revenue's asset, address(0) for ETH.
    /// @return The total released.
    function revenueReleased(uint256 bountyId, address token) external view returns (uint256) {
        return _revenueReleasedTotal[bountyId][token];
    }

    /// @notice The ledger whose final scores split the revenue.
    /// @return The FedLedger's address.
    function ledger() external view returns (address) {
        return address(_ledger);
    }
}
