#include "torch2mlx/torch_zip.h"

#include <fmt/format.h>

#include <charconv>
#include <cstdint>
#include <cstring>
#include <system_error>
#include <unordered_map>

#include "torch2mlx/error.h"
#include "torch2mlx/pickle.h"
#include "torch2mlx/zip_archive.h"

namespace torch2mlx {
namespace {

constexpr std::string_view kComponent = "torch";
// The archive format versions torch 2.13 reads: kMinSupportedFileFormatVersion and
// kMaxSupportedFileFormatVersion in caffe2/serialize/versions.h.
constexpr std::int64_t kMinFormatVersion = 1;
constexpr std::int64_t kMaxFormatVersion = 10;
constexpr std::uint64_t kMaxVersionBytes = 64;

[[noreturn]] void reject(std::string_view file, std::string_view message) {
  fail(kComponent, fmt::format("{}: {}", file, message));
}

// The archive's single top-level folder, found through its data.pkl.
std::string find_root(const ZipArchive& archive) {
  std::string root;
  for (const auto& entry : archive.entries()) {
    const auto slash = entry.name.find('/');
    if (slash != std::string::npos && entry.name.substr(slash) == "/data.pkl") {
      if (!root.empty()) {
        reject(archive.file().name(),
               fmt::format("archive holds more than one data.pkl ({}/data.pkl and {}), so which "
                           "tensors it holds is ambiguous; save the state_dict() again with "
                           "torch.save",
                           root, entry.name));
      }
      root = entry.name.substr(0, slash);
    }
  }
  return root;
}

// Refuses what torch's PyTorchStreamReader refuses: a format version outside what torch
// 2.13 reads (caffe2/serialize/versions.h), which may lay the archive out in ways that would
// otherwise be misread without a word. (torch also requires the record; an archive without
// one is still read here, as the torch.save layout it holds leaves no doubt.)
void check_version(const ZipArchive& archive, const std::string& root) {
  const std::string& name = archive.file().name();
  const ZipEntry* entry = archive.find(root + "/.data/version");
  if (entry == nullptr) entry = archive.find(root + "/version");
  if (entry == nullptr) return;
  // Checked before reading: a deflated member may claim to inflate to a gigabyte.
  if (entry->size > kMaxVersionBytes) {
    reject(name, fmt::format("{} is {} bytes; it should hold a format version such as '3': the "
                             "archive is damaged, download or save it again",
                             entry->name, entry->size));
  }
  const std::string text = archive.read_text(*entry);
  // As torch parses it (std::stoull): leading blanks skipped, digits up to the first other
  // character; "-1" wraps around and counts as negative, as torch's int64 version does.
  const auto first = text.find_first_not_of(" \t\r\n\f\v");
  std::int64_t version = 0;
  const char* begin = text.data() + (first == std::string::npos ? text.size() : first);
  const char* end = text.data() + text.size();
  if (begin != end && *begin == '+') ++begin;
  const auto [stop, error] = std::from_chars(begin, end, version);
  if (error != std::errc{} || stop == begin) {
    reject(name, fmt::format("{} holds '{}', not a format version torch can read; the archive "
                             "is damaged: download or save it again",
                             entry->name, text));
  }
  if (version < kMinFormatVersion) {
    reject(name, fmt::format("{} says format version {}, but torch reads only versions {} to {} "
                             "and refuses it too; the archive is damaged or not from "
                             "torch.save: download or save it again",
                             entry->name, version, kMinFormatVersion, kMaxFormatVersion));
  }
  if (version > kMaxFormatVersion) {
    reject(name, fmt::format("{} says format version {}, but torch 2.13 reads at most version "
                             "{} and refuses it too: a newer torch wrote it; load it with that "
                             "torch and save its state_dict() with torch 2.13, or upgrade "
                             "torch2mlx",
                             entry->name, version, kMaxFormatVersion));
  }
}

}  // namespace

Checkpoint read_torch_zip(const std::shared_ptr<MappedFile>& file, const ReadOptions& options) {
  const std::string& name = file->name();
  const ZipArchive archive = ZipArchive::open(file, options.limits);
  const std::string root = find_root(archive);
  if (root.empty()) {
    reject(name, "zip archive without <root>/data.pkl: not a torch.save checkpoint");
  }

  bool big_endian = false;
  if (const ZipEntry* order = archive.find(root + "/byteorder")) {
    // Checked before reading: a deflated member may claim to inflate to a gigabyte.
    if (order->size > 8) {
      reject(name, fmt::format("byteorder is {} bytes; expected 'little' or 'big'", order->size));
    }
    const std::string text = archive.read_text(*order);
    if (text != "little" && text != "big") reject(name, fmt::format("byteorder is '{}'", text));
    big_endian = text == "big";
  }

  check_version(archive, root);

  const ZipEntry* program = archive.find(root + "/data.pkl");
  if (program->size > options.limits.max_pickle_bytes) {
    reject(name, fmt::format("data.pkl is {} bytes, over the limit of {}", program->size,
                             options.limits.max_pickle_bytes));
  }
  const auto pickle_bytes = archive.read(*program);

  // One Storage per key, so tensors that share a storage keep sharing it.
  std::unordered_map<std::string, std::shared_ptr<Storage>> storages;
  const pickle::StorageLoader load_storage = [&](const pickle::StorageRef& ref) {
    if (auto found = storages.find(ref.key); found != storages.end()) return found->second;
    const ZipEntry* entry = archive.find(root + "/data/" + ref.key);
    if (entry == nullptr) {
      reject(name, fmt::format("data.pkl refers to storage '{}' but {}/data/{} is missing; the "
                               "archive is incomplete: download or save it again",
                               ref.key, root, ref.key));
    }
    std::shared_ptr<Storage> storage;
    if (options.headers_only) {
      storage = std::make_shared<Storage>(Storage{nullptr, entry->size, nullptr});
    } else if (big_endian && itemsize(ref.dtype) > 1) {
      const auto raw = archive.read(*entry);
      auto copy = std::make_shared<std::vector<std::byte>>(raw->data, raw->data + raw->nbytes);
      byteswap_elements(copy->data(), copy->size(), itemsize(ref.dtype));
      storage = std::make_shared<Storage>(Storage{copy->data(), copy->size(), copy});
    } else {
      storage = archive.read(*entry);
    }
    storages.emplace(ref.key, storage);
    return storage;
  };

  const std::string program_name = fmt::format("{} ({}/data.pkl)", name, root);
  const pickle::Unpickled unpickled = pickle::unpickle({pickle_bytes->data, pickle_bytes->nbytes},
                                                       program_name, load_storage, options.limits);

  Checkpoint checkpoint;
  checkpoint.format = "torch";
  checkpoint.files.push_back(name);
  pickle::flatten(*unpickled.root, program_name, options.limits, checkpoint.tensors,
                  checkpoint.others);
  if (big_endian) checkpoint.metadata["byteorder"] = "big";
  return checkpoint;
}

}  // namespace torch2mlx
