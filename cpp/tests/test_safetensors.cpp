#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "test_util.h"
#include "torch2mlx/checkpoint.h"
#include "torch2mlx/error.h"
#include "torch2mlx/mapped_file.h"
#include "torch2mlx/safetensors.h"

namespace torch2mlx {
namespace {

using test::Contains;
using test::error_of;
using test::StartsWith;

constexpr std::array<DType, 13> kAllDTypes{
    DType::Bool, DType::U8,  DType::I8,  DType::I16,  DType::I32, DType::I64, DType::U16,
    DType::U32,  DType::U64, DType::F16, DType::BF16, DType::F32, DType::F64};

/// A contiguous tensor whose bytes are seed, seed + 1, ... (booleans get 0 and 1).
Tensor patterned(DType dtype, std::vector<std::int64_t> shape, int seed) {
  const auto numel = checked_numel(shape).value();
  std::vector<std::byte> bytes(static_cast<std::size_t>(numel) * itemsize(dtype));
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    bytes[i] = static_cast<std::byte>(dtype == DType::Bool ? (i + seed) % 2 : (i + seed) % 251);
  }
  return make_owned_tensor(dtype, std::move(shape), std::move(bytes));
}

std::vector<std::byte> contents(const Tensor& tensor) {
  std::vector<std::byte> out(tensor.nbytes());
  if (!out.empty()) copy_contiguous(tensor, out.data());
  return out;
}

/// "u64 length | header | data_bytes zero bytes".
std::vector<std::byte> safetensors_file(std::string_view header, std::size_t data_bytes) {
  std::vector<std::byte> file;
  test::append_le(file, header.size(), 8);
  const auto text = test::bytes_of(header);
  file.insert(file.end(), text.begin(), text.end());
  file.resize(file.size() + data_bytes);
  return file;
}

/// The error that parsing `file` as "bad.safetensors" raises.
std::string parse_error(const std::vector<std::byte>& file, const ReadLimits& limits = {}) {
  return error_of([&] { (void)parse_safetensors_header(file, "bad.safetensors", limits); });
}

std::vector<std::string> listing(const std::filesystem::path& folder) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

Checkpoint write_and_read(const test::TempDir& dir, const std::vector<NamedTensor>& tensors,
                          const std::map<std::string, std::string>& metadata = {}) {
  const auto path = dir / "model.safetensors";
  write_safetensors(path, tensors, metadata);
  return read_safetensors(MappedFile::open(path));
}

const NamedTensor& find(const Checkpoint& checkpoint, std::string_view name) {
  for (const auto& named : checkpoint.tensors) {
    if (named.name == name) return named;
  }
  throw std::runtime_error("no tensor " + std::string(name));
}

// ---------------------------------------------------------------------------------------
// Writing and reading back.

TEST(SafetensorsWrite, RoundTripsAllDTypes) {
  const test::TempDir dir;
  std::vector<NamedTensor> tensors;
  for (const DType dtype : kAllDTypes) {
    tensors.push_back({std::string(dtype_name(dtype)),
                       patterned(dtype, {2, 3}, static_cast<int>(tensors.size()))});
  }
  const Checkpoint checkpoint = write_and_read(dir, tensors);
  EXPECT_EQ(checkpoint.format, "safetensors");
  ASSERT_EQ(checkpoint.tensors.size(), tensors.size());
  for (const auto& original : tensors) {
    const NamedTensor& read = find(checkpoint, original.name);
    EXPECT_EQ(read.tensor.dtype, original.tensor.dtype) << original.name;
    EXPECT_EQ(read.tensor.shape, (std::vector<std::int64_t>{2, 3})) << original.name;
    EXPECT_TRUE(read.tensor.is_contiguous()) << original.name;
    EXPECT_EQ(contents(read.tensor), contents(original.tensor)) << original.name;
  }
}

TEST(SafetensorsWrite, RoundTripsAZeroDimTensor) {
  const test::TempDir dir;
  const Tensor scalar = make_owned_tensor(DType::F64, {}, test::raw_bytes(std::vector{3.25}));
  const Checkpoint checkpoint = write_and_read(dir, {{"scale", scalar}});
  ASSERT_EQ(checkpoint.tensors.size(), 1U);
  const Tensor& read = checkpoint.tensors[0].tensor;
  EXPECT_TRUE(read.shape.empty());
  EXPECT_EQ(read.numel(), 1);
  EXPECT_EQ(test::values_at<double>(read.data(), 1), std::vector{3.25});
}

TEST(SafetensorsWrite, RoundTripsEmptyTensors) {
  const test::TempDir dir;
  const Tensor empty = make_owned_tensor(DType::F32, {0, 4}, {});
  const Tensor also_empty = make_owned_tensor(DType::I64, {3, 0}, {});
  const Tensor one = make_owned_tensor(DType::F32, {1}, test::raw_bytes(std::vector{5.0F}));
  const Checkpoint checkpoint =
      write_and_read(dir, {{"empty", empty}, {"also_empty", also_empty}, {"one", one}});
  ASSERT_EQ(checkpoint.tensors.size(), 3U);
  EXPECT_EQ(find(checkpoint, "empty").tensor.shape, (std::vector<std::int64_t>{0, 4}));
  EXPECT_EQ(find(checkpoint, "empty").tensor.nbytes(), 0U);
  EXPECT_EQ(find(checkpoint, "also_empty").tensor.shape, (std::vector<std::int64_t>{3, 0}));
  EXPECT_EQ(test::values_at<float>(find(checkpoint, "one").tensor.data(), 1), std::vector{5.0F});
}

TEST(SafetensorsWrite, WritesANonContiguousViewContiguously) {
  const test::TempDir dir;
  Tensor transposed =
      make_owned_tensor(DType::F32, {2, 3}, test::raw_bytes(std::vector<float>{0, 1, 2, 3, 4, 5}));
  transposed.shape = {3, 2};
  transposed.strides = {1, 3};
  const Checkpoint checkpoint = write_and_read(dir, {{"t", transposed}});
  const Tensor& read = checkpoint.tensors.at(0).tensor;
  EXPECT_EQ(read.shape, (std::vector<std::int64_t>{3, 2}));
  EXPECT_EQ(read.strides, (std::vector<std::int64_t>{2, 1}));
  EXPECT_EQ(test::values_at<float>(read.data(), 6), (std::vector<float>{0, 3, 1, 4, 2, 5}));
}

TEST(SafetensorsWrite, RoundTripsMetadata) {
  const test::TempDir dir;
  const std::map<std::string, std::string> metadata{{"format", "pt"}, {"source", "unit test"}};
  const Checkpoint checkpoint =
      write_and_read(dir, {{"w", patterned(DType::F32, {2}, 0)}}, metadata);
  EXPECT_EQ(checkpoint.metadata, metadata);
  EXPECT_EQ(checkpoint.tensors.size(), 1U);
}

TEST(SafetensorsWrite, AlignsTheHeaderAndOrdersByItemsizeThenName) {
  const test::TempDir dir;
  const auto path = dir / "model.safetensors";
  const std::vector<NamedTensor> tensors{
      {"z_byte", patterned(DType::U8, {3}, 0)},   {"b_half", patterned(DType::F16, {3}, 0)},
      {"a_half", patterned(DType::BF16, {1}, 0)}, {"y_float", patterned(DType::F32, {3}, 0)},
      {"x_long", patterned(DType::I64, {1}, 0)},  {"c_double", patterned(DType::F64, {1}, 0)},
      {"a_bool", patterned(DType::Bool, {5}, 0)},
  };
  write_safetensors(path, tensors, {{"k", "v"}});
  const auto file = MappedFile::open(path);
  const SafetensorsHeader header = parse_safetensors_header(file->bytes(), file->name());
  EXPECT_EQ(header.data_start % 8, 0U);
  std::vector<std::string> order;
  for (const auto& entry : header.entries) {
    order.push_back(entry.name);
    EXPECT_EQ((header.data_start + entry.begin) % itemsize(entry.dtype), 0U) << entry.name;
  }
  EXPECT_EQ(order, (std::vector<std::string>{"c_double", "x_long", "y_float", "a_half", "b_half",
                                             "a_bool", "z_byte"}));
  // The padding is spaces after the JSON, inside the declared header length.
  const std::string text(reinterpret_cast<const char*>(file->bytes().data()) + 8,
                         header.data_start - 8);
  EXPECT_EQ(text.find_first_not_of(' ', text.rfind('}') + 1), std::string::npos) << text;
}

TEST(SafetensorsWrite, LeavesNoTemporaryFileBehind) {
  const test::TempDir dir;
  write_safetensors(dir / "model.safetensors",
                    std::vector<NamedTensor>{{"w", patterned(DType::F32, {4}, 1)}});
  EXPECT_EQ(listing(dir.path()), std::vector<std::string>{"model.safetensors"});
  // Overwriting an existing file also goes through a temporary that is renamed away.
  write_safetensors(dir / "model.safetensors",
                    std::vector<NamedTensor>{{"v", patterned(DType::I8, {2}, 1)}});
  EXPECT_EQ(listing(dir.path()), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(read_safetensors(MappedFile::open(dir / "model.safetensors")).tensors.at(0).name, "v");
}

TEST(SafetensorsWrite, RefusesDuplicateNamesAndWritesNothing) {
  const test::TempDir dir;
  const auto path = dir / "model.safetensors";
  const std::vector<NamedTensor> tensors{{"w", patterned(DType::F32, {2}, 0)},
                                         {"w", patterned(DType::F32, {2}, 1)}};
  const std::string message = error_of([&] { write_safetensors(path, tensors); });
  EXPECT_TRUE(StartsWith(message, "[safetensors] " + path.string() + ": "));
  EXPECT_TRUE(Contains(message, "'w' is used twice"));
  EXPECT_TRUE(listing(dir.path()).empty());
}

TEST(SafetensorsWrite, RefusesADuplicateNameOfAnotherDtype) {
  // Laid out by itemsize first, the two are far apart in data order: found all the same.
  const test::TempDir dir;
  const std::vector<NamedTensor> tensors{{"w", patterned(DType::F64, {2}, 0)},
                                         {"v", patterned(DType::F32, {2}, 0)},
                                         {"w", patterned(DType::U8, {2}, 1)}};
  EXPECT_TRUE(Contains(error_of([&] { write_safetensors(dir / "m.safetensors", tensors); }),
                       "'w' is used twice"));
  EXPECT_TRUE(listing(dir.path()).empty());
}

TEST(SafetensorsWrite, WritesTheHeaderAsCompactJsonWithNamesEscaped) {
  // Compact JSON, metadata first, names escaped as JSON requires and UTF-8 kept as is.
  const std::vector<NamedTensor> tensors{{"q\"uote\\", patterned(DType::F32, {2, 1}, 0)},
                                         {"caf\xc3\xa9\n", patterned(DType::I8, {}, 0)},
                                         {"empty", patterned(DType::I8, {0, 3}, 0)}};
  const SafetensorsLayout layout = safetensors_layout(tensors, {{"format", "mlx"}, {"a", "\t"}});
  const std::string text(reinterpret_cast<const char*>(layout.header.data()) + 8,
                         layout.header.size() - 8);
  EXPECT_EQ(text.substr(0, text.rfind('}') + 1),
            R"({"__metadata__":{"a":"\t","format":"mlx"},)"
            R"("q\"uote\\":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]},)"
            "\"caf\xc3\xa9\\n\":{\"dtype\":\"I8\",\"shape\":[],\"data_offsets\":[8,9]},"
            R"("empty":{"dtype":"I8","shape":[0,3],"data_offsets":[9,9]}})");
}

