"""Task modules: each one registers its tasks with ``sim.registry.register_task`` on import."""
