"""The warm interpreter ("zygote"): run as ``python3 -c <this file's text> <control fd>``.

Standard library only: it runs on whatever interpreter the task's command names. It imports the
modules named on its command line (``runtime.preload``), then serves one request at a time on
its control socket (``AF_UNIX`` ``SOCK_SEQPACKET``, the worker's end is
``engine.warm_python.client``): a JSON description of a command plus the task's stdout and
stderr pipes (``SCM_RIGHTS``). For each it forks a child that becomes what
``python3 script.py args`` (or ``python3 -m module args``) would be, answers ``{"pid"}``, waits
for the child to end without reaping it (``WNOWAIT``: its pid, which is also its process group,
cannot be reused while the worker may still signal it), answers ``{"status"}`` and reaps it
when the worker says ``reap``. It exits when the worker's end closes.

Inside a sandbox (``computalot.sandbox.warm``) the zygote is the sandbox's long-lived command:
after each task the worker kills what the task left and says ``clean``; the zygote then empties
the sandbox's private ``/tmp`` and ``/dev/shm`` (the next task must find them as a fresh sandbox
would) and answers ``clean``. It is not dumpable, so a task (same uid) can neither trace it nor
read or write its memory; the forked child is made dumpable again, as a fresh process is.

Between requests it holds no thread of its own and no connection but the control socket (the
child closes that one first).

Learning: at its end a forked task writes which installed or standard-library modules it
imported (not the project's own files: their paths are checked against the interpreter's
install directories) into a shared memory page the zygote mapped before forking — no file
descriptor, so nothing of it is visible among the task's fds — and the zygote sends them with
the exit status. The worker remembers them per revision (``client.Learned``) and the next
zygote imports them too, after a forked *trial* showed that importing them starts no Python
thread, opens no socket and stays under the memory cap; a module that does is left out.
"""

import json
import mmap
import os
import socket
import sys

MAX_MESSAGE = 1 << 20
REPORT_BYTES = 1 << 16  # the shared page a task's imports are written to
REPORT_MAX = 256  # module names per report
LEARN_MAX = 64  # learned modules a zygote imports itself (those they import come free)
TRIALS = 3  # forked trials of the learned modules (each may rule one out)
REPORT = mmap.mmap(-1, REPORT_BYTES)  # anonymous and shared: the forked child writes here
ROOTS = ()  # the interpreter's install directories (set by main)


def _prctl(option, value):
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value)
    except (OSError, AttributeError):
        return False
    return True


def _die_with_parent(parent):
    """SIGKILL this process when its parent dies (``PR_SET_PDEATHSIG``): a zygote dies with
    its worker, a task with its zygote (which the worker's reaper already covers). ``parent``
    0: not checked (a sandboxed zygote's parent is the sandbox's init, in another pid view)."""
    if not _prctl(1, 9):  # PR_SET_PDEATHSIG, SIGKILL
        return
    if parent and os.getppid() != parent:  # it died before the call
        os._exit(1)


def _empty(directory):
    """Remove everything a task left in ``directory`` (the sandbox's ``/tmp`` or ``/dev/shm``),
    not the directory. Only what lies on the directory's own file system: a mount below it
    (the interpreter bound under ``/tmp/...`` when the node keeps it there) is neither entered
    nor touched, as a fresh sandbox has it too. Directories the task made unreadable are opened
    up first; no recursion (a task may nest deeper than any stack), no link followed."""
    import stat

    try:
        device = os.lstat(directory).st_dev
        stack = [(os.path.join(directory, name), False) for name in os.listdir(directory)]
    except OSError:
        return
    while stack:
        path, listed = stack.pop()
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_dev != device:
            continue
        if not stat.S_ISDIR(st.st_mode):
            try:
                os.unlink(path)
            except OSError:
                pass
        elif listed:
            try:
                os.rmdir(path)
            except OSError:
                pass
        else:
            try:
                if st.st_uid == os.getuid():
                    os.chmod(path, stat.S_IRWXU)
                names = os.listdir(path)
            except OSError:
                names = []
            stack.append((path, True))
            stack += [(os.path.join(path, name), False) for name in names]


def _preload(names):
    """Import each module; one that fails is skipped (said on the zygote's stderr)."""
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as exc:  # a preload must never stop the zygote
            print(f"warm python: preload {name!r} failed: {exc!r}", file=sys.stderr)


def _install_roots():
    """Directories an installed or standard-library module's file lies under (``/`` ended)."""
    import site
    import sysconfig

    paths = sysconfig.get_paths()
    found = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    try:
        found.update(site.getsitepackages())
    except AttributeError:
        pass
    roots = set()
    for path in found:
        if path:
            roots.update({path.rstrip("/") + "/", os.path.realpath(path).rstrip("/") + "/"})
    return tuple(sorted(roots))


