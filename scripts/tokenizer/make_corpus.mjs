// make_corpus.mjs — build tests/golden/tokenizer/corpus.jsonl, the varied
// texts every family is checked on. One JSON object per line: {"text": s}
// or {"hex": "..."} for byte strings that are not valid UTF-8. Deterministic.
import fs from "node:fs";
import path from "node:path";
import { ROOT } from "./common.mjs";

const out = [];
const T = (s) => out.push({ text: s });
const H = (hex) => out.push({ hex });

// English prose and contractions
T("Hello world");
T(" Hello world");
T("Hello, world! How are you doing today? I'm fine, thanks.");
T("They'll say it's John's book; we've seen what you'd done. I'M SURE THEY'RE HERE, AREN'T THEY?");
T("The quick brown fox jumps over the lazy dog.");
T("This program is free software: you can redistribute it and/or modify it under the terms of the GNU General Public License as published by the Free Software Foundation, either version 3 of the License, or (at your option) any later version.");
T("Retrieval-augmented mixture of LoRA experts (RAMoLE) mixes adapters per token.");
T("e.g. i.e. etc. Mr. Smith vs. Dr. Jones — “quoted” ‘single’ «guillemets» …");
// Source code
T("int main(int argc, char **argv) {\n    printf(\"%d\\n\", argc);\n    return 0;\n}\n");
T("def f(x):\n\tif x > 0:\n\t\treturn x ** 2  # square\n\treturn -x\n");
T("const re = /\\p{L}+/gu; let a = [1, 2, 3].map((x) => x * 2); // arrow\n");
T("<html><body class=\"main\"><p>Hi&nbsp;there</p></body></html>");
T("SELECT id, name FROM users WHERE age >= 21 ORDER BY name DESC LIMIT 10;");
T("{\"key\": [1, 2.5, -3e10, true, null], \"nested\": {\"a\": \"b\"}}");
// Numbers and dates
T("1 12 123 1234 12345 123456 1234567 3.14159 -42 +7 1e-9 0x1F 0b1010 1,000,000.00");
T("2024-01-15T10:30:00Z, 15/01/2024, Jan 15th 2024, 10:30 AM, 1999-12-31");
T("Call 555-123-4567 or +1 (800) 555-0199 ext. 42; ISBN 978-3-16-148410-0.");
T("٣ ٤ ٥ ०१२ 一二三 ①②③ ½ ¾ ⅓ 𝟙𝟚𝟛");
// Whitespace runs
T("a  b   c    d     e");
T("   leading spaces");
T("trailing spaces   ");
T("tabs\there\t\tand\t\t\tthere");
T("line one\nline two\n\nline four\n\n\n\nline eight");
T("windows\r\nline\r\nendings\r\n");
T("mixed \t \n \r\n  \n\t end");
T("\n\n\n");
T("    ");
T(" ");
T("\t");
T("x\u00a0y\u2003z\u3000w\u2028v\u2029u\u200bt\ufeffs");
// CJK
T("你好，世界！今天天气很好。我们去公园散步吧。");
T("日本語のテキストです。カタカナとひらがなと漢字。");
T("한국어 텍스트입니다. 안녕하세요!");
T("中文English混合text测试123");
// Arabic, Hebrew, Hindi, Thai, Cyrillic, Greek
T("مرحبا بالعالم! هذا نص عربي للاختبار.");
T("שלום עולם, זהו טקסט בעברית.");
T("नमस्ते दुनिया, यह हिंदी पाठ है।");
T("สวัสดีชาวโลก นี่คือข้อความภาษาไทย");
T("Привет, мир! Это русский текст. Ёжик.");
T("Γειά σου Κόσμε! Αυτό είναι ελληνικό κείμενο.");
// Emoji with modifiers, ZWJ sequences, flags
T("I love 🍕 and 🎉! 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇫🇷🇯🇵 ❤️ ☺︎");
T("😀😃😄😁😆😅😂🤣🥲☺️😊😇🙂🙃😉");
// Combining marks (NFC vs NFD)
T("Cafe\u0301 re\u0301sume\u0301 nai\u0308ve");
T("Café résumé naïve");
T("A\u030a \u212b \u00c5 e\u0301\u0302 \u1e9b\u0323 ﬁ ﬂ ㈱");
T("Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357");
// Special-token lookalikes and real special tokens
T("<s> </s> <unk> <|endoftext|> <|im_start|>user\nhi<|im_end|>");
T("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>");
T("[INST] What is 2+2? [/INST] 4</s>");
T("<<SYS>>\nYou are helpful.\n<</SYS>>");
T("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>assistant\n");
T("<0x0A> <0xFF> ▁ ▁▁x Ġ Ċ");
// Punctuation runs and symbols
T("!!! ??? ... --- === *** ### @@@ $$$ %%% ^^^ &&& ((())) [[[]]] {{{}}}");
T("a.b,c;d:e!f?g'h\"i`j~k@l#m$n%o^p&q*r(s)t_u+v=w[x]y{z}|\\/<>");
T("''' \"\"\" '' \"\" 's 't 're 've 'm 'll 'd 'S 'T 'RE 'Ve 'LL x's");
T("™ © ® ° ± × ÷ ∞ ≠ ≤ ≥ √ ∑ ∫ → ← ↑ ↓ ♠ ♣ ♥ ♦ € £ ¥ ₹");
// Mixed and long
T("A" + "a".repeat(300) + " " + "ab".repeat(100));
T("antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious");
T("https://example.com/path/to/page?query=1&x=y#frag user@example.org");
T("C:\\Users\\name\\Documents\\file.txt /usr/local/bin/ramole --model=qwen3 -n 128");
T("Ünïcödé ÀÉÎÕÜ ñ ß ẞ ǅ ǈ İ ı ŉ");
T("𝓗𝓮𝓵𝓵𝓸 𝕎𝕠𝕣𝕝𝕕 𐍈 𒀀 🀄");
T("");
T("a");
T("\u0000\u0001\u001f\u007f\u0085\u00ad");
// Exotic whitespace (where regex \s, JS trim and Rust's char::is_whitespace
// part ways): NEL, line/paragraph separators, BOM, Mongolian vowel
// separator, the information separators U+001C..U+001F, ideographic space,
// each alone, after spaces, in runs and between words
for (const w of ["\u0085", "\u2028", "\u2029", "\ufeff", "\u180e", "\u001c", "\u001d", "\u001e", "\u001f", "\u3000"]) {
  T(`a${w}b  ${w}c   ${w}${w}d ${w}\n${w} e${w}`);
  T(`${w}${w} lead and trail  ${w}`);
}
T("x \u0085 \u0085\u0085  \u2028\u3000 \ufeff\u180e\u001c\u001d\u001e\u001f y\t\u0085\n");
// Where Unicode versions part: final sigma (Lowercase maps each code point
// alone), capitals new in Unicode 16, compatibility forms newer than the
// reference's normalization tables, Kaktovik numerals (\p{N} since 15.0)
T("ΟΔΟΣ ΣΑΣ. Σ σ ς \u1c89\ua7cb\ua7dc\u{10d50} \u32ff\ua7f2\u{1e030}\u{1fbf3} x\u{1d2c0}\u{1d2c1} 7\u{1d2d3}");
T("Hello\u00a0\u0085world\u2028\u2029 \u3000\u3000! 12\u0085 34 \ufeff'll \u0085's");
// Invalid UTF-8 (decoded with U+FFFD replacement by both sides)
H("48656c6c6fff20776f726c64");          // Hello\xff world
H("c3");                                // truncated 2-byte sequence
H("e4bda0e5a5bde4");                    // 你好 + truncated
H("f09f9880f09f98");                    // 😀 + truncated emoji
H("eda080edb080");                      // UTF-16 surrogates encoded (CESU)
H("c0af e080af".replace(/ /g, ""));     // overlong
H("f4908080 41".replace(/ /g, ""));     // beyond U+10FFFF
H("80bfc2");                            // lone continuation bytes

