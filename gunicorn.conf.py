"""gunicorn reads this file from the working directory (command-line flags override it)."""

import gc


def post_worker_init(worker):
    # The app is loaded: move everything it allocated at start-up (modules, URL maps, model
    # metadata — a few hundred thousand objects) out of the garbage collector's reach. A full
    # collection then walks only what requests allocate, instead of pausing a request while it
    # walks the whole heap.
    gc.collect()
    gc.freeze()
