"""General plugins (vllm/plugins/__init__.py).

load_general_plugins() is called in every process of the server (API
server, EngineCore, each worker) before a model runner is built; it is how
the profilemate marker gets installed.  As in vLLM, env VLLM_PLUGINS, when
set, is a comma-separated list of the plugin names allowed to load (set but
empty: none), and each plugin function runs at most once per process.
"""
import logging
import os
from importlib.metadata import entry_points

logger = logging.getLogger(__name__)

GENERAL_PLUGINS_GROUP = "vllm.general_plugins"

_plugins_loaded = False


def load_plugins_by_group(group: str) -> dict:
    """Load the entry points of `group` that VLLM_PLUGINS allows."""
    allowed = os.environ.get("VLLM_PLUGINS")
    allowed = None if allowed is None else allowed.split(",")
    plugins = {}
    for plugin in entry_points(group=group):
        if allowed is not None and plugin.name not in allowed:
            continue
        try:
            plugins[plugin.name] = plugin.load()
        except Exception:
            logger.exception("Failed to load plugin %s", plugin.name)
    return plugins


def load_general_plugins() -> None:
    """Run every allowed general plugin once in this process."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for name, func in load_plugins_by_group(GENERAL_PLUGINS_GROUP).items():
        try:
            func()
        except Exception:
            logger.exception("Plugin %s failed", name)
