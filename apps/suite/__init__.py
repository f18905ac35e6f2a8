"""``trident suite prepare`` and ``trident suite up``: the whole suite on one machine (what ``make demo`` runs): the
plan (``plan.py``), the steps of ``prepare`` (``steps.py``), the supervisor of ``up`` (``supervisor.py``). Only the plan
is imported here, so that the CLI registers ``trident suite`` without loading the apps' models.
"""

from apps.suite.plan import Plan, SuiteError, SuiteSettings

__all__ = ["Plan", "SuiteError", "SuiteSettings"]
