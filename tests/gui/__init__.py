"""GUI tests (pytest-qt, offscreen). A package, so its conftest never shadows tests/conftest.py."""
