// Unknown-field check for rendered manifests. The schema packages' validators (ajv, compiled)
// accept unknown fields, as the Kubernetes OpenAPI schema does, so a misspelled field would
// pass them and be silently dropped by the API server. This walks each object alongside the
// TypeScript declarations the packages ship (generated from the same schemas) and reports
// every key the declared type does not have.
"use strict";
const fs = require("fs");
const path = require("path");

const NODE_MODULES = path.join(__dirname, "node_modules");
const files = new Map();  // .d.ts path -> {interfaces, aliases, imports}

function stripComments(text) {
  return text.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
}

// Index of the matching closing bracket for text[open].
function matching(text, open) {
  const pairs = {"{": "}", "<": ">", "(": ")"};
  const close = pairs[text[open]];
  let depth = 0, inString = null;
  for (let i = open; i < text.length; ++i) {
    const c = text[i];
    if (inString) {
      if (c === "\\") ++i;
      else if (c === inString) inString = null;
      continue;
    }
    if (c === '"' || c === "'") inString = c;
    else if (c === text[open]) ++depth;
    else if (c === close && --depth === 0) return i;
  }
  throw new Error("unbalanced " + text[open]);
}

function load(file) {
  if (files.has(file)) return files.get(file);
  const text = stripComments(fs.readFileSync(file, "utf8"));
  const info = {file, interfaces: new Map(), aliases: new Map(), imports: new Map()};
  for (const m of text.matchAll(/import \{([^}]*)\} from "([^"]+)"/g))
    for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean)) info.imports.set(name, m[2]);
  for (const m of text.matchAll(/export interface (\w+)(?: extends ([\w, ]+))? \{/g)) {
    const open = m.index + m[0].length - 1;
    info.interfaces.set(m[1], {body: text.slice(open, matching(text, open) + 1), extends: m[2]});
  }
  for (const m of text.matchAll(/export declare type (\w+) = ([^;]+);/g)) info.aliases.set(m[1], m[2].trim());
  for (const m of text.matchAll(/export \{([^}]*)\}/g))
    for (const part of m[1].split(",")) {
      const [from, to] = part.trim().split(/\s+as\s+/);
      if (to) info.aliases.set(to, from);
    }
  files.set(file, info);
  return info;
}

function resolveModule(fromFile, spec) {
  const base = spec.startsWith(".") ? path.resolve(path.dirname(fromFile), spec) : path.join(NODE_MODULES, spec);
  for (const candidate of [base + ".d.ts", path.join(base, "index.d.ts")]) if (fs.existsSync(candidate)) return candidate;
  return null;
}

// A named type as seen from `file`: {file, body} for an interface, {expr} for an alias, null
// for what we treat as a leaf (TypeMeta, Model helpers, unknown names).
function lookup(file, name) {
  const info = load(file);
  if (info.interfaces.has(name)) return {file, ...info.interfaces.get(name)};
  if (info.aliases.has(name)) {
    const target = info.aliases.get(name);
    return /^\w+$/.test(target) ? lookup(file, target) : {file, expr: target};
  }
  if (info.imports.has(name)) {
    const other = resolveModule(file, info.imports.get(name));
    return other ? lookup(other, name) : null;
  }
  return null;
}

// Indices of `sep` in text[from, to) outside strings and brackets.
function topLevel(text, from, to, sep) {
  const found = [];
  let depth = 0, inString = null;
  for (let i = from; i < to; ++i) {
    const c = text[i];
    if (inString) {
      if (c === inString) inString = null;
      continue;
    }
    if (c === '"') inString = c;
    else if ("{<(".includes(c)) ++depth;
    else if ("}>)".includes(c)) --depth;
    else if (c === sep && depth === 0) found.push(i);
  }
  return found;
}

// Splits a type expression on top-level `|`.
function unionParts(expr) {
  const cuts = [-1, ...topLevel(expr, 0, expr.length, "|"), expr.length];
  return cuts.slice(1).map((cut, k) => expr.slice(cuts[k] + 1, cut).trim()).filter(Boolean);
}

// Members of an object-literal type body "{ ... }": {props: Map(name -> expr), index: expr|null}.
function members(body) {
  const props = new Map();
  let index = null;
  let i = 1;
  const end = body.length - 1;
  while (i < end) {
    while (i < end && /[\s;]/.test(body[i])) ++i;
    if (i >= end) break;
    let name;
    if (body[i] === '"') {
      const close = body.indexOf('"', i + 1);
      name = body.slice(i + 1, close);
      i = close + 1;
    } else if (body[i] === "[") {
      const close = body.indexOf("]", i);
      name = null;
      i = close + 1;
    } else {
      const m = /^[\w$]+/.exec(body.slice(i));
      name = m[0];
      i += name.length;
    }
    if (body[i] === "?") ++i;
    if (body[i] !== ":") throw new Error("cannot read member near: " + body.slice(i, i + 40));
    ++i;
    const semicolons = topLevel(body, i, end, ";");
    const j = semicolons.length ? semicolons[0] : end;
    const expr = body.slice(i, j).trim();
    if (name === null) index = expr;
    else props.set(name, expr);
    i = j + 1;
  }
  return {props, index};
}

// Unknown keys of `value` against type `expr` (seen from `file`), as "path: key" strings.
function check(value, expr, file, where, out) {
  expr = expr.trim();
  if (value === null || typeof value !== "object") return;
  const parts = unionParts(expr);
  if (parts.length > 1) {
    // An object must fit one of the object-like alternatives.
    const tries = parts.map((p) => {
      const o = [];
      check(value, p, file, where, o);
      return o;
    });
    if (!tries.some((o) => o.length === 0)) out.push(...tries.reduce((a, b) => (a.length <= b.length ? a : b)));
    return;
  }
  let m;
  if ((m = /^Array<([\s\S]*)>$/.exec(expr))) {
    if (Array.isArray(value)) value.forEach((v, k) => check(v, m[1], file, `${where}[${k}]`, out));
    return;
  }
  if (expr.startsWith("{")) {
    const {props, index} = members(expr);
    for (const [k, v] of Object.entries(value)) {
      if (props.has(k)) check(v, props.get(k), file, `${where}.${k}`, out);
      else if (index !== null) check(v, index, file, `${where}.${k}`, out);
      else out.push(`${where}: unknown field '${k}'`);
    }
    return;
  }
  if (/^\w+$/.test(expr)) {
    const t = lookup(file, expr);
    if (!t) return;  // a leaf type (string, number, IntOrString, TypeMeta, ...)
    if (t.expr !== undefined) return check(value, t.expr, t.file, where, out);
    // An interface: its own members plus those of what it extends (TypeMeta: apiVersion, kind).
    const {props, index} = members(t.body);
    for (const k of ["apiVersion", "kind"]) if (t.extends && !props.has(k)) props.set(k, "string");
    const body = "{" + [...props].map(([k, v]) => `"${k}": ${v};`).join("") + (index ? `[key: string]: ${index};` : "") + "}";
    return check(value, body, t.file, where, out);
  }
}

// Unknown fields of one manifest object whose kind's declarations are in `dtsFile`.
function unknownFields(object, dtsFile, interfaceName) {
  const out = [];
  check(object, interfaceName, dtsFile, `${object.kind}/${(object.metadata || {}).name}`, out);
  return out;
}

module.exports = {unknownFields};
