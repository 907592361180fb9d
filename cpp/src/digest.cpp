#include "torch2mlx/digest.h"

#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstddef>
#include <memory>

#include "torch2mlx/error.h"
#include "torch2mlx/mapped_file.h"

namespace torch2mlx {

namespace {

constexpr std::size_t kChunk = std::size_t{64} << 20;

struct ContextDeleter {
  void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
};

}  // namespace

std::string sha256_file(const std::filesystem::path& path, const std::stop_token& stop) {
  const auto file = MappedFile::open(path);
  file->advise(MappedFile::Access::Sequential);
  const std::unique_ptr<EVP_MD_CTX, ContextDeleter> context(EVP_MD_CTX_new());
  if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1) {
    fail("digest", fmt::format("cannot start a SHA-256 of {} (OpenSSL)", path.string()));
  }
  const auto bytes = file->bytes();
  for (std::size_t offset = 0; offset < bytes.size(); offset += kChunk) {
    if (stop.stop_requested()) return "";
    const std::size_t length = std::min(kChunk, bytes.size() - offset);
    if (EVP_DigestUpdate(context.get(), bytes.data() + offset, length) != 1) {
      fail("digest", fmt::format("hashing {} failed (OpenSSL)", path.string()));
    }
    file->release(bytes.subspan(offset, length));
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(context.get(), digest, &length) != 1) {
    fail("digest", fmt::format("hashing {} failed (OpenSSL)", path.string()));
  }
  std::string hex;
  hex.reserve(std::size_t{length} * 2);
  for (unsigned int i = 0; i < length; ++i)
    fmt::format_to(std::back_inserter(hex), "{:02x}", digest[i]);
  return hex;
}

}  // namespace torch2mlx

namespace torch2mlx {

FileDigest::FileDigest(std::vector<std::filesystem::path> paths)
    : paths_(std::move(paths)), thread_([this](const std::stop_token& stop) {
        try {
          std::vector<std::string> digests;
          for (const auto& path : paths_) digests.push_back(sha256_file(path, stop));
          hex_ = join(digests);
        } catch (...) {
          failure_ = std::current_exception();
        }
      }) {}

std::string FileDigest::join(const std::vector<std::string>& digests) const {
  if (paths_.size() == 1) return digests.front();
  std::string joined;
  for (std::size_t i = 0; i < paths_.size(); ++i) {
    if (i > 0) joined += ',';
    joined += paths_[i].filename().string() + ":" + digests[i];
  }
  return joined;
}

std::string FileDigest::placeholder() const {
  return join(std::vector<std::string>(paths_.size(), std::string(kSha256HexLength, '0')));
}

std::string FileDigest::wait() {
  const std::lock_guard lock(mutex_);
  if (thread_.joinable()) thread_.join();
  if (failure_) std::rethrow_exception(failure_);
  return hex_;
}

}  // namespace torch2mlx
