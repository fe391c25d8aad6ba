// Tensors from the explorer's API, decoded into typed arrays.
//
// The API sends a tensor as JSON:
//   {"dtype": "float32" | "float16" | "uint8" | "int32", "shape": [..], "b64": "..."}
// where b64 is the base64 of the raw little-endian bytes in C order (the last index changes
// fastest), as `tensor.contiguous().numpy().tobytes()` writes them. base64 costs 4/3 of the raw
// size; a JSON list of floats costs about 4 times more and loses the exact values.
//
// JavaScript has no Float16Array everywhere yet, so float16 is widened to float32 here, with a
// table of all 65536 half-precision values (built once, on first use).

/** Bytes per element of each dtype the API sends. */
const ITEM_SIZE = { float32: 4, float16: 2, uint8: 1, int32: 4 };

/** True on little-endian machines (every browser platform in practice): typed arrays then read
 * the API's bytes as they are. Elsewhere each element goes through a DataView. */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The float32 value of one IEEE 754 half-precision number, given its 16 bits.
 * Layout: 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits.
 *   exponent 0      -> subnormal: (-1)^s * fraction * 2^-24   (0x0001 = 2^-24, the smallest)
 *   exponent 1..30  -> normal:    (-1)^s * (1 + fraction/1024) * 2^(exponent - 15)
 *   exponent 31     -> infinity (fraction 0) or NaN
 * e.g. 0x3c00 -> 1, 0xc000 -> -2, 0x7bff -> 65504 (the largest finite half).
 * @param {number} bits an integer 0..65535
 * @returns {number}
 */
export function halfToFloat(bits) {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // sign * 0 keeps -0 for 0x8000
  if (exponent === 31) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

let halfTable = null; // Float32Array(65536): halfTable[bits] = halfToFloat(bits)

function halfToFloatTable() {
  if (halfTable === null) {
    halfTable = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) halfTable[bits] = halfToFloat(bits);
  }
  return halfTable;
}

/** base64 -> bytes, with the browser's atob or, in Node, Buffer. The result owns a fresh buffer
 * starting at offset 0, so typed arrays of any element size can view it (Node's Buffer may be a
 * slice of a shared pool at an odd offset, hence the copy). */
function base64ToBytes(b64) {
  if (typeof atob === "function") {
    const binary = atob(b64);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }
  return new Uint8Array(Buffer.from(b64, "base64"));
}

/**
 * Decode one tensor from the API.
 *
 * float32 and float16 both come back as a Float32Array, uint8 as a Uint8Array, int32 as an
 * Int32Array; `data` is flat, in C order. A shape of [] is a scalar (one element).
 * @param {{dtype: string, shape: number[], b64: string}} obj
 * @returns {{shape: number[], data: Float32Array | Uint8Array | Int32Array}}
 * @throws {Error} on an unknown dtype, a malformed shape, or bytes that do not fill the shape.
 * @example decodeTensor({dtype: "float16", shape: [2], b64: "ADwAwA=="}) // data: [1, -2]
 */
export function decodeTensor(obj) {
  if (obj === null || typeof obj !== "object") {
    throw new Error(`decodeTensor: expected {dtype, shape, b64}, got ${obj === null ? "null" : typeof obj}`);
  }
  const { dtype, shape, b64 } = obj;
  if (!Object.hasOwn(ITEM_SIZE, dtype)) {
    throw new Error(`decodeTensor: unsupported dtype ${JSON.stringify(dtype)}; ` +
      `expected one of ${Object.keys(ITEM_SIZE).join(", ")}`);
  }
  if (!Array.isArray(shape) || !shape.every((n) => Number.isInteger(n) && n >= 0)) {
    throw new Error(`decodeTensor: shape must be a list of integers >= 0, got ${JSON.stringify(shape)}`);
  }
  if (typeof b64 !== "string") throw new Error(`decodeTensor: b64 must be a string, got ${typeof b64}`);

  const itemSize = ITEM_SIZE[dtype];
  const count = shape.reduce((a, b) => a * b, 1);
  const bytes = base64ToBytes(b64);
  if (bytes.length !== count * itemSize) {
    throw new Error(`decodeTensor: ${bytes.length} bytes do not fit shape [${shape.join(", ")}] of ${dtype}: ` +
      `expected ${count} x ${itemSize} = ${count * itemSize} bytes`);
  }

  const view = new DataView(bytes.buffer);
  let data;
  if (dtype === "uint8") {
    data = bytes;
  } else if (dtype === "float32") {
    data = LITTLE_ENDIAN ? new Float32Array(bytes.buffer)
      : Float32Array.from({ length: count }, (_, i) => view.getFloat32(4 * i, true));
  } else if (dtype === "int32") {
    data = LITTLE_ENDIAN ? new Int32Array(bytes.buffer)
      : Int32Array.from({ length: count }, (_, i) => view.getInt32(4 * i, true));
  } else { // float16
    const table = halfToFloatTable();
    data = new Float32Array(count);
    if (LITTLE_ENDIAN) {
      const halves = new Uint16Array(bytes.buffer);
      for (let i = 0; i < count; i++) data[i] = table[halves[i]];
    } else {
      for (let i = 0; i < count; i++) data[i] = table[view.getUint16(2 * i, true)];
    }
  }
  return { shape: [...shape], data };
}

/**
 * One row along the last dimension: t[i, j, ..., :] for leading indices (i, j, ...), as a
 * subarray *view* (no copy: writing to it writes into t.data).
 * @param {{shape: number[], data: ArrayLike<number> & {subarray: Function}}} t a decoded tensor
 * @param {...number} leadingIdx one index per dimension except the last
 * @returns {Float32Array | Uint8Array | Int32Array}
 * @throws {RangeError} on the wrong number of indices or an index out of range
 * @example rowOf({shape: [2, 3], data: Float32Array.of(1, 2, 3, 4, 5, 6)}, 1) // [4, 5, 6]
 */
export function rowOf(t, ...leadingIdx) {
  const { shape, data } = t;
  if (shape.length === 0) throw new RangeError("rowOf: a scalar tensor has no rows");
  if (leadingIdx.length !== shape.length - 1) {
    throw new RangeError(`rowOf: shape [${shape.join(", ")}] takes ${shape.length - 1} leading ` +
      `indices, got ${leadingIdx.length}`);
  }
  let offset = 0;
  leadingIdx.forEach((idx, dim) => {
    if (!Number.isInteger(idx) || idx < 0 || idx >= shape[dim]) {
      throw new RangeError(`rowOf: index ${idx} is out of range for dimension ${dim} of size ${shape[dim]}`);
    }
    offset = offset * shape[dim] + idx; // C order: row-major
  });
  const rowLength = shape[shape.length - 1];
  return data.subarray(offset * rowLength, (offset + 1) * rowLength);
}
