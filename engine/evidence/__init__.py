"""Evidence a run uses, and where it comes from.

- run_labels.py: the labels a run trained and scored on, recorded in its folder, and what grades by them;
- imported.py: predictions (and embeddings) a user brings, checked row by row and recorded as an audit;
- imported_embeddings.py: embeddings a user brings, stored in the project as one memory-mapped array per source;
- imported_files.py: reading such a file (CSV or .npy with a paths file) and matching its rows to the samples.
"""
