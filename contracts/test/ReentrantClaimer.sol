// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IFedLedgerForAttack {
    function join(string calldata name, string calldata metadataURI) external payable;
    function commitUpdate(uint256 bountyId, uint256 round, bytes32 updateHash, uint64 sampleCount, uint64 declaredEpsilon)
        external;
    function claim(uint256 bountyId) external;
}

interface IRevenueSplitterForAttack {
    function claimRevenue(uint256 bountyId, address token) external;
}

/// @notice An institution run by a contract that tries to claim again from inside the payment it receives.
contract ReentrantClaimer {
    IFedLedgerForAttack public immutable ledger;
    IRevenueSplitterForAttack public immutable splitter;
    uint256 public bountyId;
    bool public attackRevenue;
    uint256 public reentryAttempts;
    uint256 public reentrySucceeded;
    bool public rejectPayments;

    constructor(address ledger_, address splitter_) {
        ledger = IFedLedgerForAttack(ledger_);
        splitter = IRevenueSplitterForAttack(splitter_);
    }

    /// @notice Join the federation with the attached stake.
    function join() external payable {
        ledger.join{value: msg.value}("attacker", "");
    }

    /// @notice Commit an update like an honest institution.
    function commit(uint256 bountyId_, uint256 round, bytes32 updateHash) external {
        ledger.commitUpdate(bountyId_, round, updateHash, 1, 0);
    }

    /// @notice Make every later incoming payment revert (an institution that cannot receive ether).
    function setRejectPayments(bool value) external {
        rejectPayments = value;
    }

    /// @notice Claim rewards without attacking.
    function plainClaim(uint256 bountyId_) external {
        bountyId = bountyId_;
        reentryAttempts = 1; // nothing to re-enter
        ledger.claim(bountyId_);
    }

    /// @notice Claim rewards, re-entering `claim` from `receive`.
    function attackClaim(uint256 bountyId_) external {
        bountyId = bountyId_;
        reentryAttempts = 0;
        attackRevenue = false;
        ledger.claim(bountyId_);
    }

    /// @notice Claim ETH revenue, re-entering `claimRevenue` from `receive`.
    function attackClaimRevenue(uint256 bountyId_) external {
        bountyId = bountyId_;
        reentryAttempts = 0;
        attackRevenue = true;
        splitter.claimRevenue(bountyId_, address(0));
    }

    receive() external payable {
        require(!rejectPayments, "payments rejected");
        if (reentryAttempts > 0) return;
        reentryAttempts += 1;
        if (attackRevenue) {
            try splitter.claimRevenue(bountyId, address(0)) {
                reentrySucceeded += 1;
            } catch {}
        } else {
            try ledger.claim(bountyId) {
                reentrySucceeded += 1;
            } catch {}
        }
    }
}
