// torch.export archives (.pt2), written down. Two layouts exist; both are zips.
//
// The pt2 archive (torch >= 2.8, torch/export/pt2_archive), every member under one root
// folder named after the file:
//
//   <root>/archive_format                  "pt2"
//   <root>/archive_version                 "0" (absent in the first archives: also 0)
//   <root>/byteorder                       "little" or "big": the order of the raw weights
//   <root>/models/<model>.json             the ExportedProgram as JSON; <model> is "model"
//   <root>/data/weights/<model>_weights_config.json
//                                          {"config": {"<state-dict name>": PayloadMeta}}
//   <root>/data/weights/<path_name>        the raw bytes of one whole untyped storage; all
//                                          views of one storage (tied weights) name one file
//   <root>/data/constants/<model>_constants_config.json, <root>/data/constants/tensor_<i>
//                                          the same for constants: lifted tensor constants
//                                          and non-persistent buffers; custom_obj_<i> and
//                                          opaque_obj_<i> are pickled objects (refused)
//   <root>/data/weights/<model>.pt, <root>/data/constants/<model>.pt
//                                          torch 2.8's form instead of the configs: one
//                                          torch.save of the whole state dict / constants
//   <root>/data/sample_inputs, extra/, .data/   not read
//
//   PayloadMeta = {"path_name": "weight_0", "is_param": true, "use_pickle": false,
//                  "tensor_meta": {"dtype": <ScalarType code>, "sizes": [{"as_int": 3}],
//                                  "strides": [{"as_int": 1}], "storage_offset": {"as_int": 0},
//                                  "layout": 7 (strided), "device", "requires_grad"}}
//   use_pickle: the file is a torch.save of that one tensor (torch writes tensor subclasses
//   so); it is read with the restricted unpickler, like any torch.save file.
//
// The legacy archive (torch 2.1 to 2.7, written with Python's zipfile, no root folder):
//
//   serialized_exported_program.json       the ExportedProgram as JSON
//   serialized_state_dict.pt               torch.save(ep.state_dict) (".json" in torch 2.1)
//   serialized_constants.pt                torch.save(ep.constants) (".json" in torch 2.1)
//   serialized_example_inputs.pt           not read
//   version                                the schema version, "major.minor"
//
// Every size and offset in the configs is checked against the member it points into before
// a tensor is made; every tensor the graph signature takes as a parameter, buffer or constant
// must be present, with the dtype and shape the graph declares for it.
#include "torch2mlx/pt2.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "json_sax.h"
#include "torch2mlx/error.h"
#include "torch2mlx/torch_zip.h"
#include "torch2mlx/zip_archive.h"

