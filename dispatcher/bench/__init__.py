"""``faxctl bench``: measurements of this machine against bare Celery baselines.

One module per measurement (intake, dispatch, latency and memory, scheduler, end to end),
each on its own temporary stack (``harness``); ``runner`` runs them and ``report`` shows
them. The bench reports numbers; it does not pass or fail.
"""
