// Run Python source inside the official MicroPython WebAssembly port.
//
// Protocol: read ONE JSON object from stdin:
//
//   {
//     "files":    {"/lib/name.py": "<text>", ...},        // optional, written as UTF-8
//     "bfiles":   {"/lib/blob.bin": "<base64>", ...},     // optional, written as raw bytes
//     "code":     "<python source>" | ["<chunk>", ...],   // required
//     "heapsize": 1048576                                  // optional, initial GC heap in bytes
//   }
//
// Files are written into the interpreter's in-memory filesystem (parent
// directories are created), "/lib" is made sure to be on sys.path, then the
// code is run with mp.runPython in the __main__ namespace.  When "code" is a
// list, each chunk is a separate top-level runPython call sharing the same
// globals: this port only garbage-collects *between* top-level calls, so
// splitting long jobs into chunks lets memory be reclaimed.
//
// Whatever the interpreter prints on sys.stdout is written to our stdout
// byte for byte; sys.stderr goes to our stderr.
//
// Exit status:
//   0  the code ran to completion (or raised SystemExit with code 0/None)
//   1  the Python code raised: the MicroPython traceback is on stderr
//   2  anything else (bad input, package not installed, wasm trap, ...)
//
// The npm package is located, in this order: $UQUANT_NODE_MODULES (a
// node_modules directory), then a node_modules directory in this script's
// directory or any of its ancestors (the repo root for a checkout), then the
// current working directory or any of its ancestors.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const PKG = "@micropython/micropython-webassembly-pyscript";
const ENTRY = "micropython.mjs";

class Failure extends Error {}

function* ancestors(start) {
  let dir = path.resolve(start);
  for (;;) {
    yield dir;
    const parent = path.dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}

function findPackageEntry() {
  const tried = [];
  const candidates = [];
  if (process.env.UQUANT_NODE_MODULES) {
    candidates.push(path.resolve(process.env.UQUANT_NODE_MODULES));
  }
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const d of ancestors(here)) candidates.push(path.join(d, "node_modules"));
  for (const d of ancestors(process.cwd())) candidates.push(path.join(d, "node_modules"));
  for (const nm of new Set(candidates)) {
    const entry = path.join(nm, PKG, ENTRY);
    tried.push(entry);
    if (fs.existsSync(entry)) return entry;
  }
  throw new Failure(
    `npm package ${PKG} not found (looked for ${ENTRY} under: ${tried.slice(0, 4).join(", ")}, ...). ` +
      "Run `make setup` (or `npm ci`) at the repo root, or set UQUANT_NODE_MODULES to a node_modules directory.",
  );
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

// Byte sink for the interpreter's stdout.  The port calls us once per byte
// (linebuffer: false), so collect into a growing buffer and hand big chunks
// to process.stdout.
class ByteSink {
  constructor(stream, chunkSize = 1 << 16) {
    this.stream = stream;
    this.buf = Buffer.allocUnsafe(chunkSize);
    this.len = 0;
  }
  push(bytes) {
    for (let i = 0; i < bytes.length; i++) {
      if (this.len === this.buf.length) this.flush();
      this.buf[this.len++] = bytes[i];
    }
  }
  flush() {
    if (this.len === 0) return;
    // Copy: the stream may hold on to the chunk after write() returns.
    this.stream.write(Buffer.from(this.buf.subarray(0, this.len)));
    this.len = 0;
  }
}

function parseRequest(text) {
  let req;
  try {
    req = JSON.parse(text);
  } catch (e) {
    throw new Failure(`stdin is not valid JSON: ${e.message}`);
  }
  if (req === null || typeof req !== "object" || Array.isArray(req)) {
    throw new Failure("stdin JSON must be an object");
  }
  let code = req.code;
  if (typeof code === "string") code = [code];
  if (!Array.isArray(code) || !code.every((c) => typeof c === "string")) {
    throw new Failure('"code" must be a string or a list of strings');
  }
  for (const key of ["files", "bfiles"]) {
    const v = req[key];
    if (v !== undefined && v !== null && (typeof v !== "object" || Array.isArray(v))) {
      throw new Failure(`"${key}" must be an object mapping paths to contents`);
    }
  }
  const heapsize = req.heapsize;
  if (heapsize !== undefined && heapsize !== null && !(Number.isInteger(heapsize) && heapsize > 0)) {
    throw new Failure('"heapsize" must be a positive integer');
  }
  return { code, files: req.files || {}, bfiles: req.bfiles || {}, heapsize };
}

function writeFiles(FS, files, bfiles) {
  const put = (p, data) => {
    const abs = path.posix.resolve("/", p);
    const dir = path.posix.dirname(abs);
    if (dir !== "/") FS.mkdirTree(dir);
    FS.writeFile(abs, data);
  };
  for (const [p, text] of Object.entries(files)) {
    if (typeof text !== "string") throw new Failure(`files[${JSON.stringify(p)}] must be a string`);
    put(p, text);
  }
  for (const [p, b64] of Object.entries(bfiles)) {
    if (typeof b64 !== "string") throw new Failure(`bfiles[${JSON.stringify(p)}] must be a base64 string`);
    put(p, new Uint8Array(Buffer.from(b64, "base64")));
  }
}

// Exit status for a SystemExit traceback: 0 for SystemExit(), SystemExit(0)
// and SystemExit(None), 1 otherwise.
function systemExitStatus(message) {
  const lines = message.trimEnd().split("\n");
  const last = lines[lines.length - 1] || "";
  const m = /^SystemExit:?\s*(.*)$/.exec(last);
  const arg = m ? m[1].trim() : "";
  return arg === "" || arg === "0" || arg === "None" ? 0 : 1;
}

async function main() {
  const req = parseRequest(await readStdin());
  const entry = findPackageEntry();
  const { loadMicroPython } = await import(pathToFileURL(entry).href);

  const out = new ByteSink(process.stdout);
  const err = new ByteSink(process.stderr, 1 << 10);
  const options = {
    stdout: (bytes) => out.push(bytes),
    stderr: (bytes) => err.push(bytes),
    linebuffer: false,
  };
  // Never pass heapsize: undefined -- the loader's Object.assign would copy
  // the undefined over its default and the interpreter then crashes.
  if (req.heapsize) options.heapsize = req.heapsize;
  const mp = await loadMicroPython(options);

  let status = 0;
  try {
    writeFiles(mp.FS, req.files, req.bfiles);
    mp.runPython("import sys\nif '/lib' not in sys.path:\n    sys.path.append('/lib')\ndel sys\n");
    for (const chunk of req.code) mp.runPython(chunk);
  } catch (e) {
    if (e && e.name === "PythonError") {
      out.flush();
      err.flush();
      if (e.type === "SystemExit" && systemExitStatus(e.message) === 0) {
        status = 0;
      } else {
        process.stderr.write(e.message.endsWith("\n") ? e.message : e.message + "\n");
        status = 1;
      }
    } else {
      out.flush();
      err.flush();
      throw e;
    }
  }
  out.flush();
  err.flush();
  return status;
}

// Never call process.exit() on the success/error paths: writes to a pipe may
// still be queued, and exiting would truncate large outputs.  Setting
// exitCode lets Node drain stdout/stderr first and then exit by itself.
main().then(
  (status) => {
    process.exitCode = status;
  },
  (e) => {
    const msg = e instanceof Failure ? e.message : (e && e.stack) || String(e);
    process.stderr.write(`mp_run: ${msg}\n`);
    process.exitCode = 2;
  },
);
