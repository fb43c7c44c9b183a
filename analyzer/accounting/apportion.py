"""Integer apportionment: split whole bytes in proportion to weights, exactly.

The ledger charges the link, IP and TCP header bytes of a packet that carries bytes of several
owners in proportion to each owner's share of the packet's TCP payload (DESIGN.md section 3).
Fractions would break the conservation law's integer sums, so the split uses the largest
remainder method (Hamilton's): floor of each exact share, then the leftover bytes one each to the
largest remainders, ties to the earlier weight.  The generator's ground truth uses this same
function, so both sides round the same way.
"""

from __future__ import annotations

from collections.abc import Sequence


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` that sum to ``total``.

    All-zero (or empty) weights give everything to the first entry (or raise on empty).
    """
    whole = sum(weights)
    if whole <= 0:
        if not weights:
            raise ValueError("apportion needs at least one weight")
        return [total] + [0] * (len(weights) - 1)
    shares = [total * w // whole for w in weights]
    leftover = total - sum(shares)
    if leftover:
        # Remainders compared as integers (total * w mod whole) to stay exact.
        order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
        for i in order[:leftover]:
            shares[i] += 1
    return shares
