"""Live-traffic control around a router: budget (strong-share / spend target), explanations, the
calibrated win-rate map."""

from routekit.control.budget import BudgetController, BudgetStats

__all__ = ["BudgetController", "BudgetStats"]
