// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title AssetTransfers
/// @notice Moves ETH (token address(0)) or one ERC-20 in and out of a contract, counting only what really arrived.
/// @dev Tokens that deliver less than the amount asked for (fee-on-transfer, rebasing down) are rejected with
///      `TokenAmountMismatch`, so the books never count money the contract does not hold.
abstract contract AssetTransfers {
    using SafeERC20 for IERC20;

    error WrongValue(uint256 sent, uint256 expected);
    error TokenAmountMismatch(address token, uint256 expected, uint256 received);
    error TransferFailed(address to, uint256 amount);

    /// @dev Takes `amount` of `token` (ETH when zero) from the caller and checks it really arrived.
    function _receive(address token, uint256 amount) internal {
        if (token == address(0)) {
            if (msg.value != amount) revert WrongValue(msg.value, amount);
            return;
        }
        if (msg.value != 0) revert WrongValue(msg.value, 0);
        if (amount == 0) return;
        IERC20 erc20 = IERC20(token);
        uint256 before = erc20.balanceOf(address(this));
        erc20.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = erc20.balanceOf(address(this)) - before;
        if (received != amount) revert TokenAmountMismatch(token, amount, received);
    }

    /// @dev Pays `amount` of `token` (ETH when zero) to `to`. Callers have already updated their books.
    function _payOut(address token, address to, uint256 amount) internal {
        if (amount == 0) return;
        if (token == address(0)) {
            _sendEth(to, amount);
        } else {
            IERC20(token).safeTransfer(to, amount);
        }
    }

    function _sendEth(address to, uint256 amount) internal {
        (bool ok,) = payable(to).call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}
