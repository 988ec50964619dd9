"""Hyperparameter search with KerasTuner, on the lessons' own config, data and `models/` factories.

- `search`: the CLI (`python -m tuning.search --task <task>`): random, Bayesian, Hyperband and grid searches,
  `--compare NAME` over every value of one setting, resumable folders under `tuning_runs/`, `best.json` (a
  `--config` file for the lesson);
- `hypermodel`, `spaces`, `tasks`: one `keras_tuner.HyperModel` that samples a lesson's config from its
  space and trains it with the lesson's data and trainer; `tasks` registers each lesson for tuning;
- `stopping` (the median stopping rule), `grid`, `folder` (search folders), `report` (report.html),
  `distributed` (chief and workers on one machine).
"""
