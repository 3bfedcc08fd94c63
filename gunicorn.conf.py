"""gunicorn reads this file from the working directory (command-line flags override it)."""


def post_worker_init(worker):
    from config.runtime import garbage_collector_tune

    garbage_collector_tune()
