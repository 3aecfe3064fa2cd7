"""Loaded by every Python process of a vLLM instance started by the e2e harness.

The harness puts e2e/shims on PYTHONPATH of vLLM processes only, so Python
imports this file at start-up. It imports each e2e/shims/shim_*.py in name
order. A shim works around one GPU-only call in vLLM's CPU build without
touching vLLM's files: it registers, with `after_import`, a function that
patches a vLLM module right after that module is first imported (so nothing
of vLLM is imported early). Each shim names the vLLM file and line it works
around.
"""

import glob
import importlib.abc
import importlib.util
import os
import sys

_hooks = {}


def after_import(module_name, fn):
    """Call fn(module) once `module_name` has been imported (now if it already is)."""
    if module_name in sys.modules:
        fn(sys.modules[module_name])
    else:
        _hooks.setdefault(module_name, []).append(fn)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name not in _hooks:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            for fn in _hooks.pop(name, []):
                fn(module)

        loader.exec_module = exec_and_patch
        return spec


sys.meta_path.insert(0, _Finder())

for _path in sorted(glob.glob(os.path.join(os.path.dirname(__file__), "shim_*.py"))):
    _name = os.path.basename(_path)[:-3]
    _spec = importlib.util.spec_from_file_location(_name, _path)
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
