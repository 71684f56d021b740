// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice Stand-in with a FedLedger-like constructor, to test deploy_fedledger's argument matching.
contract FakeFedLedger {
    uint256 public immutable minStake;
    uint64 public immutable leaveCooldown;
    address public immutable governance;

    constructor(uint256 minStake_, uint64 leaveCooldown_, address governance_) {
        minStake = minStake_;
        leaveCooldown = leaveCooldown_;
        governance = governance_;
    }
}
