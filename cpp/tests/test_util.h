// Shared helpers for the unit tests: every input is built here, in memory or in a temporary
// folder, so that no binary fixture is ever committed.
#pragma once

#include <gtest/gtest.h>
#include <minizip/zip.h>
#include <unistd.h>

#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "torch2mlx/error.h"

namespace torch2mlx::test {

// ---------------------------------------------------------------------------------------
// Bytes.

inline std::vector<std::byte> bytes_of(std::string_view text) {
  const auto* first = reinterpret_cast<const std::byte*>(text.data());
  return {first, first + text.size()};
}

/// The raw little-endian bytes of a vector of trivially copyable values.
template <typename T>
std::vector<std::byte> raw_bytes(const std::vector<T>& values) {
  std::vector<std::byte> bytes(values.size() * sizeof(T));
  if (!bytes.empty()) std::memcpy(bytes.data(), values.data(), bytes.size());
  return bytes;
}

/// Reads `count` values of T starting at `data`.
template <typename T>
std::vector<T> values_at(const std::byte* data, std::size_t count) {
  std::vector<T> values(count);
  if (count > 0) std::memcpy(values.data(), data, count * sizeof(T));
  return values;
}

inline void append_le(std::vector<std::byte>& out, std::uint64_t value, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) out.push_back(static_cast<std::byte>(value >> (8 * i)));
}

// ---------------------------------------------------------------------------------------
// Errors.

/// The what() of the torch2mlx::Error that `action` throws; records a failure if it throws
/// nothing (any other exception type escapes and fails the test).
template <typename Action>
std::string error_of(Action&& action) {
  try {
    std::forward<Action>(action)();
  } catch (const Error& error) {
    return error.what();
  }
  ADD_FAILURE() << "expected a torch2mlx::Error, but nothing was thrown";
  return {};
}

