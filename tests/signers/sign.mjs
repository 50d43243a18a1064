#!/usr/bin/env node
// A second, independent signer of gatewayd commands, written from docs/contract/signing.md
// alone: its own strict JSON reader (a number remembers whether it was written as an integer),
// the canonical form, and HMAC-SHA256 from Node's built-in crypto. No npm package, no code
// shared with the Python signer: if the two ever disagree, one of them does not follow the spec.
//
//   node sign.mjs vectors FILE   check every vector of a signing-vectors.json; exit 1 on any miss
//   node sign.mjs sign           stdin: a JSON array of [key hex, command]; stdout: one signed
//                                message per line, exactly as a platform would publish it

import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";

class NoCanonicalForm extends Error {}

// A number written with a fraction or an exponent: a binary64 value, kept apart from integers
// (which are BigInt here, exact at any size).
class Float {
  constructor(value) {
    this.value = value;
  }
}

// ---- strict JSON (RFC 8259) ------------------------------------------------------------------
// Objects become Maps (names in any order, "__proto__" an ordinary name), integers BigInt,
// other numbers Float. Duplicate names, NaN/Infinity and numbers beyond binary64 are refused.

function parse(text) {
  let i = 0;
  const fail = (why) => {
    throw new NoCanonicalForm(`${why} at offset ${i}`);
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;
  const ESCAPES = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

  function string() {
    i++; // the opening quote
    let out = "";
    for (;;) {
      if (i >= text.length) fail("unterminated string");
      const c = text[i++];
      if (c === '"') return out;
      if (c.charCodeAt(0) < 0x20) fail("raw control character in a string");
      if (c !== "\\") {
        out += c;
        continue;
      }
      const e = text[i++];
      if (e === "u") {
        const hex = text.slice(i, i + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) fail("bad \\u escape");
        out += String.fromCharCode(parseInt(hex, 16)); // surrogate pairs join up by themselves
        i += 4;
      } else if (e in ESCAPES) out += ESCAPES[e];
      else fail("bad escape");
    }
  }

  function value() {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = new Map();
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("expected a name");
        const name = string();
        if (obj.has(name)) fail(`duplicate name ${JSON.stringify(name)}`);
        ws();
        if (text[i++] !== ":") fail("expected :");
        obj.set(name, value());
        ws();
        const sep = text[i++];
        if (sep === "}") return obj;
        if (sep !== ",") fail("expected , or }");
      }
    }
    if (c === "[") {
      i++;
      const arr = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        ws();
        const sep = text[i++];
        if (sep === "]") return arr;
        if (sep !== ",") fail("expected , or ]");
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [["true", true], ["false", false], ["null", null]]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) fail("not a JSON value"); // NaN and Infinity end up here
    i += m[0].length;
    if (m[1] === undefined && m[2] === undefined) return BigInt(m[0]); // "-0" is the integer 0
    const x = Number(m[0]); // the nearest binary64
    if (!Number.isFinite(x)) fail(`${m[0]} is beyond binary64`);
    return new Float(x);
  }

  const v = value();
  ws();
  if (i !== text.length) fail("text after the value");
  return v;
}

// ---- the canonical form ----------------------------------------------------------------------

