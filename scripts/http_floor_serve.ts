/**
 * `deno serve` entry of the benchmark's reference server (see
 * `http_floor.ts`): `deno serve --parallel scripts/http_floor_serve.ts`.
 * @module
 */
import { fetch } from "./http_floor.ts";

export default { fetch };
