"""Router kinds: ``mf``, ``sw``, ``bert``, ``causal`` and ``random``; each module is imported on demand."""
