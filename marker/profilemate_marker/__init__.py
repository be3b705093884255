"""profilemate marker: USDT probes at vLLM model-runner step boundaries.

`register` is the vLLM general-plugin entry point; `install` does the same
for the sitecustomize way.  See marker/README.md.
"""
from .install import install, register

__all__ = ["install", "register"]
