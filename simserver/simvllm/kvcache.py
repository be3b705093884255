"""The simulated KV cache: a pool of fixed-size blocks that requests hold
for the tokens they have scheduled, as vLLM's block pool (no prefix
caching: a freed block is simply free again)."""
import math

#: Tokens per KV-cache block (vLLM's default block size on CUDA).
BLOCK_SIZE = 16


def blocks_for(num_tokens: int) -> int:
    """Blocks that hold num_tokens tokens."""
    return math.ceil(num_tokens / BLOCK_SIZE)


class BlockPool:
    """num_blocks blocks; usage() is the fraction in use, as vLLM's
    KVCacheManager.usage reports it (0.0 to 1.0)."""

    def __init__(self, num_blocks: int):
        self.num_blocks = num_blocks
        self.used = 0

    @property
    def free(self) -> int:
        return self.num_blocks - self.used

    def take(self, n: int) -> None:
        assert 0 <= n <= self.free, (n, self.free)
        self.used += n

    def give_back(self, n: int) -> None:
        assert 0 <= n <= self.used, (n, self.used)
        self.used -= n

    def usage(self) -> float:
        return self.used / self.num_blocks
