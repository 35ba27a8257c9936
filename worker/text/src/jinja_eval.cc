// Evaluation of parsed Jinja templates (see jinja.h for the supported subset).
#include <charconv>
#include <cmath>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "jinja_internal.h"

#include <unicode/unistr.h>

namespace polytune::text::jinja {
namespace {

using Kind = Value::Kind;

bool Truthy(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return v.b;
    case Kind::kInt:
      return v.i != 0;
    case Kind::kFloat:
      return v.f != 0;
    case Kind::kString:
      return !v.s.empty();
    case Kind::kList:
      return !v.list->empty();
    case Kind::kDict:
      return !v.dict->empty();
  }
  return false;
}

std::string FloatRepr(double f) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), f);
  std::string s(buf, r.ptr);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string JsonString(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// Python's json.dumps(x, ensure_ascii=False[, indent=n]), as transformers' tojson filter.
std::string ToJson(const Value& v, int indent, int depth = 0) {
  const std::string nl = indent > 0 ? "\n" + std::string(static_cast<size_t>(indent * (depth + 1)), ' ') : "";
  const std::string nl_end = indent > 0 ? "\n" + std::string(static_cast<size_t>(indent * depth), ' ') : "";
  const std::string sep = indent > 0 ? "," : ", ";
  switch (v.kind) {
    case Kind::kUndefined:
    case Kind::kNone:
      return "null";
    case Kind::kBool:
      return v.b ? "true" : "false";
    case Kind::kInt:
      return std::to_string(v.i);
    case Kind::kFloat:
      return FloatRepr(v.f);
    case Kind::kString:
      return JsonString(v.s);
    case Kind::kList: {
      if (v.list->empty()) return "[]";
      std::string out = "[";
      for (size_t i = 0; i < v.list->size(); ++i) out += (i ? sep : "") + nl + ToJson((*v.list)[i], indent, depth + 1);
      return out + nl_end + "]";
    }
    case Kind::kDict: {
      if (v.dict->empty()) return "{}";
      std::string out = "{";
      for (size_t i = 0; i < v.dict->size(); ++i)
        out += (i ? sep : "") + nl + JsonString((*v.dict)[i].first) + ": " +
               ToJson((*v.dict)[i].second, indent, depth + 1);
      return out + nl_end + "}";
    }
  }
  return "null";
}

// Python's str().
std::string ToStr(const Value& v) {
  switch (v.kind) {
    case Kind::kUndefined:
      return "";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return v.b ? "True" : "False";
    case Kind::kInt:
      return std::to_string(v.i);
    case Kind::kFloat:
      return FloatRepr(v.f);
    case Kind::kString:
      return v.s;
    case Kind::kList:
    case Kind::kDict:
      return ToJson(v, 0);
  }
  return "";
}

// Unicode-aware case mapping (Python's str.upper/lower), through ICU.
std::string CaseMap(const std::string& s, bool upper) {
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(s);
  if (upper)
    u.toUpper();
  else
    u.toLower();
  std::string out;
  return u.toUTF8String(out);
}

bool IsNumber(const Value& v) { return v.kind == Kind::kInt || v.kind == Kind::kFloat || v.kind == Kind::kBool; }
double AsDouble(const Value& v) {
  return v.kind == Kind::kFloat ? v.f : v.kind == Kind::kBool ? v.b : static_cast<double>(v.i);
}

bool Equal(const Value& a, const Value& b) {
  if (IsNumber(a) && IsNumber(b)) return AsDouble(a) == AsDouble(b);
  if (a.kind != b.kind)
    return (a.kind == Kind::kNone || a.kind == Kind::kUndefined) &&
           (b.kind == Kind::kNone || b.kind == Kind::kUndefined);
  switch (a.kind) {
    case Kind::kString:
      return a.s == b.s;
    case Kind::kList:
      if (a.list->size() != b.list->size()) return false;
      for (size_t i = 0; i < a.list->size(); ++i)
        if (!Equal((*a.list)[i], (*b.list)[i])) return false;
      return true;
    case Kind::kDict:
      return ToJson(a, 0) == ToJson(b, 0);
    default:
      return true;
  }
}

int64_t Length(const Value& v, int line) {
  if (v.kind == Kind::kString) return static_cast<int64_t>(v.s.size());
  if (v.kind == Kind::kList) return static_cast<int64_t>(v.list->size());
  if (v.kind == Kind::kDict) return static_cast<int64_t>(v.dict->size());
  Fail(line, "length of a value that has none");
}

std::vector<Value> Items(const Value& v, int line) {
  if (v.kind == Kind::kList) return *v.list;
  if (v.kind == Kind::kDict) {
    std::vector<Value> keys;
    for (const auto& [k, x] : *v.dict) keys.push_back(Value::Str(k));
    return keys;
  }
  if (v.kind == Kind::kString) {
    std::vector<Value> chars;
    for (char c : v.s) chars.push_back(Value::Str(std::string(1, c)));
    return chars;
  }
  if (v.kind == Kind::kUndefined || v.kind == Kind::kNone) return {};
  Fail(line, "cannot iterate over this value");
}

// Python's `needle in haystack` for strings, dict keys and lists.
bool Contains(const Value& haystack, const Value& needle) {
  if (haystack.kind == Kind::kString) return haystack.s.find(ToStr(needle)) != std::string::npos;
  if (haystack.kind == Kind::kDict) return haystack.Find(ToStr(needle)) != nullptr;
  bool found = false;
  if (haystack.kind == Kind::kList)
    for (const auto& x : *haystack.list) found = found || Equal(x, needle);
  return found;
}

class Scope {
 public:
  explicit Scope(const Value& context) {
    frames_.emplace_back();
    if (context.kind == Kind::kDict)
      for (const auto& [k, v] : *context.dict) frames_.back()[k] = v;
  }
  Value Get(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      auto f = it->find(name);
      if (f != it->end()) return f->second;
    }
    return Value();
  }
  void Set(const std::string& name, Value v) { frames_.back()[name] = std::move(v); }
  void Push() { frames_.emplace_back(); }
  void Pop() { frames_.pop_back(); }

 private:
  std::vector<std::map<std::string, Value>> frames_;
};

