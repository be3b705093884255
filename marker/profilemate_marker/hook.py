"""An import hook that runs a callback right after chosen modules execute.

Uses only the find_spec/exec_module protocol (Python 3.4+); the old
find_module/load_module one is ignored by Python 3.12+.  The classes do not
derive from importlib.abc, whose 3.10/3.11 versions still carry those
legacy methods.
"""
import sys


class PatchingFinder:
    """sys.meta_path entry for the modules in `names`.

    It finds nothing itself: it asks the other finders for the spec and
    wraps the loader they chose, so the module loads exactly as without it.
    """

    #: Recognised across copies of this package (pip install and PYTHONPATH).
    profilemate_finder = True

    def __init__(self, names, on_loaded):
        self.names = frozenset(names)
        self.on_loaded = on_loaded

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or getattr(finder, "profilemate_finder", False):
                continue
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = PatchingLoader(spec.loader, self.on_loaded)
        return spec


class PatchingLoader:
    """Delegates to the real loader, then calls on_loaded(module)."""

    def __init__(self, loader, on_loaded):
        self.loader = loader
        self.on_loaded = on_loaded

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.on_loaded(module)

    def __getattr__(self, name):
        # get_source, get_resource_reader, is_package, ...: the real loader's;
        # but not the legacy load_module, which would skip on_loaded.
        if name == "load_module":
            raise AttributeError(name)
        return getattr(self.loader, name)


def install_finder(names, on_loaded):
    """Put a PatchingFinder first on sys.meta_path unless one is there."""
    if any(getattr(f, "profilemate_finder", False) for f in sys.meta_path):
        return False
    sys.meta_path.insert(0, PatchingFinder(names, on_loaded))
    return True
