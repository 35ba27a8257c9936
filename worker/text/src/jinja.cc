#include "jinja_internal.h"

#include <cmath>
#include <functional>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace polytune::text::jinja {
namespace {

// ---------------------------------------------------------------- lexing the template
struct Segment {
  enum Kind { kText, kExpr, kStmt } kind;
  std::string body;
  int line;
};

// Position of `close` at or after `from`, skipping '...' and "..." literals (with \ escapes);
// npos when absent or when a literal never ends.
size_t FindClose(const std::string& src, const std::string& close, size_t from) {
  for (size_t k = from; k < src.size(); ++k) {
    const char c = src[k];
    if (c == '\'' || c == '"') {
      for (++k; k < src.size() && src[k] != c; ++k)
        if (src[k] == '\\') ++k;
      if (k >= src.size()) return std::string::npos;
    } else if (src.compare(k, close.size(), close) == 0) {
      return k;
    }
  }
  return std::string::npos;
}

std::vector<Segment> Segments(const std::string& src) {
  std::vector<Segment> out;
  size_t i = 0;
  int line = 1;
  bool trim_next = false;  // a '-' closing delimiter or trim_blocks asked to trim the next text
  bool trim_newline = false;
  auto count_lines = [&](size_t a, size_t b) {
    for (size_t k = a; k < b; ++k) line += src[k] == '\n';
  };
  while (i < src.size()) {
    size_t open = src.find('{', i);
    while (open != std::string::npos && open + 1 < src.size() && src[open + 1] != '{' && src[open + 1] != '%' &&
           src[open + 1] != '#')
      open = src.find('{', open + 1);
    if (open == std::string::npos || open + 1 >= src.size()) open = src.size();
    std::string text = src.substr(i, open - i);
    if (trim_next) {
      text.erase(
          0, text.find_first_not_of(" \t\r\n") == std::string::npos ? text.size() : text.find_first_not_of(" \t\r\n"));
    } else if (trim_newline && !text.empty() && text[0] == '\n') {
      text.erase(0, 1);
    }
    trim_next = trim_newline = false;
    const int text_line = line;
    count_lines(i, open);
    if (open >= src.size()) {
      if (!text.empty()) out.push_back({Segment::kText, text, text_line});
      break;
    }
    const char kind = src[open + 1];
    const bool left_trim = open + 2 < src.size() && src[open + 2] == '-';
    const bool left_keep = open + 2 < src.size() && src[open + 2] == '+';
    if (left_trim) {
      size_t end = text.find_last_not_of(" \t\r\n");
      text.erase(end == std::string::npos ? 0 : end + 1);
    } else if ((kind == '%' || kind == '#') && !left_keep) {
      // lstrip_blocks: spaces and tabs between a line start (in the source) and a block tag.
      size_t k = open;
      while (k > i && (src[k - 1] == ' ' || src[k - 1] == '\t')) --k;
      if (k == 0 || src[k - 1] == '\n') text.erase(text.size() - std::min(text.size(), open - k));
    }
    if (!text.empty()) out.push_back({Segment::kText, text, text_line});
    const std::string close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
    size_t body_start = open + 2 + ((left_trim || left_keep) ? 1 : 0);
    // Inside {{ }} and {% %}, a quoted "}}" or "%}" is part of a string literal, not the end.
    size_t close_pos = kind == '#' ? src.find(close, body_start) : FindClose(src, close, body_start);
    if (close_pos == std::string::npos) Fail(line, absl::StrCat("unclosed '{", std::string(1, kind), "'"));
    size_t body_end = close_pos;
    bool right_trim = body_end > body_start && src[body_end - 1] == '-';
    if (right_trim) --body_end;
    const int tag_line = line;
    count_lines(open, close_pos + 2);
    if (kind != '#')
      out.push_back(
          {kind == '{' ? Segment::kExpr : Segment::kStmt, src.substr(body_start, body_end - body_start), tag_line});
    trim_next = right_trim;
    trim_newline = kind != '{';  // trim_blocks (comments too, as Jinja does)
    i = close_pos + 2;
  }
  return out;
}

// ---------------------------------------------------------------- expression tokens
struct Tok {
  enum Kind { kName, kInt, kFloat, kString, kOp, kEnd } kind;
  std::string text;
  int64_t i = 0;
  double f = 0;
};

std::vector<Tok> Lex(const std::string& s, int line) {
  std::vector<Tok> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Tok::kName, s.substr(i, j - i)});
      i = j;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
      if (j + 1 < s.size() && s[j] == '.' && std::isdigit(static_cast<unsigned char>(s[j + 1]))) {
        ++j;
        while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
        Tok t{Tok::kFloat, s.substr(i, j - i)};
        if (!absl::SimpleAtod(t.text, &t.f)) Fail(line, "number literal '" + t.text + "' is out of range");
        out.push_back(t);
      } else {
        Tok t{Tok::kInt, s.substr(i, j - i)};
        if (!absl::SimpleAtoi(t.text, &t.i)) Fail(line, "integer literal '" + t.text + "' is out of range");
        out.push_back(t);
      }
      i = j;
    } else if (c == '\'' || c == '"') {
      std::string v;
      size_t j = i + 1;
      while (j < s.size() && s[j] != c) {
        if (s[j] == '\\' && j + 1 < s.size()) {
          const char e = s[++j];
          v += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
        } else {
          v += s[j];
        }
        ++j;
      }
      if (j >= s.size()) Fail(line, "unterminated string literal");
      out.push_back({Tok::kString, v});
      i = j + 1;
    } else {
      static const char* kOps[] = {"==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "<",
                                   ">",  "(",  ")",  "[",  "]",  "{",  "}", ".", ",", ":", "|", "="};
      bool matched = false;
      for (const char* op : kOps) {
        const size_t n = std::strlen(op);
        if (s.compare(i, n, op) == 0) {
          out.push_back({Tok::kOp, op});
          i += n;
          matched = true;
          break;
        }
      }
      if (!matched) Fail(line, absl::StrCat("unexpected character '", std::string(1, c), "'"));
    }
  }
  out.push_back({Tok::kEnd, ""});
  return out;
}