TEST(SafetensorsWrite, RefusesATensorNamedMetadata) {
  const test::TempDir dir;
  const std::vector<NamedTensor> tensors{{"__metadata__", patterned(DType::F32, {2}, 0)}};
  EXPECT_TRUE(Contains(error_of([&] { write_safetensors(dir / "m.safetensors", tensors); }),
                       "__metadata__"));
  EXPECT_TRUE(listing(dir.path()).empty());
}

TEST(SafetensorsRead, HeadersOnlyGivesSizesWithoutData) {
  const test::TempDir dir;
  const auto path = dir / "model.safetensors";
  write_safetensors(path, std::vector<NamedTensor>{{"w", patterned(DType::F32, {2, 3}, 0)}});
  ReadOptions options;
  options.headers_only = true;
  const Checkpoint checkpoint = read_safetensors(MappedFile::open(path), options);
  const Tensor& tensor = checkpoint.tensors.at(0).tensor;
  EXPECT_EQ(tensor.storage->data, nullptr);
  EXPECT_EQ(tensor.storage->nbytes, 24U);
  EXPECT_EQ(tensor.shape, (std::vector<std::int64_t>{2, 3}));
}

TEST(SafetensorsRead, ReadCheckpointDetectsSafetensorsByContent) {
  const test::TempDir dir;
  const auto path = dir / "weights.bin";  // the extension does not matter
  write_safetensors(path, std::vector<NamedTensor>{{"w", patterned(DType::F32, {2}, 0)}});
  EXPECT_EQ(detect_format(path), "safetensors");
  EXPECT_EQ(read_checkpoint(path).tensors.at(0).name, "w");
}

