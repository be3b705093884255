"""Stand-in for vllm/v1/worker/gpu/async_utils.py."""
import threading


class AsyncOutput:
    def __init__(self, model_runner_output):
        self.model_runner_output = model_runner_output
        self.copy_event = threading.Event()
        self.copy_event.set()

    def get_output(self):
        self.copy_event.wait()
        return self.model_runner_output
