/**
 * Tickets: 128 random bits from the system CSPRNG, written as 32 lower-case
 * hex digits, compared in constant time. The all-zero ticket is never issued
 * and never accepted, so a slot's cleared ticket field can match nothing.
 * @module
 */

/** 128 random bits as 32 hex digits, never all zero. */
export function newTicket(): string {
  for (;;) {
    const b = crypto.getRandomValues(new Uint8Array(16));
    if (!isZero(b)) return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }
}

/** The 16 bytes of a 32-hex-digit ticket (checked by the protocol's grammar before it gets here). */
export function ticketBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
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