def _report(before):
    """Write the modules this task imported that the zygote had not (installed or standard
    library ones, three levels deep at most, no private ones) into the shared page."""
    names = []
    for name, module in list(sys.modules.items()):
        if name in before or len(name) > 100:
            continue
        parts = name.split(".")
        if len(parts) > 3 or any(part.startswith("_") for part in parts):
            continue
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.startswith(ROOTS):
            names.append(name)
            if len(names) >= REPORT_MAX:
                break
    data = json.dumps(names).encode()
    if len(data) <= REPORT_BYTES - 4:
        REPORT[4 : 4 + len(data)] = data
        REPORT[:4] = len(data).to_bytes(4, "little")


def _reported():
    """What the last task wrote into the shared page (a list of names, else []). The task
    could write anything there: nesting deep enough to exhaust the parser's stack included."""
    size = int.from_bytes(REPORT[:4], "little")
    if not 0 < size <= REPORT_BYTES - 4:
        return []
    try:
        names = json.loads(REPORT[4 : 4 + size])
    except (ValueError, RecursionError):
        return []
    if not isinstance(names, list):
        return []
    return [n for n in names[:REPORT_MAX] if isinstance(n, str) and len(n) <= 100]


def _sockets():
    count = 0
    try:
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:
                pass
    except OSError:
        pass
    return count


def _rss_mb():
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
    except (OSError, ValueError, IndexError):
        return 0


def _trial(names, max_rss_mb):
    """In a forked child, import ``names`` in order (at most :data:`LEARN_MAX` that an earlier
    one did not import already) until one starts a Python thread, opens a socket or passes
    ``max_rss_mb``: (the names imported before it, that name or None)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            import importlib
            import threading

            os.close(read_end)
            sockets, bad = _sockets(), None
            kept = []  # type: list[str]
            for name in names:
                if name in sys.modules:
                    continue
                if len(kept) >= LEARN_MAX:
                    break
                try:
                    importlib.import_module(name)
                except BaseException:
                    continue
                if threading.active_count() > 1 or _sockets() > sockets or _rss_mb() > max_rss_mb:
                    bad = name
                    break
                kept.append(name)
            os.write(write_end, json.dumps([kept, bad]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    chunks = []
    while True:
        data = os.read(read_end, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(read_end)
    os.waitpid(pid, 0)
    try:
        kept, bad = json.loads(b"".join(chunks))
    except ValueError:
        return [], None
    return kept, bad


def _learn(names, max_rss_mb):
    """Import the learned modules that a trial showed harmless (see the module doc)."""
    import importlib

    todo = list(names)
    for _ in range(TRIALS):
        todo = [n for n in todo if n not in sys.modules]
        if not todo:
            return
        kept, bad = _trial(todo, max_rss_mb)
        for name in kept:
            try:
                importlib.import_module(name)
            except BaseException:
                pass
        if bad is None:
            return
        print(
            f"warm python: not preloading {bad!r} (it starts a thread or a socket, or is too big)",
            file=sys.stderr,
        )
        todo = todo[todo.index(bad) + 1 :]


def _trim(tb, own):
    """The traceback from the script's first frame on (no runpy or zygote frames)."""
    while tb is not None and tb.tb_frame.f_code.co_filename in own:
        tb = tb.tb_next
    return tb


