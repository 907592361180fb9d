// The helper functions generated model.py files may call: torch semantics MLX lacks. They
// are written once, as Python, in src/torch2mlx/mlx_helpers.py (linted and tested there);
// CMake embeds that file, and this splits it into functions. The code generator copies the
// ones a model needs (with the helpers they call), sorted by name, so that the output is
// byte-identical from run to run.
#include <fmt/format.h>

#include <cctype>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "call.h"
#include "torch2mlx/error.h"

namespace torch2mlx {

namespace {

constexpr std::string_view kModule =
#include "mlx_helpers.inc"
    ;

struct HelperTable {
  std::map<std::string, std::string_view, std::less<>> source;
  std::map<std::string, std::vector<std::string>, std::less<>> calls;  // direct calls
};

// Each top-level `def name(` starts a helper, which runs until the next line that is not
// indented (a blank line or a signature's closing parenthesis does not end it); its
// trailing blank lines are left out.
HelperTable split_module() {
  HelperTable table;
  std::size_t start = std::string_view::npos;
  std::string name;
  std::size_t end = 0;  // end of the last non-blank line of the current helper
  const auto close = [&] {
    if (start == std::string_view::npos) return;
    if (!table.source.emplace(name, kModule.substr(start, end - start)).second) {
      fail("ops", fmt::format("internal: helper {} is defined twice in mlx_helpers.py", name));
    }
    start = std::string_view::npos;
  };
  for (std::size_t at = 0; at < kModule.size();) {
    std::size_t line_end = kModule.find('\n', at);
    line_end = line_end == std::string_view::npos ? kModule.size() : line_end + 1;
    const std::string_view line = kModule.substr(at, line_end - at);
    const bool blank = line.find_first_not_of(" \n") == std::string_view::npos;
    // A signature split over lines closes at column 0 ("):") within its helper.
    if (!blank && line[0] != ' ' && line[0] != ')') {
      close();
      if (line.starts_with("def ")) {
        start = at;
        name = std::string(line.substr(4, line.find('(') - 4));
      }
    }
    if (!blank) end = line_end;
    at = line_end;
  }
  close();
  // A call of another helper: a whole identifier followed by "(", not an attribute
  // (mx.split), read in one pass over each body past its def line.
  const auto is_word = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
  };
  for (const auto& [caller, text] : table.source) {
    const std::string_view body = text.substr(text.find('\n'));
    std::set<std::string> callees;
    for (std::size_t at = 0; at < body.size();) {
      if (!is_word(body[at])) {
        ++at;
        continue;
      }
      const std::size_t start = at;
      while (at < body.size() && is_word(body[at])) ++at;
      const std::string name(body.substr(start, at - start));
      const bool attribute = start > 0 && body[start - 1] == '.';
      if (!attribute && at < body.size() && body[at] == '(' && name != caller &&
          table.source.contains(name)) {
        callees.insert(name);
      }
    }
    if (!callees.empty()) table.calls[caller].assign(callees.begin(), callees.end());
  }
  return table;
}

const HelperTable& helpers() {
  static const HelperTable table = split_module();
  return table;
}

}  // namespace

std::optional<std::string_view> helper_source(std::string_view name) {
  const auto found = helpers().source.find(name);
  if (found == helpers().source.end()) return std::nullopt;
  return found->second;
}

std::vector<std::string> helper_dependencies(std::string_view name) {
  std::set<std::string> seen;
  std::vector<std::string> pending = {std::string(name)};
  while (!pending.empty()) {
    const std::string next = pending.back();
    pending.pop_back();
    const auto calls = helpers().calls.find(next);
    if (calls == helpers().calls.end()) continue;
    for (const std::string& callee : calls->second) {
      if (seen.insert(callee).second) pending.push_back(callee);
    }
  }
  seen.erase(std::string(name));
  return {seen.begin(), seen.end()};
}

}  // namespace torch2mlx
