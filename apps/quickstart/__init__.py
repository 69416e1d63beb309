"""The main job, ``robopolicy quickstart``: demonstrations to a fine-tuned, served policy on
``arm-push``. :mod:`~apps.quickstart.command` is the command line, :mod:`~apps.quickstart.pipeline`
runs the stages, :mod:`~apps.quickstart.finetune` and :mod:`~apps.quickstart.serve` are its
fine-tuning and serving stages, :mod:`~apps.quickstart.report` writes ``report.md``."""
