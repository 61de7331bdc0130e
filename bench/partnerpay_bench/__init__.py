"""``make bench``, by phase: each module holds one part of what ``bench/run.py`` runs.

- :mod:`.settings`: paths, the environment knobs, the targets, and the two helpers every
  phase uses (``log``, ``free_port``).
- :mod:`.databases`: a throwaway database of each kind, and the bulk seed of invoices.
- :mod:`.deployment`: partnerpay started on a database as a user would start it.
- :mod:`.steal`: the share of the CPU the hypervisor took during a run, and runs measured
  again when it took too much.
- :mod:`.closed_loop`: wrk, and the closed-loop phases taken in rounds, best of N.
- :mod:`.open_loop`: the load generator at a fixed rate and the webhook receiver.
- :mod:`.half_rate`: creates at half the maximum rate, and their webhooks' latency.
- :mod:`.scaling`: GET by external id at a small and a large number of invoices, in turns.
- :mod:`.memory`: the server's RSS after invoices created through the API.
- :mod:`.report`: verdicts, the markdown table, and where a run is recorded.
"""
