// The interpreter side of `uquant sim`'s wasm backend: the npm MicroPython WebAssembly port in Node.
//
//     UQUANT_NODE_MODULES=<node_modules> node sim_driver.mjs FLASH_DIR CMD_FD CTL_FD
//
// Same pipe protocol as sim_driver.py (see there and uquant/sim.py): framed requests on CMD_FD
// (kind:u8 id:u32le len:u32le payload; 'X' file input, 'S' one REPL input, 'F' run a file if present),
// program output on stdout, replies on CTL_FD ('H' hello, 'B' started, 'D' done with flags and error text).
//
// Files: the host folder FLASH_DIR is copied into the Emscripten in-memory filesystem under /flash, which
// MicroPython then mounts as its VFS root "/" (so Python sees only the board's files, not Emscripten's /dev
// and /proc). After every request, files that changed in /flash are written back to FLASH_DIR and files and
// folders that disappeared are deleted there. A request that never finishes (an endless loop) cannot be
// interrupted inside this port: the host kills this process, so that request's file changes are lost.
//
// Everything is synchronous (blocking reads of CMD_FD), so Node's event loop never runs after start-up.

import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const PKG = "@micropython/micropython-webassembly-pyscript";
const [flashDir, cmdFdArg, ctlFdArg] = process.argv.slice(2);
const cmdFd = Number(cmdFdArg);
const ctlFd = Number(ctlFdArg);
const MOUNT = "/flash";

const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms) => Atomics.wait(sleeper, 0, 0, ms);

function writeAll(fd, buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if (e.code !== "EAGAIN") throw e;
      sleep(1);
    }
  }
}

function readExact(fd, n) {
  const buf = Buffer.alloc(n);
  let off = 0;
  while (off < n) {
    let got;
    try {
      got = fs.readSync(fd, buf, off, n - off, null);
    } catch (e) {
      if (e.code !== "EAGAIN") throw e;
      sleep(1);
      continue;
    }
    if (got === 0) return null; // the host closed the pipe
    off += got;
  }
  return buf;
}

// program output: the port calls back once per byte; pass it on at each newline and at the end of a request
const out = Buffer.alloc(1 << 16);
let outLen = 0;
function flushOut() {
  if (outLen) {
    writeAll(1, out.subarray(0, outLen));
    outLen = 0;
  }
}
function pushOut(bytes) {
  for (let i = 0; i < bytes.length; i++) {
    out[outLen++] = bytes[i];
    if (outLen === out.length || bytes[i] === 10) flushOut();
  }
}

function ctl(kind, rid, rest) {
  const head = Buffer.alloc(5);
  head.write(kind, 0, "latin1");
  head.writeUInt32LE(rid, 1);
  writeAll(ctlFd, rest ? Buffer.concat([head, rest]) : head);
}

// ---- files --------------------------------------------------------------------------------------------------

let FS;

function copyIn(hostDir, fsDir) {
  FS.mkdirTree(fsDir);
  for (const name of fs.readdirSync(hostDir)) {
    const h = path.join(hostDir, name);
    const f = `${fsDir}/${name}`;
    const st = fs.statSync(h, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory()) copyIn(h, f);
    else if (st.isFile()) FS.writeFile(f, fs.readFileSync(h));
  }
}

// {files: Map(relpath -> Uint8Array), dirs: Set(relpath)} of everything under /flash
function scan() {
  const files = new Map();
  const dirs = new Set();
  const walk = (rel) => {
    for (const name of FS.readdir(MOUNT + rel)) {
      if (name === "." || name === "..") continue;
      const r = `${rel}/${name}`;
      const mode = FS.stat(MOUNT + r).mode;
      if (FS.isDir(mode)) {
        dirs.add(r);
        walk(r);
      } else if (FS.isFile(mode)) {
        files.set(r, FS.readFile(MOUNT + r));
      }
    }
  };
  walk("");
  return { files, dirs };
}

let synced = { files: new Map(), dirs: new Set() };

function sameBytes(a, b) {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(
    Buffer.from(b.buffer, b.byteOffset, b.length));
}

function syncOut() {
  const now = scan();
  const host = (r) => path.join(flashDir, r);
  for (const d of now.dirs) {
    if (!synced.dirs.has(d)) {
      const h = host(d);
      const st = fs.lstatSync(h, { throwIfNoEntry: false });
      if (st && !st.isDirectory()) fs.rmSync(h, { force: true });
      fs.mkdirSync(h, { recursive: true });
    }
  }
  for (const [f, data] of now.files) {
    const old = synced.files.get(f);
    if (!old || !sameBytes(old, data)) {
      const h = host(f);
      const st = fs.lstatSync(h, { throwIfNoEntry: false });
      if (st && st.isDirectory()) fs.rmSync(h, { recursive: true, force: true });
      fs.mkdirSync(path.dirname(h), { recursive: true });
      fs.writeFileSync(h, data);
    }
  }
  for (const f of synced.files.keys()) {
    if (!now.files.has(f) && !now.dirs.has(f)) fs.rmSync(host(f), { force: true });
  }
  const gone = [...synced.dirs].filter((d) => !now.dirs.has(d) && !now.files.has(d));
  gone.sort((a, b) => b.length - a.length); // deepest first
  for (const d of gone) {
    try {
      fs.rmdirSync(host(d));
    } catch (e) {
      if (e.code !== "ENOENT" && e.code !== "ENOTEMPTY") throw e;
    }
  }
  synced = now;
}

// ---- the interpreter ----------------------------------------------------------------------------------------

