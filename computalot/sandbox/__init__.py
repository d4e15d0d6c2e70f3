"""Confinement of tenants' runner processes (docs/sandbox.md).

Every runner process runs inside a bubblewrap sandbox (:mod:`.bwrap`) as an unprivileged host
uid, in its own mount, pid, user, IPC and UTS namespaces, inside a per-task cgroup that caps
memory and processes (:mod:`.cgroups`), with rlimits for CPU time, open files and file size,
and a watched disk budget for its directory (:mod:`.limits`). A per-node nftables table
(:mod:`.firewall`) keeps tasks that share the host's network away from the platform's own
ports. :mod:`.task` puts these together for one attempt; :mod:`.status` tells ``/ready`` and
``computalot up`` whether the node can do it.

``COMPUTALOT_SANDBOX=none`` is the explicit, warned opt-out: tasks then run as the worker's
own user with rlimits only.
"""
