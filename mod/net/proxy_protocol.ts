/**
 * The HAProxy PROXY protocol, receiver side: the header a proxy (HAProxy,
 * nginx, Envoy, stunnel, a cloud load balancer) puts before a connection's
 * bytes to name the client it relays, so that limits, tickets and logs see
 * the real client rather than the proxy. Version 1 is one text line, version 2
 * a binary block (spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt).
 *
 * As the spec demands, a header is accepted only from the addresses the
 * operator trusts (`--proxy-from`), and from those it is required: the
 * receiver never guesses. A header from anyone else is refused too, so that a
 * misconfigured proxy is noticed at once.
 *
 * Decisions where the spec leaves a choice: v1 `UNKNOWN`, v2 `LOCAL` (a
 * proxy's health check), and v2 with an unspecified family or transport mean
 * "use the connection's own peer"; a v2 AF_UNIX client is {@link UNIX_CLIENT}
 * (every client of the proxy's socket is one local address, like loopback);
 * v2 TLVs are skipped; a v2 header is at most {@link PROXY_HEADER_MAX_BYTES}.
 * Parsing looks at each byte once or twice: linear, and it refuses a byte
 * that cannot belong to a header as soon as it arrives.
 * @module
 */
import { ProtocolError, UsageError } from "../errors.ts";
import { UNIX_CLIENT } from "./admission.ts";
import {
  type Cidr,
  formatCidr,
  formatIp,
  inCidr,
  type IpBytes,
  parseCidr,
  parseIp,
  parseIpv4,
  parseIpv6,
} from "./ip_addr.ts";
import type { HeaderScan } from "./line_buffer.ts";
import { Status } from "./protocol.ts";

/** The 12 bytes a version 2 header starts with. */
export const V2_SIGNATURE = Uint8Array.of(
  0x0d,
  0x0a,
  0x0d,
  0x0a,
  0x00,
  0x0d,
  0x0a,
  0x51,
  0x55,
  0x49,
  0x54,
  0x0a,
);
const V1_PREFIX = new TextEncoder().encode("PROXY ");
/** Longest version 1 header, CRLF included (the spec's worst case). */
export const V1_MAX_BYTES = 107;
/** Longest version 2 header accepted: 16 bytes, the addresses (at most 216), and room for TLVs. */
export const PROXY_HEADER_MAX_BYTES = 16 + 2048;

/** What a header says. */
export interface ProxyHeader {
  readonly version: 1 | 2;
  /** The client the proxy relays, or null: use the connection's own peer (LOCAL, UNKNOWN, unspecified). */
  readonly client: { readonly host: string; readonly port: number } | null;
}

function bad(why: string): ProtocolError {
  return new ProtocolError(`bad PROXY protocol header: ${why}`, Status.BAD_REQUEST);
}

/** True while `bytes` (possibly short) agree with `sig` on every byte they have. */
function agrees(bytes: Uint8Array, sig: Uint8Array): boolean {
  const n = Math.min(bytes.length, sig.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== sig[i]) return false;
  return true;
}

/**
 * Reads a header from the first bytes of a connection: the header and its
 * length once complete, null while more bytes are needed. Throws a
 * {@link ProtocolError} (400) as soon as the bytes cannot be a valid header.
 */
export function scanProxyHeader(bytes: Uint8Array): { value: ProxyHeader; length: number } | null {
  if (bytes.length === 0) return null;
  if (bytes[0] === V2_SIGNATURE[0]) {
    if (!agrees(bytes, V2_SIGNATURE)) throw bad("neither version 1 nor version 2");
    return scanV2(bytes);
  }
  if (!agrees(bytes, V1_PREFIX)) {
    throw new ProtocolError(
      "expected a PROXY protocol header (v1 or v2) first: this address is configured as a proxy (--proxy-from)",
      Status.BAD_REQUEST,
    );
  }
  return scanV1(bytes);
}

function scanV1(bytes: Uint8Array): { value: ProxyHeader; length: number } | null {
  const lf = bytes.subarray(0, V1_MAX_BYTES).indexOf(0x0a);
  if (lf < 0) {
    if (bytes.length >= V1_MAX_BYTES) throw bad(`no CRLF within ${V1_MAX_BYTES} bytes`);
    return null;
  }
  if (lf === 0 || bytes[lf - 1] !== 0x0d) throw bad("a line must end with CRLF");
  let line = "";
  for (let i = 0; i < lf - 1; i++) {
    const b = bytes[i]!;
    if (b < 0x20 || b > 0x7e) throw bad("version 1 is printable US-ASCII");
    line += String.fromCharCode(b);
  }
  const [, family, src, dst, sport, dport, ...extra] = line.split(" ");
  const length = lf + 1;
  if (family === "UNKNOWN") return { value: { version: 1, client: null }, length };
  if (family !== "TCP4" && family !== "TCP6") throw bad(`unknown family ${JSON.stringify(family ?? "")}`);
  const parse = family === "TCP4" ? parseIpv4 : parseIpv6;
  const from = parse(src ?? ""), to = parse(dst ?? "");
  if (!from || !to || extra.length > 0 || !isPort(sport) || !isPort(dport)) {
    throw bad(`expected "PROXY ${family} <source> <destination> <source port> <destination port>"`);
  }
  return { value: { version: 1, client: { host: formatIp(from), port: Number(sport) } }, length };
}