class Renderer {
 public:
  Renderer(Scope* scope, const std::tm& now) : scope_(scope), now_(now) {}

  void Render(const std::vector<NodePtr>& nodes, std::string* out) {
    for (const auto& n : nodes) {
      switch (n->kind) {
        case Template::Node::kRoot:
          Render(n->body, out);
          break;
        case Template::Node::kText:
          *out += n->text;
          break;
        case Template::Node::kOutput:
          *out += ToStr(Eval(*n->expr));
          break;
        case Template::Node::kIf:
          for (const auto& [cond, body] : n->branches) {
            if (!cond || Truthy(Eval(*cond))) {
              Render(body, out);
              break;
            }
          }
          break;
        case Template::Node::kSet: {
          Value v = Eval(*n->expr);
          const std::string& target = n->targets[0];
          const size_t dot = target.find('.');
          if (dot == std::string::npos) {
            scope_->Set(target, std::move(v));
          } else {
            Value ns = scope_->Get(target.substr(0, dot));
            if (ns.kind != Kind::kDict) Fail(n->line, absl::StrCat("'", target.substr(0, dot), "' is not a namespace"));
            ns.Set(target.substr(dot + 1), std::move(v));
          }
          break;
        }
        case Template::Node::kFor: {
          Value seq = Eval(*n->expr);
          std::vector<Value> items = Items(seq, n->line);
          if (n->filter) {
            // Filtered items are dropped before the loop, so loop.index counts only kept ones.
            std::vector<Value> kept;
            for (auto& item : items) {
              scope_->Push();
              BindTargets(*n, item);
              if (Truthy(Eval(*n->filter))) kept.push_back(item);
              scope_->Pop();
            }
            items = std::move(kept);
          }
          if (items.empty()) {
            Render(n->else_body, out);
            break;
          }
          const int64_t len = static_cast<int64_t>(items.size());
          for (int64_t i = 0; i < len; ++i) {
            scope_->Push();
            Value loop = Value::MakeDict({{"index0", Value::Int(i)},
                                          {"index", Value::Int(i + 1)},
                                          {"revindex0", Value::Int(len - 1 - i)},
                                          {"revindex", Value::Int(len - i)},
                                          {"first", Value::Bool(i == 0)},
                                          {"last", Value::Bool(i == len - 1)},
                                          {"length", Value::Int(len)}});
            if (i > 0) loop.Set("previtem", items[i - 1]);
            if (i + 1 < len) loop.Set("nextitem", items[i + 1]);
            scope_->Set("loop", loop);
            BindTargets(*n, items[i]);
            Render(n->body, out);
            scope_->Pop();
          }
          break;
        }
      }
    }
  }

