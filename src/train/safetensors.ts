// The safetensors format, written and read by hand:
//   [8 bytes: header length N, u64 little-endian][N bytes: JSON header][raw little-endian data]
// header = { "<name>": {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data
// start), "__metadata__": {string: string} }. Tensors are laid out in sorted-name order, and the
// header is padded with spaces to a multiple of 8 bytes (as the reference implementation does).

export type SafeDtype = 'F32' | 'I32';

export interface HostTensor { dtype: SafeDtype; shape: number[]; data: Float32Array | Int32Array }

const LE = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function toLeBytes(data: Float32Array | Int32Array): Uint8Array {
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (LE) return bytes;
  const out = new Uint8Array(bytes.length); // big-endian host: swap each 4-byte word
  for (let i = 0; i < bytes.length; i += 4) { out[i] = bytes[i + 3]; out[i + 1] = bytes[i + 2]; out[i + 2] = bytes[i + 1]; out[i + 3] = bytes[i]; }
  return out;
}

export function encodeSafetensors(tensors: Map<string, HostTensor>, metadata: Record<string, string> = {}): Uint8Array {
  const names = [...tensors.keys()].sort();
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  for (const n of names) {
    const t = tensors.get(n)!;
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) throw new Error(`safetensors: '${n}' has ${t.data.length} values for shape [${t.shape}]`);
    header[n] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.byteLength] };
    off += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  while (Buffer.byteLength(json) % 8 !== 0) json += ' ';
  const hbytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + hbytes.length + off);
  new DataView(out.buffer).setBigUint64(0, BigInt(hbytes.length), true);
  out.set(hbytes, 8);
  let p = 8 + hbytes.length;
  for (const n of names) { const b = toLeBytes(tensors.get(n)!.data); out.set(b, p); p += b.length; }
  return out;
}

export interface Decoded { tensors: Map<string, HostTensor>; metadata: Record<string, string> }

/** Parse and validate a safetensors buffer; `what` names the file in error messages. */
export function decodeSafetensors(buf: Uint8Array, what = 'safetensors'): Decoded {
  const bad = (m: string) => new Error(`${what}: ${m}`);
  if (buf.length < 8) throw bad('file too short for a header');
  const n = Number(new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getBigUint64(0, true));
  if (n > buf.length - 8) throw bad(`header length ${n} exceeds the file size ${buf.length}`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] } | Record<string, string>>;
  try { header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + n))); } catch { throw bad('header is not valid JSON'); }
  const dataStart = 8 + n, dataLen = buf.length - dataStart;
  const tensors = new Map<string, HostTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') { metadata = e as Record<string, string>; continue; }
    const { dtype, shape, data_offsets: [a, b] } = e as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (dtype !== 'F32' && dtype !== 'I32') throw bad(`tensor '${name}' has unsupported dtype ${dtype}`);
    const numel = shape.reduce((x, y) => x * y, 1);
    if (!(a >= 0 && b <= dataLen && b - a === numel * 4)) throw bad(`tensor '${name}' has bad data_offsets [${a}, ${b}]`);
    const bytes = Uint8Array.prototype.slice.call(buf, dataStart + a, dataStart + b); // a real copy (Buffer.slice is a view)
    if (!LE) for (let i = 0; i < bytes.length; i += 4) { bytes.subarray(i, i + 4).reverse(); }
    tensors.set(name, { dtype, shape, data: dtype === 'F32' ? new Float32Array(bytes.buffer) : new Int32Array(bytes.buffer) });
  }
  return { tensors, metadata };
}