// ---------------------------------------------------------------- AST
class ExprParser {
 public:
  ExprParser(std::vector<Tok> toks, int line) : t_(std::move(toks)), line_(line) {}

  ExprPtr Parse() { return Ternary(); }
  ExprPtr ParseWithoutTernary() { return Or(); }  // for-loop iterables: `if` starts a filter
  bool AtEnd() const { return t_[p_].kind == Tok::kEnd; }
  const Tok& Peek() const { return t_[p_]; }
  bool IsName(const char* n) const { return t_[p_].kind == Tok::kName && t_[p_].text == n; }
  bool IsOp(const char* o) const { return t_[p_].kind == Tok::kOp && t_[p_].text == o; }
  Tok Next() { return t_[p_++]; }
  void Expect(const char* op) {
    if (!IsOp(op)) Fail(line_, absl::StrCat("expected '", op, "' but found '", t_[p_].text, "'"));
    ++p_;
  }
  std::string ExpectName() {
    if (t_[p_].kind != Tok::kName) Fail(line_, absl::StrCat("expected a name but found '", t_[p_].text, "'"));
    return t_[p_++].text;
  }

 private:
  ExprPtr Make(Expr::Kind k) {
    auto e = std::make_shared<Expr>();
    e->kind = k;
    e->line = line_;
    return e;
  }
  ExprPtr Binary(const std::string& op, ExprPtr a, ExprPtr b) {
    auto e = Make(Expr::kBinary);
    e->name = op;
    e->args = {std::move(a), std::move(b)};
    return e;
  }
  ExprPtr Ternary() {
    Nest nest(this);
    ExprPtr a = Or();
    if (IsName("if")) {
      ++p_;
      ExprPtr cond = Or();
      ExprPtr other;
      if (IsName("else")) {
        ++p_;
        other = Ternary();
      } else {
        other = Make(Expr::kLiteral);
      }
      auto e = Make(Expr::kTernary);
      e->args = {cond, a, other};
      return e;
    }
    return a;
  }
  ExprPtr Or() {
    ExprPtr a = And();
    while (IsName("or")) {
      ++p_;
      a = Binary("or", a, And());
    }
    return a;
  }
  ExprPtr And() {
    ExprPtr a = Not();
    while (IsName("and")) {
      ++p_;
      a = Binary("and", a, Not());
    }
    return a;
  }
  ExprPtr Not() {
    if (IsName("not")) {
      Nest nest(this);
      ++p_;
      auto e = Make(Expr::kUnary);
      e->name = "not";
      e->args = {Not()};
      return e;
    }
    return Compare();
  }
  ExprPtr Compare() {
    ExprPtr a = Concat();
    for (;;) {
      if (IsOp("==") || IsOp("!=") || IsOp("<") || IsOp(">") || IsOp("<=") || IsOp(">=")) {
        std::string op = Next().text;
        a = Binary(op, a, Concat());
      } else if (IsName("in")) {
        ++p_;
        a = Binary("in", a, Concat());
      } else if (IsName("not") && t_[p_ + 1].kind == Tok::kName && t_[p_ + 1].text == "in") {
        p_ += 2;
        a = Binary("not in", a, Concat());
      } else if (IsName("is")) {
        ++p_;
        auto e = Make(Expr::kTest);
        if (IsName("not")) {
          ++p_;
          e->negate = true;
        }
        e->name = ExpectName();
        e->args = {a};
        if (IsOp("(")) {
          ++p_;
          while (!IsOp(")")) {
            e->args.push_back(Ternary());
            if (IsOp(",")) ++p_;
          }
          ++p_;
        } else if (!AtEnd() && (Peek().kind == Tok::kString || Peek().kind == Tok::kInt)) {
          e->args.push_back(Primary());
        }
        a = e;
      } else {
        return a;
      }
    }
  }
  ExprPtr Concat() {
    ExprPtr a = Additive();
    while (IsOp("~")) {
      ++p_;
      a = Binary("~", a, Additive());
    }
    return a;
  }
  ExprPtr Additive() {
    ExprPtr a = Multiplicative();
    while (IsOp("+") || IsOp("-")) {
      std::string op = Next().text;
      a = Binary(op, a, Multiplicative());
    }
    return a;
  }
  ExprPtr Multiplicative() {
    ExprPtr a = Unary();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      std::string op = Next().text;
      a = Binary(op, a, Unary());
    }
    return a;
  }
  ExprPtr Unary() {
    if (IsOp("-")) {
      Nest nest(this);
      ++p_;
      auto e = Make(Expr::kUnary);
      e->name = "-";
      e->args = {Unary()};
      return e;
    }
    return Postfix(Primary());
  }
  void Args(Expr* e) {
    Expect("(");
    while (!IsOp(")")) {
      if (Peek().kind == Tok::kName && t_[p_ + 1].kind == Tok::kOp && t_[p_ + 1].text == "=") {
        std::string key = Next().text;
        ++p_;
        e->kwargs.emplace_back(key, Ternary());
      } else {
        e->args.push_back(Ternary());
      }
      if (IsOp(","))
        ++p_;
      else if (!IsOp(")"))
        Fail(line_, absl::StrCat("expected ',' or ')' but found '", Peek().text, "'"));
    }
    ++p_;
  }
  ExprPtr Postfix(ExprPtr a) {
    for (;;) {
      if (IsOp(".")) {
        ++p_;
        auto e = Make(Expr::kAttr);
        e->name = ExpectName();
        e->args = {a};
        a = e;
      } else if (IsOp("[")) {
        ++p_;
        ExprPtr start, stop;
        if (!IsOp(":")) start = Ternary();
        if (IsOp(":")) {
          ++p_;
          if (!IsOp("]")) stop = Ternary();
          if (IsOp(":")) Fail(line_, "unsupported Jinja feature 'slice step'");
          auto e = Make(Expr::kSlice);
          e->args = {a, start ? start : Make(Expr::kLiteral), stop ? stop : Make(Expr::kLiteral)};
          a = e;
        } else {
          auto e = Make(Expr::kIndex);
          e->args = {a, start};
          a = e;
        }
        Expect("]");
      } else if (IsOp("(")) {
        auto e = Make(Expr::kCall);
        e->args = {a};
        Args(e.get());
        a = e;
      } else if (IsOp("|")) {
        ++p_;
        auto e = Make(Expr::kFilter);
        e->name = ExpectName();
        e->args = {a};
        if (IsOp("(")) Args(e.get());
        a = e;
      } else {
        return a;
      }
    }
  }
  ExprPtr Primary() {
    const Tok t = Next();
    auto lit = [&](Value v) {
      auto e = Make(Expr::kLiteral);
      e->literal = std::move(v);
      return e;
    };
    switch (t.kind) {
      case Tok::kInt:
        return lit(Value::Int(t.i));
      case Tok::kFloat:
        return lit(Value::Float(t.f));
      case Tok::kString: {
        std::string s = t.text;
        while (Peek().kind == Tok::kString) s += Next().text;  // adjacent literals concatenate
        return lit(Value::Str(s));
      }
      case Tok::kName: {
        if (t.text == "true" || t.text == "True") return lit(Value::Bool(true));
        if (t.text == "false" || t.text == "False") return lit(Value::Bool(false));
        if (t.text == "none" || t.text == "None") return lit(Value::None());
        auto e = Make(Expr::kName);
        e->name = t.text;
        return e;
      }
      case Tok::kOp:
        if (t.text == "(") {
          ExprPtr e = Ternary();
          if (IsOp(",")) Fail(line_, "unsupported Jinja feature 'tuple literal'");
          Expect(")");
          return e;
        }
        if (t.text == "[") {
          auto e = Make(Expr::kList);
          while (!IsOp("]")) {
            e->args.push_back(Ternary());
            if (IsOp(",")) ++p_;
          }
          ++p_;
          return e;
        }
        if (t.text == "{") {
          auto e = Make(Expr::kDict);
          while (!IsOp("}")) {
            e->args.push_back(Ternary());
            Expect(":");
            e->args.push_back(Ternary());
            if (IsOp(",")) ++p_;
          }
          ++p_;
          return e;
        }
        break;
      case Tok::kEnd:
        Fail(line_, "unexpected end of expression");
    }
    Fail(line_, absl::StrCat("unexpected '", t.text, "'"));
  }

  std::vector<Tok> t_;
  // Real templates nest expressions a few levels deep; a hostile one would overflow the stack
  // of this recursive-descent parser (found by fuzzing), and then of the renderer.
  static constexpr int kMaxNesting = 64;
  struct Nest {
    explicit Nest(ExprParser* p) : parser(p) {
      if (++parser->depth_ > kMaxNesting)
        Fail(parser->line_, absl::StrCat("expression nested deeper than ", kMaxNesting, " levels"));
    }
    ~Nest() { --parser->depth_; }
    ExprParser* parser;
  };
  size_t p_ = 0;
  int line_;
  int depth_ = 0;
};

}  // namespace

