/**
 * IP addresses as bytes: strict parsing of the textual forms (IPv4 dotted
 * quads without leading zeros, IPv6 with at most one `::` and an optional
 * IPv4 tail), the canonical text of RFC 5952, and CIDR blocks. Used for the
 * per-address keys of admission control and for `--proxy-from`. Every
 * function is linear in its input and allocates a few bytes.
 * @module
 */

/** An address: 4 bytes (IPv4) or 16 (IPv6), network order. */
export type IpBytes = Uint8Array;

/** Parses an IPv4 dotted quad: four decimal numbers 0–255, no leading zeros. */
export function parseIpv4(text: string): IpBytes | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(?:0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255) return null;
    out[i] = Number(p);
  }
  return out;
}

/** Parses an IPv6 address (hex groups of 1–4 digits, at most one `::`, an IPv4 tail allowed). */
export function parseIpv6(text: string): IpBytes | null {
  if (text.length > 45 || !/^[0-9a-fA-F:.]+$/.test(text)) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (half: string): number[] | null => {
    if (half === "") return [];
    const out: number[] = [];
    const words = half.split(":");
    for (let i = 0; i < words.length; i++) {
      const w = words[i]!;
      if (i === words.length - 1 && w.includes(".")) {
        const v4 = parseIpv4(w);
        if (!v4) return null;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return null;
        out.push(parseInt(w, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return null;
  // An IPv4 tail is only allowed last: in the head it must be the whole address's end.
  if (halves.length === 2 && halves[0]!.includes(".")) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...Array<number>(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** Parses an IPv4 or IPv6 address (IPv6 may be in brackets). */
export function parseIp(text: string): IpBytes | null {
  const t = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  return t.includes(":") ? parseIpv6(t) : parseIpv4(t);
}

/** The IPv4 address inside an IPv4-mapped IPv6 one (`::ffff:a.b.c.d`), else the address itself. */
export function unmapped(ip: IpBytes): IpBytes {
  if (ip.length !== 16) return ip;
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return ip;
  return ip[10] === 0xff && ip[11] === 0xff ? ip.subarray(12) : ip;
}

/** The 16-bit groups of an IPv6 address, as hex without leading zeros. */
export function ipv6Groups(ip: IpBytes): string[] {
  return Array.from({ length: 8 }, (_, i) => ((ip[2 * i]! << 8) | ip[2 * i + 1]!).toString(16));
}

/** Canonical text: dotted quad, or RFC 5952 IPv6 (lower case, longest run of ≥ 2 zero groups as `::`). */
export function formatIp(ip: IpBytes): string {
  if (ip.length === 4) return ip.join(".");
  const g = ipv6Groups(ip);
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === "0") j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return g.join(":");
  return `${g.slice(0, best).join(":")}::${g.slice(best + bestLen).join(":")}`;
}

/** A CIDR block: an address and how many leading bits of it a member shares. */
export interface Cidr {
  readonly ip: IpBytes;
  readonly bits: number;
}

/** Parses `ADDR` or `ADDR/BITS` (IPv4 or IPv6); null when it is not one. */
export function parseCidr(text: string): Cidr | null {
  const slash = text.indexOf("/");
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!ip) return null;
  const max = ip.length * 8;
  if (slash < 0) return { ip, bits: max };
  const b = text.slice(slash + 1);
  if (!/^(?:0|[1-9][0-9]{0,2})$/.test(b) || Number(b) > max) return null;
  return { ip, bits: Number(b) };
}

/** True when `ip` is inside `block`; an IPv4-mapped IPv6 address counts as its IPv4 address. */
export function inCidr(ip: IpBytes, block: Cidr): boolean {
  const a = unmapped(ip), b = unmapped(block.ip);
  const bits = block.bits - (block.ip.length - b.length) * 8;
  if (a.length !== b.length || bits < 0) return false;
  const whole = bits >> 3, rest = bits & 7;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[whole]! & mask) === (b[whole]! & mask);
}

/** The canonical text of a block (`10.0.0.0/8`, `2001:db8::/32`, `127.0.0.1/32`). */
export function formatCidr(block: Cidr): string {
  return `${formatIp(block.ip)}/${block.bits}`;
}