namespace torch2mlx {
namespace {

constexpr std::string_view kComponent = "pt2";
// Small text members (archive_format, archive_version, byteorder, version) are checked for
// size before they are read: a deflated member may claim to inflate to a gigabyte.
constexpr std::uint64_t kMaxMarkerBytes = 64;
constexpr std::int64_t kStridedLayout = 7;  // schema.py Layout.Strided
constexpr std::string_view kArchiveVersion = "0";
constexpr std::string_view kPt2Hint =
    "the archive is damaged, or was not written by torch.export.save; export and save the "
    "model again";

using Json = nlohmann::json;

[[noreturn]] void reject(std::string_view file, std::string_view message) {
  fail(kComponent, fmt::format("{}: {}", file, message));
}

// The message of a lower component's error, kept whole so that its "[component]" still says
// which layer refused.
std::string cause(const Error& error) { return error.what(); }

std::string_view trimmed(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = text.find_last_not_of(" \t\r\n");
  return text.substr(first, last - first + 1);
}

// A small marker member's text, or nullopt when it is absent.
std::optional<std::string> marker(const ZipArchive& archive, const std::string& entry_name,
                                  std::string_view file) {
  const ZipEntry* entry = archive.find(entry_name);
  if (entry == nullptr) return std::nullopt;
  if (entry->size > kMaxMarkerBytes) {
    reject(file, fmt::format("{} is {} bytes; it should hold a short marker such as 'pt2'",
                             entry_name, entry->size));
  }
  return std::string(trimmed(archive.read_text(*entry)));
}

// The whole text of a JSON member, within the header limit.
std::string json_text(const ZipArchive& archive, const ZipEntry& entry, std::string_view file,
                      const ReadOptions& options) {
  if (entry.size > options.limits.max_header_bytes) {
    reject(file, fmt::format("{} is {} bytes, over the limit of {} for JSON", entry.name,
                             entry.size, options.limits.max_header_bytes));
  }
  return archive.read_text(entry);
}

// Parses and checks a payload config: {"config": {name: PayloadMeta, ...}}; `names` gets the
// tensor names in order.
Json parse_config(std::string_view text, std::string_view file, std::string_view entry,
                  const ReadLimits& limits, std::vector<std::string>& names) {
  Json json;
  // Records the tensor names in the file's order (the state dict's order, which
  // std::map-backed JSON objects lose) and refuses a name given twice.
  std::string top_key;
  std::set<std::string, std::less<>> seen;
  json_sax::DomBuilder parser(
      json, limits.max_depth,
      [&] {
        reject(file, fmt::format("{} nests deeper than the limit of {}", entry, limits.max_depth));
      },
      [&](std::size_t depth, const std::string& name) {
        if (depth == 1) top_key = name;
        if (depth == 2 && top_key == "config") {
          if (!seen.insert(name).second) {
            reject(file, fmt::format("{} lists tensor '{}' twice; {}", entry, name, kPt2Hint));
          }
          names.push_back(name);
        }
      });
  try {
    Json::sax_parse(text, &parser);
  } catch (const Json::exception& error) {
    reject(file, fmt::format("{} is not valid JSON ({}); {}", entry, error.what(), kPt2Hint));
  }
  if (!json.is_object() || !json.contains("config") || !json.at("config").is_object()) {
    reject(file, fmt::format("{} has no 'config' object; {}", entry, kPt2Hint));
  }
  if (json.at("config").size() > limits.max_tensors) {
    reject(file, fmt::format("{} lists {} tensors, over the limit of {}", entry,
                             json.at("config").size(), limits.max_tensors));
  }
  // A second top-level "config" key would have replaced the first: names from both were seen.
  if (names.size() != json.at("config").size()) {
    reject(file, fmt::format("{} has more than one 'config' object; {}", entry, kPt2Hint));
  }
  return json;
}

// Where the tensors of one archive come from, for the messages about them.
struct Sources {
  std::string weights;
  std::string constants;
};

class Pt2Reader {
 public:
  Pt2Reader(const ZipArchive& archive, const ReadOptions& options)
      : archive_(archive), file_(archive.file().name()), options_(options) {}

  // The layout's markers, the graph and the tensors; dispatches on the layout found.
  ExportedProgram read() {
    std::string root;
    bool found_current = false;
    std::string legacy_root;
    bool found_legacy = false;
    for (const ZipEntry& entry : archive_.entries()) {
      const std::string_view name = entry.name;
      const auto slash = name.find('/');
      const bool top = slash == std::string_view::npos || slash == name.rfind('/');
      if (!top) continue;
      const std::string_view base = slash == std::string_view::npos ? name : name.substr(slash + 1);
      const std::string folder =
          slash == std::string_view::npos ? "" : std::string(name.substr(0, slash + 1));
      if (base == "archive_format") {
        if (found_current) reject(file_, "archive holds more than one archive_format member");
        found_current = true;
        root = folder;
      } else if (base == "serialized_exported_program.json") {
        if (found_legacy) {
          reject(file_, "archive holds more than one serialized_exported_program.json");
        }
        found_legacy = true;
        legacy_root = folder;
      }
    }
    if (found_current) return read_current(root);
    if (found_legacy) return read_legacy(legacy_root);
    reject(file_,
           "zip archive without archive_format or serialized_exported_program.json: not a "
           "torch.export archive (.pt2); save the program with torch.export.save");
  }

 private:
  // --- The pt2 archive.

