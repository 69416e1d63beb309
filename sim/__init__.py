"""MuJoCo tasks behind one gymnasium API (built in a later issue)."""