TEST(SafetensorsRead, ParsesAHandWrittenHeader) {
  const auto file = safetensors_file(
      R"({"b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]},)"
      R"("a":{"dtype":"I16","shape":[2,2],"data_offsets":[0,8]},"__metadata__":{"k":"v"}})",
      16);
  const SafetensorsHeader header = parse_safetensors_header(file, "ok.safetensors");
  ASSERT_EQ(header.entries.size(), 2U);
  EXPECT_EQ(header.entries[0].name, "a");  // data order, not header order
  EXPECT_EQ(header.entries[0].dtype, DType::I16);
  EXPECT_EQ(header.entries[0].shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(header.entries[1].name, "b");
  EXPECT_EQ(header.entries[1].begin, 8U);
  EXPECT_EQ(header.metadata.at("k"), "v");
  EXPECT_EQ(header.data_start, file.size() - 16);
}

// ---------------------------------------------------------------------------------------
// Malformed files: each gives "[safetensors] <file>: ..." saying what is wrong.

constexpr std::string_view kPrefix = "[safetensors] bad.safetensors: ";

TEST(SafetensorsMalformed, FileShorterThanTheLengthPrefix) {
  const std::string message = parse_error(std::vector<std::byte>(5));
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "5 bytes"));
}

TEST(SafetensorsMalformed, HeaderLengthPastEndOfFile) {
  std::vector<std::byte> file;
  test::append_le(file, 1000, 8);
  file.resize(20, std::byte{'{'});
  const std::string message = parse_error(file);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "exceeds file size"));
}

