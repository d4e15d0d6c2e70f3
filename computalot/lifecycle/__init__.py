"""A clean life for ``computalot up`` (docs/operating.md, "Stopping and restarting").

However ``up`` ends (Ctrl-C, SIGTERM directly or through ``make``, SIGKILL), no process of the
platform or of its Ray instance stays behind holding a port:

- :mod:`.procs` finds a platform's processes by what they hold (its Ray temp dir, its HAProxy
  folder: in the command line, the working directory or an open file) and stops them, checking
  each pid's start time so a reused pid is never signalled;
- :mod:`.signals` turns SIGINT and SIGTERM into an orderly stop, at start-up too;
- :mod:`.watchdog` is a small process in its own session that holds a pipe from ``up``: when
  the pipe closes without ``up`` saying it stopped cleanly (a SIGKILL), it removes what is left;
- :mod:`.guard` ties these together for ``up``, keeps a record in the data dir, and on the next
  ``up`` on the same data dir removes what a killed predecessor (and its watchdog) left.
"""