// Python's repr of a binary64: the shortest digits that read back as the same number (what
// Number#toString picks too), laid out plainly for 1e-4 <= |x| < 1e16, else as d.ddde±XX.
function formatFloat(x) {
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const s = Math.abs(x).toString(); // e.g. "123.45", "100", "0.000001", "1.5e-7", "1e+21"
  const [mantissa, expPart] = s.split("e");
  const point = mantissa.indexOf(".");
  let digits = mantissa.replace(".", "");
  let intLen = point < 0 ? mantissa.length : point; // digits before the decimal point
  const lead = digits.length - digits.replace(/^0+/, "").length;
  digits = digits.slice(lead).replace(/0+$/, "");
  intLen -= lead;
  const e = intLen - 1 + (expPart === undefined ? 0 : Number(expPart)); // x = d.ddd × 10^e
  if (e >= -4 && e < 16) {
    if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`;
    const whole = digits.slice(0, e + 1).padEnd(e + 1, "0");
    return `${sign}${whole}.${digits.slice(e + 1) || "0"}`;
  }
  const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${m}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
}

const NAMED = { 0x08: "\\b", 0x09: "\\t", 0x0a: "\\n", 0x0c: "\\f", 0x0d: "\\r" };

function quote(s) {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (cp >= 0xd800 && cp <= 0xdfff) throw new NoCanonicalForm("a lone surrogate");
    if (ch === '"' || ch === "\\") out += `\\${ch}`;
    else if (cp in NAMED) out += NAMED[cp];
    else if (cp < 0x20) out += `\\u${cp.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

// By Unicode code point, which is not JavaScript's default sort (UTF-16 code units): U+FF5A
// comes before U+1F600 here, after it there.
function byCodePoint(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let k = 0; k < Math.min(x.length, y.length); k++) {
    if (x[k] !== y[k]) return x[k] - y[k];
  }
  return x.length - y.length;
}

function canon(v) {
  if (v === null) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Float) return formatFloat(v.value);
  if (typeof v === "string") return quote(v);
  if (Array.isArray(v)) return `[${v.map(canon).join(",")}]`;
  const names = [...v.keys()].sort(byCodePoint);
  return `{${names.map((n) => `${quote(n)}:${canon(v.get(n))}`).join(",")}}`;
}

function canonicalBytes(command) {
  if (!(command instanceof Map)) throw new NoCanonicalForm("a command is a JSON object");
  const body = new Map([...command].filter(([name]) => name !== "sig"));
  return Buffer.from(canon(body), "utf8");
}

function hmacHex(keyHex, bytes) {
  if (!/^(?:[0-9a-fA-F]{2})+$/.test(keyHex)) throw new Error("the key must be hex digits");
  return createHmac("sha256", Buffer.from(keyHex, "hex")).update(bytes).digest("hex");
}

// The message to publish: the canonical bytes themselves with `sig` added as the last member,
// so the gateway parses exactly what was signed.
function signedMessage(keyHex, command) {
  const bytes = canonicalBytes(command);
  const sig = hmacHex(keyHex, bytes);
  const text = bytes.toString("utf8");
  return `${text.slice(0, -1)}${text === "{}" ? "" : ","}"sig":"${sig}"}`;
}

// ---- the two commands ------------------------------------------------------------------------

function readUtf8(fileOrFd) {
  return new TextDecoder("utf-8", { fatal: true }).decode(readFileSync(fileOrFd));
}

function checkVectors(file) {
  const doc = parse(readUtf8(file));
  let failures = 0;
  const report = (ok, what) => {
    if (!ok) failures++;
    console.log(`${ok ? "ok" : "FAIL"} ${what}`);
  };
  for (const v of doc.get("vectors")) {
    const name = v.get("name");
    const bytes = canonicalBytes(v.get("command"));
    const sig = hmacHex(v.get("key"), bytes);
    const problems = [];
    if (bytes.toString("hex") !== v.get("canonical_hex")) {
      problems.push(`canonical ${bytes.toString("utf8")}`);
    }
    if (!bytes.equals(Buffer.from(v.get("canonical"), "utf8"))) problems.push("canonical text");
    if (sig !== v.get("sig")) problems.push(`sig ${sig}`);
    if (v.has("payload")) {
      const received = parse(v.get("payload"));
      if (!canonicalBytes(received).equals(bytes)) problems.push("payload's canonical form");
      if (received.get("sig") !== sig) problems.push("payload's sig");
    }
    report(problems.length === 0, `${name}${problems.length ? `: ${problems.join("; ")}` : ""}`);
  }
  for (const r of doc.get("must_refuse")) {
    let why = null;
    try {
      canonicalBytes(parse(r.get("payload")));
    } catch (err) {
      if (!(err instanceof NoCanonicalForm)) throw err;
      why = err.message;
    }
    report(why !== null, `refused ${r.get("name")}${why ? ` (${why})` : ": it was signable"}`);
  }
  return failures === 0 ? 0 : 1;
}

function signBatch() {
  const batch = parse(readUtf8(0));
  for (const [keyHex, command] of batch) console.log(signedMessage(keyHex, command));
  return 0;
}

const [mode, file] = process.argv.slice(2);
if (mode === "vectors" && file) process.exitCode = checkVectors(file);
else if (mode === "sign") process.exitCode = signBatch();
else {
  console.error("usage: node sign.mjs vectors FILE | node sign.mjs sign < batch.json");
  process.exitCode = 2;
}
