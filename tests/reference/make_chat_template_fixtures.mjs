// Expected chat-template renderings for tests/fixtures/chat_templates/cases.json, made with
// @huggingface/jinja 0.5.11 (the Jinja implementation transformers.js uses) from the npm
// registry:
//   mkdir /tmp/tok && cd /tmp/tok && npm install @huggingface/jinja@0.5.11
//   NODE_PATH=/tmp/tok/node_modules TZ=UTC node tests/reference/make_chat_template_fixtures.mjs
// The template sources are the published ones (notes in cases.json say where each was checked).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH + "/");
const { Template } = require("@huggingface/jinja");
const file = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "fixtures", "chat_templates", "cases.json");
const cases = JSON.parse(fs.readFileSync(file, "utf8"));
// @huggingface/jinja binds strftime_now to the clock, as transformers does; cases.now records
// the moment of generation so the C++ test can pin its clock to it.
const now = new Date();
cases.now = now.toISOString().slice(0, 19);
const expected = [];
for (const [name, t] of Object.entries(cases.templates)) {
  const template = new Template(t.source);
  cases.conversations.forEach((messages, index) => {
    for (const add_generation_prompt of [false, true]) {
      let output = null, error = null;
      try {
        output = template.render({ messages, add_generation_prompt, bos_token: t.bos, eos_token: t.eos });
      } catch (e) {
        error = String(e.message || e);
      }
      expected.push({ template: name, conversation: index, add_generation_prompt, output, error });
    }
  });
}
cases.expected = expected;
fs.writeFileSync(file, JSON.stringify(cases, null, 1) + "\n");
console.log(expected.length, "renderings,", expected.filter((e) => e.error).length, "raised");
