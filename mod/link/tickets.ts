/**
 * Tickets: 128 random bits from the system CSPRNG, written as 32 lower-case
 * hex digits, compared in constant time. The all-zero ticket is never issued
 * and never accepted, so a slot's cleared ticket field can match nothing.
 * @module
 */

/** Random bytes drawn from the CSPRNG 64 tickets at a time (one call instead of one per request). */
const pool = new Uint8Array(16 * 64);
let used = pool.length;
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

/** 128 random bits as 32 hex digits, never all zero. */
export function newTicket(): string {
  for (;;) {
    if (used === pool.length) {
      crypto.getRandomValues(pool);
      used = 0;
    }
    const b = pool.subarray(used, used + 16);
    used += 16;
    if (isZero(b)) continue;
    const hex = ticketHex(b);
    b.fill(0); // a ticket's bytes stay only in the slot and in the client's hands
    return hex;
  }
}

/** 32 lower-case hex digits of 16 ticket bytes. */
export function ticketHex(b: Uint8Array): string {
  let hex = "";
  for (let i = 0; i < b.length; i++) hex += HEX[b[i]!];
  return hex;
}

/** The 16 bytes of a 32-hex-digit ticket (checked by the protocol's grammar before it gets here). */
export function ticketBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) {
    out[i] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1));
  }
  return out;
}

/** The value of one lower-case hex digit's char code. */
function nibble(c: number): number {
  return c <= 57 ? c - 48 : c - 87;
}

/** True when every byte is zero. */
export function isZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

/** Constant-time comparison, so a guessed ticket learns nothing from timing. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}
