#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "test_util.h"
#include "torch2mlx/checkpoint.h"
#include "torch2mlx/error.h"
#include "torch2mlx/mapped_file.h"
#include "torch2mlx/torch_zip.h"
#include "torch2mlx/zip_archive.h"

namespace torch2mlx {
namespace {

using test::Contains;
using test::error_of;
using test::PickleBuilder;
using test::StartsWith;
using test::ZipMember;

const std::vector<float> kValues{1.5F, -2.0F, 3.25F, 0.0F, 1e-3F, 42.0F};

/// data.pkl of torch.save({'w': <2x3 float tensor over storage '0'>}).
std::vector<std::byte> state_dict_program() {
  PickleBuilder program;
  program.proto().empty_dict().binput(0).binunicode("w");
  program.float_tensor("0", 6, 0, {2, 3}, {3, 1}).binput(1).setitem().stop();
  return program.bytes();
}

/// The members torch.save writes for state_dict_program(), minus `skip`.
std::vector<ZipMember> torch_members(std::string_view byteorder, std::vector<std::byte> storage,
                                     std::string_view skip = {}) {
  std::vector<ZipMember> members{
      {"archive/data.pkl", state_dict_program()},
      {"archive/byteorder", test::bytes_of(byteorder)},
      {"archive/data/0", std::move(storage)},
      {"archive/version", test::bytes_of("3\n")},
  };
  std::erase_if(members, [&](const ZipMember& member) { return member.name == skip; });
  return members;
}

std::vector<float> floats_of(const Tensor& tensor) {
  return test::values_at<float>(tensor.data(), static_cast<std::size_t>(tensor.numel()));
}

class TorchZip : public ::testing::Test {
 protected:
  /// Writes `members` to <dir>/model.pt and returns the path.
  std::filesystem::path write(const std::vector<ZipMember>& members) {
    const auto path = dir_ / "model.pt";
    test::write_zip(path, members);
    return path;
  }
  test::TempDir dir_;
};

TEST_F(TorchZip, ReadsTheTensorValues) {
  const auto path = write(torch_members("little", test::raw_bytes(kValues)));
  const Checkpoint checkpoint = read_torch_zip(MappedFile::open(path));
  EXPECT_EQ(checkpoint.format, "torch");
  EXPECT_EQ(checkpoint.files, std::vector<std::string>{path.string()});
  EXPECT_TRUE(checkpoint.others.empty());
  ASSERT_EQ(checkpoint.tensors.size(), 1U);
  const Tensor& w = checkpoint.tensors[0].tensor;
  EXPECT_EQ(checkpoint.tensors[0].name, "w");
  EXPECT_EQ(w.dtype, DType::F32);
  EXPECT_EQ(w.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(w.strides, (std::vector<std::int64_t>{3, 1}));
  EXPECT_EQ(floats_of(w), kValues);
}

TEST_F(TorchZip, ReadCheckpointDetectsTheArchiveByContent) {
  const auto path = write(torch_members("little", test::raw_bytes(kValues)));
  EXPECT_EQ(detect_format(path), "torch");
  const Checkpoint checkpoint = read_checkpoint(path);
  EXPECT_EQ(checkpoint.format, "torch");
  EXPECT_EQ(floats_of(checkpoint.tensors.at(0).tensor), kValues);
}

TEST_F(TorchZip, ReadsWithoutAByteorderMemberAsLittleEndian) {
  const auto path = write(torch_members("little", test::raw_bytes(kValues), "archive/byteorder"));
  EXPECT_EQ(floats_of(read_torch_zip(MappedFile::open(path)).tensors.at(0).tensor), kValues);
}

TEST_F(TorchZip, SwapsBigEndianStorages) {
  std::vector<std::byte> swapped = test::raw_bytes(kValues);
  byteswap_elements(swapped.data(), swapped.size(), 4);
  const auto path = write(torch_members("big", swapped));
  const Checkpoint checkpoint = read_torch_zip(MappedFile::open(path));
  EXPECT_EQ(floats_of(checkpoint.tensors.at(0).tensor), kValues);
  EXPECT_EQ(checkpoint.metadata.at("byteorder"), "big");
}

TEST_F(TorchZip, RefusesAnUnknownByteorder) {
  const auto path = write(torch_members("middle", test::raw_bytes(kValues)));
  const std::string message = error_of([&] { (void)read_torch_zip(MappedFile::open(path)); });
  EXPECT_TRUE(StartsWith(message, "[torch] " + path.string() + ": "));
  EXPECT_TRUE(Contains(message, "byteorder is 'middle'"));
}

TEST_F(TorchZip, RefusesAByteorderLongerThanBigBeforeReadingIt) {
  // Found reviewing the reader: a deflated byteorder member was inflated whatever its size.
  std::string padded(1000, ' ');
  padded.replace(0, 6, "little");
  const auto path = write(torch_members(padded, test::raw_bytes(kValues)));
  const std::string message = error_of([&] { (void)read_torch_zip(MappedFile::open(path)); });
  EXPECT_TRUE(StartsWith(message, "[torch] " + path.string() + ": "));
  EXPECT_TRUE(Contains(message, "byteorder is 1000 bytes"));
}

TEST_F(TorchZip, RefusesAMissingStorageNamingItsKey) {
  const auto path = write(torch_members("little", test::raw_bytes(kValues), "archive/data/0"));
  const std::string message = error_of([&] { (void)read_torch_zip(MappedFile::open(path)); });
  EXPECT_TRUE(StartsWith(message, "[torch] " + path.string() + ": "));
  EXPECT_TRUE(Contains(message, "storage '0'"));
  EXPECT_TRUE(Contains(message, "archive/data/0 is missing"));
}

TEST_F(TorchZip, RefusesAStorageShorterThanDeclared) {
  const auto path = write(torch_members("little", test::raw_bytes(std::vector<float>{1, 2})));
  EXPECT_TRUE(Contains(error_of([&] { (void)read_torch_zip(MappedFile::open(path)); }),
                       "declares 6 elements of float32 but holds 8 bytes"));
}

TEST_F(TorchZip, HeadersOnlyKeepsSizesButReadsNoData) {
  const auto path = write(torch_members("little", test::raw_bytes(kValues)));
  ReadOptions options;
  options.headers_only = true;
  const Checkpoint checkpoint = read_torch_zip(MappedFile::open(path), options);
  const Tensor& w = checkpoint.tensors.at(0).tensor;
  ASSERT_NE(w.storage, nullptr);
  EXPECT_EQ(w.storage->data, nullptr);
  EXPECT_EQ(w.storage->nbytes, 24U);
  EXPECT_EQ(w.nbytes(), 24U);
  EXPECT_EQ(w.shape, (std::vector<std::int64_t>{2, 3}));
}

TEST_F(TorchZip, TensorsOfOneStorageShareIt) {
  // {'w': <2x3>, 'w_t': <its transpose>, 'epoch': 3}
  PickleBuilder program;
  program.proto().empty_dict().binput(0).mark();
  program.binunicode("w").float_tensor("0", 6, 0, {2, 3}, {3, 1});
  program.binunicode("w_t").float_tensor("0", 6, 0, {3, 2}, {1, 3});
  program.binunicode("epoch").binint1(3).setitems().stop();
  const auto path =
      write({{"archive/data.pkl", program.bytes()}, {"archive/data/0", test::raw_bytes(kValues)}});
  const Checkpoint checkpoint = read_torch_zip(MappedFile::open(path));
  ASSERT_EQ(checkpoint.tensors.size(), 2U);
  EXPECT_EQ(checkpoint.tensors[0].tensor.storage, checkpoint.tensors[1].tensor.storage);
  ASSERT_EQ(checkpoint.others.size(), 1U);
  EXPECT_EQ(checkpoint.others[0].path, "epoch");
  EXPECT_EQ(checkpoint.others[0].repr, "3");
}

TEST_F(TorchZip, RefusesAZipWithoutDataPkl) {
  const auto path = write({{"archive/data/0", test::raw_bytes(kValues)}});
  EXPECT_EQ(detect_format(path), "zip");
  EXPECT_TRUE(Contains(error_of([&] { (void)read_torch_zip(MappedFile::open(path)); }),
                       "not a torch.save checkpoint"));
  EXPECT_TRUE(Contains(error_of([&] { (void)read_checkpoint(path); }), "no data.pkl"));
}

TEST_F(TorchZip, RefusesAGlobalThatRunsCode) {
  PickleBuilder program;
  program.proto().global("os", "system").binunicode("true").tuple1().reduce().stop();
  const auto path = write({{"archive/data.pkl", program.bytes()}});
  const std::string message = error_of([&] { (void)read_torch_zip(MappedFile::open(path)); });
  EXPECT_TRUE(StartsWith(message, "[pickle] " + path.string() + " (archive/data.pkl): "));
  EXPECT_TRUE(Contains(message, "os.system"));
}

// ---------------------------------------------------------------------------------------
// The zip layer.

TEST_F(TorchZip, ZipArchiveListsFindsAndReadsStoredEntries) {
  const auto path = write({{"a/one", test::bytes_of("first")}, {"a/two", test::bytes_of("")}});
  const ZipArchive archive = ZipArchive::open(MappedFile::open(path));
  ASSERT_EQ(archive.entries().size(), 2U);
  EXPECT_EQ(archive.entries()[0].name, "a/one");
  EXPECT_TRUE(archive.entries()[0].stored);
  EXPECT_EQ(archive.find("a/three"), nullptr);
  ASSERT_NE(archive.find("a/one"), nullptr);
  EXPECT_EQ(archive.read_text(*archive.find("a/one")), "first");
  EXPECT_EQ(archive.read(*archive.find("a/two"))->nbytes, 0U);
}

TEST_F(TorchZip, ZipArchiveReadsDeflatedEntriesIncludingEmptyOnes) {
  // An empty deflated member (2 bytes of deflate for 0 bytes, as Python's zipfile writes with
  // ZIP_DEFLATED) was refused as corrupt: zlib refuses the empty vector's null data pointer.
  const auto path = dir_ / "deflated.zip";
  test::write_zip(path, {{"a/empty", test::bytes_of("")}, {"a/text", test::bytes_of("hello")}},
                  /*deflated=*/true);
  const ZipArchive archive = ZipArchive::open(MappedFile::open(path));
  const ZipEntry* empty = archive.find("a/empty");
  ASSERT_NE(empty, nullptr);
  EXPECT_FALSE(empty->stored);
  EXPECT_EQ(empty->size, 0U);
  EXPECT_GT(empty->compressed_size, 0U);
  EXPECT_EQ(archive.read(*empty)->nbytes, 0U);
  EXPECT_EQ(archive.read_text(*archive.find("a/text")), "hello");
}

TEST_F(TorchZip, TorchZipReadsAnEmptyDeflatedStorage) {
  PickleBuilder program;
  program.proto().empty_dict().binput(0).binunicode("w");
  program.float_tensor("0", 0, 0, {0}, {1}).binput(1).setitem().stop();
  const auto path = dir_ / "empty.pt";
  test::write_zip(path,
                  {{"archive/data.pkl", program.bytes()},
                   {"archive/byteorder", test::bytes_of("little")},
                   {"archive/data/0", {}}},
                  /*deflated=*/true);
  const Checkpoint checkpoint = read_torch_zip(MappedFile::open(path));
  ASSERT_EQ(checkpoint.tensors.size(), 1U);
  EXPECT_EQ(checkpoint.tensors[0].tensor.shape, std::vector<std::int64_t>{0});
}

TEST_F(TorchZip, ZipArchiveRefusesADeflatedEntryThatInflatesToMoreThanDeclared) {
  const auto path = dir_ / "longer.zip";
  test::write_zip(path, {{"a/x", test::bytes_of("hello")}}, /*deflated=*/true);
  std::vector<std::byte> bytes = test::read_file(path);
  // Declare 0 bytes (and the CRC of nothing) in both headers: the stream holds 5.
  for (const std::size_t field : {std::size_t{14}, std::size_t{22}}) {
    for (std::size_t i = 0; i < 4; ++i) bytes[field + i] = std::byte{0};
  }
  const std::vector<std::byte> signature = test::bytes_of("PK\x01\x02");
  const auto central = static_cast<std::size_t>(
      std::search(bytes.begin(), bytes.end(), signature.begin(), signature.end()) - bytes.begin());
  ASSERT_LT(central, bytes.size());
  for (const std::size_t field : {std::size_t{16}, std::size_t{24}}) {
    for (std::size_t i = 0; i < 4; ++i) bytes[central + field + i] = std::byte{0};
  }
  const auto file = MappedFile::from_bytes(bytes, "longer.zip");
  const ZipArchive archive = ZipArchive::open(file);
  const std::string message = error_of([&] { (void)archive.read(*archive.find("a/x")); });
  EXPECT_TRUE(StartsWith(message, "[zip] longer.zip: "));
  EXPECT_TRUE(Contains(message, "entry 'a/x' is corrupt: its data inflates to more than 0 bytes"));
  EXPECT_TRUE(Contains(message, "download or save it again"));
}

TEST_F(TorchZip, ZipArchiveRefusesDeflatedEntriesOverTheInflationBudget) {
  const auto path = dir_ / "budget.zip";
  test::write_zip(path,
                  {{"a/one", std::vector<std::byte>(600)}, {"a/two", std::vector<std::byte>(600)}},
                  /*deflated=*/true);
  ReadLimits limits;
  limits.max_inflated_bytes = 1200;
  EXPECT_EQ(ZipArchive::open(MappedFile::open(path), limits).entries().size(), 2U);
  limits.max_inflated_bytes = 1199;
  const std::string message =
      error_of([&] { (void)ZipArchive::open(MappedFile::open(path), limits); });
  EXPECT_TRUE(StartsWith(message, "[zip] " + path.string() + ": "));
  EXPECT_TRUE(Contains(message,
                       "deflated entries inflate to more than the limit of 1199 bytes "
                       "(entry 'a/two' adds 600 to 600)"));
  EXPECT_TRUE(Contains(message, "re-save a genuine one with torch.save"));
  // Stored entries are views of the file and cost nothing.
  test::write_zip(path,
                  {{"a/one", std::vector<std::byte>(600)}, {"a/two", std::vector<std::byte>(600)}});
  limits.max_inflated_bytes = 0;
  EXPECT_EQ(ZipArchive::open(MappedFile::open(path), limits).entries().size(), 2U);
}

TEST_F(TorchZip, ZipArchiveRefusesDuplicateNames) {
  const auto path = write({{"archive/x", test::bytes_of("1")}, {"archive/x", test::bytes_of("2")}});
  const std::string message = error_of([&] { (void)ZipArchive::open(MappedFile::open(path)); });
  EXPECT_TRUE(StartsWith(message, "[zip] " + path.string() + ": "));
  EXPECT_TRUE(Contains(message, "'archive/x' appears twice"));
}

TEST_F(TorchZip, ZipArchiveRefusesNamesThatClimbOut) {
  for (const std::string name : {"../evil", "archive/../../evil", "/etc/evil", "a\\..\\evil"}) {
    const auto path = write({{name, test::bytes_of("x")}});
    const std::string message = error_of([&] { (void)ZipArchive::open(MappedFile::open(path)); });
    EXPECT_TRUE(StartsWith(message, "[zip] " + path.string() + ": ")) << name;
    EXPECT_TRUE(Contains(message, "'" + name + "'")) << name;
  }
}

TEST_F(TorchZip, ZipArchiveRefusesALocalHeaderWhoseSizesLie) {
  // Found by tests/test_adversarial.py once the reader parsed zips itself: a local header
  // claiming 10**9 bytes while the central directory says 5 was read without a word.
  const auto path = write({{"archive/x", test::bytes_of("12345")}});
  std::vector<std::byte> bytes = test::read_file(path);
  ASSERT_EQ(std::to_integer<int>(bytes[0]), 'P');  // the first local header starts the file
  for (const std::size_t field : {18, 22}) {
    for (std::size_t i = 0; i < 4; ++i) {
      bytes[field + i] = static_cast<std::byte>((1000000000U >> (8 * i)) & 0xFFU);
    }
  }
  const std::string message =
      error_of([&] { (void)ZipArchive::open(MappedFile::from_bytes(bytes, "lies.zip")); });
  EXPECT_TRUE(StartsWith(message, "[zip] lies.zip: "));
  EXPECT_TRUE(Contains(message, "local header of entry 'archive/x' is damaged"));
  EXPECT_TRUE(Contains(message, "disagrees with the central directory"));
}

TEST_F(TorchZip, RefusesATruncatedZip) {
  const auto path = write(torch_members("little", test::raw_bytes(kValues)));
  std::vector<std::byte> bytes = test::read_file(path);
  bytes.resize(bytes.size() / 2);
  ASSERT_NO_FATAL_FAILURE(test::write_file(path, bytes));
  const std::string message = error_of([&] { (void)read_torch_zip(MappedFile::open(path)); });
  EXPECT_TRUE(StartsWith(message, "[zip] " + path.string() + ": "));
  EXPECT_TRUE(Contains(message, "truncated"));
}

TEST_F(TorchZip, RefusesATruncatedZipHeldInMemory) {
  const auto path = write(torch_members("little", test::raw_bytes(kValues)));
  std::vector<std::byte> bytes = test::read_file(path);
  // Keep the end of central directory but cut into the central directory before it.
  bytes.erase(bytes.begin() + static_cast<std::ptrdiff_t>(bytes.size() / 2), bytes.end() - 40);
  const std::string message =
      error_of([&] { (void)read_torch_zip(MappedFile::from_bytes(bytes, "cut.pt")); });
  EXPECT_TRUE(StartsWith(message, "[zip] cut.pt: "));
}

TEST_F(TorchZip, RefusesAnEmptyFile) {
  // Found by fuzz_zip: minizip read zero bytes from the empty buffer's null data pointer.
  ASSERT_NO_FATAL_FAILURE(test::write_file(dir_ / "empty.pt", {}));
  for (const auto& file :
       {MappedFile::from_bytes({}, "empty.pt"), MappedFile::open(dir_ / "empty.pt")}) {
    const std::string message = error_of([&] { (void)ZipArchive::open(file); });
    EXPECT_TRUE(StartsWith(message, "[zip] " + file->name() + ": "));
    EXPECT_TRUE(Contains(message, "not a zip archive"));
  }
}

// ---------------------------------------------------------------------------------------
// Format detection and folders.

TEST_F(TorchZip, FolderWithoutWeightsNamesTheCandidates) {
  ASSERT_NO_FATAL_FAILURE(test::write_file(dir_ / "config.json", test::bytes_of("{}")));
  const std::string message = error_of([&] { (void)read_checkpoint(dir_.path()); });
  EXPECT_TRUE(StartsWith(message, "[checkpoint] " + dir_.path().string() + ": "));
  for (const char* candidate : {"model.safetensors.index.json", "model.safetensors",
                                "pytorch_model.bin.index.json", "pytorch_model.bin"}) {
    EXPECT_TRUE(Contains(message, candidate));
  }
}

TEST_F(TorchZip, FolderWithPytorchModelBinIsRead) {
  test::write_zip(dir_ / "pytorch_model.bin", torch_members("little", test::raw_bytes(kValues)));
  EXPECT_EQ(detect_format(dir_.path()), "hf-folder");
  const Checkpoint checkpoint = read_checkpoint(dir_.path());
  EXPECT_EQ(checkpoint.format, "torch");
  EXPECT_EQ(floats_of(checkpoint.tensors.at(0).tensor), kValues);
}

TEST_F(TorchZip, ShardIndexGroupsTensorsByShard) {
  const ShardIndex index = parse_shard_index(
      R"({"metadata": {"total_size": 24, "format": "pt"},)"
      R"( "weight_map": {"a": "one.safetensors", "b": "two.safetensors", "c": "one.safetensors"}})",
      "model.safetensors.index.json");
  EXPECT_EQ(index.shards.size(), 2U);
  EXPECT_EQ(index.shards.at("one.safetensors"), (std::set<std::string>{"a", "c"}));
  EXPECT_EQ(index.metadata.at("total_size"), "24");
  EXPECT_EQ(index.metadata.at("format"), "pt");
}

TEST_F(TorchZip, ShardIndexNestedDeeperThanTheLimit) {
  // Dumping a metadata value nested 100000 deep overflowed the stack (found reviewing the
  // index reader): nesting is now refused while parsing.
  const std::string json = R"({"weight_map": {}, "metadata": {"a": )" + std::string(100000, '[') +
                           std::string(100000, ']') + "}}";
  const std::string message = error_of([&] { (void)parse_shard_index(json, "deep.json"); });
  EXPECT_TRUE(StartsWith(message, "[checkpoint] deep.json: "));
  EXPECT_TRUE(Contains(message, "nests deeper than the limit of 512"));

  ASSERT_NO_FATAL_FAILURE(test::write_file(dir_ / "deep.json", test::bytes_of(json)));
  EXPECT_TRUE(Contains(error_of([&] { (void)read_checkpoint(dir_ / "deep.json"); }),
                       "nests deeper than the limit of 512"));
}

TEST_F(TorchZip, ShardIndexLargerThanTheLimit) {
  ReadLimits limits;
  limits.max_header_bytes = 16;
  const std::string message = error_of(
      [&] { (void)parse_shard_index(R"({"weight_map": {"a": "b.bin"}})", "big.json", limits); });
  EXPECT_TRUE(StartsWith(message, "[checkpoint] big.json: "));
  EXPECT_TRUE(Contains(message, "index is 30 bytes, over the limit of 16"));
}

TEST_F(TorchZip, LegacyTorchSaveIsDetectedAndRefused) {
  const auto path = dir_ / "old.pt";
  std::vector<std::byte> bytes;
  for (const int byte :
       {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e}) {
    bytes.push_back(static_cast<std::byte>(byte));
  }
  ASSERT_NO_FATAL_FAILURE(test::write_file(path, bytes));
  EXPECT_EQ(detect_format(path), "torch-legacy");
  const std::string message = error_of([&] { (void)read_checkpoint(path); });
  EXPECT_TRUE(StartsWith(message, "[checkpoint] " + path.string() + ": "));
  EXPECT_TRUE(Contains(message, "legacy"));
}

TEST_F(TorchZip, MissingPathIsRefused) {
  EXPECT_TRUE(Contains(error_of([&] { (void)read_checkpoint(dir_ / "nope.pt"); }),
                       "no such file or folder"));
}

}  // namespace
}  // namespace torch2mlx
