"""Dataset formats: each module registers a reader (and a writer where we write that format)."""
