#pragma once
// The one escaping rule for text that reaches generated Python code.
//
// Every string that comes from a graph (a module type, a source line, an einsum equation, an
// output key, a torch version) is untrusted: a file can hold any bytes in it. It reaches a
// model.py only through these functions, which cannot produce anything but a string
// literal, a comment, or an identifier.

#include <cstddef>
#include <string>
#include <string_view>

namespace torch2mlx {

/// A double-quoted, pure-ASCII Python string literal for UTF-8 `text`; throws on bad UTF-8.
std::string python_string(std::string_view text);

/// `text` as the body of a `#` comment: every line break Python or an editor recognises,
/// every control character and any bad UTF-8 becomes a space; cut to `max_bytes` with "...".
std::string python_comment(std::string_view text, std::size_t max_bytes = 0);

/// Whether `text` is an ASCII identifier that Python accepts as a name (not a keyword).
bool is_python_identifier(std::string_view text);

/// Whether `text` is one of Python's reserved keywords (`match`, `case`, `type` are names).
bool is_python_keyword(std::string_view text);

}  // namespace torch2mlx