  ExportedProgram read_current(const std::string& root) {
    const auto format = marker(archive_, root + "archive_format", file_);
    if (format != "pt2") {
      reject(file_,
             fmt::format("{}archive_format is '{}', not 'pt2'; {}", root, *format, kPt2Hint));
    }
    const std::string version =
        marker(archive_, root + "archive_version", file_).value_or(std::string(kArchiveVersion));
    if (version != kArchiveVersion) {
      reject(file_,
             fmt::format("archive version {}, this reader supports archive version {} (torch 2.8 "
                         "to 2.13); save the program with torch.export.save from a torch in that "
                         "range, or update torch2mlx",
                         version, kArchiveVersion));
    }
    read_byteorder(root + "byteorder");

    const std::string model = choose_model(root);
    const std::string program_name = root + "models/" + model + ".json";
    ExportedProgram program =
        parse_exported_program(json_text(archive_, *archive_.find(program_name), file_, options_),
                               fmt::format("{}:{}", file_, program_name));

    const Sources sources{
        read_payloads(root + "data/weights/", model, "weights", "weight", program.weights),
        read_payloads(root + "data/constants/", model, "constants", "constant", program.weights)};
    check_against_graph(program, sources);
    return program;
  }

  void read_byteorder(const std::string& entry_name) {
    const auto order = marker(archive_, entry_name, file_);
    if (order && *order != "little" && *order != "big") {
      reject(file_, fmt::format("{} is '{}'; expected 'little' or 'big'", entry_name, *order));
    }
    big_endian_ = order == "big";
  }

  // The program to read: "model" (what torch.export.save writes), or the only one there is.
  std::string choose_model(const std::string& root) {
    const std::string folder = root + "models/";
    std::vector<std::string> models;
    for (const ZipEntry& entry : archive_.entries()) {
      const std::string_view name = entry.name;
      if (name.starts_with(folder) && name.ends_with(".json") &&
          name.find('/', folder.size()) == std::string_view::npos) {
        models.emplace_back(name.substr(folder.size(), name.size() - folder.size() - 5));
      }
    }
    if (std::ranges::find(models, "model") != models.end()) return "model";
    if (models.size() == 1) return models.front();
    if (models.empty()) {
      reject(file_, fmt::format("archive holds no {}<name>.json program; an AOTInductor package "
                                "(aoti_compile_and_package) holds compiled code, not a program: "
                                "save the ExportedProgram with torch.export.save instead",
                                folder));
    }
    reject(file_, fmt::format("archive holds {} programs ({}) and none is called 'model'; "
                              "save the one to convert with torch.export.save",
                              models.size(), fmt::join(models, ", ")));
  }

  // The tensors of data/weights or data/constants, appended to `out`; returns where they
  // were found, for messages.
  std::string read_payloads(const std::string& folder, const std::string& model,
                            std::string_view kind, std::string_view noun,
                            std::vector<NamedTensor>& out) {
    std::string config_name = fmt::format("{}{}_{}_config.json", folder, model, kind);
    const ZipEntry* config_entry = archive_.find(config_name);
    if (config_entry == nullptr) {
      // torch 2.8 wrote one torch.save of all the tensors instead.
      std::string saved_name = folder + model + ".pt";
      if (const ZipEntry* saved = archive_.find(saved_name)) {
        add_saved(*saved, noun, out);
        return saved_name;
      }
      reject(file_,
             fmt::format("{} is missing (and so is {}); {}", config_name, saved_name, kPt2Hint));
    }
    std::vector<std::string> names;
    const Json config = parse_config(json_text(archive_, *config_entry, file_, options_), file_,
                                     config_name, options_.limits, names);
    const Json& payloads = config.at("config");
    for (const std::string& name : names) {
      const Json& meta = payloads.at(name);
      const std::string what = fmt::format("{} '{}' ({})", noun, name, config_name);
      if (!meta.is_object()) reject(file_, fmt::format("{} is not an object", what));
      const std::string path_name = string_field(meta, "path_name", what);
      if (path_name.empty() || path_name.find('/') != std::string::npos || path_name == "." ||
          path_name == "..") {
        reject(file_, fmt::format("{} names '{}', which is not a plain file name in {}", what,
                                  path_name, folder));
      }
      if (path_name.starts_with("custom_obj_") || path_name.starts_with("opaque_obj_")) {
        reject(file_, fmt::format("{} is a pickled script object ({}{}), which cannot be read "
                                  "without running its code; torch2mlx reads tensor constants "
                                  "only: export the model without the custom object",
                                  what, folder, path_name));
      }
      const std::string entry_name = folder + path_name;
      const ZipEntry* entry = archive_.find(entry_name);
      if (entry == nullptr) {
        reject(file_, fmt::format("{} is stored in {}, which is missing from the archive; {}", what,
                                  entry_name, kPt2Hint));
      }
      NamedTensor named{name, bool_field(meta, "use_pickle", what)
                                  ? pickled_tensor(*entry, meta, what)
                                  : raw_tensor(*entry, meta, what)};
      out.push_back(std::move(named));
    }
    return config_name;
  }

