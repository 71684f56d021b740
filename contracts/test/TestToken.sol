// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice A plain mintable ERC-20 for tests and the demo.
contract TestToken is ERC20 {
    constructor() ERC20("Test Token", "TST") {}

    /// @notice Anyone may mint: this token only exists in tests.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}

/// @notice An ERC-20 whose transfers take a 1% fee: the ledger must refuse it rather than count fees as escrow.
contract FeeOnTransferToken is ERC20 {
    constructor() ERC20("Fee Token", "FEE") {}

    /// @notice Anyone may mint.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function _update(address from, address to, uint256 value) internal override {
        if (from == address(0) || to == address(0)) {
            super._update(from, to, value);
            return;
        }
        uint256 fee = value / 100;
        super._update(from, address(0), fee);
        super._update(from, to, value - fee);
    }
}

/// @notice A token that signals failure by returning false instead of reverting: SafeERC20 must catch it.
contract FalseReturningToken {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    bool public failing;

    /// @notice Anyone may mint.
    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
    }

    /// @notice Make every later transfer return false.
    function setFailing(bool value) external {
        failing = value;
    }

    /// @notice Approve `spender`.
    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        return true;
    }

    /// @notice Transfer, or return false when failing.
    function transfer(address to, uint256 amount) external returns (bool) {
        if (failing || balanceOf[msg.sender] < amount) return false;
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
        return true;
    }

    /// @notice Transfer from an approver, or return false when failing.
    function transferFrom(address from, address to, uint256 amount) external returns (bool) {
        if (failing || balanceOf[from] < amount || allowance[from][msg.sender] < amount) return false;
        allowance[from][msg.sender] -= amount;
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
        return true;
    }
}
