"""Sub-commands of ``python -m engine``; each module adds one (or a few) to the parser."""