  // A tensor whose bytes are a raw storage member, shaped by its tensor_meta.
  Tensor raw_tensor(const ZipEntry& entry, const Json& meta, const std::string& what) {
    if (!meta.contains("tensor_meta") || !meta.at("tensor_meta").is_object()) {
      reject(file_, fmt::format("{} has no tensor_meta; {}", what, kPt2Hint));
    }
    Tensor tensor = tensor_from_meta(meta.at("tensor_meta"), what);
    auto found = storages_.find(entry.name);
    if (found == storages_.end()) {
      const std::size_t item = itemsize(tensor.dtype);
      // torch's own loader refuses this too: the file is a whole number of elements.
      if (entry.size % item != 0) {
        reject(file_,
               fmt::format("{}: {} holds {} bytes, not a whole number of {}-byte {} "
                           "elements; {}",
                           what, entry.name, entry.size, item, dtype_name(tensor.dtype), kPt2Hint));
      }
      found = storages_.emplace(entry.name, Shared{load(entry, item), tensor.dtype, what}).first;
    } else if (found->second.dtype != tensor.dtype) {
      // torch groups storages by (storage, dtype), so one file never holds two dtypes.
      reject(file_, fmt::format("{} and {} share {} but have dtypes {} and {}; {}", what,
                                found->second.first_user, entry.name, dtype_name(tensor.dtype),
                                dtype_name(found->second.dtype), kPt2Hint));
    }
    tensor.storage = found->second.storage;
    if (tensor.storage->nbytes == 0 && tensor.numel() > 0) {
      if (options_.allow_meta_weights) return tensor;  // its bytes come from a checkpoint
      reject(file_, fmt::format("{}: {} is empty but the tensor has {} elements (was it saved "
                                "from a fake or meta tensor?); export from a model with real "
                                "weights",
                                what, entry.name, tensor.numel()));
    }
    try {
      check_view_in_bounds(tensor, tensor.storage->nbytes,
                           fmt::format("{} in {}", what, entry.name));
    } catch (const Error& error) {
      // The check names the tensor itself; its "[tensor]" prefix would only repeat ours.
      std::string_view detail = error.what();
      detail.remove_prefix(std::min(detail.size(), error.component().size() + 3));
      reject(file_, fmt::format("{}; {}", detail, kPt2Hint));
    }
    return tensor;
  }

  // The storage behind a raw member: a view of the mapping, a size only, or (for a big-endian
  // archive) a byte-swapped copy.
  std::shared_ptr<Storage> load(const ZipEntry& entry, std::size_t item) {
    if (options_.headers_only) {
      return std::make_shared<Storage>(Storage{nullptr, entry.size, nullptr});
    }
    if (big_endian_ && item > 1) {
      const auto raw = archive_.read(entry);
      auto copy = std::make_shared<std::vector<std::byte>>(raw->data, raw->data + raw->nbytes);
      byteswap_elements(copy->data(), copy->size(), item);
      return std::make_shared<Storage>(Storage{copy->data(), copy->size(), copy});
    }
    return archive_.read(entry);
  }

