"""Stand-in for vllm/v1/outputs.py."""


class ModelRunnerOutput:
    def __init__(self, req_ids=()):
        self.req_ids = list(req_ids)


EMPTY_MODEL_RUNNER_OUTPUT = ModelRunnerOutput()
