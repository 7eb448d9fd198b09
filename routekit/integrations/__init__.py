"""Plug-ins for other gateways (each module imports its host library; this package imports nothing)."""
