"""The split policy of a recording turned into a dataset folder (`pose-train import`, `from-bag`).

Frames in time order are cut into `SplitPolicy.blocks` contiguous blocks of nearly equal size;
block k (1-based) is test when k is a multiple of `test_every`, the block after a test block is val
(if `val`), the rest train. So test frames are whole stretches of the path, not neighbours of
training frames, and val holds several stretches for the covariance calibration to be fitted on
(the default 20 blocks, every 5th test: 65/15/20, val three stretches; see importers/writer.py for
what one stretch did to the calibration). The block index is the frame's sequence id.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

DEFAULT_SPLIT_BLOCKS = 20
DEFAULT_TEST_EVERY = 5


@dataclass(frozen=True)
class SplitPolicy:
    blocks: int | None = None  # None: DEFAULT_SPLIT_BLOCKS, or one block per frame for fewer frames
    test_every: int = DEFAULT_TEST_EVERY
    val: bool = True

    def for_frames(self, count: int) -> SplitPolicy:
        """This policy with its number of blocks settled for `count` frames."""
        if self.blocks is not None:
            return self
        return replace(self, blocks=max(1, min(DEFAULT_SPLIT_BLOCKS, count)))

    def to_json(self) -> dict[str, int | bool | None]:
        """dataset.yaml's ``provenance.split_policy``."""
        return {"blocks": self.blocks, "test_every": self.test_every, "val": self.val}


def block_splits(count: int, policy: SplitPolicy) -> list[tuple[str, int]]:
    """(split, block index) of each of `count` frames in order (see the module docstring)."""
    defaulted = policy.blocks is None
    policy = policy.for_frames(count)
    assert policy.blocks is not None  # settled by for_frames
    if policy.blocks < 1 or policy.test_every < 1:
        raise ValueError("--split-blocks and --test-every must be positive")
    if policy.blocks > count:
        raise ValueError(f"--split-blocks {policy.blocks} is more than the {count} frames")
    if policy.test_every > policy.blocks:
        blocks = f"the {count} frames (one block each)" if defaulted else f"--split-blocks {policy.blocks}"
        raise ValueError(f"--test-every {policy.test_every} > {blocks} leaves no test block")
    if policy.test_every == 1:
        raise ValueError("--test-every 1 makes every block a test block; nothing is left to train on")
    kinds: list[str] = []
    for block in range(policy.blocks):
        if (block + 1) % policy.test_every == 0:
            kinds.append("test")
        elif policy.val and block > 0 and kinds[block - 1] == "test":
            kinds.append("val")
        else:
            kinds.append("train")
    if "train" not in kinds:
        raise ValueError("the split policy leaves no training block (lower --test-every or pass --no-val)")
    bounds = np.linspace(0, count, policy.blocks + 1).round().astype(int)
    return [
        (kinds[block], block)
        for block in range(policy.blocks)
        for _ in range(bounds[block], bounds[block + 1])
    ]
