"""Installs the profilemate marker at interpreter start-up.

Use with PYTHONPATH=<repo>/marker (after `make -C marker`).  Works whether
vLLM is imported before or after this runs (an import hook patches later
imports).  PROFILEMATE_MARKER=0 switches it off.
"""
try:
    import profilemate_marker

    profilemate_marker.install()
except Exception:  # never break interpreter start-up
    import logging

    logging.getLogger("profilemate_marker").exception("profilemate marker: not installed")
