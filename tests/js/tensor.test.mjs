// decodeTensor and rowOf: every dtype, the float16 special values, and the errors.
import assert from "node:assert/strict";
import { test } from "node:test";

import { decodeTensor, halfToFloat, rowOf } from "../../src/lucidlm/explorer/static/lib/tensor.js";

/** The API's JSON form of a typed array: base64 of its little-endian bytes. */
function encode(dtype, shape, typed) {
  const b64 = Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength).toString("base64");
  return { dtype, shape, b64 };
}

test("float16 bit patterns decode to their known values", () => {
  const cases = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x7bff, 65504], // largest finite half
    [0x0001, 2 ** -24], // smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // largest subnormal
    [0x0400, 2 ** -14], // smallest normal
    [0x3555, 0.333251953125], // (1 + 341/1024) / 4, the half nearest 1/3
    [0x0000, 0],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ];
  for (const [bits, value] of cases) assert.equal(halfToFloat(bits), value, `bits 0x${bits.toString(16)}`);
  assert.ok(Object.is(halfToFloat(0x8000), -0), "0x8000 is negative zero");
  assert.ok(Number.isNaN(halfToFloat(0x7e00)));
  assert.ok(Number.isNaN(halfToFloat(0xfc01)));
});

test("float16 tensors decode through the table to a Float32Array", () => {
  const t = decodeTensor(encode("float16", [2, 2], Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001)));
  assert.ok(t.data instanceof Float32Array);
  assert.deepEqual(t.shape, [2, 2]);
  assert.deepEqual(Array.from(t.data), [1, -2, 65504, 2 ** -24]);
  // The docstring's example, written out by hand: bytes 00 3c 00 c0.
  assert.deepEqual(Array.from(decodeTensor({ dtype: "float16", shape: [2], b64: "ADwAwA==" }).data), [1, -2]);
});

test("float32, uint8 and int32 keep their values and types", () => {
  const f = decodeTensor(encode("float32", [2, 3], Float32Array.of(0.5, -1.25, 3, 1e-30, -0, 7)));
  assert.ok(f.data instanceof Float32Array);
  assert.deepEqual(Array.from(f.data), [0.5, -1.25, 3, Math.fround(1e-30), -0, 7]);

  const u = decodeTensor(encode("uint8", [3], Uint8Array.of(0, 127, 255)));
  assert.ok(u.data instanceof Uint8Array);
  assert.deepEqual(Array.from(u.data), [0, 127, 255]);

  const i = decodeTensor(encode("int32", [2], Int32Array.of(-2147483648, 50256)));
  assert.ok(i.data instanceof Int32Array);
  assert.deepEqual(Array.from(i.data), [-2147483648, 50256]);
});

test("a scalar has shape [] and one element; an empty tensor has none", () => {
  assert.deepEqual(Array.from(decodeTensor(encode("float32", [], Float32Array.of(2.5))).data), [2.5]);
  const empty = decodeTensor({ dtype: "float32", shape: [0, 4], b64: "" });
  assert.equal(empty.data.length, 0);
});

test("decoding works without atob (Node's Buffer path)", () => {
  const saved = globalThis.atob;
  delete globalThis.atob;
  try {
    const t = decodeTensor(encode("int32", [3], Int32Array.of(1, -2, 3)));
    assert.deepEqual(Array.from(t.data), [1, -2, 3]);
  } finally {
    globalThis.atob = saved;
  }
});

test("bad input throws a clear Error", () => {
  assert.throws(() => decodeTensor({ dtype: "float64", shape: [1], b64: "AAAAAAAAAAA=" }), /unsupported dtype "float64"/);
  assert.throws(() => decodeTensor(encode("float32", [3], Float32Array.of(1, 2))), /8 bytes do not fit shape \[3\]/);
  assert.throws(() => decodeTensor({ dtype: "uint8", shape: [-1], b64: "" }), /shape must be/);
  assert.throws(() => decodeTensor({ dtype: "uint8", shape: [1] }), /b64 must be a string/);
  assert.throws(() => decodeTensor(null), /expected \{dtype, shape, b64\}/);
});

test("rowOf returns a view of the last dimension", () => {
  const t = decodeTensor(encode("float32", [2, 3, 2], Float32Array.from({ length: 12 }, (_, i) => i)));
  assert.deepEqual(Array.from(rowOf(t, 0, 0)), [0, 1]);
  assert.deepEqual(Array.from(rowOf(t, 1, 2)), [10, 11]);
  const row = rowOf(t, 1, 0);
  row[0] = 99; // a view: writes go through to the tensor
  assert.equal(t.data[6], 99);
  assert.deepEqual(Array.from(rowOf({ shape: [3], data: Float32Array.of(4, 5, 6) })), [4, 5, 6]);
  assert.throws(() => rowOf(t, 0), /takes 2 leading indices, got 1/);
  assert.throws(() => rowOf(t, 2, 0), /index 2 is out of range for dimension 0 of size 2/);
});
