"""Datasets: import (folder, CSV, demo), image probing and decoding, the decoded-image cache.

Submodules are imported on use (``from engine.data.importing import import_folder``):
this package stays light so that the GUI can import ``engine.data.images`` without
pulling in pandas or scikit-learn.
"""