namespace {

class StmtParser {
 public:
  explicit StmtParser(std::vector<Segment> segs) : s_(std::move(segs)) {}

  // Parses nodes until a statement whose first word is in `stops`; returns that word.
  std::string Block(std::vector<NodePtr>* out, const std::vector<std::string>& stops) {
    // Blocks inside blocks recurse here and in the renderer: bounded like expressions.
    if (++block_depth_ > 64)
      Fail(p_ < s_.size() ? s_[p_].line : 0, "statements ({% if %}, {% for %}) nested deeper than 64 levels");
    struct Leave {
      int& depth;
      ~Leave() { --depth; }
    } leave{block_depth_};
    while (p_ < s_.size()) {
      const Segment& seg = s_[p_];
      if (seg.kind == Segment::kText) {
        auto n = std::make_shared<Template::Node>();
        n->kind = Template::Node::kText;
        n->text = seg.body;
        out->push_back(n);
        ++p_;
        continue;
      }
      if (seg.kind == Segment::kExpr) {
        ExprParser ep(Lex(seg.body, seg.line), seg.line);
        auto n = std::make_shared<Template::Node>();
        n->kind = Template::Node::kOutput;
        n->expr = ep.Parse();
        if (!ep.AtEnd()) Fail(seg.line, absl::StrCat("unexpected '", ep.Peek().text, "' in {{ }}"));
        out->push_back(n);
        ++p_;
        continue;
      }
      std::vector<Tok> toks = Lex(seg.body, seg.line);
      if (toks[0].kind != Tok::kName) Fail(seg.line, "statement must start with a keyword");
      const std::string word = toks[0].text;
      for (const auto& stop : stops)
        if (word == stop) return word;
      ++p_;
      ExprParser ep(toks, seg.line);
      ep.Next();
      if (word == "if") {
        auto n = std::make_shared<Template::Node>();
        n->kind = Template::Node::kIf;
        n->line = seg.line;
        ExprPtr cond = ep.Parse();
        for (;;) {
          std::vector<NodePtr> body;
          std::string end = Block(&body, {"elif", "else", "endif"});
          n->branches.emplace_back(cond, std::move(body));
          if (end.empty()) Fail(seg.line, "'if' without 'endif'");
          const Segment& stop = s_[p_++];
          if (end == "endif") break;
          if (end == "else") {
            cond = nullptr;
          } else {
            ExprParser cp(Lex(stop.body, stop.line), stop.line);
            cp.Next();
            cond = cp.Parse();
          }
        }
        out->push_back(n);
      } else if (word == "for") {
        auto n = std::make_shared<Template::Node>();
        n->kind = Template::Node::kFor;
        n->line = seg.line;
        n->targets.push_back(ep.ExpectName());
        while (ep.IsOp(",")) {
          ep.Next();
          n->targets.push_back(ep.ExpectName());
        }
        if (!ep.IsName("in")) Fail(seg.line, "expected 'in' in for loop");
        ep.Next();
        n->expr = ep.ParseWithoutTernary();
        if (ep.IsName("if")) {  // loop filter: for x in xs if cond
          ep.Next();
          n->filter = ep.Parse();
        }
        if (!ep.AtEnd()) Fail(seg.line, absl::StrCat("unsupported Jinja feature '", ep.Peek().text, "' in for loop"));
        std::string end = Block(&n->body, {"else", "endfor"});
        if (end.empty()) Fail(seg.line, "'for' without 'endfor'");
        ++p_;
        if (end == "else") {
          if (Block(&n->else_body, {"endfor"}).empty()) Fail(seg.line, "'for' without 'endfor'");
          ++p_;
        }
        out->push_back(n);
      } else if (word == "set") {
        auto n = std::make_shared<Template::Node>();
        n->kind = Template::Node::kSet;
        n->line = seg.line;
        std::string target = ep.ExpectName();
        if (ep.IsOp(".")) {
          ep.Next();
          target += "." + ep.ExpectName();
        }
        if (!ep.IsOp("=")) Fail(seg.line, "unsupported Jinja feature 'block set'");
        ep.Next();
        n->targets = {target};
        n->expr = ep.Parse();
        out->push_back(n);
      } else if (word == "generation") {
        // transformers' {% generation %} marks assistant text for return_assistant_tokens_mask;
        // it renders its body unchanged (our masks come from prefix rendering instead).
        if (!ep.AtEnd()) Fail(seg.line, "unexpected text after 'generation'");
        std::vector<NodePtr> body;
        if (Block(&body, {"endgeneration"}).empty()) Fail(seg.line, "'generation' without 'endgeneration'");
        ++p_;
        out->insert(out->end(), body.begin(), body.end());
      } else {
        Fail(seg.line, absl::StrCat("unsupported Jinja feature '", word, "'"));
      }
    }
    return "";
  }

