"""Hyperparameter search with KerasTuner: one HyperModel per lesson, built on the `models/` factories.

The search CLI (`python -m tuning.search`) is tracked as its own issue; the lessons already read the
`best.json` format it will write (a flat JSON object of config fields, the same as a run's config.json).
"""