TEST(SafetensorsMalformed, HugeHeaderLengthDoesNotWrapAround) {
  std::vector<std::byte> file;
  test::append_le(file, UINT64_MAX - 3, 8);
  file.resize(16, std::byte{'{'});
  EXPECT_TRUE(Contains(parse_error(file), "exceeds file size"));
}

TEST(SafetensorsMalformed, HeaderLengthOverTheLimit) {
  ReadLimits limits;
  limits.max_header_bytes = 16;
  const std::string message =
      parse_error(safetensors_file(R"({"__metadata__":{"a":"b"}})", 0), limits);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "limit of 16 bytes"));
}

TEST(SafetensorsMalformed, HeaderIsNotJson) {
  const std::string message = parse_error(safetensors_file("{this is not json}", 0));
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "not valid JSON"));
  EXPECT_TRUE(StartsWith(parse_error(safetensors_file("[1, 2]", 0)), kPrefix));
  EXPECT_TRUE(StartsWith(parse_error(safetensors_file("", 0)), kPrefix));
}

TEST(SafetensorsMalformed, UnknownDTypeNamesTensorAndDType) {
  const std::string message = parse_error(
      safetensors_file(R"({"c.weight":{"dtype":"C64","shape":[2],"data_offsets":[0,16]}})", 16));
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "'c.weight'"));
  EXPECT_TRUE(Contains(message, "'C64'"));
  EXPECT_TRUE(Contains(message, "supported: "));
}

TEST(SafetensorsMalformed, Float8NamesTensorTorchDTypeAndWhatToDo) {
  for (const auto& [dtype, torch_name] :
       std::vector<std::pair<std::string, std::string>>{{"F8_E4M3", "float8_e4m3fn"},
                                                        {"F8_E5M2", "float8_e5m2"},
                                                        {"F8_E8M0", "float8_e8m0fnu"},
                                                        {"F8_E4M3FNUZ", "float8_e4m3fnuz"},
                                                        {"F8_E5M2FNUZ", "float8_e5m2fnuz"}}) {
    const std::string message = parse_error(safetensors_file(
        R"({"fp8.weight":{"dtype":")" + dtype + R"(","shape":[2],"data_offsets":[0,2]}})", 2));
    EXPECT_TRUE(StartsWith(message, kPrefix)) << message;
    EXPECT_TRUE(Contains(message, "tensor 'fp8.weight' has dtype '" + dtype + "' (" + torch_name +
                                      "), which MLX has no dtype for"));
    EXPECT_TRUE(Contains(message, "cast it to bfloat16 in torch before saving"));
  }
}

/// `"name":{...}` of a float32 tensor of shape [1] at `begin`.
std::string entry_text(const std::string& name, std::size_t begin) {
  return R"(,")" + name + R"(":{"dtype":"F32","shape":[1],"data_offsets":[)" +
         std::to_string(begin) + "," + std::to_string(begin + 4) + "]}";
}

