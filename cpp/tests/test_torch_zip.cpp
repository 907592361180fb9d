#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
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

TEST_F(TorchZip, ShardIndexOfAHundredThousandTensorsParses) {
  // The callback parser this replaced rescanned the weight map after every member.
  constexpr std::size_t kCount = 100000;
  std::string json = R"({"metadata": {"total_size": 400000}, "weight_map": {)";
  for (std::size_t i = 0; i < kCount; ++i) {
    json += (i == 0 ? "\"t" : ", \"t") + std::to_string(i) + "\": \"model-0000" +
            std::to_string(i % 3) + ".safetensors\"";
  }
  json += "}}";
  const ShardIndex index = parse_shard_index(json, "model.safetensors.index.json");
  ASSERT_EQ(index.shards.size(), 3U);
  EXPECT_EQ(index.shards.at("model-00000.safetensors").size(), 33334U);
  EXPECT_TRUE(index.shards.at("model-00002.safetensors").contains("t99998"));
  EXPECT_EQ(index.metadata.at("total_size"), "400000");
}

/// The archive of torch_members with `version` as its archive/version record.
std::vector<ZipMember> with_version(std::string_view version) {
  auto members = torch_members("little", test::raw_bytes(kValues));
  for (auto& member : members) {
    if (member.name == "archive/version") member.data = test::bytes_of(version);
  }
  return members;
}

TEST_F(TorchZip, FormatVersionsTorchReadsAreRead) {
  for (const std::string_view version : {"1", "3\n", "10", " 7x"}) {
    EXPECT_EQ(
        floats_of(
            read_torch_zip(MappedFile::open(write(with_version(version)))).tensors.at(0).tensor),
        kValues)
        << version;
  }
  // torch finds the version in .data/version first.
  auto members = with_version("3");
  members.push_back({"archive/.data/version", test::bytes_of("11\n")});
  EXPECT_TRUE(Contains(error_of([&] { (void)read_torch_zip(MappedFile::open(write(members))); }),
                       "archive/.data/version says format version 11"));
}

TEST_F(TorchZip, FormatVersionsTorchRefusesAreRefused) {
  // torch.load: "Attempted to read a PyTorch file with version 11, but the maximum supported
  // version for reading is 10"; found reviewing the reader, which read such files silently.
  const auto path = write(with_version("11\n"));
  std::string message = error_of([&] { (void)read_torch_zip(MappedFile::open(path)); });
  EXPECT_TRUE(StartsWith(message, "[torch] " + path.string() + ": "));
  EXPECT_TRUE(Contains(message,
                       "archive/version says format version 11, but torch 2.13 reads at "
                       "most version 10 and refuses it too"));
  EXPECT_TRUE(Contains(message, "upgrade torch2mlx"));
  for (const std::string_view version : {"0", "-1"}) {
    message =
        error_of([&] { (void)read_torch_zip(MappedFile::open(write(with_version(version)))); });
    EXPECT_TRUE(Contains(message, "says format version " + std::string(version) +
                                      ", but torch reads only versions 1 to 10"))
        << message;
  }
  message = error_of([&] { (void)read_torch_zip(MappedFile::open(write(with_version("abc")))); });
  EXPECT_TRUE(Contains(message, "archive/version holds 'abc', not a format version"));
  message = error_of(
      [&] { (void)read_torch_zip(MappedFile::open(write(with_version(std::string(65, '1'))))); });
  EXPECT_TRUE(Contains(message, "archive/version is 65 bytes"));
}

TEST_F(TorchZip, Float8TensorIsRefusedByNameAndDType) {
  // torch.save writes float8 tensors with _rebuild_tensor_v3 and an untyped storage; this
  // was refused as "_rebuild_tensor_v3 without a dtype".
  for (const std::string_view dtype :
       {"float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"}) {
    PickleBuilder program;
    program.proto().empty_dict().binput(0).binunicode("layer.w");
    program.global("torch._utils", "_rebuild_tensor_v3").mark();
    program.storage("torch.storage", "UntypedStorage", "0", 4)
        .integer(0)
        .int_tuple({4})
        .int_tuple({1});
    program.newfalse().ordered_dict().global("torch", dtype).tuple().reduce();
    program.setitem().stop();
    const auto path = write({{"archive/data.pkl", program.bytes()},
                             {"archive/byteorder", test::bytes_of("little")},
                             {"archive/data/0", std::vector<std::byte>(4)},
                             {"archive/version", test::bytes_of("3\n")}});
    const std::string message = error_of([&] { (void)read_checkpoint(path); });
    EXPECT_TRUE(StartsWith(message, "[pickle] " + path.string() + " (archive/data.pkl): "))
        << message;
    EXPECT_TRUE(Contains(message, "tensor 'layer.w' is " + std::string(dtype) +
                                      ", which MLX has no dtype for; cast it to bfloat16 in "
                                      "torch before saving"));
    ReadOptions headers;
    headers.headers_only = true;
    EXPECT_TRUE(Contains(error_of([&] { (void)read_checkpoint(path, headers); }),
                         "tensor 'layer.w' is " + std::string(dtype)));
  }
}

