"""A module that nibabel imports at start-up and `segkit eval`/`quantify` never use, run on first use.

nibabel imports `urllib.request` (`from urllib import request`, to load an image from a URL, which
segkit never asks for), and with it ssl, http and email: 15-20 ms of a `segkit eval` process of
0.3 s, which a shell loop over a study pays per case. importlib's LazyLoader puts the module in
sys.modules and runs its code at the first attribute access, so any real use still gets the whole
module. (It would not help for scipy, which nibabel also imports: a plain `import scipy` reads the
module's __spec__, which already runs it.)

Only for the installed script's single-threaded commands: Python 3.11's LazyLoader is not safe when
two threads touch the module first at the same time.
"""

from __future__ import annotations

import importlib.util
import sys

UNUSED_BY_NIBABEL_READS = ("urllib.request",)


def defer(names: tuple[str, ...]) -> None:
    """Register each module (not yet imported) so that its code runs at first use."""
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)  # imports the parent package of a submodule
        if spec is None or spec.loader is None:
            continue
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        parent, _, child = name.rpartition(".")
        if parent:  # what the import system does for a submodule: `urllib.request` as an attribute
            setattr(sys.modules[parent], child, module)
