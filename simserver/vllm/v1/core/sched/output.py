"""What the scheduler hands the model runner each step, with vLLM's field
names (vllm/v1/core/sched/output.py)."""
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class NewRequestData:
    """A request scheduled for the first time."""

    req_id: str
    prompt_token_ids: Optional[list[int]]
    block_ids: tuple[list[int], ...]
    num_computed_tokens: int
    mm_features: list = field(default_factory=list)
    sampling_params: object = None
    pooling_params: object = None
    lora_request: object = None
    prompt_embeds: object = None


@dataclass
class CachedRequestData:
    """Requests scheduled before, as parallel lists."""

    req_ids: list[str]
    resumed_req_ids: set[str]
    new_token_ids: list[list[int]]
    new_block_ids: list[Optional[tuple[list[int], ...]]]
    num_computed_tokens: list[int]
    num_output_tokens: list[int]

    @property
    def num_reqs(self) -> int:
        return len(self.req_ids)

    @classmethod
    def make_empty(cls) -> "CachedRequestData":
        return cls([], set(), [], [], [], [])


@dataclass
class SchedulerOutput:
    """One step's schedule."""

    scheduled_new_reqs: list[NewRequestData]
    scheduled_cached_reqs: CachedRequestData
    num_scheduled_tokens: dict[str, int]
    total_num_scheduled_tokens: int
    scheduled_spec_decode_tokens: dict[str, list[int]]
    scheduled_encoder_inputs: dict[str, list[int]]
    num_common_prefix_blocks: list[int]
    finished_req_ids: set[str]
    free_encoder_mm_hashes: list[str]
    preempted_req_ids: Optional[set[str]] = None
    num_invalid_spec_tokens: Optional[dict[str, int]] = None

    @classmethod
    def make_empty(cls) -> "SchedulerOutput":
        """A schedule with nothing in it (vLLM's, for an idle step)."""
        return cls([], CachedRequestData.make_empty(), {}, 0, {}, {}, [], set(), [])
