# MicroPython code (unix port), not CPython: the interpreter side of `uquant sim`'s unix backend.
#
#     micropython sim_driver.py FLASH_DIR CMD_FD CTL_FD
#
# The host folder FLASH_DIR is mounted as the VFS root ("/", the board's flash; a VfsPosix wrapped so that
# ilistdir reports file sizes as a board's does) and made the working directory; sys.path becomes a board's
# ['', '.frozen', '/lib'] and sys.argv []. The driver then clears its own names out of __main__ (so the
# REPL's globals() is a board's {'__name__': '__main__'}) and serves requests from the pipe CMD_FD, one at a
# time, each exec()'d in __main__'s namespace:
#
#     request  (CMD_FD): kind:u8 id:u32le len:u32le payload
#         b'X' run payload as a file (the raw REPL, raw-paste, friendly paste mode), file name "<stdin>"
#         b'S' run payload as one REPL input ('single': expression values are printed)
#         b'F' run the file named by payload if it exists (boot.py, main.py)
#     replies  (CTL_FD): b'H' len:u32le payload   once at start: repr() of facts for the banner
#                        b'B' id:u32le            the request has started (Ctrl-C may be sent from now on)
#                        b'D' id:u32le flags:u8 len:u32le error-text   done; flags bit 0: SystemExit
#
# Everything the code prints goes to the process's stdout (stderr is the same pipe): that pipe carries
# nothing but the program's output, and 'D' is written after it, so the host forwards all output first.
# Ctrl-C arrives as SIGINT, which this port turns into KeyboardInterrupt inside the running code; see the
# serving loop below for how a late one is kept away from the pipe reading.
import sys
import os