/// A header of `count` float32 tensors of shape [1], "t0", "t1", ..., in data order.
std::string many_tensors(std::size_t count) {
  std::string header = R"({"__metadata__":{"format":"pt"})";
  for (std::size_t i = 0; i < count; ++i) {
    header += entry_text("t" + std::to_string(i), 4 * i);
  }
  return header + "}";
}

TEST(Safetensors, AHundredThousandTensorHeaderParses) {
  // Found reviewing the reader: nlohmann's callback parser rescans the enclosing object after
  // each member, so this header took minutes; it is now read in one pass.
  constexpr std::size_t kCount = 100000;
  const auto file = safetensors_file(many_tensors(kCount), 4 * kCount);
  const SafetensorsHeader header = parse_safetensors_header(file, "many.safetensors");
  ASSERT_EQ(header.entries.size(), kCount);
  for (const std::size_t i : {std::size_t{0}, std::size_t{1}, std::size_t{54321}, kCount - 1}) {
    EXPECT_EQ(header.entries[i].name, "t" + std::to_string(i));
    EXPECT_EQ(header.entries[i].dtype, DType::F32);
    EXPECT_EQ(header.entries[i].shape, std::vector<std::int64_t>{1});
    EXPECT_EQ(header.entries[i].begin, 4 * i);
    EXPECT_EQ(header.entries[i].end, 4 * i + 4);
  }
  EXPECT_EQ(header.metadata.at("format"), "pt");
  // One name given twice, at the very end, is still found.
  std::string duplicated = many_tensors(kCount);
  duplicated.pop_back();
  duplicated += entry_text("t7", 4 * kCount) + "}";
  EXPECT_TRUE(Contains(parse_error(safetensors_file(duplicated, 4 * kCount + 4)),
                       "tensor 't7' appears twice in the header"));
}

TEST(SafetensorsMalformed, MoreTensorsThanTheLimit) {
  ReadLimits limits;
  limits.max_tensors = 3;
  EXPECT_EQ(
      parse_safetensors_header(safetensors_file(many_tensors(2), 8), "ok", limits).entries.size(),
      2U);  // two tensors and the metadata: three members
  const std::string message = parse_error(safetensors_file(many_tensors(3), 12), limits);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "header lists more tensors than the limit of 3"));
}

TEST(SafetensorsMalformed, NestingDeeperThanTheLimit) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string message = parse_error(safetensors_file(
      R"({"a":{"dtype":"U8","shape":[],"data_offsets":[0,1],"x":)" + deep + "}}", 1));
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "header nests deeper than the limit of 512"));
}

TEST(Safetensors, UnknownMembersOfAnEntryAreSkipped) {
  const auto file = safetensors_file(
      R"({"a":{"extra":{"shape":"no","dtype":[1,{"b":2}]},"dtype":"I16","shape":[2],)"
      R"("data_offsets":[0,4],"more":[[["x"]]]}})",
      4);
  const SafetensorsHeader header = parse_safetensors_header(file, "extra.safetensors");
  ASSERT_EQ(header.entries.size(), 1U);
  EXPECT_EQ(header.entries[0].dtype, DType::I16);
  EXPECT_EQ(header.entries[0].shape, std::vector<std::int64_t>{2});
  EXPECT_EQ(header.entries[0].end, 4U);
}

TEST(SafetensorsMalformed, FieldsOfTheWrongKind) {
  auto message_for = [](std::string_view entry, std::size_t data) {
    return parse_error(safetensors_file(R"({"a":)" + std::string(entry) + "}", data));
  };
  EXPECT_TRUE(Contains(message_for(R"([1])", 0), "tensor 'a': entry is not an object"));
  EXPECT_TRUE(Contains(message_for(R"({"dtype":{"F32":1},"shape":[],"data_offsets":[0,4]})", 4),
                       "missing string 'dtype'"));
  EXPECT_TRUE(Contains(message_for(R"({"dtype":"F32","shape":{},"data_offsets":[0,4]})", 4),
                       "missing array 'shape'"));
  EXPECT_TRUE(Contains(message_for(R"({"dtype":"F32","shape":[[1]],"data_offsets":[0,4]})", 4),
                       "not a non-negative integer"));
  EXPECT_TRUE(Contains(
      message_for(R"({"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,4]})", 4),
      "shape dim is too large"));
  EXPECT_TRUE(Contains(message_for(R"({"dtype":"F32","shape":[1],"data_offsets":[0,4,8]})", 8),
                       "'data_offsets' must be two non-negative integers"));
  EXPECT_TRUE(Contains(message_for(R"({"dtype":"F32","shape":[1],"data_offsets":[0,[4]]})", 4),
                       "'data_offsets' must be two non-negative integers"));
  EXPECT_TRUE(Contains(message_for(R"({"dtype":"F32","shape":[1]})", 4),
                       "'data_offsets' must be two non-negative integers"));
  EXPECT_TRUE(Contains(parse_error(safetensors_file(R"({"__metadata__":[1]})", 0)),
                       "__metadata__ is not an object"));
  EXPECT_TRUE(Contains(parse_error(safetensors_file(R"({"__metadata__":{"a":{"b":"c"}}})", 0)),
                       "__metadata__ value for 'a' is not a string"));
  EXPECT_TRUE(Contains(parse_error(safetensors_file(R"({"__metadata__":{},"__metadata__":{}})", 0)),
                       "tensor '__metadata__' appears twice"));
}

