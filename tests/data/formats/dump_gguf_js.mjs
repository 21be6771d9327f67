import { gguf } from "@huggingface/gguf";
const { metadata, tensorInfos, tensorDataOffset } = await gguf(process.argv[2], { allowLocalFile: true, computeParametersCount: false });
const out = {};
for (const [k, v] of Object.entries(metadata)) out[k] = (typeof v === "bigint") ? v.toString() : v;
console.log(JSON.stringify(out, (k, v) => typeof v === "bigint" ? v.toString() : v));
console.log("dataOffset", tensorDataOffset.toString());
for (const t of tensorInfos) console.log(t.name, t.shape.map(String).join(","), t.dtype, t.offset.toString());
