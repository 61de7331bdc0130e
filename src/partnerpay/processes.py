"""What every long-running partnerpay process does once it has started."""

import gc

# A young-generation collection runs once this many more container objects are alive than
# at the last one. At the default, 700, the objects of a few requests under way at once
# set one off about 20 times a second in each API process at half load. Each promoted the
# objects of the requests still under way, which died in the old generation and set off a
# full collection every 5 s (5 to 33 ms of pause). At 10 000, neither happened in a minute
# of the same load (docs/performance.md).
YOUNG_COLLECTION_THRESHOLD = 10_000


def settle_garbage_collector() -> None:
    """Move everything alive after startup (modules, the app, mappers, schemas) out of
    the garbage collector's sight, and collect the young generation less often. Full
    collections otherwise walked all of it, pausing requests (and, in ``partnerpay
    worker``, deliveries) for tens of milliseconds: the worst of the create latencies at
    half load (docs/performance.md)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD)