def _exit_code(code):
    """CPython's handling of ``SystemExit(code)`` at the top level."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except BaseException:
        pass
    return 1


def _run_script(script):
    """Run ``script`` as ``python3 script`` does: a new ``__main__`` module (``__file__``
    absolute, ``__spec__`` None) that stays in ``sys.modules`` for atexit handlers."""
    import builtins
    import importlib.machinery
    import types

    main = types.ModuleType("__main__")
    main.__file__ = script
    main.__cached__ = None  # type: ignore[attr-defined]
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    main.__annotations__ = {}
    main.__loader__ = importlib.machinery.SourceFileLoader("__main__", script)
    sys.modules["__main__"] = main
    with open(script, "rb") as fh:
        source = fh.read()
    exec(compile(source, script, "exec", dont_inherit=True), main.__dict__)


def _become(request, out_fd, err_fd, control, zygote, before):
    """In the forked child: become the task's ``python3`` process, run it, never return.
    ``before``: the zygote's modules (what the task imports beyond them is reported)."""
    import random
    import resource
    import signal

    code = 1
    try:
        _die_with_parent(zygote)
        _prctl(4, 1)  # PR_SET_DUMPABLE: a fresh process is
        os.setsid()
        for res, soft, hard in request["rlimits"]:
            try:
                resource.setrlimit(res, (soft, hard))
            except (OSError, ValueError):
                pass
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        control.detach()
        os.closerange(3, max(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 256))
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        if "tempfile" in sys.modules:
            sys.modules["tempfile"].tempdir = None  # type: ignore[attr-defined]  # read TMPDIR again
        random.seed()
        numpy_random = sys.modules.get("numpy.random")
        if numpy_random is not None:
            numpy_random.seed()
        sys.argv = list(request["argv"])
        head = ["-m", request["module"]] if request["module"] else []
        sys.orig_argv = [request["interpreter"], *head, *request["argv"][len(head) > 0 :]]
    except BaseException as exc:  # the child never returns into the zygote's loop
        try:
            os.write(2, f"warm python: task setup failed: {exc!r}\n".encode())
        finally:
            os._exit(1)
    import runpy
    import threading

    own = {"<string>"}  # the zygote's frames; ``-m`` keeps runpy's, as a fresh python3 does
    interrupted = False
    try:
        try:
            if request["module"]:
                sys.path[0:0] = [os.getcwd()]
                runpy._run_module_as_main(request["module"], alter_argv=True)  # type: ignore[attr-defined]
                code = 0
            else:
                script = os.path.abspath(request["script"])
                if os.path.exists(script):
                    sys.path[0:0] = [os.path.dirname(script)]
                    _run_script(script)
                    code = 0
                else:
                    sys.stderr.write(
                        f"{request['interpreter']}: can't open file {script!r}: "
                        "[Errno 2] No such file or directory\n"
                    )
                    code = 2
        except SystemExit as exc:
            code = _exit_code(exc.code)
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            trimmed = _trim(exc.__traceback__, own)
            sys.excepthook(type(exc), exc.with_traceback(trimmed), trimmed)
            code = 1
        try:
            threading._shutdown()  # type: ignore[attr-defined]
        except BaseException:
            pass
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                code = 120 if code == 0 else code
        try:
            _report(before)
        except BaseException:
            pass
        if interrupted:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        os._exit(code)


def _reap_orphans():
    """As the sandbox's pid 1, reap what a task's killed leftovers became (zombies)."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _status(pid):
    """The child's end as ``Popen.returncode`` says it (``-N``: killed by signal N)."""
    info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    assert info is not None  # blocking: it returns once the child ended
    if info.si_code == os.CLD_EXITED:
        return info.si_status
    return -info.si_status


def serve(control, idle_s):
    """Answer requests until the worker's end closes or none came for ``idle_s`` seconds (a
    revision nobody runs any more gives its memory back)."""
    while True:
        try:
            control.settimeout(idle_s)
            data, fds, _flags, _addr = socket.recv_fds(control, MAX_MESSAGE, 2)
            control.settimeout(None)
        except OSError:  # also the idle timeout
            return
        if not data:
            return
        if data == b"clean" and not fds:
            _reap_orphans()
            for directory in ("/tmp", "/dev/shm"):
                _empty(directory)
            control.send(b"clean")
            continue
        request = json.loads(data)
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            control.send(json.dumps({"error": "expected two pipes"}).encode())
            continue
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        REPORT[:4] = bytes(4)
        before = frozenset(sys.modules)
        pid = os.fork()
        if pid == 0:
            _become(request, fds[0], fds[1], control, parent, before)
        for fd in fds:
            os.close(fd)
        control.send(json.dumps({"pid": pid}).encode())
        status = _status(pid)
        try:
            answer = {"status": status, "imported": _reported()}
            control.send(json.dumps(answer).encode())
            answer = control.recv(64)
        finally:
            os.waitpid(pid, 0)
        if answer != b"reap":
            return


def main():
    _die_with_parent(int(sys.argv[3]))
    _prctl(4, 0)  # PR_SET_DUMPABLE: no task may trace it or touch its memory
    control = socket.socket(fileno=int(sys.argv[1]))
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]  # the zygote's cwd is no import root: the child adds its own
    _preload(json.loads(sys.argv[2]))
    idle_s = float(sys.argv[4])
    global ROOTS
    ROOTS = _install_roots()
    _learn(json.loads(sys.argv[5]), int(sys.argv[6]))
    # What every forked child needs to become its task (``_become``), imported once here rather
    # than once per task (together about 6 ms of each child's start).
    import atexit  # noqa: F401
    import importlib.machinery  # noqa: F401
    import random  # noqa: F401
    import resource  # noqa: F401
    import runpy  # noqa: F401
    import signal  # noqa: F401
    import threading  # noqa: F401
    import types  # noqa: F401

    del sys.argv[1:]
    import gc

    gc.collect()
    gc.freeze()  # the child's collections never walk (and copy) the preloaded objects
    serve(control, idle_s)


if __name__ == "__main__":
    main()