  // A tensor saved with torch.save in its own member (use_pickle), checked against its
  // tensor_meta when there is one.
  Tensor pickled_tensor(const ZipEntry& entry, const Json& meta, const std::string& what) {
    // torch gives each pickled tensor a member of its own; a config pointing many names at one
    // large member would have it copied and unpickled once per name.
    if (!pickled_.insert(entry.name).second) {
      reject(file_, fmt::format("{}: {} is named by more than one tensor; {}", what, entry.name,
                                kPt2Hint));
    }
    const Checkpoint saved = read_nested(entry);
    if (saved.tensors.size() != 1) {
      reject(file_, fmt::format("{}: {} holds {} tensors, expected the one tensor torch.save "
                                "wrote; {}",
                                what, entry.name, saved.tensors.size(), kPt2Hint));
    }
    Tensor tensor = saved.tensors.front().tensor;
    if (meta.contains("tensor_meta") && meta.at("tensor_meta").is_object()) {
      const Tensor declared = tensor_from_meta(meta.at("tensor_meta"), what);
      if (declared.dtype != tensor.dtype || declared.shape != tensor.shape) {
        reject(file_,
               fmt::format("{}: {} holds a {}{} tensor but tensor_meta says {}{}; {}", what,
                           entry.name, dtype_name(tensor.dtype), shape_text(tensor.shape),
                           dtype_name(declared.dtype), shape_text(declared.shape), kPt2Hint));
      }
    }
    return tensor;
  }

  // A torch.save archive inside this one, read by the torch.save reader. Its bytes are copied
  // out: the reader needs a file of its own, and a mapping cannot start inside a member.
  Checkpoint read_nested(const ZipEntry& entry) {
    const auto bytes = archive_.read(entry);
    std::vector<std::byte> copy(bytes->data, bytes->data + bytes->nbytes);
    const auto nested =
        MappedFile::from_bytes(std::move(copy), fmt::format("{}:{}", file_, entry.name));
    try {
      return read_torch_zip(nested, options_);
    } catch (const Error& error) {
      reject(file_,
             fmt::format("{} is not a readable torch.save archive: {}", entry.name, cause(error)));
    }
  }

  // Every tensor of a torch.save'd dict member (torch 2.8's data/weights/model.pt, or a
  // legacy serialized_state_dict.pt), under its dict key.
  void add_saved(const ZipEntry& entry, std::string_view noun, std::vector<NamedTensor>& out) {
    if (entry.size == 0) return;  // torch writes b"" for an absent artifact
    Checkpoint saved = read_nested(entry);
    if (!saved.others.empty()) {
      const Leaf& leaf = saved.others.front();
      reject(file_, fmt::format("{} holds a non-tensor {} '{}' ({}); only tensors can be {}s",
                                entry.name, leaf.type, leaf.path, leaf.repr, noun));
    }
    for (auto& named : saved.tensors) out.push_back(std::move(named));
  }

  // dtype, sizes, strides and storage offset of a schema.py TensorMeta.
  Tensor tensor_from_meta(const Json& meta, const std::string& what) {
    Tensor tensor;
    const std::int64_t code = integer(field(meta, "dtype", what), what + " dtype");
    const auto name = scalar_type_name(code);
    if (!name)
      reject(file_, fmt::format("{} has unknown ScalarType code {}; {}", what, code, kPt2Hint));
    const auto dtype = dtype_from_name(*name);
    if (!dtype) {
      reject(file_, fmt::format("{} has dtype {}, which torch2mlx does not read (MLX has no "
                                "such type); cast the tensor to a real float or integer dtype "
                                "before exporting",
                                what, *name));
    }
    tensor.dtype = *dtype;
    if (meta.contains("layout") && integer(meta.at("layout"), what + " layout") != kStridedLayout) {
      reject(file_, fmt::format("{} is not a strided (dense) tensor; convert sparse or other "
                                "layouts to dense before exporting",
                                what));
    }
    tensor.shape = int_list(field(meta, "sizes", what), what + " sizes");
    tensor.strides = int_list(field(meta, "strides", what), what + " strides");
    if (tensor.shape.size() > kMaxDims) {
      reject(file_, fmt::format("{} has {} dims, more than the {} numpy and MLX support; reshape "
                                "it to at most {} dims in torch before exporting",
                                what, tensor.shape.size(), kMaxDims, kMaxDims));
    }
    if (tensor.strides.size() != tensor.shape.size()) {
      reject(file_, fmt::format("{} has {} sizes but {} strides; {}", what, tensor.shape.size(),
                                tensor.strides.size(), kPt2Hint));
    }
    tensor.offset = sym_int(field(meta, "storage_offset", what), what + " storage_offset");
    return tensor;
  }

