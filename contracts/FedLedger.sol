// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {InstitutionRegistry} from "./InstitutionRegistry.sol";
import {RoundLedger} from "./RoundLedger.sol";

/// @title FedLedger
/// @notice The ledger of a fedledger federation: institutions and reputation, bounties and their escrow, committed
///         rounds and credited rewards, composed by inheritance. Revenue goes to a separate RevenueSplitter, which
///         reads completed bounties' scores through `finalScores`, so escrow and revenue never share a balance.
/// @dev One contract for everything a round touches: every commit and finalize would otherwise pay for cold
///      cross-contract calls, and the per-commit gas budget cannot afford them.
contract FedLedger is RoundLedger {
    /// @param governance_ May slash stake for proven misbehaviour and withdraw slashed funds.
    /// @param minStake_ Minimum stake to join, in wei.
    /// @param leaveCooldown_ Seconds between `requestLeave` and `withdrawStake`.
    /// @param ethReputationFloor_ Round reward, in wei, from which an ETH bounty's round moves reputation fully.
    constructor(address governance_, uint256 minStake_, uint256 leaveCooldown_, uint256 ethReputationFloor_)
        InstitutionRegistry(governance_, minStake_, leaveCooldown_, ethReputationFloor_)
        EIP712("FedLedger", "1")
    {}
}
