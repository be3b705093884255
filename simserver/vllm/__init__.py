"""Stand-in for the `vllm` package, for the simulated server (simserver/).

Only the modules, classes and method signatures that the profilemate marker
patches or reads are here, at vLLM's real module paths.  The work behind them
is simulated by `simvllm` on fake CUDA libraries.
"""
