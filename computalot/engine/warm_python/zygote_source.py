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
"""

import json
import os
import socket
import sys

MAX_MESSAGE = 1 << 20


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
    """Remove everything in ``directory`` (not the directory): what a task left in the
    sandbox's ``/tmp`` or ``/dev/shm``. Directories it made unreadable are opened up first;
    no recursion (a task may nest directories deeper than any stack), no link followed."""
    import stat

    try:
        stack = [(os.path.join(directory, name), False) for name in os.listdir(directory)]
    except OSError:
        return
    while stack:
        path, listed = stack.pop()
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            continue
        if not stat.S_ISDIR(mode):
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


def _become(request, out_fd, err_fd, control, zygote):
    """In the forked child: become the task's ``python3`` process, run it, never return."""
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
        pid = os.fork()
        if pid == 0:
            _become(request, fds[0], fds[1], control, parent)
        for fd in fds:
            os.close(fd)
        control.send(json.dumps({"pid": pid}).encode())
        status = _status(pid)
        try:
            control.send(json.dumps({"status": status}).encode())
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
    del sys.argv[1:]
    import gc

    gc.collect()
    serve(control, idle_s)


if __name__ == "__main__":
    main()
