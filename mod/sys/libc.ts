/**
 * The one place osps talks to libc through Deno FFI (`Deno.dlopen`).
 *
 * Every wrapper throws {@link SysError} with the errno on failure, so callers
 * never look at -1. Linux x86_64/aarch64 constants; osps targets Linux only.
 * @module
 */
import { SysError } from "../errors.ts";

const LIBC_CANDIDATES = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/lib/aarch64-linux-gnu/libc.so.6",
  "/usr/lib/x86_64-linux-gnu/libc.so.6",
  "/usr/lib/aarch64-linux-gnu/libc.so.6",
  "/lib64/libc.so.6",
  "/usr/lib64/libc.so.6",
  "/usr/lib/libc.so.6",
];

const SYMBOLS = {
  shm_open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  shm_unlink: { parameters: ["buffer"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  // poll(2) parked on a Deno worker thread so the event loop stays free; only its count is used
  // (errno would be read on the wrong thread).
  poll_async: { name: "poll", parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  setrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "isize" },
  sysconf: { parameters: ["i32"], result: "i64" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  mkfifo: { parameters: ["buffer", "u32"], result: "i32" },
  unlink: { parameters: ["buffer"], result: "i32" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  kill: { parameters: ["i32", "i32"], result: "i32" },
  signal: { parameters: ["i32", "usize"], result: "usize" },
  getuid: { parameters: [], result: "u32" },
  gethostname: { parameters: ["buffer", "usize"], result: "i32" },
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  opendir: { parameters: ["buffer"], result: "pointer" },
  readdir: { parameters: ["pointer"], result: "pointer" },
  closedir: { parameters: ["pointer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  // glibc's allocator: where a process's memory outside the JavaScript heap goes, and giving it back.
  mallinfo2: { parameters: [], result: { struct: Array(10).fill("usize") } },
  // On one of Deno's worker threads: a trim of a fragmented heap walks every free chunk (tens of ms).
  malloc_trim_async: { name: "malloc_trim", parameters: ["usize"], result: "i32", nonblocking: true },
  // epoll(7), for a load client that holds thousands of sockets (scripts/chat_load.ts); the wait is parked on a
  // Deno worker thread like poll_async.
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  // … and looked at with a zero timeout on the loop's own thread while the loop is busy (mod/chat/epoll_loop.ts).
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  epoll_wait_async: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  // The IRC port served through epoll (mod/chat/epoll_loop.ts): a listener, its accepts, sends, and a wake-up.
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
} as const;

type Name = keyof typeof SYMBOLS;
type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
/** The functions bound so far, and the libc they were bound from. */
const bound: { -readonly [K in Name]?: Symbols[K] } = {};
let libcPath: string | undefined;

/**
 * libc's function `name`, bound on first use. Binding costs about half a
 * millisecond per function (Deno compiles a call stub for each), so a role
 * binds only what it calls: binding all of them cost every start 10–20 ms
 * before its port was even open. `__errno_location` is bound with the first
 * one, so that reading errno never binds (binding could change it).
 */
function sym<K extends Name>(name: K): Symbols[K] {
  return (bound[name] ??= bind(name) as Symbols[K]);
}

function bind(name: Name): unknown {
  if (libcPath) return Deno.dlopen(libcPath, { [name]: SYMBOLS[name] }).symbols[name];
  const wanted = { [name]: SYMBOLS[name], __errno_location: SYMBOLS.__errno_location };
  // dlopen each candidate rather than stat it: roles hold no read permission.
  const errors: unknown[] = [];
  for (const path of [...LIBC_CANDIDATES, "libc.so.6"]) {
    try {
      const symbols = Deno.dlopen(path, wanted).symbols;
      libcPath = path;
      bound.__errno_location = symbols.__errno_location as Symbols["__errno_location"];
      return symbols[name];
    } catch (err) {
      errors.push(err);
    }
  }
  throw new AggregateError(errors, "cannot load libc: osps needs glibc on Linux");
}

/** open(2) flags and other constants used by osps. */
export const O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  CREAT: 0o100,
  EXCL: 0o200,
  NONBLOCK: 0o4000,
  NOFOLLOW: 0o400000,
  CLOEXEC: 0o2000000,
} as const;

/** errno values osps reacts to. */
export const E = {
  ENOENT: 2,
  EINTR: 4,
  ENXIO: 6,
  EAGAIN: 11,
  EEXIST: 17,
  EPIPE: 32,
  ESRCH: 3,
  EWOULDBLOCK: 11,
  EMFILE: 24,
  EINVAL: 22,
  EFBIG: 27,
  EINPROGRESS: 115,
  ENFILE: 23,
  ENOBUFS: 105,
  ENOMEM: 12,
  EBADF: 9,
} as const;

const enc = new TextEncoder();
function cstr(s: string): Uint8Array<ArrayBuffer> {
  return enc.encode(s + "\0");
}

function errno(): number {
  const p = sym("__errno_location")();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

function check(call: string, rc: number | bigint, detail?: string): number {
  const n = Number(rc);
  if (n < 0) throw new SysError(call, errno(), detail);
  return n;
}

/** shm_open(3). Returns a file descriptor. */
export function shmOpen(name: string, flags: number, mode = 0o600): number {
  return check("shm_open", sym("shm_open")(cstr(name), flags | O.CLOEXEC | O.NOFOLLOW, mode), name);
}

/** shm_unlink(3). Returns false when the segment did not exist. */
export function shmUnlink(name: string): boolean {
  const rc = sym("shm_unlink")(cstr(name));
  if (rc === 0) return true;
  const e = errno();
  if (e === E.ENOENT) return false;
  throw new SysError("shm_unlink", e, name);
}

/** ftruncate(2). */
export function ftruncate(fd: number, size: number): void {
  check("ftruncate", sym("ftruncate")(fd, BigInt(size)));
}

/** mmap(2) a shared read/write mapping of `size` bytes of `fd`, viewed as an ArrayBuffer. */
export function mmapShared(fd: number, size: number): { buffer: ArrayBuffer; unmap(): void } {
  const PROT_READ_WRITE = 3, MAP_SHARED = 1;
  const p = sym("mmap")(null, BigInt(size), PROT_READ_WRITE, MAP_SHARED, fd, 0n);
  // MAP_FAILED is (void*)-1.
  if (p === null || Deno.UnsafePointer.value(p) === 0xffffffffffffffffn) {
    throw new SysError("mmap", errno());
  }
  const buffer = Deno.UnsafePointerView.getArrayBuffer(p, size);
  return {
    buffer,
    unmap: () => void sym("munmap")(p, BigInt(size)),
  };
}

/** open(2). */
export function open(path: string, flags: number, mode = 0o600): number {
  return check("open", sym("open")(cstr(path), flags | O.CLOEXEC, mode), path);
}

/** Like {@link open} but returns `-errno` instead of throwing (for expected failures such as ENXIO). */
export function tryOpen(path: string, flags: number, mode = 0o600): number {
  const fd = sym("open")(cstr(path), flags | O.CLOEXEC, mode);
  return fd < 0 ? -errno() : fd;
}

/** close(2); errors are ignored (there is nothing useful to do with them). */
export function close(fd: number): void {
  sym("close")(fd);
}

/** read(2) on the calling thread. Returns bytes read (0 = EOF) or `-errno` (EAGAIN on an empty non-blocking fd). */
export function readNow(fd: number, buf: Uint8Array<ArrayBuffer>): number {
  const n = Number(sym("read")(fd, buf, BigInt(buf.length)));
  return n < 0 ? -errno() : n;
}

/** write(2). Returns bytes written or `-errno` (EPIPE when the reader is gone, EAGAIN when full). */
export function write(fd: number, buf: Uint8Array<ArrayBuffer>): number {
  const n = Number(sym("write")(fd, buf, BigInt(buf.length)));
  return n < 0 ? -errno() : n;
}

/** mkfifo(3). Throws on any error but EEXIST, which returns false. */
export function mkfifo(path: string, mode = 0o600): boolean {
  if (sym("mkfifo")(cstr(path), mode) === 0) return true;
  const e = errno();
  if (e === E.EEXIST) return false;
  throw new SysError("mkfifo", e, path);
}

/** unlink(2); returns false when the path did not exist. Never follows a link (unlink never does). */
export function unlink(path: string): boolean {
  if (sym("unlink")(cstr(path)) === 0) return true;
  const e = errno();
  if (e === E.ENOENT) return false;
  throw new SysError("unlink", e, path);
}

/** Sets or clears O_NONBLOCK on `fd`. */
export function setNonBlocking(fd: number, on: boolean): void {
  const F_GETFL = 3, F_SETFL = 4;
  const flags = check("fcntl", sym("fcntl")(fd, F_GETFL, 0));
  check("fcntl", sym("fcntl")(fd, F_SETFL, on ? flags | O.NONBLOCK : flags & ~O.NONBLOCK));
}

/** flock(2) LOCK_EX|LOCK_NB. Returns false when another process holds the lock. */
export function tryLockExclusive(fd: number): boolean {
  const LOCK_EX = 2, LOCK_NB = 4;
  if (sym("flock")(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const e = errno();
  if (e === E.EWOULDBLOCK) return false;
  throw new SysError("flock", e);
}

/** prctl(PR_SET_PDEATHSIG, sig): the kernel sends `sig` to this process when its parent thread dies. */
export function setParentDeathSignal(sig: number): void {
  const PR_SET_PDEATHSIG = 1;
  check("prctl", sym("prctl")(PR_SET_PDEATHSIG, BigInt(sig), 0n, 0n, 0n));
}

/**
 * signal(sig, SIG_IGN): the kernel drops `sig` for this process from now on,
 * whatever handler the runtime had installed (and however it would react).
 */
export function ignoreSignal(sig: number): void {
  const SIG_IGN = 1n;
  const SIG_ERR = 0xffffffffffffffffn;
  if (BigInt(sym("signal")(sig, SIG_IGN)) === SIG_ERR) {
    throw new SysError("signal", errno(), `(${sig})`);
  }
}

/** kill(2). Returns false when the process does not exist (ESRCH). */
export function kill(pid: number, sig: number): boolean {
  if (sym("kill")(pid, sig) === 0) return true;
  const e = errno();
  if (e === E.ESRCH) return false;
  throw new SysError("kill", e, `pid ${pid}`);
}

/** getuid(2). */
export function getuid(): number {
  return sym("getuid")();
}

/** gethostname(2): this host's name (names an instance among hosts sharing one chat database). */
export function gethostname(): string {
  const buf = new Uint8Array(256);
  if (sym("gethostname")(buf, BigInt(buf.length)) !== 0) return "localhost";
  const end = buf.indexOf(0);
  return new TextDecoder().decode(buf.subarray(0, end < 0 ? buf.length : end));
}

/** fstat(2) subset: owner uid, mode bits (with file type) and size of an open fd. */
export function fstat(fd: number): { uid: number; mode: number; size: number } {
  // struct stat, glibc: x86_64 has st_mode at 24, st_uid at 28; aarch64 (generic layout) st_mode at 16,
  // st_uid at 24. st_size is at 48 on both.
  const buf = new Uint8Array(256);
  check("fstat", sym("fstat")(fd, buf));
  const v = new DataView(buf.buffer);
  const size = Number(v.getBigInt64(48, true));
  return Deno.build.arch === "aarch64"
    ? { mode: v.getUint32(16, true), uid: v.getUint32(24, true), size }
    : { mode: v.getUint32(24, true), uid: v.getUint32(28, true), size };
}

/** CLOCK_MONOTONIC in milliseconds (fractional): one clock for every process of the host, never stepped. */
export function monotonicMs(): number {
  const CLOCK_MONOTONIC = 1;
  const ts = new BigInt64Array(2);
  check("clock_gettime", sym("clock_gettime")(CLOCK_MONOTONIC, new Uint8Array(ts.buffer)));
  return Number(ts[0]!) * 1000 + Number(ts[1]!) / 1e6;
}

const RLIMIT_NOFILE = 7;

/** The open-file limit of this process: soft (enforced) and hard (the most the soft may be raised to). */
export function fileLimit(): { soft: number; hard: number } {
  const r = new BigUint64Array(2);
  check("getrlimit", sym("getrlimit")(RLIMIT_NOFILE, new Uint8Array(r.buffer)));
  // RLIM_INFINITY is all ones; nobody has that many descriptors, so cap it for arithmetic.
  const cap = (v: bigint) => (v > 1n << 40n ? 2 ** 40 : Number(v));
  return { soft: cap(r[0]!), hard: cap(r[1]!) };
}

/** Raises the soft open-file limit to the hard one (allowed without privilege). Returns the new limits. */
export function raiseFileLimit(): { soft: number; hard: number } {
  const r = new BigUint64Array(2);
  check("getrlimit", sym("getrlimit")(RLIMIT_NOFILE, new Uint8Array(r.buffer)));
  if (r[0]! < r[1]!) {
    r[0] = r[1]!;
    check("setrlimit", sym("setrlimit")(RLIMIT_NOFILE, new Uint8Array(r.buffer)));
  }
  return fileLimit();
}

/** One entry of {@link pollFds}: a descriptor and what became ready on it. */
export interface PollResult {
  readonly fd: number;
  /** POLLIN: bytes (or EOF) to read. */
  readonly readable: boolean;
  /** POLLHUP/POLLERR: the other end is gone. */
  readonly hangup: boolean;
}

const POLLIN = 0x1, POLLERR = 0x8, POLLHUP = 0x10;

function pollBuffer(fds: readonly number[]): Uint8Array<ArrayBuffer> {
  // struct pollfd { int fd; short events; short revents; }
  const buf = new Uint8Array(fds.length * 8);
  const v = new DataView(buf.buffer);
  fds.forEach((fd, i) => {
    v.setInt32(i * 8, fd, true);
    v.setInt16(i * 8 + 4, POLLIN, true);
  });
  return buf;
}

function pollResults(fds: readonly number[], buf: Uint8Array<ArrayBuffer>): PollResult[] {
  const v = new DataView(buf.buffer);
  const out: PollResult[] = [];
  fds.forEach((fd, i) => {
    const re = v.getInt16(i * 8 + 6, true);
    if (re !== 0) out.push({ fd, readable: (re & POLLIN) !== 0, hangup: (re & (POLLHUP | POLLERR)) !== 0 });
  });
  return out;
}

/** poll(2) without waiting: which of `fds` are readable now. */
export function pollNow(fds: readonly number[]): PollResult[] {
  const buf = pollBuffer(fds);
  const n = sym("poll")(buf, BigInt(fds.length), 0);
  return n > 0 ? pollResults(fds, buf) : [];
}

/**
 * poll(2) parked on one of Deno's worker threads until one of `fds` is
 * readable or `timeoutMs` passes (-1: no timeout). An error (EINTR, say)
 * resolves with no results: errno cannot be read from this thread, and the
 * caller simply polls again.
 */
export async function pollWait(fds: readonly number[], timeoutMs: number): Promise<PollResult[]> {
  const buf = pollBuffer(fds);
  const n = await sym("poll_async")(buf, BigInt(fds.length), timeoutMs);
  return n > 0 ? pollResults(fds, buf) : [];
}

/** pipe2(O_NONBLOCK|O_CLOEXEC): a private wake-up pipe. Returns [read end, write end]. */
export function pipe(): [number, number] {
  const fds = new Int32Array(2);
  check("pipe2", sym("pipe2")(new Uint8Array(fds.buffer), O.NONBLOCK | O.CLOEXEC));
  return [fds[0]!, fds[1]!];
}

/** struct sockaddr_in { u16 family; u16 port (network order); u32 addr; u8 zero[8]; } for an IPv4 address. */
function sockaddrIn(host: string, port: number): Uint8Array<ArrayBuffer> {
  const sa = new Uint8Array(16);
  const v = new DataView(sa.buffer);
  v.setUint16(0, 2, /* AF_INET */ true);
  v.setUint16(2, port, false);
  host.split(".").forEach((octet, i) => (sa[4 + i] = Number(octet)));
  return sa;
}

/**
 * Opens a TCP connection to an IPv4 `host:port` whose close will be abortive
 * (SO_LINGER {on, 0}: the kernel sends RST instead of FIN). Returns the fd;
 * {@link close} it to reset. For tests and the soak script, which must behave
 * like the hostile clients that reset connections at every stage. With
 * `receiveBuffer`, the socket's receive buffer (SO_RCVBUF, set before
 * connecting so the window is small from the start) is that small: a slow
 * reader whose kernel does not soak up megabytes for it.
 */
export function abortiveConnect(host: string | Uint8Array, port: number, receiveBuffer?: number): number {
  const SOCK_STREAM = 1, SO_LINGER = 13, SO_RCVBUF = 8;
  const sa = typeof host === "string" ? sockaddrIn(host, port) : sockaddr(host, port);
  const family = new DataView(sa.buffer).getUint16(0, true);
  const fd = check("socket", sym("socket")(family, SOCK_STREAM | O.CLOEXEC, 0));
  try {
    const linger = new Int32Array([1, 0]);
    check(
      "setsockopt",
      sym("setsockopt")(fd, SOL_SOCKET, SO_LINGER, new Uint8Array(linger.buffer), 8),
    );
    if (receiveBuffer !== undefined) {
      const size = new Int32Array([receiveBuffer]);
      check("setsockopt", sym("setsockopt")(fd, SOL_SOCKET, SO_RCVBUF, new Uint8Array(size.buffer), 4));
    }
    const where = typeof host === "string" ? host : Array.from(host, (b) => b.toString(16)).join(".");
    check("connect", sym("connect")(fd, sa, sa.length), `${where}:${port}`);
    return fd;
  } catch (err) {
    close(fd);
    throw err;
  }
}

const AF_UNIX = 1, SOCK_DGRAM = 2;

/** `struct sockaddr_un` for `path`; a leading "@" names the abstract namespace (as systemd writes it). */
function unixAddress(path: string): { sa: Uint8Array<ArrayBuffer>; len: number } {
  const name = enc.encode(path.startsWith("@") ? `\0${path.slice(1)}` : `${path}\0`);
  if (name.length > 108) throw new SysError("sockaddr_un", E.EINVAL, `path too long: ${path}`);
  const sa = new Uint8Array(110);
  new DataView(sa.buffer).setUint16(0, AF_UNIX, true);
  sa.set(name, 2);
  // An abstract name is exactly its bytes; a path may carry its NUL.
  return { sa, len: 2 + name.length };
}

/** socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC): a datagram socket that never blocks. */
export function unixDatagramSocket(): number {
  return check("socket", sym("socket")(AF_UNIX, SOCK_DGRAM | O.NONBLOCK | O.CLOEXEC, 0));
}

/**
 * sendto(2) one datagram on `fd` to the unix socket at `path` ("@name":
 * abstract namespace), without waiting (MSG_DONTWAIT). Returns bytes sent or
 * `-errno` (the receiver may be gone or full; the caller decides).
 */
export function sendToUnix(fd: number, path: string, data: Uint8Array<ArrayBuffer>): number {
  const MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000;
  const { sa, len } = unixAddress(path);
  const n = Number(
    sym("sendto")(fd, data, BigInt(data.length), MSG_DONTWAIT | MSG_NOSIGNAL, sa, len),
  );
  return n < 0 ? -errno() : n;
}

/** bind(2) `fd` to the unix socket address `path` (tests stand in for systemd's notify socket with it). */
export function bindUnix(fd: number, path: string): void {
  const { sa, len } = unixAddress(path);
  check("bind", sym("bind")(fd, sa, len), path);
}

/** sysconf(3): clock ticks per second (`_SC_CLK_TCK`) or the page size (`_SC_PAGESIZE`). */
export function sysconf(name: "clk_tck" | "pagesize"): number {
  return check("sysconf", sym("sysconf")(name === "clk_tck" ? 2 : 30));
}

/** Signal numbers (Linux). */
export const SIG = {
  SIGKILL: 9,
  SIGTERM: 15,
  SIGSTOP: 19,
  SIGCONT: 18,
  SIGINT: 2,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGHUP: 1,
} as const;

/**
 * Reads a small file with open/read/close, or null when it cannot be read.
 * Used for /proc/<pid>/*, which Deno's permission system only grants with
 * --allow-all (it treats every /proc/<pid> path as privileged).
 */
export function readSmallFile(path: string, max = 64 * 1024): Uint8Array | null {
  const fd = tryOpen(path, O.RDONLY);
  if (fd < 0) return null;
  try {
    const buf = new Uint8Array(max);
    let off = 0;
    for (;;) {
      const n = readNow(fd, buf.subarray(off) as Uint8Array<ArrayBuffer>);
      if (n === -E.EINTR) continue;
      if (n <= 0) break;
      off += n;
      if (off === buf.length) break;
    }
    return buf.slice(0, off);
  } finally {
    close(fd);
  }
}

/**
 * Reads a whole file of at most `max` bytes with open/read/close; throws
 * {@link SysError} (with the errno: ENOENT, EACCES, EISDIR…) when it cannot,
 * and EFBIG when it is longer. Used for the one file the operator names on
 * the watchdog's command line (`--config`), wherever it is.
 */
export function readFileAt(path: string, max: number): Uint8Array {
  const fd = tryOpen(path, O.RDONLY);
  if (fd < 0) throw new SysError("open", -fd, path);
  try {
    const buf = new Uint8Array(max + 1);
    let off = 0;
    for (;;) {
      const n = readNow(fd, buf.subarray(off) as Uint8Array<ArrayBuffer>);
      if (n === -E.EINTR) continue;
      if (n < 0) throw new SysError("read", -n, path);
      if (n === 0) break;
      off += n;
      if (off > max) throw new SysError("read", E.EFBIG, `${path} (longer than ${max} bytes)`);
    }
    return buf.slice(0, off);
  } finally {
    close(fd);
  }
}

/** Names in a directory (readdir(3)), "." and ".." excluded; null when it cannot be opened. Used for /proc. */
export function listDir(path: string): string[] | null {
  const dir = sym("opendir")(cstr(path));
  if (dir === null) return null;
  const names: string[] = [];
  try {
    for (;;) {
      const ent = sym("readdir")(dir);
      if (ent === null) break;
      // struct dirent (glibc, 64-bit): d_ino 8, d_off 8, d_reclen 2, d_type 1, then d_name.
      const name = new Deno.UnsafePointerView(ent).getCString(19);
      if (name !== "." && name !== "..") names.push(name);
    }
  } finally {
    sym("closedir")(dir);
  }
  return names;
}

/** epoll event bits ({@link epollCtl}, {@link epollWait}). */
export const EPOLL = { IN: 0x1, OUT: 0x4, ERR: 0x8, HUP: 0x10, RDHUP: 0x2000, ET: 0x80000000 } as const;
/** struct epoll_event: packed on x86_64 (12 bytes), naturally aligned elsewhere (16). */
const EPOLL_EVENT = Deno.build.arch === "x86_64" ? { size: 12, data: 4 } : { size: 16, data: 8 };

/** epoll_create1(EPOLL_CLOEXEC). */
export function epollCreate(): number {
  return check("epoll_create1", sym("epoll_create1")(O.CLOEXEC));
}

/** epoll_ctl(2): `op` "add", "mod" or "del" of `fd` for `events` (level-triggered); the event's data is `fd`. */
export function epollCtl(ep: number, op: "add" | "mod" | "del", fd: number, events = 0): void {
  const ev = new Uint8Array(EPOLL_EVENT.size);
  const v = new DataView(ev.buffer);
  v.setUint32(0, events, true);
  v.setUint32(EPOLL_EVENT.data, fd, true);
  check("epoll_ctl", sym("epoll_ctl")(ep, { add: 1, del: 2, mod: 3 }[op], fd, ev), `fd ${fd}`);
}

/**
 * epoll_wait(2) parked on one of Deno's worker threads: up to `max` ready
 * descriptors and their event bits, after at most `timeoutMs`. An error
 * (EINTR) resolves with none, as {@link pollWait} does.
 */
export async function epollWait(
  ep: number,
  max: number,
  timeoutMs: number,
): Promise<{ fd: number; events: number }[]> {
  const buf = new Uint8Array(EPOLL_EVENT.size * max);
  return epollEvents(buf, await sym("epoll_wait_async")(ep, buf, max, timeoutMs));
}

/** {@link epollWaitNow}'s buffer, by the number of events it holds (one per size: the call is synchronous). */
const nowBuffers = new Map<number, Uint8Array<ArrayBuffer>>();

/** epoll_wait(2) with a zero timeout, on this thread: up to `max` descriptors ready now. */
export function epollWaitNow(ep: number, max: number): { fd: number; events: number }[] {
  let buf = nowBuffers.get(max);
  if (!buf) nowBuffers.set(max, buf = new Uint8Array(EPOLL_EVENT.size * max));
  const n = sym("epoll_wait")(ep, buf, max, 0);
  return n > 0 ? epollEvents(buf, n) : [];
}

function epollEvents(buf: Uint8Array<ArrayBuffer>, n: number): { fd: number; events: number }[] {
  const v = new DataView(buf.buffer);
  const out: { fd: number; events: number }[] = [];
  for (let i = 0; i < n; i++) {
    const at = i * EPOLL_EVENT.size;
    out.push({ fd: v.getUint32(at + EPOLL_EVENT.data, true), events: v.getUint32(at, true) });
  }
  return out;
}

/**
 * A non-blocking TCP connection to an IPv4 `host:port` under way: the fd, to
 * watch for writability (connected) or an error. Throws at once only for
 * errors other than EINPROGRESS.
 */
export function connectNonBlocking(host: string, port: number): number {
  const AF_INET = 2, SOCK_STREAM = 1;
  const fd = check("socket", sym("socket")(AF_INET, SOCK_STREAM | O.NONBLOCK | O.CLOEXEC, 0));
  const sa = sockaddrIn(host, port);
  if (sym("connect")(fd, sa, 16) !== 0 && errno() !== E.EINPROGRESS) {
    const e = errno();
    close(fd);
    throw new SysError("connect", e, `${host}:${port}`);
  }
  return fd;
}

/** What glibc's allocator holds, in bytes (mallinfo2(3), summed over every arena). */
export interface MallocInfo {
  /** Taken from the system by sbrk and arenas' heaps (the mmapped big blocks not included). */
  readonly arena: number;
  /** In big blocks, each its own mmap (given back as soon as freed). */
  readonly mmapped: number;
  /** Handed out and not yet freed (the big blocks included). */
  readonly inUse: number;
  /** Freed but still held by the allocator: resident where it was ever touched. */
  readonly free: number;
}

/** mallinfo2(3): glibc's allocator's totals. */
export function mallocInfo(): MallocInfo {
  const raw = sym("mallinfo2")();
  const v = new BigUint64Array(raw.buffer, raw.byteOffset, 10);
  // struct mallinfo2: arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost.
  const f = (i: number) => Number(v[i]!);
  return { arena: f(0), mmapped: f(4), inUse: f(7) + f(4), free: f(8) };
}

/**
 * malloc_trim(3) on one of Deno's worker threads, so that the event loop
 * runs meanwhile: gives the free memory of every arena back to the system
 * (whole free pages inside them too, not only the top), keeping `pad`
 * bytes at each top. True when anything was given back.
 */
export async function mallocTrim(pad = 0): Promise<boolean> {
  return await sym("malloc_trim_async")(BigInt(pad)) === 1;
}

/** Options of a TCP socket, for {@link setsockopt} (Linux values). */
const SOL_SOCKET = 1, SO_REUSEADDR = 2, SO_REUSEPORT = 15, IPPROTO_TCP = 6, TCP_NODELAY = 1;
const AF_INET = 2, AF_INET6 = 10;

function setIntOption(fd: number, level: number, name: number, value: number): void {
  const v = new Int32Array([value]);
  check("setsockopt", sym("setsockopt")(fd, level, name, new Uint8Array(v.buffer), 4), `(${level}, ${name})`);
}

/** `struct sockaddr_in` or `struct sockaddr_in6` for an address of 4 or 16 bytes (network order). */
function sockaddr(ip: Uint8Array, port: number): Uint8Array<ArrayBuffer> {
  const v6 = ip.length === 16;
  const sa = new Uint8Array(v6 ? 28 : 16);
  const v = new DataView(sa.buffer);
  v.setUint16(0, v6 ? AF_INET6 : AF_INET, true);
  v.setUint16(2, port, false);
  sa.set(ip, v6 ? 8 : 4); // sin6_flowinfo comes before the address; sin6_scope_id stays 0
  return sa;
}

/**
 * A listening TCP socket on `ip` (4 or 16 bytes) and `port`, non-blocking,
 * with SO_REUSEADDR and SO_REUSEPORT as `Deno.listen({ reusePort: true })`
 * sets them (so processes of this user share the port, the kernel spreading
 * connections). Throws {@link SysError} (EADDRINUSE: something listens there
 * without SO_REUSEPORT, or as another user).
 */
export function tcpListen(ip: Uint8Array, port: number, backlog: number, what: string): number {
  const SOCK_STREAM = 1;
  const family = ip.length === 16 ? AF_INET6 : AF_INET;
  const fd = check("socket", sym("socket")(family, SOCK_STREAM | O.NONBLOCK | O.CLOEXEC, 0));
  try {
    setIntOption(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    setIntOption(fd, SOL_SOCKET, SO_REUSEPORT, 1);
    const sa = sockaddr(ip, port);
    check("bind", sym("bind")(fd, sa, sa.length), what);
    check("listen", sym("listen")(fd, backlog), what);
    return fd;
  } catch (err) {
    close(fd);
    throw err;
  }
}

/** A connection {@link tcpAccept} took: its descriptor (non-blocking, Nagle off) and its peer. */
export interface AcceptedTcp {
  readonly fd: number;
  /** The peer's address: 4 bytes (IPv4) or 16 (IPv6), network order. */
  readonly ip: Uint8Array;
  readonly port: number;
}

const acceptAddr = new Uint8Array(28);
const acceptLen = new Uint32Array(1);

/**
 * accept4(2) with SOCK_NONBLOCK|SOCK_CLOEXEC on a listening socket, then
 * TCP_NODELAY on the new one. Returns `-errno` when there is nothing to take
 * (EAGAIN) or accepting failed (ECONNABORTED, EMFILE…: the caller decides).
 */
export function tcpAccept(listenFd: number): AcceptedTcp | number {
  acceptLen[0] = acceptAddr.length;
  const fd = sym("accept4")(listenFd, acceptAddr, new Uint8Array(acceptLen.buffer), O.NONBLOCK | O.CLOEXEC);
  if (fd < 0) return -errno();
  const v = new DataView(acceptAddr.buffer);
  const v6 = v.getUint16(0, true) === AF_INET6;
  const ip = acceptAddr.slice(v6 ? 8 : 4, v6 ? 24 : 8);
  const port = v.getUint16(2, false);
  // Nagle off, as the other servers' connections (mod/net/server.ts); a peer already gone fails it harmlessly.
  const one = new Int32Array([1]);
  sym("setsockopt")(fd, IPPROTO_TCP, TCP_NODELAY, new Uint8Array(one.buffer), 4);
  return { fd, ip, port };
}

/**
 * send(2) without waiting and without SIGPIPE (MSG_DONTWAIT|MSG_NOSIGNAL).
 * Returns bytes the socket took or `-errno` (EAGAIN when it is full,
 * ECONNRESET or EPIPE when the peer is gone).
 */
export function sendNow(fd: number, buf: Uint8Array): number {
  const MSG_DONTWAIT = 0x40, MSG_NOSIGNAL = 0x4000;
  const n = Number(
    sym("send")(fd, buf as Uint8Array<ArrayBuffer>, BigInt(buf.length), MSG_DONTWAIT | MSG_NOSIGNAL),
  );
  return n < 0 ? -errno() : n;
}

/** eventfd(2), non-blocking: a counter another part of this process writes to wake an epoll wait. */
export function eventFd(): number {
  return check("eventfd", sym("eventfd")(0, O.NONBLOCK | O.CLOEXEC));
}

/** shutdown(fd, SHUT_WR): the end of this side's stream (FIN), reading still open. */
export function shutdownWrite(fd: number): void {
  const SHUT_WR = 1;
  check("shutdown", sym("shutdown")(fd, SHUT_WR));
}
