"""A hostile tenant's runner: it tries every way out of its sandbox it can think of and reports,
item by item, what it got (``tests/integration/test_runner_isolation.py``).

Each item is ``"refused: <why>"`` or ``"GOT: <what>"``. The payload names the targets the test
knows about (the data directory, another tenant's running attempt, Ray's ports…); the probe
also looks around on its own (``/proc``, ``/tmp``).
"""

PROBE = r"""
import json, os, socket, subprocess, sys, time, urllib.request

p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
report = {}


def attempt(name, action):
    try:
        report[name] = "GOT: " + str(action())[:200]
    except Exception as exc:
        report[name] = "refused: %s: %s" % (type(exc).__name__, str(exc)[:160])


def read(path):
    with open(path, "rb") as fh:
        return fh.read(64)


def write(path):
    with open(path, "w") as fh:
        fh.write("forged")
    return "wrote " + path


def listing(path):
    return sorted(os.listdir(path))[:20]


def connect(host_port):
    host, port = host_port.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=3):
        return "connected to " + host_port


data = p["data_dir"]
attempt("read the admin key", lambda: read(os.path.join(data, "admin_key")))
attempt("read the store", lambda: read(os.path.join(data, "computalot.db")))
if not p.get("spare_the_store"):  # unconfined, the write would end the platform it runs on
    attempt("write the store", lambda: write(os.path.join(data, "computalot.db")))
attempt("list other tenants' revisions", lambda: listing(os.path.join(data, "revisions")))
attempt("read the Ray token", lambda: read(p["ray_token"]))
attempt("list Ray's session directory", lambda: listing(p["ray_session"]))
attempt("list Ray's logs", lambda: listing(os.path.join(p["ray_session"], "logs")))
attempt("list Ray's working_dir copies",
        lambda: listing(os.path.join(p["ray_session"], "runtime_resources", "working_dir_files")))
attempt("list the attempt root", lambda: listing(p["attempt_root"]))
attempt("read another task's payload", lambda: read(os.path.join(p["victim_dir"], "payload.json")))
attempt("write another task's result", lambda: write(os.path.join(p["victim_dir"], "result.json")))
attempt("write /etc", lambda: write("/etc/" + p["marker"]))
attempt("write /root", lambda: write("/root/" + p["marker"]))
for name, address in p["ports"].items():
    attempt("connect to " + name, lambda a=address: connect(a))


def other_environs():
    me = os.getpid()
    found = []
    for pid in (int(x) for x in os.listdir("/proc") if x.isdigit()):
        if pid in (me, os.getppid()):
            continue
        try:
            env = open("/proc/%d/environ" % pid, "rb").read()
        except OSError:
            continue
        if b"COMPUTALOT_DATABASE_URL" in env or b"RAY_" in env:
            found.append(pid)
    if found:
        return "platform environments of pids %s" % found
    raise PermissionError("no other process's environment in reach")


attempt("read other processes' environ", other_environs)


def new_user_namespace():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        raise PermissionError(os.strerror(ctypes.get_errno()))
    return "a user namespace of its own"


attempt("create a user namespace", new_user_namespace)
report["visible pids"] = sorted(int(x) for x in os.listdir("/proc") if x.isdigit())
report["uid"] = os.getuid()
report["capabilities"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")]
attempt("call the public API", lambda: urllib.request.urlopen(
    os.environ["COMPUTALOT_API_URL"] + "/health", timeout=5).status)

# Leave processes behind: three session leavers and two double-forked setsid daemons.
marker = p["marker"]
for _ in range(3):
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker],
                     start_new_session=True)
for _ in range(2):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", marker])
        os._exit(0)
    os.wait()
with open("/tmp/" + marker, "w") as fh:
    fh.write("private")
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump(report, fh)
"""

VICTIM = r"""
import json, os, time
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
open(os.path.join(p["dir"], "victim-started"), "w").close()
deadline = time.time() + 120
while not os.path.exists(os.path.join(p["dir"], "victim-go")) and time.time() < deadline:
    time.sleep(0.05)
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"mine": p["secret"]}, fh)
"""

HOG = r"""
import json, os
p = json.load(open(os.environ["COMPUTALOT_TASK_PAYLOAD"]))
chunks = [bytearray(64 << 20) for _ in range(p["mb"] // 64)]
with open(os.environ["COMPUTALOT_TASK_RESULT"], "w") as fh:
    json.dump({"allocated_mb": 64 * len(chunks)}, fh)
"""