 private:
  void BindTargets(const Template::Node& n, const Value& item) {
    if (n.targets.size() == 1) {
      scope_->Set(n.targets[0], item);
      return;
    }
    if (item.kind != Kind::kList || item.list->size() != n.targets.size())
      Fail(n.line, "cannot unpack loop item into the loop variables");
    for (size_t t = 0; t < n.targets.size(); ++t) scope_->Set(n.targets[t], (*item.list)[t]);
  }

  Value Eval(const Expr& e) {
    switch (e.kind) {
      case Expr::kLiteral:
        return e.literal;
      case Expr::kName: {
        Value v = scope_->Get(e.name);
        // A global function, as transformers binds it: `strftime_now is defined` holds.
        if (v.kind == Kind::kUndefined && e.name == "strftime_now") return Value::Str("<function strftime_now>");
        return v;
      }
      case Expr::kList: {
        List l;
        for (const auto& a : e.args) l.push_back(Eval(*a));
        return Value::MakeList(std::move(l));
      }
      case Expr::kDict: {
        Value d = Value::MakeDict();
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) d.Set(ToStr(Eval(*e.args[i])), Eval(*e.args[i + 1]));
        return d;
      }
      case Expr::kAttr: {
        Value obj = Eval(*e.args[0]);
        if (const Value* v = obj.Find(e.name)) return *v;
        return Value();
      }
      case Expr::kIndex:
        return Index(Eval(*e.args[0]), Eval(*e.args[1]), e.line);
      case Expr::kSlice:
        return Slice(Eval(*e.args[0]), Eval(*e.args[1]), Eval(*e.args[2]), e.line);
      case Expr::kCall:
        return Call(e);
      case Expr::kFilter:
        return Filter(e);
      case Expr::kTest:
        return Value::Bool(Test(e) != e.negate);
      case Expr::kUnary: {
        Value v = Eval(*e.args[0]);
        if (e.name == "not") return Value::Bool(!Truthy(v));
        if (v.kind == Kind::kInt) return Value::Int(-v.i);
        if (v.kind == Kind::kFloat) return Value::Float(-v.f);
        Fail(e.line, "unary minus on a non-number");
      }
      case Expr::kBinary:
        return BinaryOp(e);
      case Expr::kTernary:
        return Truthy(Eval(*e.args[0])) ? Eval(*e.args[1]) : Eval(*e.args[2]);
    }
    return Value();
  }

  Value Index(const Value& obj, const Value& key, int line) {
    if (obj.kind == Kind::kDict) {
      const Value* v = obj.Find(ToStr(key));
      return v ? *v : Value();
    }
    if ((obj.kind == Kind::kList || obj.kind == Kind::kString) && key.kind == Kind::kInt) {
      const int64_t n = Length(obj, line);
      int64_t i = key.i < 0 ? key.i + n : key.i;
      if (i < 0 || i >= n) return Value();
      return obj.kind == Kind::kList ? (*obj.list)[i] : Value::Str(std::string(1, obj.s[i]));
    }
    if (obj.kind == Kind::kUndefined || obj.kind == Kind::kNone) return Value();
    Fail(line, "cannot index this value");
  }

  Value Slice(const Value& obj, const Value& start, const Value& stop, int line) {
    // Found by fuzzing: a dict has a length but no list to slice.
    if (obj.kind == Kind::kUndefined || obj.kind == Kind::kNone) return Value();
    if (obj.kind != Kind::kString && obj.kind != Kind::kList) Fail(line, "only strings and lists can be sliced");
    const int64_t n = Length(obj, line);
    auto clamp = [&](const Value& v, int64_t fallback) {
      if (v.kind != Kind::kInt) return fallback;
      int64_t i = v.i < 0 ? v.i + n : v.i;
      return std::max<int64_t>(0, std::min(n, i));
    };
    const int64_t a = clamp(start, 0), b = std::max(a, clamp(stop, n));
    if (obj.kind == Kind::kString) return Value::Str(obj.s.substr(a, b - a));
    return Value::MakeList(List(obj.list->begin() + a, obj.list->begin() + b));
  }

  Value BinaryOp(const Expr& e) {
    const std::string& op = e.name;
    if (op == "and") {
      Value a = Eval(*e.args[0]);
      return Truthy(a) ? Eval(*e.args[1]) : a;
    }
    if (op == "or") {
      Value a = Eval(*e.args[0]);
      return Truthy(a) ? a : Eval(*e.args[1]);
    }
    Value a = Eval(*e.args[0]), b = Eval(*e.args[1]);
    if (op == "~") return Value::Str(ToStr(a) + ToStr(b));
    if (op == "==") return Value::Bool(Equal(a, b));
    if (op == "!=") return Value::Bool(!Equal(a, b));
    if (op == "in" || op == "not in") return Value::Bool(Contains(b, a) == (op == "in"));
    if (op == "+" && a.kind == Kind::kString && b.kind == Kind::kString) return Value::Str(a.s + b.s);
    if (op == "+" && a.kind == Kind::kList && b.kind == Kind::kList) {
      List l = *a.list;
      l.insert(l.end(), b.list->begin(), b.list->end());
      return Value::MakeList(std::move(l));
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int cmp;
      if (a.kind == Kind::kString && b.kind == Kind::kString)
        cmp = a.s.compare(b.s);
      else if (IsNumber(a) && IsNumber(b))
        cmp = AsDouble(a) < AsDouble(b) ? -1 : AsDouble(a) > AsDouble(b) ? 1 : 0;
      else
        Fail(e.line, absl::StrCat("cannot compare these values with '", op, "'"));
      return Value::Bool(op == "<" ? cmp < 0 : op == ">" ? cmp > 0 : op == "<=" ? cmp <= 0 : cmp >= 0);
    }
    if (!IsNumber(a) || !IsNumber(b)) {
      if (op == "+") Fail(e.line, "'+' needs two strings, two lists or two numbers (use ~ to join text)");
      Fail(e.line, absl::StrCat("unsupported Jinja feature '", op, "' on these values"));
    }
    const bool ints = a.kind != Kind::kFloat && b.kind != Kind::kFloat;
    const double x = AsDouble(a), y = AsDouble(b);
    if (op == "+") return ints ? Value::Int(static_cast<int64_t>(x) + static_cast<int64_t>(y)) : Value::Float(x + y);
    if (op == "-") return ints ? Value::Int(static_cast<int64_t>(x) - static_cast<int64_t>(y)) : Value::Float(x - y);
    if (op == "*") return ints ? Value::Int(static_cast<int64_t>(x) * static_cast<int64_t>(y)) : Value::Float(x * y);
    if (y == 0) Fail(e.line, "division by zero");
    if (op == "/") return Value::Float(x / y);
    if (op == "//") return ints ? Value::Int(static_cast<int64_t>(std::floor(x / y))) : Value::Float(std::floor(x / y));
    if (op == "%") {
      if (ints) {
        int64_t m = static_cast<int64_t>(x) % static_cast<int64_t>(y);
        if (m != 0 && ((m < 0) != (y < 0))) m += static_cast<int64_t>(y);
        return Value::Int(m);
      }
      return Value::Float(x - y * std::floor(x / y));
    }
    Fail(e.line, absl::StrCat("unsupported Jinja operator '", op, "'"));
  }

  std::vector<Value> ArgValues(const Expr& e, size_t skip) {
    std::vector<Value> out;
    for (size_t i = skip; i < e.args.size(); ++i) out.push_back(Eval(*e.args[i]));
    return out;
  }

  Value Kwarg(const Expr& e, const std::string& name, const std::vector<Value>& positional, size_t pos,
              Value fallback) {
    for (const auto& [k, v] : e.kwargs)
      if (k == name) return Eval(*v);
    return pos < positional.size() ? positional[pos] : fallback;
  }

  Value Call(const Expr& e) {
    const Expr& callee = *e.args[0];
    std::vector<Value> args = ArgValues(e, 1);
    if (callee.kind == Expr::kName) {
      if (callee.name == "raise_exception")
        Fail(e.line, absl::StrCat("raise_exception: ", args.empty() ? "" : ToStr(args[0])));
      if (callee.name == "range") {
        int64_t start = 0, stop = 0, step = 1;
        if (args.size() == 1)
          stop = args[0].i;
        else if (args.size() >= 2)
          start = args[0].i, stop = args[1].i, step = args.size() > 2 ? args[2].i : 1;
        if (step == 0) Fail(e.line, "range() step must not be zero");
        List l;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) l.push_back(Value::Int(i));
        return Value::MakeList(std::move(l));
      }
      if (callee.name == "namespace" || callee.name == "dict") {
        Value d = Value::MakeDict();
        for (const auto& [k, v] : e.kwargs) d.Set(k, Eval(*v));
        return d;
      }
      if (callee.name == "strftime_now") {
        if (args.size() != 1 || args[0].kind != Kind::kString) Fail(e.line, "strftime_now() takes one format string");
        char buf[256];
        size_t n = std::strftime(buf, sizeof buf, args[0].s.c_str(), &now_);
        if (n == 0 && !args[0].s.empty()) Fail(e.line, "strftime_now(): format produces nothing or too much");
        return Value::Str(std::string(buf, n));
      }
      Fail(e.line, absl::StrCat("unsupported Jinja feature: function '", callee.name, "'"));
    }
    if (callee.kind != Expr::kAttr) Fail(e.line, "unsupported Jinja feature: calling this expression");
    Value obj = Eval(*callee.args[0]);
    const std::string& m = callee.name;
    if (obj.kind == Kind::kString) {
      const std::string& s = obj.s;
      auto chars = [&](size_t i) { return i < args.size() ? ToStr(args[i]) : std::string(" \t\n\r\f\v"); };
      if (m == "strip") {
        size_t a = s.find_first_not_of(chars(0)), b = s.find_last_not_of(chars(0));
        return Value::Str(a == std::string::npos ? "" : s.substr(a, b - a + 1));
      }
      if (m == "lstrip") {
        size_t a = s.find_first_not_of(chars(0));
        return Value::Str(a == std::string::npos ? "" : s.substr(a));
      }
      if (m == "rstrip") {
        size_t b = s.find_last_not_of(chars(0));
        return Value::Str(b == std::string::npos ? "" : s.substr(0, b + 1));
      }
      if (m == "upper") return Value::Str(CaseMap(s, true));
      if (m == "lower") return Value::Str(CaseMap(s, false));
      if (m == "startswith") return Value::Bool(!args.empty() && s.rfind(ToStr(args[0]), 0) == 0);
      if (m == "endswith") {
        const std::string t = args.empty() ? "" : ToStr(args[0]);
        return Value::Bool(s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0);
      }
      if (m == "replace" && args.size() >= 2)
        return Value::Str(absl::StrReplaceAll(s, {{ToStr(args[0]), ToStr(args[1])}}));
      if (m == "split") {
        List parts;
        if (args.empty()) {
          for (absl::string_view p : absl::StrSplit(s, absl::ByAnyChar(" \t\n\r"), absl::SkipEmpty()))
            parts.push_back(Value::Str(std::string(p)));
        } else {
          for (absl::string_view p : absl::StrSplit(s, ToStr(args[0]))) parts.push_back(Value::Str(std::string(p)));
        }
        return Value::MakeList(std::move(parts));
      }
    }
    if (obj.kind == Kind::kDict) {
      if (m == "items") {
        List l;
        for (const auto& [k, v] : *obj.dict) l.push_back(Value::MakeList({Value::Str(k), v}));
        return Value::MakeList(std::move(l));
      }
      if (m == "keys" || m == "values") {
        List l;
        for (const auto& [k, v] : *obj.dict) l.push_back(m == "keys" ? Value::Str(k) : v);
        return Value::MakeList(std::move(l));
      }
      if (m == "get") {
        const Value* v = args.empty() ? nullptr : obj.Find(ToStr(args[0]));
        return v ? *v : (args.size() > 1 ? args[1] : Value::None());
      }
    }
    Fail(e.line, absl::StrCat("unsupported Jinja feature: method '", m, "'"));
  }

  Value Filter(const Expr& e) {
    Value v = Eval(*e.args[0]);
    std::vector<Value> args = ArgValues(e, 1);
    const std::string& f = e.name;
    if (f == "trim") {
      const std::string& s = ToStr(v);
      size_t a = s.find_first_not_of(" \t\n\r\f\v"), b = s.find_last_not_of(" \t\n\r\f\v");
      return Value::Str(a == std::string::npos ? "" : s.substr(a, b - a + 1));
    }
    if (f == "tojson") return Value::Str(ToJson(v, static_cast<int>(Kwarg(e, "indent", args, 0, Value::Int(0)).i)));
    if (f == "length" || f == "count") return Value::Int(Length(v, e.line));
    if (f == "upper") return Value::Str(CaseMap(ToStr(v), true));
    if (f == "lower") return Value::Str(CaseMap(ToStr(v), false));
    if (f == "string") return Value::Str(ToStr(v));
    if (f == "list") return Value::MakeList(Items(v, e.line));
    if (f == "first" || f == "last") {
      std::vector<Value> items = Items(v, e.line);
      if (items.empty()) return Value();
      return f == "first" ? items.front() : items.back();
    }
    if (f == "join") {
      std::string sep = args.empty() ? "" : ToStr(args[0]), out;
      std::vector<Value> items = Items(v, e.line);
      for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + ToStr(items[i]);
      return Value::Str(out);
    }
    if (f == "default" || f == "d") {
      const bool boolean = args.size() > 1 && Truthy(args[1]);
      if (v.kind == Kind::kUndefined || (boolean && !Truthy(v))) return args.empty() ? Value::Str("") : args[0];
      return v;
    }
    if (f == "capitalize" || f == "title") {
      std::string s = absl::AsciiStrToLower(ToStr(v));
      for (size_t i = 0; i < s.size(); ++i)
        if (i == 0 || (f == "title" && !std::isalpha(static_cast<unsigned char>(s[i - 1]))))
          s[i] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[i])));
      return Value::Str(s);
    }
    if (f == "replace" && args.size() >= 2)
      return Value::Str(absl::StrReplaceAll(ToStr(v), {{ToStr(args[0]), ToStr(args[1])}}));
    if (f == "int")
      return Value::Int(v.kind == Kind::kString ? std::atoll(v.s.c_str()) : static_cast<int64_t>(AsDouble(v)));
    if (f == "selectattr" || f == "rejectattr" || f == "select" || f == "reject") {
      // select(test, arg...) / selectattr(attribute, test, arg...); no test means truthiness.
      const bool by_attr = f == "selectattr" || f == "rejectattr";
      const bool keep_if = f == "selectattr" || f == "select";
      const size_t test_at = by_attr ? 1 : 0;
      if (by_attr && args.empty()) Fail(e.line, absl::StrCat(f, "() needs an attribute name"));
      List kept;
      for (const Value& item : Items(v, e.line)) {
        Value subject = by_attr ? Index(item, args[0], e.line) : item;
        bool pass = args.size() > test_at ? TestValue(ToStr(args[test_at]), subject,
                                                      args.size() > test_at + 1 ? &args[test_at + 1] : nullptr, e.line)
                                          : Truthy(subject);
        if (pass == keep_if) kept.push_back(item);
      }
      return Value::MakeList(std::move(kept));
    }
    if (f == "map") {
      // map(attribute='x'[, default=...]) or map('filter_name'); the filter takes no arguments.
      List mapped;
      for (const Value& item : Items(v, e.line)) {
        bool by_attr = false;
        for (const auto& [k, x] : e.kwargs) by_attr = by_attr || k == "attribute";
        if (by_attr) {
          Value got = Index(item, Kwarg(e, "attribute", {}, 0, Value()), e.line);
          mapped.push_back(got.kind == Kind::kUndefined ? Kwarg(e, "default", {}, 0, Value()) : got);
        } else {
          if (args.empty()) Fail(e.line, "map() needs attribute= or a filter name");
          Expr apply{Expr::kFilter};
          apply.name = ToStr(args[0]);
          apply.line = e.line;
          auto operand = std::make_shared<Expr>(Expr{Expr::kLiteral});
          operand->literal = item;
          apply.args.push_back(operand);
          mapped.push_back(Filter(apply));
        }
      }
      return Value::MakeList(std::move(mapped));
    }
    if (f == "unique") {
      List out;
      for (const Value& item : Items(v, e.line)) {
        bool seen = false;
        for (const Value& o : out) seen = seen || Equal(o, item);
        if (!seen) out.push_back(item);
      }
      return Value::MakeList(std::move(out));
    }
    if (f == "items") {
      List l;
      if (v.kind == Kind::kDict)
        for (const auto& [k, x] : *v.dict) l.push_back(Value::MakeList({Value::Str(k), x}));
      return Value::MakeList(std::move(l));
    }
    Fail(e.line, absl::StrCat("unsupported Jinja feature: filter '", f, "'"));
  }

  bool Test(const Expr& e) {
    Value v = Eval(*e.args[0]);
    Value arg;
    if (e.args.size() > 1) arg = Eval(*e.args[1]);
    return TestValue(e.name, v, e.args.size() > 1 ? &arg : nullptr, e.line);
  }

  // Jinja's `v is t(arg)`.
  bool TestValue(const std::string& t, const Value& v, const Value* arg, int line) {
    if (t == "defined") return v.kind != Kind::kUndefined;
    if (t == "undefined") return v.kind == Kind::kUndefined;
    if (t == "none") return v.kind == Kind::kNone;
    if (t == "string") return v.kind == Kind::kString;
    if (t == "number") return v.kind == Kind::kInt || v.kind == Kind::kFloat;
    if (t == "integer") return v.kind == Kind::kInt;
    if (t == "boolean") return v.kind == Kind::kBool;
    if (t == "true") return v.kind == Kind::kBool && v.b;
    if (t == "false") return v.kind == Kind::kBool && !v.b;
    if (t == "mapping") return v.kind == Kind::kDict;
    if (t == "sequence" || t == "iterable")
      return v.kind == Kind::kList || v.kind == Kind::kString || (t == "iterable" && v.kind == Kind::kDict);
    if (t == "odd" || t == "even") return v.kind == Kind::kInt && ((v.i % 2 != 0) == (t == "odd"));
    if (t == "equalto" || t == "eq" || t == "==" || t == "sameas") return arg && Equal(v, *arg);
    if (t == "ne" || t == "!=") return arg && !Equal(v, *arg);
    if (t == "in") return arg && Contains(*arg, v);
    Fail(line, absl::StrCat("unsupported Jinja feature: test '", t, "'"));
  }

  Scope* scope_;
  std::tm now_;
};

}  // namespace

std::string RenderNodes(const std::vector<NodePtr>& nodes, const Value& context, const std::tm& now) {
  Scope scope(context);
  Renderer r(&scope, now);
  std::string out;
  r.Render(nodes, &out);
  return out;
}

}  // namespace polytune::text::jinja
