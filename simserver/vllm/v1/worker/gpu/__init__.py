"""Stand-in for vLLM's V2 model runner package."""
