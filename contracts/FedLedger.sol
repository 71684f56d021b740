// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {InstitutionRegistry} from "./InstitutionRegistry.sol";
import {RevenueSplitter} from "./RevenueSplitter.sol";

/// @title FedLedger
/// @notice The one deployed contract of a fedledger federation: institutions and reputation, bounties and their
///         escrow, committed rounds and credited rewards, and the revenue splitter, composed by inheritance.
/// @dev One contract rather than several talking to each other: every commit and finalize would otherwise pay
///      for cold cross-contract calls, and the per-commit gas budget cannot afford them.
contract FedLedger is RevenueSplitter {
    /// @param governance_ May slash stake for proven misbehaviour and withdraw slashed funds.
    /// @param minStake_ Minimum stake to join, in wei.
    /// @param leaveCooldown_ Seconds between `requestLeave` and `withdrawStake`.
    constructor(address governance_, uint256 minStake_, uint256 leaveCooldown_)
        InstitutionRegistry(governance_, minStake_, leaveCooldown_)
    {}
}
