// Linear-time JSON parsing for the readers. (Not Json::parse with a callback: nlohmann's
// callback parser rescans the enclosing object after every member, which is quadratic in
// the number of tensors; and not ordered_json, whose key lookups are linear.)
#pragma once

#include <cstddef>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

namespace torch2mlx::json_sax {

using Json = nlohmann::json;

/// A SAX handler that builds the DOM Json::parse would, refusing nesting deeper than
/// `max_depth` (too_deep must throw) and showing every object key to `on_key` with its
/// depth (1 for the keys of the root object).
class DomBuilder {
 public:
  using KeyHook = std::function<void(std::size_t depth, const std::string& key)>;

  DomBuilder(Json& root, std::size_t max_depth, std::function<void()> too_deep, KeyHook on_key = {})
      : dom_(root),
        max_depth_(max_depth),
        too_deep_(std::move(too_deep)),
        on_key_(std::move(on_key)) {}

  bool null() { return dom_.null(); }
  bool boolean(bool value) { return dom_.boolean(value); }
  bool number_integer(Json::number_integer_t value) { return dom_.number_integer(value); }
  bool number_unsigned(Json::number_unsigned_t value) { return dom_.number_unsigned(value); }
  bool number_float(Json::number_float_t value, const Json::string_t& text) {
    return dom_.number_float(value, text);
  }
  bool string(Json::string_t& value) { return dom_.string(value); }
  bool binary(Json::binary_t& value) { return dom_.binary(value); }
  bool start_object(std::size_t size) {
    enter();
    return dom_.start_object(size);
  }
  bool end_object() {
    --depth_;
    return dom_.end_object();
  }
  bool start_array(std::size_t size) {
    enter();
    return dom_.start_array(size);
  }
  bool end_array() {
    --depth_;
    return dom_.end_array();
  }
  bool key(Json::string_t& name) {
    if (on_key_) on_key_(depth_, name);
    return dom_.key(name);
  }
  template <class Exception>
  bool parse_error(std::size_t position, const std::string& token, const Exception& error) {
    return dom_.parse_error(position, token, error);  // throws it
  }

 private:
  void enter() {
    if (++depth_ > max_depth_) too_deep_();
  }

  nlohmann::detail::json_sax_dom_parser<Json> dom_;
  std::size_t max_depth_;
  std::function<void()> too_deep_;
  KeyHook on_key_;
  std::size_t depth_ = 0;
};

}  // namespace torch2mlx::json_sax
