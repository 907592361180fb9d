#include "torch2mlx/python_text.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>
#include <optional>
#include <vector>

#include "torch2mlx/error.h"
#include "torch2mlx/graph.h"

namespace torch2mlx {
namespace {

struct CodePoint {
  char32_t value;
  std::size_t length;  // bytes it took
};

// The code point that starts at `at`, or nullopt for bytes that are not UTF-8 (truncated or
// overlong sequences, surrogates, values past U+10FFFF).
std::optional<CodePoint> decode(std::string_view text, std::size_t at) {
  const auto byte = [&](std::size_t index) { return static_cast<unsigned char>(text[index]); };
  const unsigned char lead = byte(at);
  if (lead < 0x80) return CodePoint{lead, 1};
  std::size_t length = 0;
  char32_t value = 0;
  char32_t minimum = 0;
  if ((lead & 0xE0U) == 0xC0U) {
    length = 2, value = lead & 0x1FU, minimum = 0x80;
  } else if ((lead & 0xF0U) == 0xE0U) {
    length = 3, value = lead & 0x0FU, minimum = 0x800;
  } else if ((lead & 0xF8U) == 0xF0U) {
    length = 4, value = lead & 0x07U, minimum = 0x10000;
  } else {
    return std::nullopt;
  }
  if (at + length > text.size()) return std::nullopt;
  for (std::size_t index = 1; index < length; ++index) {
    if ((byte(at + index) & 0xC0U) != 0x80U) return std::nullopt;
    value = (value << 6U) | (byte(at + index) & 0x3FU);
  }
  if (value < minimum || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF))
    return std::nullopt;
  return CodePoint{value, length};
}

// Code points a comment must not hold: line breaks Python's tokenizer honours (\n, \r, \f
// resets indentation), the ones str.splitlines and editors honour (\v, \x1c-\x1e, \x85,
// U+2028, U+2029), every other control character, and the bidirectional overrides that can
// make a comment display as code ("trojan source").
bool unsafe_in_comment(char32_t value) {
  if (value < 0x20 || value == 0x7F || (value >= 0x80 && value <= 0x9F)) return true;
  if (value == 0x2028 || value == 0x2029) return true;
  if (value >= 0x202A && value <= 0x202E) return true;
  return value >= 0x2066 && value <= 0x2069;
}

}  // namespace

std::string python_string(std::string_view text) {
  std::string literal = "\"";
  for (std::size_t at = 0; at < text.size();) {
    const auto point = decode(text, at);
    if (!point) {
      fail("codegen", fmt::format("a string in the graph is not valid UTF-8 (byte {} of {}); "
                                  "re-export the model with torch.export.save",
                                  at, text.size()));
    }
    at += point->length;
    const char32_t value = point->value;
    if (value == '"' || value == '\\') {
      literal += '\\';
      literal += static_cast<char>(value);
    } else if (value == '\n') {
      literal += "\\n";
    } else if (value == '\r') {
      literal += "\\r";
    } else if (value == '\t') {
      literal += "\\t";
    } else if (value >= 0x20 && value < 0x7F) {
      literal += static_cast<char>(value);
    } else if (value < 0x100) {
      literal += fmt::format("\\x{:02x}", static_cast<std::uint32_t>(value));
    } else if (value < 0x10000) {
      literal += fmt::format("\\u{:04x}", static_cast<std::uint32_t>(value));
    } else {
      literal += fmt::format("\\U{:08x}", static_cast<std::uint32_t>(value));
    }
  }
  literal += '"';
  return literal;
}

std::string python_comment(std::string_view text, std::size_t max_bytes) {
  constexpr std::string_view kEllipsis = "...";
  std::string comment;
  std::vector<std::size_t> starts;  // where each code point of the comment begins
  for (std::size_t at = 0; at < text.size();) {
    const auto point = decode(text, at);
    const std::size_t length = point ? point->length : 1;
    starts.push_back(comment.size());
    if (!point) {
      comment += '?';
    } else if (unsafe_in_comment(point->value)) {
      comment += ' ';
    } else {
      comment += text.substr(at, length);
    }
    at += length;
  }
  if (max_bytes != 0 && comment.size() > max_bytes) {
    // Cut on a code point boundary, so the file stays valid UTF-8.
    const std::size_t room = max_bytes > kEllipsis.size() ? max_bytes - kEllipsis.size() : 0;
    const auto cut = std::upper_bound(starts.begin(), starts.end(), room);
    comment.resize(*std::prev(cut));
    comment += kEllipsis;
  }
  return comment;
}

bool is_python_keyword(std::string_view text) {
  static constexpr std::array<std::string_view, 35> kKeywords = {
      "False", "None",     "True",  "and",    "as",   "assert", "async",  "await",    "break",
      "class", "continue", "def",   "del",    "elif", "else",   "except", "finally",  "for",
      "from",  "global",   "if",    "import", "in",   "is",     "lambda", "nonlocal", "not",
      "or",    "pass",     "raise", "return", "try",  "while",  "with",   "yield"};
  return std::find(kKeywords.begin(), kKeywords.end(), text) != kKeywords.end();
}

bool is_python_identifier(std::string_view text) {
  return is_value_name(text) && !is_python_keyword(text);
}

}  // namespace torch2mlx