  // --- The legacy archive.

  ExportedProgram read_legacy(const std::string& root) {
    const std::string version_name = root + "version";
    const auto version = marker(archive_, version_name, file_);
    if (!version) {
      reject(file_, fmt::format("{}serialized_exported_program.json is there but {} is missing; "
                                "{}",
                                root, version_name, kPt2Hint));
    }
    check_legacy_version(*version);
    const std::string program_name = root + "serialized_exported_program.json";
    ExportedProgram program =
        parse_exported_program(json_text(archive_, *archive_.find(program_name), file_, options_),
                               fmt::format("{}:{}", file_, program_name));

    Sources sources;
    const ZipEntry* state_dict =
        find_either(root + "serialized_state_dict.pt", root + "serialized_state_dict.json");
    if (state_dict == nullptr) {
      reject(file_, fmt::format("{}serialized_state_dict.pt is missing; {}", root, kPt2Hint));
    }
    add_saved(*state_dict, "weight", program.weights);
    sources.weights = state_dict->name;
    // torch 2.1 wrote no constants member; the programs it exported had none.
    if (const ZipEntry* constants =
            find_either(root + "serialized_constants.pt", root + "serialized_constants.json")) {
      add_saved(*constants, "constant", program.weights);
      sources.constants = constants->name;
    } else {
      sources.constants = "(no serialized_constants.pt)";
    }
    check_against_graph(program, sources);
    return program;
  }

  // The legacy version member holds the schema version, "major.minor".
  void check_legacy_version(const std::string& version) {
    int major = 0;
    const char* first = version.data();
    const char* last = version.data() + version.size();
    const auto [end, error] = std::from_chars(first, last, major);
    const bool well_formed = error == std::errc{} && end != first && (end == last || *end == '.');
    if (!well_formed) {
      reject(file_, fmt::format("version holds '{}', not the 'major.minor' schema version "
                                "torch.export.save writes; {}",
                                version, kPt2Hint));
    }
    if (major < kSupportedSchemaMajor.first || major > kSupportedSchemaMajor.second) {
      reject(file_,
             fmt::format("archive version {}, this reader supports legacy archives of "
                         "schema versions {}.x to {}.x; export and save the model again "
                         "with a current torch",
                         version, kSupportedSchemaMajor.first, kSupportedSchemaMajor.second));
    }
  }

  const ZipEntry* find_either(const std::string& first, const std::string& second) const {
    const ZipEntry* entry = archive_.find(first);
    return entry != nullptr ? entry : archive_.find(second);
  }

  // --- Checks shared by both layouts.

  // No name twice; every parameter, buffer and constant the graph takes is present, with the
  // dtype and static sizes the graph declares for it.
  void check_against_graph(const ExportedProgram& program, const Sources& sources) const {
    std::map<std::string_view, const Tensor*> by_name;
    for (const auto& [name, tensor] : program.weights) {
      if (!by_name.emplace(name, &tensor).second) {
        reject(file_, fmt::format("tensor '{}' is stored twice (as a weight and as a constant?); "
                                  "{}",
                                  name, kPt2Hint));
      }
    }
    for (const InputSpec& input : program.inputs) {
      std::string_view kind;
      switch (input.kind) {
        case InputKind::Parameter:
          kind = "parameter";
          break;
        case InputKind::Buffer:
          kind = "buffer";
          break;
        case InputKind::Constant:
          kind = "constant";
          break;
        default:
          continue;
      }
      const auto found = by_name.find(input.target);
      if (found == by_name.end()) {
        reject(file_, fmt::format("the graph takes {} '{}' as input '{}', but neither {} nor {} "
                                  "holds it; {}",
                                  kind, input.target, input.name, sources.weights,
                                  sources.constants, kPt2Hint));
      }
      const auto meta = program.tensors.find(input.name);
      if (meta == program.tensors.end()) continue;
      const Tensor& tensor = *found->second;
      bool agrees = meta->second.dtype == dtype_name(tensor.dtype) &&
                    meta->second.shape.size() == tensor.shape.size();
      for (std::size_t i = 0; agrees && i < tensor.shape.size(); ++i) {
        const Dim& dim = meta->second.shape[i];
        agrees = !dim.symbol.empty() || dim.hint == tensor.shape[i];
      }
      if (!agrees) {
        std::vector<std::int64_t> declared;
        for (const Dim& dim : meta->second.shape) declared.push_back(dim.hint);
        reject(file_,
               fmt::format("{} '{}' is stored as {}{} but the graph declares its input "
                           "'{}' as {}{}; {}",
                           kind, input.target, dtype_name(tensor.dtype), shape_text(tensor.shape),
                           input.name, meta->second.dtype, shape_text(declared), kPt2Hint));
      }
    }
  }