TEST(SafetensorsMalformed, TooManyDims) {
  std::string shape = "[1";
  for (int i = 0; i < 64; ++i) shape += ",1";
  const std::string message = parse_error(safetensors_file(
      R"({"a":{"dtype":"U8","shape":)" + shape + R"(],"data_offsets":[0,1]}})", 1));
  EXPECT_TRUE(Contains(message, "tensor 'a' has 65 dims, more than the 64"));
}

TEST(SafetensorsMalformed, ShapeDoesNotMatchOffsets) {
  const std::string message = parse_error(
      safetensors_file(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})", 8));
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "tensor 'w'"));
  EXPECT_TRUE(Contains(message, "needs 16 bytes but data_offsets span 8"));
}

TEST(SafetensorsMalformed, OverlappingOffsets) {
  const std::string message =
      parse_error(safetensors_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                                   12));
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "tensor 'b' starts at byte 4"));
  EXPECT_TRUE(Contains(message, "overlap"));
}

TEST(SafetensorsMalformed, HoleBetweenTensors) {
  const std::string message =
      parse_error(safetensors_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                   R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                                   12));
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "tensor 'b' starts at byte 8 of the data buffer, expected 4"));
}

TEST(SafetensorsMalformed, TrailingBytesAfterTheLastTensor) {
  const std::string message =
      parse_error(safetensors_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8));
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "tensors cover 4 bytes but the data buffer holds 8"));
}

TEST(SafetensorsMalformed, DataBufferShorterThanTheTensors) {
  const std::string message =
      parse_error(safetensors_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4));
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "truncated"));
}

TEST(SafetensorsMalformed, DuplicateTensorName) {
  const std::string message =
      parse_error(safetensors_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                   R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                   8));
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "'a' appears twice"));
}

TEST(SafetensorsMalformed, MetadataWithANonStringValue) {
  const std::string message = parse_error(safetensors_file(R"({"__metadata__":{"epochs":3}})", 0));
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "__metadata__ value for 'epochs' is not a string"));
}

TEST(SafetensorsMalformed, NegativeOrFractionalShape) {
  EXPECT_TRUE(StartsWith(
      parse_error(safetensors_file(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}})", 0)),
      kPrefix));
  EXPECT_TRUE(StartsWith(parse_error(safetensors_file(
                             R"({"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", 1)),
                         kPrefix));
}

TEST(SafetensorsMalformed, EmptyTensorWhoseOtherDimsOverflow) {
  // 0 elements, so data_offsets [0, 0] fit; but its row-major strides overflowed int64.
  const auto file =
      safetensors_file(R"({"e":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],)"
                       R"("data_offsets":[0,0]}})",
                       0);
  const std::string message = parse_error(file);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "tensor 'e': shape overflows"));
  EXPECT_TRUE(StartsWith(
      error_of([&] { (void)read_safetensors(MappedFile::from_bytes(file, "bad.safetensors")); }),
      kPrefix));
}

TEST(SafetensorsMalformed, ReadingAFileNamesItsPath) {
  const test::TempDir dir;
  const auto path = dir / "broken.safetensors";
  ASSERT_NO_FATAL_FAILURE(test::write_file(
      path, safetensors_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 9)));
  EXPECT_TRUE(StartsWith(error_of([&] { (void)read_safetensors(MappedFile::open(path)); }),
                         "[safetensors] " + path.string() + ": "));
}

}  // namespace
}  // namespace torch2mlx