// A few paragraphs of Debian's license texts (plain prose with odd spacing).
for (const f of ["/usr/share/common-licenses/Apache-2.0", "/usr/share/common-licenses/GPL-3"]) {
  if (!fs.existsSync(f)) continue;
  const paras = fs.readFileSync(f, "utf8").split(/\n\s*\n/).filter((p) => p.length > 200).slice(3, 8);
  for (const p of paras) T(p);
}

fs.writeFileSync(path.join(ROOT, "tests/golden/tokenizer/corpus.jsonl"),
  out.map((e) => JSON.stringify(e)).join("\n") + "\n");
console.log(`${out.length} corpus entries`);

// Random strings over a pool of troublesome characters (deterministic LCG).
{
  let seed = 12345;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed % n; };
  const pool = [" ", " ", " ", "  ", "\n", "\n\n", "\t", "\r\n", "a", "e", "the", "The", "ing", "'s", "'", "'LL", "x",
    "0", "7", "42", "2024", "3.5", ",", ".", "!", "?", "...", "-", "_", "(", ")", "\"", "#", "@", "\\", "/", "<", ">",
    "é", "e\u0301", "ß", "İ", "Ж", "λ", "你", "好", "の", "한", "ا", "ל", "क", "ि", "ก", "😀", "👍🏽", "👨‍👩‍👧", "🇯🇵",
    "\u00a0", "\u2003", "\u3000", "\u200b", "\ufeff", "\u0085", "▁", "Ġ", "<s>", "</s>", "<|endoftext|>", "<|im_end|>",
    "<0x41>", "１２３", "①", "½", "𝟘", "\u0000", "\u001b", "~", "`", "$", "%", "^", "&", "*", "=", "+", "|", "{", "}", "[", "]"];
  for (let k = 0; k < 120; k++) {
    const len = 1 + rnd(40);
    let s = "";
    for (let i = 0; i < len; i++) s += pool[rnd(pool.length)];
    T(s);
  }
}
fs.writeFileSync(path.join(ROOT, "tests/golden/tokenizer/corpus.jsonl"),
  out.map((e) => JSON.stringify(e)).join("\n") + "\n");
console.log(`${out.length} corpus entries (with random)`);