  // --- JSON fields, each refused with the tensor it belongs to.

  const Json& field(const Json& object, std::string_view key, const std::string& what) const {
    if (!object.is_object() || !object.contains(key)) {
      reject(file_, fmt::format("{} has no '{}'; {}", what, key, kPt2Hint));
    }
    return object.at(key);
  }

  std::string string_field(const Json& object, std::string_view key,
                           const std::string& what) const {
    const Json& value = field(object, key, what);
    if (!value.is_string()) reject(file_, fmt::format("{}: '{}' is not a string", what, key));
    return value.get<std::string>();
  }

  bool bool_field(const Json& object, std::string_view key, const std::string& what) const {
    if (!object.contains(key)) return false;
    const Json& value = object.at(key);
    if (!value.is_boolean()) reject(file_, fmt::format("{}: '{}' is not true or false", what, key));
    return value.get<bool>();
  }

  std::int64_t integer(const Json& value, const std::string& what) const {
    // An unsigned value above INT64_MAX would wrap in get<int64_t>().
    if (!value.is_number_integer() ||
        (value.is_number_unsigned() && value.get<std::uint64_t>() > INT64_MAX)) {
      reject(file_, fmt::format("{} is not an integer; {}", what, kPt2Hint));
    }
    return value.get<std::int64_t>();
  }

  // A SymInt that must be concrete: {"as_int": n}. Weights have no symbolic sizes.
  std::int64_t sym_int(const Json& value, const std::string& what) const {
    if (!value.is_object() || !value.contains("as_int")) {
      reject(file_, fmt::format("{} is not a concrete integer ({{\"as_int\": n}}); stored "
                                "tensors have static sizes; {}",
                                what, kPt2Hint));
    }
    return integer(value.at("as_int"), what);
  }

  std::vector<std::int64_t> int_list(const Json& value, const std::string& what) const {
    if (!value.is_array()) reject(file_, fmt::format("{} is not a list; {}", what, kPt2Hint));
    std::vector<std::int64_t> values;
    values.reserve(value.size());
    for (const Json& item : value) values.push_back(sym_int(item, what));
    return values;
  }

  static std::string shape_text(const std::vector<std::int64_t>& shape) {
    return fmt::format("[{}]", fmt::join(shape, ", "));
  }

  // One raw storage member, with the dtype and the first tensor that used it.
  struct Shared {
    std::shared_ptr<Storage> storage;
    DType dtype = DType::U8;
    std::string first_user;
  };

  const ZipArchive& archive_;
  std::string file_;
  const ReadOptions& options_;
  bool big_endian_ = false;
  std::map<std::string, Shared> storages_;  // by member name: tied weights share one Storage
  std::set<std::string> pickled_;           // use_pickle members read so far
};

}  // namespace

ExportedProgram read_pt2(const std::shared_ptr<MappedFile>& file, const ReadOptions& options) {
  const ZipArchive archive = ZipArchive::open(file, options.limits);
  return Pt2Reader(archive, options).read();
}

ExportedProgram read_pt2(const std::filesystem::path& path, const ReadOptions& options) {
  return read_pt2(MappedFile::open(path), options);
}

}  // namespace torch2mlx
