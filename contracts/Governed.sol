// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Governed
/// @notice One governance address, handed over in two steps as in OpenZeppelin's Ownable2Step: the governor names
///         a successor with `transferGovernance`, and the handover completes only when that successor calls
///         `acceptGovernance`, so a mistyped address can never take (or strand) governance.
abstract contract Governed {
    address private _governance;
    address private _pendingGovernance;

    event GovernanceTransferStarted(address indexed previousGovernance, address indexed newGovernance);
    event GovernanceTransferred(address indexed previousGovernance, address indexed newGovernance);

    error NotGovernance(address caller);
    error NotPendingGovernance(address caller, address pendingGovernance);
    error InvalidGovernance(address governance);

    modifier onlyGovernance() {
        if (msg.sender != _governance) revert NotGovernance(msg.sender);
        _;
    }

    /// @param governance_ The first governance address (not zero).
    constructor(address governance_) {
        if (governance_ == address(0)) revert InvalidGovernance(governance_);
        _transferGovernance(governance_);
    }

    /// @notice Governance names its successor, who must accept; naming address(0) withdraws a pending handover.
    /// @param newGovernance The proposed successor (replaces any earlier proposal).
    function transferGovernance(address newGovernance) external onlyGovernance {
        _pendingGovernance = newGovernance;
        emit GovernanceTransferStarted(_governance, newGovernance);
    }

    /// @notice The successor named by `transferGovernance` accepts and becomes governance.
    function acceptGovernance() external {
        if (msg.sender != _pendingGovernance) revert NotPendingGovernance(msg.sender, _pendingGovernance);
        _transferGovernance(msg.sender);
    }

    /// @notice The governance address (may slash and withdraw slashed stake).
    /// @return The current governance address.
    function governance() external view returns (address) {
        return _governance;
    }

    /// @notice The successor named by governance and not yet accepted (address(0) when none).
    /// @return The pending governance address.
    function pendingGovernance() external view returns (address) {
        return _pendingGovernance;
    }

    function _transferGovernance(address newGovernance) private {
        address previous = _governance;
        _governance = newGovernance;
        delete _pendingGovernance;
        emit GovernanceTransferred(previous, newGovernance);
    }
}
