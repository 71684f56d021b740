// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @notice Test helper for the ledger plumbing: custom errors with arguments, string and panic
/// reverts, indexed events, ETH deposits and a time lock.
contract Probe is Ownable {
    error TooLarge(uint256 value, uint256 limit);
    error NotYet(uint256 bountyId, uint64 unlockAt, address caller);
    error Empty();

    event Stored(uint256 indexed bountyId, address indexed by, uint256 value, string note);
    event Deposited(address indexed from, uint256 amount);

    uint256 public immutable limit;
    uint256 public unlockAt;
    mapping(uint256 => uint256) public values;

    constructor(uint256 limit_, uint256 lockSeconds) Ownable(msg.sender) {
        limit = limit_;
        unlockAt = block.timestamp + lockSeconds;
    }

    function store(uint256 bountyId, uint256 value, string calldata note) external {
        if (value > limit) revert TooLarge(value, limit);
        values[bountyId] = value;
        emit Stored(bountyId, msg.sender, value, note);
    }

    function unlock(uint256 bountyId) external view returns (bool) {
        if (block.timestamp < unlockAt) revert NotYet(bountyId, uint64(unlockAt), msg.sender);
        return true;
    }

    function deposit() external payable {
        if (msg.value == 0) revert Empty();
        emit Deposited(msg.sender, msg.value);
    }

    function failRequire() external pure {
        require(false, "plain reason");
    }

    function failPanic(uint256 d) external pure returns (uint256) {
        return 1 / d;
    }

    function failBare() external pure {
        revert();
    }

    function onlyOwnerThing() external onlyOwner {}
}
