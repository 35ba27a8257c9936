// A Jinja subset large enough for Hugging Face chat templates (Llama 3.x, Qwen2.5, Mistral,
// Gemma, Phi-3): text, {{ }}, {% set/if/elif/else/for %}, comments, whitespace control
// ({%- -%}), trim_blocks and lstrip_blocks as transformers enables them, loop.index0 /
// loop.first / loop.last / loop.length, namespace(), filters (trim, tojson, length, upper,
// lower, join, default, first, last, string, capitalize, title, replace, list), tests
// (defined, none, string, number, mapping, iterable, sequence, boolean, true, false, odd,
// even), string/dict methods, the ternary, ~, raise_exception() and strftime_now() (bound, as
// transformers binds it, to the render's clock). Anything else is an error naming the
// unsupported feature and its line.
#pragma once

#include <ctime>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace polytune::text::jinja {

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion order, like Python

struct Value {
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict };
  Kind kind = Kind::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;

  static Value None();
  static Value Bool(bool v);
  static Value Int(int64_t v);
  static Value Float(double v);
  static Value Str(std::string v);
  static Value MakeList(List v = {});
  static Value MakeDict(Dict v = {});
  const Value* Find(const std::string& key) const;  // dict lookup
  void Set(const std::string& key, Value v);        // dict insert/replace
};

class Template {
 public:
  static absl::StatusOr<Template> Parse(const std::string& source, const std::string& name = "template");
  // `now` is what strftime_now() formats: transformers uses the local wall clock; callers pin
  // it for reproducible renderings.
  absl::StatusOr<std::string> Render(const Value& context, const std::tm& now) const;
  absl::StatusOr<std::string> Render(const Value& context) const;  // now = local time

  struct Node;

 private:
  std::shared_ptr<const Node> root_;
  std::string name_;
};

}  // namespace polytune::text::jinja