function isPort(text: string | undefined): boolean {
  return text !== undefined && /^(?:0|[1-9][0-9]{0,4})$/.test(text) && Number(text) <= 65535;
}

/** Address bytes each v2 family needs (addresses, then ports where it has them). */
const V2_FAMILY_BYTES: Record<number, number> = { 0x1: 12, 0x2: 36, 0x3: 216 };

function scanV2(bytes: Uint8Array): { value: ProxyHeader; length: number } | null {
  if (bytes.length < 16) {
    if (bytes.length > 12 && bytes[12]! >> 4 !== 2) throw bad(`version ${bytes[12]! >> 4} is not 2`);
    return null;
  }
  const command = bytes[12]! & 0x0f, family = bytes[13]! >> 4, transport = bytes[13]! & 0x0f;
  if (bytes[12]! >> 4 !== 2) throw bad(`version ${bytes[12]! >> 4} is not 2`);
  if (command > 1) throw bad(`command ${command} is neither LOCAL nor PROXY`);
  if (family > 3 || transport > 2) {
    throw bad(`address family ${family} / transport ${transport} is not defined`);
  }
  const length = 16 + ((bytes[14]! << 8) | bytes[15]!);
  if (length > PROXY_HEADER_MAX_BYTES) {
    throw bad(`${length} bytes is more than the ${PROXY_HEADER_MAX_BYTES} accepted`);
  }
  if (bytes.length < length) return null;
  // LOCAL: the proxy's own connection (a health check); unspecified: nothing to use. The addresses are skipped.
  if (command === 0 || family === 0 || transport === 0) {
    return { value: { version: 2, client: null }, length };
  }
  if (length - 16 < V2_FAMILY_BYTES[family]!) {
    throw bad(`${length - 16} address bytes are too few for family ${family}`);
  }
  if (family === 3) return { value: { version: 2, client: { host: UNIX_CLIENT, port: 0 } }, length };
  const size = family === 1 ? 4 : 16;
  const ip: IpBytes = bytes.slice(16, 16 + size);
  const port = (bytes[16 + 2 * size]! << 8) | bytes[17 + 2 * size]!;
  return { value: { version: 2, client: { host: formatIp(ip), port } }, length };
}

/** How a connection finds its PROXY protocol header (`LineConn.readHeader`). */
export const PROXY_HEADER: HeaderScan<ProxyHeader> = {
  what: "PROXY protocol header",
  maxBytes: PROXY_HEADER_MAX_BYTES,
  scan: scanProxyHeader,
};

/**
 * True when the first bytes of a stream are, or begin, a PROXY protocol
 * header: "PROXY " (v1) or the first 5 bytes of the v2 signature (CR LF CR LF
 * NUL: no line of ours starts that way).
 */
export function looksLikeProxyHeader(bytes: Uint8Array): boolean {
  return (bytes.length >= V1_PREFIX.length && agrees(bytes, V1_PREFIX)) ||
    (bytes.length >= 5 && agrees(bytes, V2_SIGNATURE));
}

/** The proxies trusted to send a header (`--proxy-from`); empty: none (the default). */
export class ProxyTrust {
  readonly blocks: readonly Cidr[];

  constructor(blocks: readonly Cidr[]) {
    this.blocks = blocks;
  }

  /** True when a connection from `host` must start with a header. */
  trusts(host: string): boolean {
    if (this.blocks.length === 0) return false;
    const ip = parseIp(host);
    return ip !== null && this.blocks.some((b) => inCidr(ip, b));
  }

  /** The list as the flag takes it, canonical (`10.0.0.0/8,::1/128`), "" when empty. */
  toString(): string {
    return this.blocks.map(formatCidr).join(",");
  }
}

/**
 * Parses `--proxy-from`: CIDR blocks or single addresses, separated by commas
 * or spaces (`127.0.0.1`, `10.0.0.0/8,2001:db8::/32`). Throws
 * {@link UsageError} naming the first that is not one.
 */
export function parseProxyFrom(text: string): ProxyTrust {
  const blocks: Cidr[] = [];
  for (const item of text.split(/[\s,]+/).filter((x) => x !== "")) {
    const block = parseCidr(item);
    if (!block) {
      throw new UsageError(`--proxy-from takes addresses or CIDR blocks (10.0.0.0/8, ::1), got "${item}"`);
    }
    blocks.push(block);
  }
  return new ProxyTrust(blocks);
}
