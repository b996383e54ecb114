"""ksr's bundled modules: one folder per module, each defining ``MODULE``."""
