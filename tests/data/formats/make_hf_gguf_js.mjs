// make_hf_gguf_js.mjs — rewrites the header of a GGUF file with @huggingface/gguf (an independent
// implementation), keeping tensor infos and data, and adding typed keys.
import { gguf, buildGgufHeader, GGUFValueType } from "@huggingface/gguf";
import { readFileSync, writeFileSync } from "node:fs";
const [src, dst] = process.argv.slice(2);
const p = await gguf(src, { allowLocalFile: true, typedMetadata: true });
const m = p.typedMetadata;
m["js.u8"] = { value: 7, type: GGUFValueType.UINT8 };
m["js.i16"] = { value: -1234, type: GGUFValueType.INT16 };
m["js.f64"] = { value: 0.125, type: GGUFValueType.FLOAT64 };
m["js.str"] = { value: "written by @huggingface/gguf", type: GGUFValueType.STRING };
m["js.strs"] = { value: ["x", "yy", ""], type: GGUFValueType.ARRAY, subType: GGUFValueType.STRING };
m["js.u16s"] = { value: [1, 2, 65535], type: GGUFValueType.ARRAY, subType: GGUFValueType.UINT16 };
delete m["test.empty"]; // the library refuses subType 0 (uint8) arrays: !subType
m.kv_count = { value: BigInt(Object.keys(m).length - 3), type: GGUFValueType.UINT64 };
const bytes = readFileSync(src);
const blob = new Blob([bytes]);
const hdr = await buildGgufHeader(blob, m, { littleEndian: true, tensorInfoByteRange: p.tensorInfoByteRange, alignment: 32 });
const h = new Uint8Array(await hdr.arrayBuffer());
const data = bytes.subarray(Number(p.tensorDataOffset));
const out = new Uint8Array(h.length + data.length);
out.set(h); out.set(data, h.length);
writeFileSync(dst, out);
console.log("header", h.length, "data", data.length);
