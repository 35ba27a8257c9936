// Internals shared by the Jinja parser (jinja.cc) and evaluator (jinja_eval.cc).
#pragma once

#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "polytune/text/jinja.h"

namespace polytune::text::jinja {

struct Error {
  std::string message;
};

[[noreturn]] inline void Fail(int line, const std::string& what) {
  throw Error{"line " + std::to_string(line) + ": " + what};
}

struct Expr {
  enum Kind {
    kLiteral,
    kName,
    kList,
    kDict,
    kAttr,
    kIndex,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kUnary,
    kBinary,
    kTernary
  } kind;
  Value literal;
  std::string name;  // variable, attribute, filter, test, operator
  std::vector<std::shared_ptr<Expr>> args;
  std::vector<std::pair<std::string, std::shared_ptr<Expr>>> kwargs;
  bool negate = false;
  int line = 0;
};
using ExprPtr = std::shared_ptr<Expr>;

struct Template::Node {
  enum Kind { kRoot, kText, kOutput, kIf, kFor, kSet } kind;
  std::string text;
  ExprPtr expr;                                                                  // output / set value / for iterable
  ExprPtr filter;                                                                // for: optional `if` filter
  std::vector<std::pair<ExprPtr, std::vector<std::shared_ptr<Node>>>> branches;  // if: (cond|null, body)
  std::vector<std::string> targets;  // for / set target (set: "name" or "ns.attr")
  std::vector<std::shared_ptr<Node>> body, else_body;
  int line = 0;
};

using NodePtr = std::shared_ptr<Template::Node>;

// Renders `nodes` with `context`, strftime_now() formatting `now`; throws Error.
std::string RenderNodes(const std::vector<NodePtr>& nodes, const Value& context, const std::tm& now);

}  // namespace polytune::text::jinja
