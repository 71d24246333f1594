"""The one training loop, its data pipeline, and the hooks methods and detectors plug into."""
