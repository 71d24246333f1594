"""One widget per file; each takes the session (its model) in its constructor and subscribes."""
