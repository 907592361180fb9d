// Rewrites of generated Python; see code_rewrites.h.
#include "torch2mlx/code_rewrites.h"

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace torch2mlx {

namespace {

// How often each name is read in the statements (not counting where it is assigned).
void count_reads(const std::vector<py::Stmt>& statements, std::map<std::string, int>& counts) {
  for (const py::Stmt& statement : statements) {
    for (const py::Expr& expression : py::expressions(statement)) {
      const bool target = std::any_of(statement.targets.begin(), statement.targets.end(),
                                      [&](const py::Expr& t) { return t.is(expression); });
      const bool plain_target = target && expression.kind() == py::Expr::Kind::Name;
      if (plain_target) {
        counts.try_emplace(expression.text(), 0);
        continue;
      }
      py::walk(expression, [&](const py::Expr& part) {
        if (part.kind() == py::Expr::Kind::Name) ++counts[part.text()];
      });
    }
    count_reads(statement.body, counts);
    count_reads(statement.orelse, counts);
  }
}

std::map<std::string, int> name_counts(const std::vector<py::Stmt>& statements) {
  std::map<std::string, int> counts;
  count_reads(statements, counts);
  return counts;
}

// `self.<attribute>[<index>]` as (attribute, index), or nothing.
std::optional<std::pair<std::string, std::int64_t>> indexed_attribute(const py::Expr& callee) {
  if (callee.kind() != py::Expr::Kind::Subscript) return std::nullopt;
  const py::Expr& object = callee.parts()[0];
  const py::Expr& index = callee.parts()[1];
  if (object.kind() != py::Expr::Kind::Attribute || index.kind() != py::Expr::Kind::Int ||
      object.parts()[0].kind() != py::Expr::Kind::Name || object.parts()[0].text() != "self") {
    return std::nullopt;
  }
  return std::pair{object.text(), index.integer()};
}

// One statement `value = self.<list>[index](input, rest...)`.
struct LayerCall {
  std::string list;
  std::int64_t index = 0;
  py::Expr value, call;  // the assigned name and the call
};

std::optional<LayerCall> layer_call(const py::Stmt& statement) {
  if (statement.kind != py::Stmt::Kind::Assign || statement.targets.size() != 1 ||
      statement.unpack || statement.targets[0].kind() != py::Expr::Kind::Name) {
    return std::nullopt;
  }
  const py::Expr& call = statement.values[0];
  if (call.kind() != py::Expr::Kind::Call ||
      call.parts().size() - call.keywords().size() < 2) {  // the callee and an input
    return std::nullopt;
  }
  const auto callee = indexed_attribute(call.parts()[0]);
  if (!callee) return std::nullopt;
  return LayerCall{callee->first, callee->second, statement.targets[0], call};
}

// The call's arguments after the first, printed: what every call of a loop must share.
std::string rest_of(const py::Expr& call) {
  const auto [positional, keywords] = py::arguments(call);
  std::string text;
  for (std::size_t index = 1; index < positional.size(); ++index) {
    text += py::print(positional[index]) + ", ";
  }
  for (const py::Keyword& keyword : keywords) {
    text += keyword.name + "=" + py::print(keyword.value) + ", ";
  }
  return text;
}

// The statements of `body` from `start` that call self.<list>[0], [1], ... [count - 1], each
// on the one before's value and nothing else reading it (comments between them allowed):
// the index past the last one, or nothing when they do not.
std::optional<std::size_t> chain_end(const std::vector<py::Stmt>& body, std::size_t start,
                                     const std::string& list, std::int64_t count,
                                     const std::map<std::string, int>& counts) {
  const auto first = layer_call(body[start]);
  const std::string rest = rest_of(first->call);
  std::vector<std::string> values;  // what each call assigns
  std::size_t at = start;
  for (std::int64_t index = 0; index < count; ++index, ++at) {
    while (index > 0 && at < body.size() && body[at].kind == py::Stmt::Kind::Comment) ++at;
    if (at >= body.size()) return std::nullopt;
    const auto call = layer_call(body[at]);
    if (!call || call->list != list || call->index != index || rest_of(call->call) != rest) {
      return std::nullopt;
    }
    if (index > 0) {
      const py::Expr& input = call->call.parts()[1];
      if (input.kind() != py::Expr::Kind::Name || input.text() != values.back() ||
          counts.at(values.back()) != 1) {
        return std::nullopt;
      }
    }
    values.push_back(call->value.text());
  }
  // The arguments every call shares read none of the chain's values.
  bool reads_chain = false;
  for (std::size_t index = 2; index < first->call.parts().size(); ++index) {
    py::walk(first->call.parts()[index], [&](const py::Expr& part) {
      if (part.kind() == py::Expr::Kind::Name &&
          std::find(values.begin(), values.end(), part.text()) != values.end()) {
        reads_chain = true;
      }
    });
  }
  if (reads_chain) return std::nullopt;
  return at;
}

// A local's name without the counter that tells apart names from one source: "h" for "h_2".
std::string stem(const std::string& name) {
  const std::size_t underscore = name.rfind('_');
  if (underscore == std::string::npos || underscore + 1 == name.size()) return name;
  const bool counter = std::all_of(name.begin() + static_cast<std::ptrdiff_t>(underscore) + 1,
                                   name.end(), [](char c) { return c >= '0' && c <= '9'; });
  return counter ? name.substr(0, underscore) : name;
}

// The first of "layer", "block", "item", "module" that the statements do not use.
std::string free_name(const std::map<std::string, int>& counts) {
  for (const char* candidate : {"layer", "block", "item", "module"}) {
    if (!counts.contains(candidate)) return candidate;
  }
  return "layer_";
}

}  // namespace

std::vector<py::Stmt> loop_over_layers(std::vector<py::Stmt> body) {
  if (body.size() < 2 || body[0].kind != py::Stmt::Kind::Function ||
      body[1].kind != py::Stmt::Kind::Function) {
    return body;
  }
  std::vector<py::Stmt>& init = body[0].body;
  std::vector<py::Stmt>& call = body[1].body;
  for (py::Stmt& statement : init) {
    if (statement.kind != py::Stmt::Kind::Assign || statement.targets.size() != 1) continue;
    const py::Expr& target = statement.targets[0];
    const py::Expr& items = statement.values[0];
    if (target.kind() != py::Expr::Kind::Attribute || items.kind() != py::Expr::Kind::List ||
        items.parts().size() < 2 || items.parts()[0].kind() != py::Expr::Kind::Call) {
      continue;
    }
    const std::string& list = target.text();
    const std::string item = py::print(items.parts()[0]);
    const bool identical =
        std::all_of(items.parts().begin(), items.parts().end(),
                    [&](const py::Expr& part) { return py::print(part) == item; });
    if (!identical) continue;
    const auto count = static_cast<std::int64_t>(items.parts().size());
    // The chain, and no other use of the list's items.
    const std::map<std::string, int> counts = name_counts(call);
    std::optional<std::size_t> start, end;
    int uses = 0;
    py::walk(call, [&](const py::Expr& part) {
      if (part.kind() == py::Expr::Kind::Attribute && part.text() == list &&
          part.parts()[0].kind() == py::Expr::Kind::Name && part.parts()[0].text() == "self") {
        ++uses;
      }
    });
    if (uses != count) continue;
    for (std::size_t index = 0; index < call.size() && !start; ++index) {
      const auto first = layer_call(call[index]);
      if (first && first->list == list && first->index == 0) {
        end = chain_end(call, index, list, count, counts);
        if (end) start = index;
      }
    }
    if (!start) continue;
    const LayerCall first = *layer_call(call[*start]);
    const LayerCall last = *layer_call(call[*end - 1]);
    // The running value, when nothing else reads the input: the input itself if it is a
    // parameter (`x = layer(x)`) or has the first call's name (`hidden_states` feeding
    // `hidden_states_1`); else the first call's name, given to the statement that computes
    // the input (`h = self.embed(x)`). An input read elsewhere is copied first.
    const py::Expr& input = first.call.parts()[1];
    std::vector<py::Stmt> replacement;
    py::Expr running = first.value;
    const bool read_once = input.kind() == py::Expr::Kind::Name && counts.at(input.text()) == 1;
    const auto producer = std::find_if(
        call.begin(), call.begin() + static_cast<std::ptrdiff_t>(*start),
        [&](const py::Stmt& statement) {
          return statement.kind == py::Stmt::Kind::Assign && statement.targets.size() == 1 &&
                 !statement.unpack && statement.targets[0].same(input);
        });
    const bool produced = producer != call.begin() + static_cast<std::ptrdiff_t>(*start);
    if (read_once && (!produced || stem(input.text()) == stem(first.value.text()))) {
      running = input;
    } else if (read_once) {
      producer->targets[0] = running;
    } else {
      replacement.push_back(py::assign(running, input));
    }
    const py::Expr layer = py::name(free_name(counts));
    auto [arguments, keywords] = py::arguments(first.call);
    arguments[0] = running;
    replacement.push_back(py::for_(
        layer, target, {py::assign(running, layer(std::move(arguments), std::move(keywords)))}));
    std::vector<py::Stmt> after(call.begin() + static_cast<std::ptrdiff_t>(*end), call.end());
    after = py::rewrite(std::move(after), [&](const py::Expr& part) -> std::optional<py::Expr> {
      if (part.kind() == py::Expr::Kind::Name && part.text() == last.value.text()) return running;
      return std::nullopt;
    });
    std::vector<py::Stmt> rewritten(call.begin(),
                                    call.begin() + static_cast<std::ptrdiff_t>(*start));
    for (py::Stmt& statement : replacement) rewritten.push_back(std::move(statement));
    for (py::Stmt& statement : after) rewritten.push_back(std::move(statement));
    call = std::move(rewritten);
    statement.values[0] =
        py::comprehension(items.parts()[0], py::name("_"), py::call("range", {py::integer(count)}));
  }
  return body;
}

}  // namespace torch2mlx
