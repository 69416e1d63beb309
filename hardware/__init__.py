"""Drivers, safety filter, control daemon and recorder (built in a later issue)."""
