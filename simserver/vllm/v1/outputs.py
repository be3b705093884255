"""Model runner outputs (vllm/v1/outputs.py)."""
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class ModelRunnerOutput:
    """The host-side result of one step: sampled tokens per request."""

    req_ids: list[str]
    req_id_to_index: dict[str, int]
    sampled_token_ids: list[list[int]] = field(default_factory=list)
    logprobs: object = None
    prompt_logprobs_dict: dict = field(default_factory=dict)
    pooler_output: Optional[list] = None
    kv_connector_output: object = None
    num_nans_in_logits: Optional[dict[str, int]] = None


class AsyncModelRunnerOutput(ABC):
    """An output whose tokens are still being copied to the host."""

    @abstractmethod
    def get_output(self) -> ModelRunnerOutput:
        """Block until the output is on the host and return it."""


EMPTY_MODEL_RUNNER_OUTPUT = ModelRunnerOutput(req_ids=[], req_id_to_index={})
