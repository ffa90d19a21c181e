"""The model cache of one Dask worker: each model loads once per worker, keyed by its identity
(the runner class and `model_key()`: the verified sha256 of its files, device, backend).

Registered on every worker as a plugin (`client.register_plugin(ModelCache())`), so it lives as
long as the worker and a restarted worker starts empty. Without Dask (`--shard`), one process-wide
instance plays the same part. `loads` counts the models actually loaded, for the run's record.
"""

from __future__ import annotations

import threading

from distributed.diagnostics.plugin import WorkerPlugin

PLUGIN_NAME = "segkit-models"
MAX_MODELS = 2  # as segkit.tasks.base: a worker holds at most two models at once


class ModelCache(WorkerPlugin):
    name = PLUGIN_NAME

    def __init__(self):
        self.models: dict = {}
        self.loads = 0
        self._lock = threading.Lock()

    def setup(self, worker=None):
        self.worker = worker

    def __getstate__(self):  # sent to workers empty: a cache is never shipped
        return {}

    def __setstate__(self, state):
        self.__init__()

    def model(self, runner):
        """The runner's model, loaded now only if this worker has not loaded it yet (threads of one
        worker wait for the first load instead of loading it twice)."""
        key = (type(runner).__module__, type(runner).__qualname__, *runner.model_key())
        with self._lock:
            if key not in self.models:
                while len(self.models) >= MAX_MODELS:
                    self.models.pop(next(iter(self.models)))
                self.models[key] = runner.load_model()
                self.loads += 1
            return self.models[key]


_PROCESS_CACHE = ModelCache()


def current_cache() -> ModelCache:
    """This worker's plugin, or the process-wide cache outside Dask."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except ValueError:
        return _PROCESS_CACHE
    plugin = worker.plugins.get(PLUGIN_NAME)
    if plugin is None:  # a scheduler we did not set up (e.g. a worker that joined later)
        plugin = ModelCache()
        worker.plugins[PLUGIN_NAME] = plugin
    return plugin
