"""Background jobs: one runner claims, runs and records every kind of job.

- :mod:`.kinds`: the :class:`~.kinds.JobKind` protocol a domain implements, and
  :func:`~.kinds.register`, by which it has every runner run its kind;
- :mod:`.runner`: the :class:`~.runner.Runner` (threads, slots, the per-key share, the
  linger, one write transaction per cycle);
- :mod:`.wakers`: :func:`~.wakers.announce`, by which a writer says new jobs were
  committed, and the :class:`~.wakers.Waker` that wakes runners on it;
- :mod:`.periodic`: a kind that runs a function every N seconds, at most once per period
  across every runner on the database.

Nothing here imports a domain: domains import this package.
"""