inline ::testing::AssertionResult Contains(const std::string& text, std::string_view part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

inline ::testing::AssertionResult StartsWith(const std::string& text, std::string_view prefix) {
  if (text.starts_with(prefix)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not start with '" << prefix << "'";
}

// ---------------------------------------------------------------------------------------
// Pickle programs, one opcode per call, as protocol 2 writes them.

class PickleBuilder {
 public:
  PickleBuilder& proto(std::uint8_t version = 2) { return op(0x80).byte(version); }
  PickleBuilder& stop() { return op('.'); }
  PickleBuilder& mark() { return op('('); }
  PickleBuilder& none() { return op('N'); }
  PickleBuilder& newtrue() { return op(0x88); }
  PickleBuilder& newfalse() { return op(0x89); }
  PickleBuilder& empty_dict() { return op('}'); }
  PickleBuilder& empty_list() { return op(']'); }
  PickleBuilder& empty_tuple() { return op(')'); }
  PickleBuilder& tuple() { return op('t'); }
  PickleBuilder& tuple1() { return op(0x85); }
  PickleBuilder& tuple2() { return op(0x86); }
  PickleBuilder& tuple3() { return op(0x87); }
  PickleBuilder& setitem() { return op('s'); }
  PickleBuilder& setitems() { return op('u'); }
  PickleBuilder& append() { return op('a'); }
  PickleBuilder& appends() { return op('e'); }
  PickleBuilder& reduce() { return op('R'); }
  PickleBuilder& build() { return op('b'); }
  PickleBuilder& binpersid() { return op('Q'); }
  PickleBuilder& binput(std::uint8_t index) { return op('q').byte(index); }
  PickleBuilder& binget(std::uint8_t index) { return op('h').byte(index); }

  PickleBuilder& binint1(std::uint8_t value) { return op('K').byte(value); }
  PickleBuilder& binint2(std::uint16_t value) { return op('M').le(value, 2); }
  PickleBuilder& binint(std::int32_t value) {
    return op('J').le(static_cast<std::uint32_t>(value), 4);
  }
  /// LONG1 with the shortest little-endian two's complement encoding, as Python writes it.
  PickleBuilder& long1(std::int64_t value) {
    std::vector<std::uint8_t> digits;
    auto rest = value;
    while (true) {
      digits.push_back(static_cast<std::uint8_t>(rest & 0xFF));
      const auto sign = (digits.back() & 0x80) != 0;
      rest >>= 8;  // arithmetic shift
      if ((rest == 0 && !sign) || (rest == -1 && sign)) break;
    }
    op(0x8a).byte(static_cast<std::uint8_t>(digits.size()));
    for (const auto digit : digits) byte(digit);
    return *this;
  }
  /// The integer opcode Python's pickler picks for `value`.
  PickleBuilder& integer(std::int64_t value) {
    if (value >= 0 && value < 0x100) return binint1(static_cast<std::uint8_t>(value));
    if (value >= 0 && value < 0x10000) return binint2(static_cast<std::uint16_t>(value));
    if (value >= INT32_MIN && value <= INT32_MAX) return binint(static_cast<std::int32_t>(value));
    return long1(value);
  }
  PickleBuilder& binfloat(double value) {
    const auto bits = std::bit_cast<std::uint64_t>(value);
    op('G');
    for (int i = 7; i >= 0; --i) byte(static_cast<std::uint8_t>(bits >> (8 * i)));
    return *this;
  }
  PickleBuilder& binunicode(std::string_view text) {
    op('X').le(text.size(), 4);
    return raw(text);
  }
  PickleBuilder& global(std::string_view module, std::string_view name) {
    op('c').raw(module).byte('\n').raw(name);
    return byte('\n');
  }
  /// A tuple of small non-negative ints, e.g. a tensor's size or stride.
  PickleBuilder& int_tuple(const std::vector<std::int64_t>& values) {
    mark();
    for (const auto value : values) integer(value);
    return tuple();
  }
  /// BINPERSID of ('storage', <module.type>, key, 'cpu', numel).
  PickleBuilder& storage(std::string_view module, std::string_view type, std::string_view key,
                         std::int64_t numel) {
    mark().binunicode("storage").global(module, type).binunicode(key).binunicode("cpu");
    return integer(numel).tuple().binpersid();
  }
  /// collections.OrderedDict() through REDUCE, as torch writes backward hooks.
  PickleBuilder& ordered_dict() {
    return global("collections", "OrderedDict").empty_tuple().reduce();
  }
  /// torch._utils._rebuild_tensor_v2(<FloatStorage key, numel>, offset, size, stride, False,
  /// OrderedDict()).
  PickleBuilder& float_tensor(std::string_view key, std::int64_t numel, std::int64_t offset,
                              const std::vector<std::int64_t>& size,
                              const std::vector<std::int64_t>& stride) {
    global("torch._utils", "_rebuild_tensor_v2").mark();
    storage("torch", "FloatStorage", key, numel).integer(offset).int_tuple(size).int_tuple(stride);
    return newfalse().ordered_dict().tuple().reduce();
  }

  /// Any byte, e.g. an opcode the machine must refuse.
  PickleBuilder& op(std::uint8_t code) { return byte(code); }
  PickleBuilder& byte(std::uint8_t value) {
    bytes_.push_back(static_cast<std::byte>(value));
    return *this;
  }
  PickleBuilder& raw(std::string_view text) {
    for (const char c : text) byte(static_cast<std::uint8_t>(c));
    return *this;
  }
  PickleBuilder& le(std::uint64_t value, std::size_t count) {
    append_le(bytes_, value, count);
    return *this;
  }

  [[nodiscard]] const std::vector<std::byte>& bytes() const { return bytes_; }

 private:
  std::vector<std::byte> bytes_;
};

// ---------------------------------------------------------------------------------------
// Files.

/// A fresh folder under the test temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  TempDir() {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    const std::string name = test == nullptr
                                 ? std::string("torch2mlx")
                                 : std::string(test->test_suite_name()) + "." + test->name();
    path_ = std::filesystem::path(::testing::TempDir()) /
            ("torch2mlx-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&&) = delete;
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(std::string_view name) const {
    return path_ / name;
  }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, std::span<const std::byte> bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << "cannot write " << path;
}

inline std::vector<std::byte> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> chars((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> bytes(chars.size());
  if (!chars.empty()) std::memcpy(bytes.data(), chars.data(), chars.size());
  return bytes;
}

/// One member of a zip written by write_zip.
struct ZipMember {
  std::string name;
  std::vector<std::byte> data;
};

/// Writes `members` as stored (uncompressed) entries, or deflated ones, in order, with minizip.
/// Duplicate and unsafe names are written as given: the reader is the one that must refuse them.
inline void write_zip(const std::filesystem::path& path, const std::vector<ZipMember>& members,
                      bool deflated = false) {
  zipFile zip = zipOpen64(path.c_str(), APPEND_STATUS_CREATE);
  ASSERT_NE(zip, nullptr) << "cannot create " << path;
  for (const auto& member : members) {
    zip_fileinfo info{};
    ASSERT_EQ(zipOpenNewFileInZip64(zip, member.name.c_str(), &info, nullptr, 0, nullptr, 0,
                                    nullptr, deflated ? Z_DEFLATED : 0,
                                    deflated ? Z_DEFAULT_COMPRESSION : 0, 0 /* no zip64 */),
              ZIP_OK);
    ASSERT_EQ(
        zipWriteInFileInZip(zip, member.data.data(), static_cast<unsigned>(member.data.size())),
        ZIP_OK);
    ASSERT_EQ(zipCloseFileInZip(zip), ZIP_OK);
  }
  ASSERT_EQ(zipClose(zip, nullptr), ZIP_OK);
}

}  // namespace torch2mlx::test
