// "Just enough pickle": the opcode machine behind torch.load(weights_only=True), and not
// one opcode or global more. Nothing named in the file is ever imported or called; the
// allowed globals are a table of what each one means (a dtype, a storage type, a tensor
// rebuild function, a container), interpreted here.
//
// Pickle, written down: a program for a stack machine. Each opcode is one byte followed by
// its argument bytes. MARK pushes a marker, TUPLE/APPENDS/SETITEMS consume back to it;
// BINPUT/BINGET store and fetch stack values in a memo; GLOBAL pushes "module name";
// REDUCE calls the callable below the argument tuple; BINPERSID asks the loader for an
// out-of-band object (a torch storage); STOP returns the top of the stack.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "torch2mlx/checkpoint.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx::pickle {

/// The persistent id of a torch storage: ('storage', <StorageType>, key, location, numel).
struct StorageRef {
  std::string key;
  DType dtype = DType::U8;
  std::string location;
  std::int64_t numel = 0;
};

/// A node of the unpickled object graph. Values live in an arena owned by Unpickled, so
/// shared and even cyclic references are plain pointers.
struct Value {
  enum class Kind : std::uint8_t {
    None,
    Bool,
    Int,
    BigInt,
    Float,
    String,
    Bytes,  // scalars
    Tuple,
    List,
    Dict,
    Set,     // containers
    Global,  // an allowlisted callable or class
    Storage,
    Tensor,  // torch objects
  };
  Kind kind = Kind::None;
  bool boolean = false;
  std::int64_t integer = 0;
  double number = 0.0;
  // String, Bytes, BigInt (decimal), Global ("module.name"); for a Tensor, the torch dtype
  // MLX lacks (e.g. "float8_e4m3fn"), which flatten refuses by the tensor's name.
  std::string text;
  std::vector<Value*> items;         // Tuple, List, Set; Dict holds key, value, key, value...
  DType dtype = DType::U8;           // Storage
  std::shared_ptr<Storage> storage;  // Storage, Tensor
  Tensor tensor;                     // Tensor
};

/// The result of unpickling: the root value and the arena that owns every value.
struct Unpickled {
  Value* root = nullptr;
  std::vector<std::unique_ptr<Value>> arena;
};

/// Returns the bytes behind a persistent storage id (or only their size, data == nullptr).
using StorageLoader = std::function<std::shared_ptr<Storage>(const StorageRef&)>;

/// Runs the restricted opcode machine over `program`. `name` is the file, for errors.
[[nodiscard]] Unpickled unpickle(std::span<const std::byte> program, std::string_view name,
                                 const StorageLoader& load_storage, const ReadLimits& limits = {});

/// Flattens nested dicts, lists and tuples into dotted keys: tensors go to `tensors`,
/// everything else to `others`. Container state that torch adds (OrderedDict._metadata)
/// is not data and is skipped.
void flatten(const Value& root, std::string_view name, const ReadLimits& limits,
             std::vector<NamedTensor>& tensors, std::vector<Leaf>& others);

/// The globals a weights_only load may name, e.g. "torch._utils._rebuild_tensor_v2".
[[nodiscard]] std::vector<std::string> allowed_globals();

}  // namespace torch2mlx::pickle
