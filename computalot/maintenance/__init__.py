"""Background work of each API process: planning big jobs, resuming stale planning, retention."""