 private:
  std::vector<Segment> s_;
  int block_depth_ = 0;
  size_t p_ = 0;
};

}  // namespace

Value Value::None() {
  Value v;
  v.kind = Kind::kNone;
  return v;
}
Value Value::Bool(bool x) {
  Value v;
  v.kind = Kind::kBool;
  v.b = x;
  return v;
}
Value Value::Int(int64_t x) {
  Value v;
  v.kind = Kind::kInt;
  v.i = x;
  return v;
}
Value Value::Float(double x) {
  Value v;
  v.kind = Kind::kFloat;
  v.f = x;
  return v;
}
Value Value::Str(std::string x) {
  Value v;
  v.kind = Kind::kString;
  v.s = std::move(x);
  return v;
}
Value Value::MakeList(List x) {
  Value v;
  v.kind = Kind::kList;
  v.list = std::make_shared<List>(std::move(x));
  return v;
}
Value Value::MakeDict(Dict x) {
  Value v;
  v.kind = Kind::kDict;
  v.dict = std::make_shared<Dict>(std::move(x));
  return v;
}

const Value* Value::Find(const std::string& key) const {
  if (kind != Kind::kDict) return nullptr;
  for (const auto& [k, v] : *dict)
    if (k == key) return &v;
  return nullptr;
}

void Value::Set(const std::string& key, Value v) {
  for (auto& [k, old] : *dict)
    if (k == key) {
      old = std::move(v);
      return;
    }
  dict->emplace_back(key, std::move(v));
}

absl::StatusOr<Template> Template::Parse(const std::string& source, const std::string& name) {
  try {
    StmtParser parser(Segments(source));
    auto root = std::make_shared<Node>();
    root->kind = Node::kRoot;
    std::string stray = parser.Block(&root->body, {"endif", "endfor", "elif", "else", "endgeneration"});
    if (!stray.empty()) return absl::InvalidArgumentError(absl::StrCat(name, ": unexpected '", stray, "'"));
    Template t;
    t.root_ = root;
    t.name_ = name;
    return t;
  } catch (const Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", e.message));
  }
}

absl::StatusOr<std::string> Template::Render(const Value& context) const {
  std::time_t t = std::time(nullptr);
  std::tm now{};
  localtime_r(&t, &now);
  return Render(context, now);
}

absl::StatusOr<std::string> Template::Render(const Value& context, const std::tm& now) const {
  try {
    return RenderNodes(root_->body, context, now);
  } catch (const Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(name_, ": ", e.message));
  }
}

}  // namespace polytune::text::jinja
