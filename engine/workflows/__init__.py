"""What a person does with a project, one module per job; the commands (engine/commands) parse arguments and call these.

Jobs that make a recorded run (through :func:`engine.jobs.run_job`):

- audit.py: gather the evidence the chosen detectors need, run them, summarise (``audit``);
  crossval.py: K-fold out-of-sample probabilities (``crossval``, and the audit's ``cl`` evidence);
  detection.py: running detectors on gathered evidence and storing their scores (the audit, an import,
  a re-score);
- retrain.py (``retrain``), compare.py (``compare``), tune.py (``tune``): models trained on the cleaned
  labels; what they share sits below them: sample_sets.py (the cleaned training set, the held-out
  targets), paired_models.py (models trained once per seed and compared by seed, the run's trusted set),
  trusted.py (which samples the meta-learning methods may take as clean);
- finetune_detector.py: the review fine-tunes td_lstm, and the project is re-scored (``finetune-detector``);
  train_detector.py: td_lstm's weights from dynamics of synthesized noise (``train-detector``).

Jobs that answer without a run: evaluate.py (detectors against the known truth, ``evaluate``) and
bulk.py (which samples a bulk decision takes, for ``decide --all-flagged`` and the app).
"""
