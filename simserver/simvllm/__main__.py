"""`python -m simvllm [options]`: run the simulated server (see cli.py)."""
import sys

from .api_server import run
from .cli import parse

if __name__ == "__main__":
    sys.exit(run(parse(sys.argv[1:])))
