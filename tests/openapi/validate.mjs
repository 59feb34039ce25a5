// Checks that docs/openapi.yaml is a valid OpenAPI 3.1 document, so client generators and API
// gateways accept it, and (with --served) that the JSON a running server serves at
// /v1/openapi.json is that same document.
//
//   node tests/openapi/validate.mjs [--served FILE] docs/openapi.yaml
//
// What is checked, each failure printed as FILE:LINE: where > in > the document: what is wrong:
//   - the YAML parses, with no key given twice;
//   - no key is left without a value: in a flow mapping ({description: a, b}) an unquoted comma
//     ends the text, and the rest becomes a key of its own that no schema notices;
//   - the OpenAPI 3.1 JSON Schema (@seriousme/openapi-schema-validator, the schema the OpenAPI
//     Initiative publishes);
//   - what the schema cannot express and the specification requires: every internal $ref
//     resolves, operationIds are unique, and each {name} in a path is declared as a path
//     parameter of each of its operations, and no path parameter is declared that the path
//     lacks;
//   - every example of a request or response body (content > MEDIA > example) is an instance
//     of that body's schema (JSON Schema 2020-12, the dialect of OpenAPI 3.1, with $refs into
//     the document), so the examples a reader copies are answers the server could give;
//   - with --served FILE: FILE (the body of GET /v1/openapi.json) passes the schema and equals
//     the YAML document read by a YAML 1.2 parser, so the server's own conversion loses or
//     retypes nothing.
// Exits 0 when everything holds, 1 otherwise.
import { readFileSync } from "node:fs";
import { isDeepStrictEqual } from "node:util";
import { Validator } from "@seriousme/openapi-schema-validator";
// The validator's own JSON Schema engine and formats (installed with it, pinned by the lockfile).
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, visit } from "yaml";

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

function usage() {
  console.error("usage: node tests/openapi/validate.mjs [--served FILE] OPENAPI.yaml");
  process.exit(2);
}

const args = process.argv.slice(2);
let servedFile = null;
if (args[0] === "--served") {
  if (args.length < 2) usage();
  servedFile = args[1];
  args.splice(0, 2);
}
if (args.length !== 1) usage();
const file = args[0];
let api = null;

const problems = [];
const lineCounter = new LineCounter();
const source = readFileSync(file, "utf8");
const doc = parseDocument(source, { lineCounter, uniqueKeys: true });

// Where a node starts, as "FILE:LINE".
function at(node) {
  const start = node && node.range ? node.range[0] : 0;
  return `${file}:${lineCounter.linePos(start).line}`;
}

// The path in the document as a reader finds it: "paths > /v1/x > post > responses > 200".
function where(segments) {
  return segments.length ? segments.join(" > ") : "(the document)";
}

function report(node, segments, what) {
  problems.push(`${at(node)}: ${where(segments)}: ${what}`);
}

// The YAML node at a list of keys, or the last node found on the way when it does not exist.
function nodeAt(segments) {
  let node = doc.contents;
  for (const seg of segments) {
    let next;
    if (isMap(node)) next = node.items.find((p) => isScalar(p.key) && String(p.key.value) === seg);
    else if (isSeq(node)) next = { value: node.items[Number(seg)] };
    if (!next || !next.value) return next ? next.key || node : node;
    node = next.value;
  }
  return node;
}

// The pair whose key is `key` in the mapping at `segments` (to point at an unexpected key).
function keyNode(segments, key) {
  const node = nodeAt(segments);
  if (!isMap(node)) return node;
  const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
  return pair ? pair.key : node;
}

function pointerSegments(pointer) {
  if (!pointer) return [];
  return pointer.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
}

// ---- 1. YAML --------------------------------------------------------------------------------
for (const e of [...doc.errors, ...doc.warnings]) {
  const { line } = lineCounter.linePos(e.pos[0]);
  const what = e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
  problems.push(`${file}:${line}: ${what}`);
}
if (doc.errors.length) finish();

// The keys on the way to a node, sequence items by their index.
function segmentsOf(path) {
  const out = [];
  for (let i = 0; i < path.length; i++) {
    const n = path[i];
    if (isPair(n)) out.push(isScalar(n.key) ? String(n.key.value) : "?");
    else if (isSeq(n) && i + 1 < path.length) out.push(String(n.items.indexOf(path[i + 1])));
  }
  return out;
}

