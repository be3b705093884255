"""Stand-in for vLLM: only the module paths, classes, methods and fields the
profilemate marker touches, with vLLM's real names (docs/vllm-facts.md)."""
