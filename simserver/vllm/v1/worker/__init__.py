"""Stand-in package at vLLM's module path."""
