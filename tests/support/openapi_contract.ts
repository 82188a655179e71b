/**
 * The HTTP API's contract in tests: `/v1/openapi.json` checked by a real
 * OpenAPI validator (npm `@seriousme/openapi-schema-validator`), and every
 * response a test receives checked against the operation the document
 * declares for it (status listed, media type listed, body valid against the
 * schema with Ajv's JSON Schema 2020-12, the dialect of OpenAPI 3.1).
 */
import assert from "node:assert/strict";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020 } from "ajv/dist/2020.js";

type Json = Record<string, unknown>;

/** The document, and a checker of responses against it. */
export class ApiContract {
  readonly doc: Json;
  readonly #ajv: InstanceType<typeof Ajv2020>;
  readonly #paths: Array<{ re: RegExp; template: string }>;
  /** Responses checked so far (a test asserts it checked what it meant to). */
  checked = 0;

  private constructor(doc: Json) {
    this.doc = doc;
    this.#ajv = new Ajv2020({ strict: false, allErrors: true });
    this.#ajv.addSchema({ ...doc, $id: "doc" });
    this.#paths = Object.keys(doc["paths"] as Json).map((template) => ({
      template,
      re: new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/]+")}$`),
    }));
  }

  /** Fetches the document from `base` and validates it as OpenAPI 3.1; fails the test when it is not. */
  static async load(base: string): Promise<ApiContract> {
    const res = await fetch(`${base}/v1/openapi.json`);
    assert.equal(res.status, 200);
    const doc = await res.json() as Json;
    const result = await new Validator().validate(doc);
    assert.ok(
      result.valid,
      `openapi.json is not valid OpenAPI: ${String(JSON.stringify(result.errors)).slice(0, 2000)}`,
    );
    assert.equal(doc["openapi"], "3.1.0");
    return new ApiContract(doc);
  }

  /** Checks a streamed answer's status and media type against the document (its body is left unread). */
  checkHead(method: string, path: string, res: Response): void {
    const { declared } = this.#declared(method, path, res.status);
    const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim();
    assert.ok(
      (declared["content"] as Json | undefined)?.[type],
      `${method} ${path}: ${type} is not declared`,
    );
    this.checked++;
  }

  /** The response the document declares for `method` `path` answering `status`, and the path's template. */
  #declared(method: string, path: string, status: number): { declared: Json; template: string } {
    const url = new URL(path, "http://x");
    const found = this.#paths.find((p) => p.re.test(url.pathname));
    assert.ok(found, `${method} ${url.pathname}: no path of the document matches`);
    const op = ((this.doc["paths"] as Json)[found.template] as Json)[method.toLowerCase()] as
      | Json
      | undefined;
    assert.ok(op, `${method} ${found.template}: not in the document`);
    const declared = (op["responses"] as Json)[String(status)] as Json | undefined;
    assert.ok(declared, `${method} ${found.template} answered ${status}, which the document does not list`);
    return { declared, template: found.template };
  }

  /**
   * Checks `res` (its body read into `body`) as the answer to `method`
   * `path`: returns the body (parsed JSON for a JSON type, else text).
   */
  async check(method: string, path: string, res: Response): Promise<unknown> {
    const { declared, template } = this.#declared(method, path, res.status);
    const text = await res.text();
    this.checked++;
    const content = declared["content"] as Json | undefined;
    if (!content) return text;
    const type = (res.headers.get("content-type") ?? "").split(";")[0]!.trim();
    const media = content[type] as Json | undefined;
    assert.ok(media, `${method} ${template} ${res.status}: content type ${type} is not declared`);
    const body = /json/.test(type) ? JSON.parse(text) : text;
    const pointer = `doc#/paths/${escapePointer(template)}/${method.toLowerCase()}/responses/${res.status}` +
      `/content/${escapePointer(type)}/schema`;
    const validate = this.#ajv.getSchema(pointer);
    assert.ok(validate, `no schema at ${pointer}`);
    assert.ok(
      validate(body),
      `${method} ${template} ${res.status}: body does not match its schema: ${
        JSON.stringify(validate.errors)
      }\n${text.slice(0, 500)}`,
    );
    return body;
  }
}

function escapePointer(s: string): string {
  return s.replace(/~/g, "~0").replace(/\//g, "~1").replace(/\{/g, "%7B").replace(/\}/g, "%7D");
}
