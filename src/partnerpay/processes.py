"""What every long-running partnerpay process does once it has started."""

import gc


def freeze_startup_objects() -> None:
    """Move everything alive after startup (modules, the app, mappers, schemas) out of
    the garbage collector's sight. Full collections otherwise walked all of it, pausing
    requests (and, in ``partnerpay worker``, deliveries) for tens of milliseconds: the
    worst of the create latencies at half load (docs/performance.md)."""
    gc.collect()
    gc.freeze()