// Every pair with the keys leading to its mapping, found in one walk; keys written without a
// value are reported on the way.
const keyPaths = new Map();
visit(doc, {
  Pair(_, pair, path) {
    const segments = segmentsOf(path);
    keyPaths.set(pair, segments);
    if (pair.value === null) {
      const key = isScalar(pair.key) ? String(pair.key.value) : "?";
      report(pair.key, segments.concat(key),
             "this key has no value: in {...} an unquoted comma ends the text before it " +
             "(quote the whole text)");
    }
  },
});

api = doc.toJS({ maxAliasCount: 100 });

// ---- 2. every internal $ref resolves (the validator names only the first that does not) ----
function resolvePointer(ref) {
  let v = api;
  for (const seg of pointerSegments(ref.slice(1))) {
    if (v === null || typeof v !== "object" || !(seg in v)) return undefined;
    v = v[seg];
  }
  return v;
}

let badRef = false;
for (const [pair, segments] of keyPaths) {
  if (!isScalar(pair.key) || pair.key.value !== "$ref" || !isScalar(pair.value)) continue;
  const ref = String(pair.value.value);
  if (!ref.startsWith("#")) {
    report(pair.value, segments.concat("$ref"), `${ref}: only references inside this document`);
    badRef = true;
  } else if (resolvePointer(ref) === undefined) {
    report(pair.value, segments.concat("$ref"), `${ref} does not exist`);
    badRef = true;
  }
}

// ---- 3. the OpenAPI 3.1 schema --------------------------------------------------------------
function message(e) {
  const p = e.params || {};
  switch (e.keyword) {
    case "additionalProperties":
      return `"${p.additionalProperty}" is not allowed here`;
    case "unevaluatedProperties":
      return `"${p.unevaluatedProperty}" is not allowed here`;
    case "required":
      return `"${p.missingProperty}" is required`;
    case "type":
      return `must be of type ${p.type}`;
    case "enum":
      return `must be one of ${(p.allowedValues || []).map((v) => JSON.stringify(v)).join(", ")}`;
    case "const":
      return `must be ${JSON.stringify(p.allowedValue)}`;
    case "pattern":
      return `must match ${p.pattern}`;
    case "format":
      return `must be a valid ${p.format}`;
    default:
      return e.message;
  }
}

// Ajv also reports every branch of an if/then/else or oneOf that did not match. Those say only
// "something below is wrong" when a more precise error exists at or below the same place.
const CONTAINERS = new Set(["if", "oneOf", "anyOf", "allOf", "not", "$ref", "$dynamicRef"]);

async function schemaErrors(value, label, locate) {
  const result = await new Validator({ allErrors: true }).validate(value);
  if (result.valid) return;
  if (typeof result.errors === "string") {
    // Its reference check, which stops at the first; section 2 named every one.
    if (!badRef) problems.push(`${label}: ${result.errors}`);
    return;
  }
  const errors = result.errors || [];
  const precise = errors.filter((e) => !CONTAINERS.has(e.keyword));
  const below = (e, path) => precise.some((q) => q !== e && (q.instancePath === path ||
                                                         q.instancePath.startsWith(path + "/")));
  // A key whose own value is wrong also fails the branch that allows the key: one error, the
  // one about the value.
  const kept = errors.filter((e) => {
    if (CONTAINERS.has(e.keyword)) return !below(e, e.instancePath);
    const key = e.params && (e.params.additionalProperty || e.params.unevaluatedProperty);
    if (key === undefined) return true;
    return !below(e, `${e.instancePath}/${key.replace(/~/g, "~0").replace(/\//g, "~1")}`);
  });
  const seen = new Set();
  for (const e of kept) {
    const segments = pointerSegments(e.instancePath);
    const text = `${where(segments)}: ${message(e)}`;
    if (seen.has(text)) continue;
    seen.add(text);
    const extra = e.params && (e.params.additionalProperty || e.params.unevaluatedProperty);
    problems.push(`${locate(segments, extra)}: ${text}`);
  }
}

await schemaErrors(api, file, (segments, extra) => {
  if (extra) return at(keyNode(segments, extra));
  return at(nodeAt(segments));
});

// ---- 4. what the specification requires beyond the schema -----------------------------------
function deref(v) {
  for (let i = 0; v && typeof v === "object" && typeof v.$ref === "string" && i < 10; i++) {
    const r = resolvePointer(v.$ref);
    if (r === undefined) return v;
    v = r;
  }
  return v;
}

