"""Stand-in for vllm/v1/outputs.py."""


class ModelRunnerOutput:
    def __init__(self, req_ids=(), sampled_token_ids=(), req_id_to_index=None):
        self.req_ids = list(req_ids)
        self.sampled_token_ids = [list(t) for t in sampled_token_ids]
        self.req_id_to_index = (req_id_to_index if req_id_to_index is not None
                                else {r: i for i, r in enumerate(self.req_ids)})


EMPTY_MODEL_RUNNER_OUTPUT = ModelRunnerOutput()
