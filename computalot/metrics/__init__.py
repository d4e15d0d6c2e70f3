"""Platform-wide Prometheus metrics (docs/metrics.md).

Every process that measures something (each API replica, the dispatcher) keeps its own
prometheus-client registry and pushes a snapshot of it to one named Ray actor, the metrics
board (``board``). ``GET /metrics`` on any replica exchanges its own fresh snapshot for the
board's merge of every source (``snapshot.merge``) and adds the store's figures
(``store_figures``): the answer is the platform's, whichever replica took the request.
"""
