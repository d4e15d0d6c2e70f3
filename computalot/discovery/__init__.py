"""The discovery documents (docs/llms.txt): what is served from ``docs/`` and how it is rendered."""
