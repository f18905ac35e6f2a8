"""``trident suite prepare`` and ``trident suite up``: the whole suite on one machine (what ``make demo`` runs).

- ``plan.py``: where every part lives (artifacts, index, database, ports), decided once from the settings and the
  files present, and the environment that hands it to every child process;
- ``steps.py``: ``prepare``, the steps that build what is missing through each app's public entry points (the
  functions its ``commands.py`` calls) and reuse what is there;
- ``supervisor.py``: ``up``, which runs ``prepare``, starts the sample feed server, the finance worker and the three
  dashboards, waits for their health, and stops them all on Ctrl-C, on SIGTERM or when one dies;
- ``commands.py``: the ``trident suite`` commands.

Only the plan is imported here (settings, no model), so that the CLI registers ``trident suite`` without loading the
apps' models.
"""

from apps.suite.plan import Plan, SuiteError, SuiteSettings

__all__ = ["Plan", "SuiteError", "SuiteSettings"]
