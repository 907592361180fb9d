// SHA-256 of files: known vectors (FIPS 180-2 examples), chunk boundaries, and errors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_util.h"
#include "torch2mlx/digest.h"

namespace torch2mlx {
namespace {

std::string digest_of_bytes(const test::TempDir& dir, std::string_view text) {
  const auto path = dir.path() / "data.bin";
  test::write_file(path, test::bytes_of(text));
  return sha256_file(path);
}

TEST(Digest, MatchesTheStandardVectors) {
  const test::TempDir dir;
  EXPECT_EQ(digest_of_bytes(dir, "abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(digest_of_bytes(dir, ""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(digest_of_bytes(dir, "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(Digest, CrossesChunkBoundaries) {
  // One million 'a' repeated past the 64 MiB chunk: the vector for 1e6 'a' checks the
  // arithmetic; a file of 64 MiB + 3 bytes checks that chunks join without a gap.
  const test::TempDir dir;
  EXPECT_EQ(digest_of_bytes(dir, std::string(1'000'000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  const std::string big((std::size_t{64} << 20) + 3, 'a');
  const auto path = dir.path() / "big.bin";
  test::write_file(path, test::bytes_of(big));
  FileDigest background(path);
  EXPECT_EQ(background.wait(), sha256_file(path));
  EXPECT_EQ(background.wait(), sha256_file(path));  // wait() may be called again
}

TEST(Digest, AMissingFileIsNamed) {
  const test::TempDir dir;
  FileDigest digest(dir.path() / "absent.pth");
  try {
    (void)digest.wait();
    FAIL() << "expected an error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what()).find("absent.pth"), std::string::npos) << error.what();
  }
}

TEST(Digest, StopsEarlyWhenDestroyed) {
  // Destroying a digest that is still running must not block on the whole file or crash.
  const test::TempDir dir;
  const auto path = dir.path() / "big.bin";
  test::write_file(path, test::bytes_of(std::string(std::size_t{200} << 20, 'x')));
  { const FileDigest digest(path); }
  SUCCEED();
}

}  // namespace
}  // namespace torch2mlx