def _serve():
    import gc
    import io
    import micropython
    import select
    import struct

    flash, cmd_fd, ctl_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    me = __file__
    cmd = open(cmd_fd, "rb")
    ctl = open(ctl_fd, "wb")
    class FlashVfs:
        # VfsPosix at the host folder, except that ilistdir gives a board's 4-tuples (name, type, inode,
        # size): mpremote's `ls` shows that size, and this port's VfsPosix leaves it out
        def __init__(self, root):
            v = self._v = os.VfsPosix(root)
            for name in ("open", "stat", "mkdir", "remove", "rename", "rmdir", "chdir", "getcwd", "statvfs",
                         "mount", "umount"):
                setattr(self, name, getattr(v, name))

        def __repr__(self):
            return repr(self._v)

        def ilistdir(self, path, _OSError=OSError):
            st = self._v.stat
            base = "" if path in ("", ".") else path.rstrip("/") + "/"
            for e in self._v.ilistdir(path):
                size = 0
                if e[1] == 0x8000:
                    try:
                        size = st(base + e[0])[6]
                    except _OSError:
                        pass
                yield (e[0], e[1], e[2], size)

    os.umount("/")
    os.mount(FlashVfs(flash), "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]
    sys.argv[:] = []
    # everything used from here on is a local: user code may rebind any global or builtin name
    _exec, _compile, _open, _len, _bytes, _str = exec, compile, open, len, bytes, str
    _pack, _unpack_from, _stat, _print_exception = struct.pack, struct.unpack_from, os.stat, sys.print_exception
    _KI, _SE, _BE, _OSE = KeyboardInterrupt, SystemExit, BaseException, OSError
    _heap_lock, _heap_unlock, _gc_collect, _isinstance = micropython.heap_lock, micropython.heap_unlock, gc.collect, isinstance
    impl = sys.implementation
    info = repr({"name": impl.name, "version": tuple(impl.version), "mpy": getattr(impl, "_mpy", None),
                 "machine": getattr(impl, "_machine", sys.platform), "sys_version": sys.version,
                 "platform": sys.platform, "maxsize": sys.maxsize}).encode()
    g = globals()
    for k in list(g):
        if k != "__name__":
            del g[k]

    def put(data):
        # one write() of at most PIPE_BUF (4096) bytes: atomic, so a retry after an interrupt never
        # leaves half a message in the pipe
        ctl.write(data)

    put(_pack("<BI", 0x48, _len(info)) + info)

    def error_text(e):
        s = io.StringIO()
        _print_exception(e, s)
        # drop this driver's own frames (the exec() call site), leaving what a board would print
        text = "".join(l + "\n" for l in s.getvalue().split("\n") if l and me not in l).encode()
        if _len(text) > 4000:  # keep 'D' within one atomic pipe write
            text = text[:1000] + b"  ...\n" + text[-2900:]
        return text

    def run(kind, src):
        if kind == 0x46:  # 'F': a file, if it is there
            name = _str(src, "utf-8")
            try:
                _stat(name)
            except _OSE:
                return
            with _open(name) as f:
                src = f.read()
            g["__file__"] = name
            _exec(_compile(src, name, "exec"), g)
        elif kind == 0x53:  # 'S': one REPL input
            _exec(_compile(_str(src, "utf-8"), "<stdin>", "single"), g)
        else:  # 'X'
            g["__file__"] = "<stdin>"
            _exec(_compile(_str(src, "utf-8"), "<stdin>", "exec"), g)

    # The serving loop is a phase machine, so that a KeyboardInterrupt landing anywhere resumes at the right
    # step. (This port raises a pending interrupt at the next branch *or call*: even between `x = f()` and
    # the next statement.) The host sends SIGINT only between our 'B' and its reading our 'D', so a late
    # one can still reach us after the run; phase 5 waits for the next request without consuming anything
    # and lets such a leftover interrupt go off there, so that none can hit phase 0 halfway through reading
    # a request (the host writes the next request only after it has read 'D', that is after any SIGINT
    # for the last run, so by the time poll() returns the signal has been delivered).
    # Phases: 0 read a request, 1 start it, 2 report the start and run it, 3 format the result, 4 send it,
    # 5 wait for the next request. Only phase 2 turns an interrupt into the run's error.
    poller = select.poll()
    poller.register(cmd_fd, select.POLLIN)
    pend = bytearray()
    phase = rid = kind = flags = 0
    src = msg = err = None
    while True:
        try:
            while True:
                if phase == 5:
                    poller.poll()
                    n = 0
                    while n < 3:  # branches: a leftover interrupt is raised (and ignored) here
                        n += 1
                    phase = 0
                if phase == 0:
                    # (read(n) on this port returns only with all n bytes or at end of file)
                    have = _len(pend)
                    need = 9 if have < 9 else 9 + _unpack_from("<I", pend, 5)[0]
                    if have < need:
                        pend.extend(cmd.read(need - have))
                        if _len(pend) == have:
                            return  # the host closed the pipe
                        continue
                    kind, rid, src, pend, phase = pend[0], _unpack_from("<I", pend, 1)[0], _bytes(pend[9:need]), pend[need:], 1
                if phase == 1:
                    flags, err, phase = 0, None, 2
                if phase == 2:
                    try:
                        # the host may send SIGINT as soon as it has this 'B': from here on an interrupt is the
                        # run's
                        put(_pack("<BI", 0x42, rid))
                        run(kind, src)
                    except _SE:
                        flags = 1
                    except _BE as e:
                        err = e
                    phase = 3
                if phase == 3:
                    if err is not None and _isinstance(err, _KI):
                        # an interrupt during a garbage collection can leave the heap locked (lock depth or
                        # the collection-in-progress flag): unlock it, as pyexec's friendly REPL does before
                        # each prompt, and run a collection to completion, which clears the flag
                        _heap_lock()
                        depth = _heap_unlock()
                        while depth:
                            depth = _heap_unlock()
                        _gc_collect()
                    text = b"" if err is None else error_text(err)
                    msg, src, err, phase = _pack("<BIBI", 0x44, rid, flags, _len(text)) + text, None, None, 4
                if phase == 4:
                    put(msg)  # (sent twice if an interrupt lands right after it: the host ignores the second)
                    msg, phase = None, 5
        except _KI as e:
            if phase == 2:  # interrupted between the run's own handlers and the next step: still the run's
                err, phase = e, 3
            # in any other phase it is a late Ctrl-C for a run already finished: carry on where we were


_serve()
