// libFuzzer target: the ExportedProgram JSON parser, the analyzer's graph rules (which must
// take any program the parser accepts) and the code generator together. Any
// program the reader accepts and the generator translates must give a model.py that holds
// no character that could end a comment or a line early, and whose every line is plain
// code or a comment: a string from the graph never becomes code. (The Python tests import
// hostile packages for real; this target covers the inputs nobody thought of.)
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "torch2mlx/analyzer.h"
#include "torch2mlx/codegen.h"
#include "torch2mlx/error.h"
#include "torch2mlx/graph.h"

namespace {

[[noreturn]] void broken(const char* what, std::string_view line) {
  std::fprintf(stderr, "fuzz: model.py %s: %.*s\n", what, static_cast<int>(line.size()),
               line.data());
  std::abort();
}

// Walks one line as Python's tokenizer would: string literals ("..." with backslash
// escapes, as python_string writes them) and a trailing comment. A quote left open at the
// end of a line means a string from the graph escaped its literal.
void check_line(std::string_view line) {
  bool in_string = false;
  for (std::size_t at = 0; at < line.size(); ++at) {
    const char c = line[at];
    if (in_string) {
      if (c == '\\') {
        ++at;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '#') {
      return;  // the rest is a comment, which may hold anything but a line break
    } else if (c == '\'') {
      broken("has a single-quoted string, which python_string never writes", line);
    }
  }
  if (in_string) broken("has a string literal that does not close on its line", line);
}

void check_source(std::string_view source) {
  for (std::size_t at = 0; at < source.size(); ++at) {
    const auto byte = static_cast<unsigned char>(source[at]);
    if (byte == '\r' || byte == '\f' || byte == '\v' || (byte >= 0x1c && byte <= 0x1e)) {
      broken("holds a line break other than \\n", source.substr(at, 40));
    }
    // U+0085 is C2 85 in UTF-8; U+2028 and U+2029 are E2 80 A8 and E2 80 A9.
    if (byte == 0xC2 && at + 1 < source.size() &&
        static_cast<unsigned char>(source[at + 1]) == 0x85)
      broken("holds U+0085", source.substr(at, 40));
    if (byte == 0xE2 && at + 2 < source.size() &&
        static_cast<unsigned char>(source[at + 1]) == 0x80 &&
        (static_cast<unsigned char>(source[at + 2]) == 0xA8 ||
         static_cast<unsigned char>(source[at + 2]) == 0xA9)) {
      broken("holds U+2028 or U+2029", source.substr(at, 40));
    }
  }
  std::size_t start = 0;
  while (start < source.size()) {
    std::size_t end = source.find('\n', start);
    if (end == std::string_view::npos) end = source.size();
    check_line(source.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace torch2mlx;
  try {
    const ExportedProgram program =
        parse_exported_program({reinterpret_cast<const char*>(data), size}, "fuzz.json");
    static_cast<void>(analyze_graph(program));
    check_source(generate_model(program).source);
  } catch (const Error&) {
  }
  return 0;
}