const operationIds = new Map();
for (const [path, item] of Object.entries(api.paths || {})) {
  if (!item || typeof item !== "object") continue;
  const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
  const common = (item.parameters || []).map(deref);
  for (const method of METHODS) {
    const op = item[method];
    if (!op || typeof op !== "object") continue;
    const segments = ["paths", path, method];
    const node = nodeAt(segments);
    if (op.operationId !== undefined) {
      const first = operationIds.get(op.operationId);
      if (first) {
        report(nodeAt(segments.concat("operationId")), segments.concat("operationId"),
               `"${op.operationId}" is also the operationId of ${first}`);
      } else {
        operationIds.set(op.operationId, `${method.toUpperCase()} ${path}`);
      }
    }
    // Operation parameters override path-level ones with the same name and location.
    const params = new Map();
    for (const p of common.concat((op.parameters || []).map(deref))) {
      if (p && typeof p === "object") params.set(`${p.in}:${p.name}`, p);
    }
    const declared = [...params.values()].filter((p) => p.in === "path").map((p) => p.name);
    for (const name of templated) {
      if (!declared.includes(name)) {
        report(node, segments, `{${name}} is in the path but is not declared as a path parameter`);
      }
    }
    for (const name of declared) {
      if (!templated.includes(name)) {
        report(node, segments,
               `path parameter "${name}" is declared but the path has no {${name}}`);
      }
    }
  }
}

// ---- 5. examples against their schemas -----------------------------------------------------
// Each schema is checked as part of a root that holds the document's components, so its
// "#/components/..." references resolve; OpenAPI's own keywords (example, x-...) are allowed.
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
addFormats(ajv);
function checkExample(schema, example, segments) {
  let validate;
  try {
    validate = ajv.compile({ ...schema, components: api.components });
  } catch (e) {
    report(nodeAt(segments), segments, `the schema of this example does not compile: ${e.message}`);
    return;
  }
  if (!validate(example)) {
    for (const e of validate.errors.slice(0, 5)) {
      report(nodeAt(segments), segments,
             `the example does not fit its schema: ${e.instancePath || "(the example)"} ${e.message}`);
    }
  }
}
function checkContent(content, segments) {
  for (const [media, m] of Object.entries(content || {})) {
    if (m && typeof m === "object" && m.schema && m.example !== undefined) {
      checkExample(m.schema, m.example, segments.concat("content", media, "example"));
    }
  }
}
for (const [path, item] of Object.entries(api.paths || {})) {
  for (const method of METHODS) {
    const op = item && item[method];
    if (!op || typeof op !== "object") continue;
    const segments = ["paths", path, method];
    const body = deref(op.requestBody);
    if (body) checkContent(body.content, segments.concat("requestBody"));
    for (const [status, resp] of Object.entries(op.responses || {})) {
      const r = deref(resp);
      if (r) checkContent(r.content, segments.concat("responses", status));
    }
  }
}

// ---- 6. the document the server serves ------------------------------------------------------
// The first differences between two JSON values, as paths into them.
function differences(a, b, segments, out) {
  if (out.length >= 10 || isDeepStrictEqual(a, b)) return;
  const bothObjects = a && b && typeof a === "object" && typeof b === "object" &&
                      Array.isArray(a) === Array.isArray(b);
  if (!bothObjects) {
    out.push(`${where(segments)}: served ${JSON.stringify(b)}, the file has ${JSON.stringify(a)}`);
    return;
  }
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (!(k in b)) out.push(`${where(segments.concat(k))}: in the file, not served`);
    else if (!(k in a)) out.push(`${where(segments.concat(k))}: served, not in the file`);
    else differences(a[k], b[k], segments.concat(k), out);
    if (out.length >= 10) return;
  }
}

if (servedFile) {
  let served;
  try {
    served = JSON.parse(readFileSync(servedFile, "utf8"));
  } catch (e) {
    problems.push(`${servedFile}: not JSON: ${e.message}`);
  }
  if (served !== undefined) {
    await schemaErrors(served, servedFile, () => servedFile);
    const diff = [];
    differences(api, served, [], diff);
    for (const d of diff) {
      problems.push(`${servedFile}: differs from ${file}: ${d}`);
    }
  }
}

finish();

function finish() {
  if (problems.length) {
    for (const p of problems) console.error(p);
    const where = servedFile ? `${file} or ${servedFile}` : file;
    console.error(`openapi: ${problems.length} problem(s) in ${where}`);
    process.exit(1);
  }
  const ops = Object.values(api.paths || {})
    .reduce((n, item) => n + METHODS.filter((m) => item && item[m]).length, 0);
  console.log(`openapi: ${file} is a valid OpenAPI ${api.openapi} document ` +
              `(${Object.keys(api.paths || {}).length} paths, ${ops} operations)` +
              (servedFile ? `; ${servedFile} is the same document` : ""));
  process.exit(0);
}