const HELPER = `
def _uq_make():
    import sys, io, os, __main__
    g = __main__.__dict__
    _exec, _compile, _open, _pe, _OSError = exec, compile, open, sys.print_exception, OSError

    # This port's OSError numbers are Emscripten's (ENOENT is 44); a board's are Linux's (ENOENT 2), and
    # mpremote reads them from the error text (a missing file must say [Errno 2] ENOENT).
    WASI = {63: 1, 44: 2, 29: 5, 8: 9, 6: 11, 48: 12, 2: 13, 10: 16, 20: 17, 75: 18, 43: 19, 54: 20, 31: 21,
            28: 22, 22: 27, 51: 28, 69: 30, 37: 36, 55: 39}

    def errno_fixed(fn):
        def call(*args):
            try:
                return fn(*args)
            except _OSError as e:
                raise _OSError(WASI.get(e.errno, e.errno))
        return call

    class FlashVfs:
        # VfsPosix at /flash, with a board's errno values and a board's 4-tuples from ilistdir
        def __init__(self, root):
            v = self._v = os.VfsPosix(root)
            for name in ("open", "stat", "mkdir", "remove", "rename", "rmdir", "chdir", "getcwd", "statvfs",
                         "mount", "umount"):
                setattr(self, name, errno_fixed(getattr(v, name)))

        def __repr__(self):
            return repr(self._v)

        def ilistdir(self, path):
            st = self._v.stat
            base = "" if path in ("", ".") else path.rstrip("/") + "/"
            try:
                entries = list(self._v.ilistdir(path))
            except _OSError as e:
                raise _OSError(WASI.get(e.errno, e.errno))
            for e in entries:
                size = 0
                if e[1] == 0x8000:
                    try:
                        size = st(base + e[0])[6]
                    except _OSError:
                        pass
                yield (e[0], e[1], e[2], size)

    os.umount("/")
    os.mount(FlashVfs("${MOUNT}"), "/")
    os.chdir("/")
    sys.path[:] = ["", ".frozen", "/lib"]

    def run(kind, src):
        try:
            if kind == "F":
                try:
                    os.stat(src)
                    ok = True
                except _OSError:
                    ok = False
                if ok:
                    with _open(src) as f:
                        code = f.read()
                    g["__file__"] = src
                    _exec(_compile(code, src, "exec"), g)
            elif kind == "S":
                _exec(_compile(src, "<stdin>", "single"), g)
            else:
                g["__file__"] = "<stdin>"
                _exec(_compile(src, "<stdin>", "exec"), g)
        except SystemExit:
            return "X"
        except BaseException as e:
            s = io.StringIO()
            _pe(e, s)
            return "E" + "".join(l + "\\n" for l in s.getvalue().split("\\n") if l and '"<uqsim>"' not in l)
        return ""  # (a str with a NUL does not make it to JS whole: hence "X" and "E" as markers)

    impl = sys.implementation
    info = repr({"name": impl.name, "version": tuple(impl.version), "mpy": getattr(impl, "_mpy", None),
                 "machine": getattr(impl, "_machine", sys.platform), "sys_version": sys.version,
                 "platform": sys.platform, "maxsize": sys.maxsize})
    return run, info
`;

async function main() {
  const nm = process.env.UQUANT_NODE_MODULES;
  if (!nm) throw new Error("UQUANT_NODE_MODULES is not set");
  const { loadMicroPython } = await import(pathToFileURL(path.join(nm, PKG, "micropython.mjs")).href);
  const mp = await loadMicroPython({ stdout: pushOut, stderr: pushOut, linebuffer: false });
  FS = mp.FS;
  copyIn(flashDir, MOUNT);
  synced = scan();
  mp.runPython(`exec(compile(${JSON.stringify(HELPER)}, "<uqsim>", "exec"))\n_uq_run, _uq_info = _uq_make()\n`);
  const run = mp.globals.get("_uq_run");
  const info = mp.globals.get("_uq_info");
  for (const k of ["_uq_run", "_uq_info", "_uq_make"]) mp.globals.delete(k);
  const hello = Buffer.from(info, "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32LE(hello.length);
  writeAll(ctlFd, Buffer.concat([Buffer.from("H"), len, hello]));

  const decoder = new TextDecoder();
  for (;;) {
    const head = readExact(cmdFd, 9);
    if (head === null) return;
    const kind = String.fromCharCode(head[0]);
    const rid = head.readUInt32LE(1);
    const size = head.readUInt32LE(5);
    const payload = size ? readExact(cmdFd, size) : Buffer.alloc(0);
    if (payload === null) return;
    ctl("B", rid);
    let result;
    let fatal = null;
    try {
      result = run(kind, decoder.decode(payload));
    } catch (e) {
      // the wasm machine itself failed (a trap): report it, then exit so the host starts a fresh one
      fatal = e;
      result = `ERuntimeError: the WebAssembly interpreter failed: ${(e && e.message) || e}\n`;
    }
    flushOut();
    if (!fatal) syncOut();
    const flags = Buffer.from([result === "X" ? 1 : 0]);
    const text = Buffer.from(result.startsWith("E") ? result.slice(1) : "", "utf8");
    const n = Buffer.alloc(4);
    n.writeUInt32LE(text.length);
    ctl("D", rid, Buffer.concat([flags, n, text]));
    if (fatal) process.exit(3);
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    flushOut();
    fs.writeSync(2, `sim_driver.mjs: ${(e && e.stack) || e}\n`);
    process.exit(2);
  },
);