/// Peak resident memory of this process so far, in bytes.
std::uint64_t peak_rss() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<std::uint64_t>(usage.ru_maxrss) * 1024;
}

TEST_F(TorchZip, AMemberClaimingMoreThanItHoldsCostsWhatItHolds) {
  // Found reviewing the reader: a member was inflated into a zero-filled buffer of the size
  // the directory claims, so 1 MB claiming 1 GB cost 1 GB before it was refused.
  std::vector<std::byte> random(std::size_t{1} << 20);
  std::uint32_t state = 12345;
  for (auto& byte : random) {
    state = state * 1103515245U + 12345U;
    byte = static_cast<std::byte>(state >> 24);
  }
  const auto path = dir_ / "claims.zip";
  test::write_zip(path, {{"a/x", random}}, /*deflated=*/true);
  std::vector<std::byte> bytes = test::read_file(path);
  const std::vector<std::byte> signature = test::bytes_of("PK\x01\x02");
  const auto central = static_cast<std::size_t>(
      std::search(bytes.begin(), bytes.end(), signature.begin(), signature.end()) - bytes.begin());
  ASSERT_LT(central, bytes.size());
  constexpr std::uint32_t kClaim = 1000000000;  // under deflate's 1032:1 for ~1 MB
  for (const std::size_t field : {std::size_t{22}, central + 24}) {
    for (std::size_t i = 0; i < 4; ++i)
      bytes[field + i] = static_cast<std::byte>(kClaim >> (8 * i));
  }
  const auto file = MappedFile::from_bytes(bytes, "claims.zip");
  const ZipArchive archive = ZipArchive::open(file);
  const std::uint64_t before = peak_rss();
  const std::string message = error_of([&] { (void)archive.read(*archive.find("a/x")); });
  EXPECT_TRUE(StartsWith(message, "[zip] claims.zip: "));
  EXPECT_TRUE(Contains(message,
                       "entry 'a/x' is corrupt: its data inflates to 1048576 bytes where "
                       "the directory declares 1000000000"));
  EXPECT_LT(peak_rss(), before + (std::uint64_t{100} << 20));
}

TEST_F(TorchZip, AnEntryThatGrowsItsBufferIsReadWhole) {
  // Highly compressible: the buffer starts at 64 KiB and doubles to 8 MiB on the way.
  std::vector<std::byte> data(std::size_t{8} << 20);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::byte>((i / 1000) % 7);
  const auto path = dir_ / "grows.zip";
  test::write_zip(path, {{"a/x", data}}, /*deflated=*/true);
  const ZipArchive archive = ZipArchive::open(MappedFile::open(path));
  ASSERT_LT(archive.find("a/x")->compressed_size * 100, data.size());
  const auto storage = archive.read(*archive.find("a/x"));
  ASSERT_EQ(storage->nbytes, data.size());
  EXPECT_EQ(std::memcmp(storage->data, data.data(), data.size()), 0);
}

/// Fails the test (SIGALRM ends the process) instead of hanging when `seconds` pass.
class Deadline {
 public:
  explicit Deadline(unsigned seconds) { alarm(seconds); }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  Deadline(Deadline&&) = delete;
  Deadline& operator=(Deadline&&) = delete;
  ~Deadline() { alarm(0); }
};

TEST_F(TorchZip, AFifoIsRefusedAtOnce) {
  // Found reviewing the reader: open() waited forever for a writer before the regular-file
  // check. A FIFO as a single file and as a shard of a sharded folder.
  const Deadline deadline(20);
  const auto fifo = dir_ / "model.safetensors";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::string message = error_of([&] { (void)read_checkpoint(fifo); });
  EXPECT_TRUE(StartsWith(message, "[file] " + fifo.string() + " is not a regular file (a FIFO)"))
      << message;
  EXPECT_TRUE(Contains(message, "only regular files are read"));
  EXPECT_TRUE(Contains(error_of([&] { (void)detect_format(fifo); }), "not a regular file"));

  const auto folder = dir_ / "sharded";
  std::filesystem::create_directory(folder);
  test::write_zip(folder / "pytorch_model-00001.bin",
                  torch_members("little", test::raw_bytes(kValues)));
  ASSERT_EQ(mkfifo((folder / "pytorch_model-00002.bin").c_str(), 0600), 0);
  ASSERT_NO_FATAL_FAILURE(
      test::write_file(folder / "pytorch_model.bin.index.json",
                       test::bytes_of(R"({"weight_map": {"w": "pytorch_model-00001.bin",)"
                                      R"( "v": "pytorch_model-00002.bin"}})")));
  message = error_of([&] { (void)read_checkpoint(folder); });
  EXPECT_TRUE(Contains(
      message, (folder / "pytorch_model-00002.bin").string() + " is not a regular file (a FIFO)"))
      << message;
  EXPECT_TRUE(Contains(error_of([&] { (void)MappedFile::open(dir_.path()); }),
                       "is not a regular file (a folder)"));
}

TEST_F(TorchZip, MissingPathIsRefused) {
  EXPECT_TRUE(Contains(error_of([&] { (void)read_checkpoint(dir_ / "nope.pt"); }),
                       "no such file or folder"));
}

}  // namespace
}  // namespace torch2mlx
