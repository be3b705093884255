"""The simulated vLLM server: processes, scheduler and model behind the
stand-in `vllm` package, running on the fake CUDA libraries of csrc/."""
