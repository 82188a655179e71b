/**
 * The client side of SASL SCRAM-SHA-256 (RFC 5802, RFC 7677), for the tests:
 * what a client such as WeeChat computes, written from the RFC (not from
 * the server's code), so that a server bug cannot cancel itself out.
 */
import { Buffer } from "node:buffer";
import { createHash, createHmac, pbkdf2Sync, randomBytes } from "node:crypto";

const b64 = (b: Uint8Array | Buffer): string => Buffer.from(b).toString("base64");

/** One SCRAM exchange: `first()`, then `final(serverFirst)`, then `verify(serverFinal)`. */
export class ScramClient {
  readonly #user: string;
  readonly #password: string;
  readonly #nonce = randomBytes(18).toString("base64");
  #authMessage = "";
  #saltedPassword: Buffer | undefined;

  constructor(user: string, password: string) {
    this.#user = user.replace(/=/g, "=3D").replace(/,/g, "=2C");
    this.#password = password;
  }

  /** client-first-message. */
  first(): string {
    return `n,,n=${this.#user},r=${this.#nonce}`;
  }

  /** client-final-message for a server-first-message (throws when the server's nonce does not extend ours). */
  final(serverFirst: string): string {
    const a = new Map(serverFirst.split(",").map((p) => [p[0]!, p.slice(2)] as [string, string]));
    const nonce = a.get("r")!;
    if (!nonce.startsWith(this.#nonce)) throw new Error("server nonce does not extend the client's");
    this.#saltedPassword = pbkdf2Sync(
      this.#password,
      Buffer.from(a.get("s")!, "base64"),
      Number(a.get("i")),
      32,
      "sha256",
    );
    const withoutProof = `c=${b64(Buffer.from("n,,"))},r=${nonce}`;
    this.#authMessage = `n=${this.#user},r=${this.#nonce},${serverFirst},${withoutProof}`;
    const clientKey = createHmac("sha256", this.#saltedPassword).update("Client Key").digest();
    const storedKey = createHash("sha256").update(clientKey).digest();
    const signature = createHmac("sha256", storedKey).update(this.#authMessage).digest();
    const proof = clientKey.map((x, i) => x ^ signature[i]!);
    return `${withoutProof},p=${b64(proof)}`;
  }

  /** True when server-final-message proves the server knows the verifier. */
  verify(serverFinal: string): boolean {
    const serverKey = createHmac("sha256", this.#saltedPassword!).update("Server Key").digest();
    const expected = createHmac("sha256", serverKey).update(this.#authMessage).digest();
    return serverFinal === `v=${b64(expected)}`;
  }
}
