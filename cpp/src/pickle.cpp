#include "torch2mlx/pickle.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "torch2mlx/error.h"

namespace torch2mlx::pickle {
namespace {

constexpr std::string_view kComponent = "pickle";
// What to do when a program goes past one of the ReadLimits.
constexpr std::string_view kLimitHint =
    "no genuine checkpoint comes near this (a pickle bomb?); if you trust the file, load it in "
    "torch and save its state_dict() again";

// ---------------------------------------------------------------------------------------
// Opcodes. The allowed set is exactly the one torch/_weights_only_unpickler.py handles.
// The others are named only so that a refusal can say what was found.
enum Opcode : std::uint8_t {
  kMark = '(',
  kStop = '.',
  kBinFloat = 'G',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kNone = 'N',
  kBinPersId = 'Q',
  kReduce = 'R',
  kShortBinString = 'U',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kEmptyDict = '}',
  kAppends = 'e',
  kBinGet = 'h',
  kLongBinGet = 'j',
  kEmptyList = ']',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kProto = 0x80,
  kNewObj = 0x81,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kEmptySet = 0x8f,
};

struct OpcodeName {
  std::uint8_t code;
  std::string_view name;
};

// Every opcode of pickle protocols 0-5 that the weights_only subset refuses.
constexpr std::array<OpcodeName, 34> kRefusedOpcodes{{
    {'0', "POP"},
    {'1', "POP_MARK"},
    {'2', "DUP"},
    {'F', "FLOAT"},
    {'I', "INT"},
    {'L', "LONG"},
    {'P', "PERSID"},
    {'S', "STRING"},
    {'T', "BINSTRING"},
    {'V', "UNICODE"},
    {'d', "DICT"},
    {'g', "GET"},
    {'i', "INST"},
    {'l', "LIST"},
    {'o', "OBJ"},
    {'p', "PUT"},
    {0x82, "EXT1"},
    {0x83, "EXT2"},
    {0x84, "EXT4"},
    {0x8b, "LONG4"},
    {'B', "BINBYTES"},
    {'C', "SHORT_BINBYTES"},
    {0x8c, "SHORT_BINUNICODE"},
    {0x8d, "BINUNICODE8"},
    {0x8e, "BINBYTES8"},
    {0x90, "ADDITEMS"},
    {0x91, "FROZENSET"},
    {0x92, "NEWOBJ_EX"},
    {0x93, "STACK_GLOBAL"},
    {0x94, "MEMOIZE"},
    {0x95, "FRAME"},
    {0x96, "BYTEARRAY8"},
    {0x97, "NEXT_BUFFER"},
    {0x98, "READONLY_BUFFER"},
}};

// ---------------------------------------------------------------------------------------
// The allowlist: every global torch.load(weights_only=True) accepts, and what it means.
enum class Meaning : std::uint8_t {
  Dict,              // collections.OrderedDict, collections.Counter
  Set,               // builtins.set
  ByteArray,         // builtins.bytearray
  Complex,           // builtins.complex
  Encode,            // _codecs.encode: how protocol 2 pickles bytes
  Size,              // torch.Size
  Device,            // torch.device
  Parameter,         // torch.nn.parameter.Parameter
  TensorClass,       // torch.Tensor
  DType,             // torch.float32, ...
  StorageType,       // torch.FloatStorage, torch.storage.UntypedStorage, ...
  RebuildTensor,     // torch._utils._rebuild_tensor
  RebuildTensorV2,   // torch._utils._rebuild_tensor_v2
  RebuildTensorV3,   // torch._utils._rebuild_tensor_v3
  RebuildParameter,  // torch._utils._rebuild_parameter(_with_state)
  RebuildFromType,   // torch._tensor._rebuild_from_type_v2
  Unsupported,       // allowed by torch, but not a dense tensor torch2mlx can convert
};

struct AllowedGlobal {
  std::string_view name;
  Meaning meaning;
  DType dtype = DType::U8;
  std::string_view why = {};  // for Unsupported
};

constexpr std::string_view kNotDense =
    "is not a dense tensor; convert it to a dense one in torch first";
constexpr std::string_view kNoDType =
    "has a dtype MLX has no equivalent for; cast it in torch first";

constexpr std::array<AllowedGlobal, 70> kAllowedGlobals{{
    {"collections.OrderedDict", Meaning::Dict},
    {"collections.Counter", Meaning::Dict},
    {"builtins.set", Meaning::Set},
    {"builtins.bytearray", Meaning::ByteArray},
    {"builtins.complex", Meaning::Complex},
    {"_codecs.encode", Meaning::Encode},
    {"torch.Size", Meaning::Size},
    {"torch.device", Meaning::Device},
    {"torch.nn.parameter.Parameter", Meaning::Parameter},
    {"torch.Tensor", Meaning::TensorClass},
    {"torch._utils._rebuild_tensor", Meaning::RebuildTensor},
    {"torch._utils._rebuild_tensor_v2", Meaning::RebuildTensorV2},
    {"torch._utils._rebuild_tensor_v3", Meaning::RebuildTensorV3},
    {"torch._utils._rebuild_parameter", Meaning::RebuildParameter},
    {"torch._utils._rebuild_parameter_with_state", Meaning::RebuildParameter},
    {"torch._tensor._rebuild_from_type_v2", Meaning::RebuildFromType},
    {"torch.float64", Meaning::DType, DType::F64},
    {"torch.float32", Meaning::DType, DType::F32},
    {"torch.float16", Meaning::DType, DType::F16},
    {"torch.bfloat16", Meaning::DType, DType::BF16},
    {"torch.int64", Meaning::DType, DType::I64},
    {"torch.int32", Meaning::DType, DType::I32},
    {"torch.int16", Meaning::DType, DType::I16},
    {"torch.int8", Meaning::DType, DType::I8},
    {"torch.uint8", Meaning::DType, DType::U8},
    {"torch.uint16", Meaning::DType, DType::U16},
    {"torch.uint32", Meaning::DType, DType::U32},
    {"torch.uint64", Meaning::DType, DType::U64},
    {"torch.bool", Meaning::DType, DType::Bool},
    {"torch.DoubleStorage", Meaning::StorageType, DType::F64},
    {"torch.FloatStorage", Meaning::StorageType, DType::F32},
    {"torch.HalfStorage", Meaning::StorageType, DType::F16},
    {"torch.BFloat16Storage", Meaning::StorageType, DType::BF16},
    {"torch.LongStorage", Meaning::StorageType, DType::I64},
    {"torch.IntStorage", Meaning::StorageType, DType::I32},
    {"torch.ShortStorage", Meaning::StorageType, DType::I16},
    {"torch.CharStorage", Meaning::StorageType, DType::I8},
    {"torch.ByteStorage", Meaning::StorageType, DType::U8},
    {"torch.BoolStorage", Meaning::StorageType, DType::Bool},
    {"torch.storage.UntypedStorage", Meaning::StorageType, DType::U8},
    {"torch.storage.TypedStorage", Meaning::StorageType, DType::U8},
    {"torch.complex64", Meaning::Unsupported, DType::U8, kNoDType},
    {"torch.complex128", Meaning::Unsupported, DType::U8, kNoDType},
    {"torch.complex32", Meaning::Unsupported, DType::U8, kNoDType},
    {"torch.float8_e4m3fn", Meaning::Unsupported, DType::U8, kNoDType},
    {"torch.float8_e5m2", Meaning::Unsupported, DType::U8, kNoDType},
    {"torch.float8_e4m3fnuz", Meaning::Unsupported, DType::U8, kNoDType},
    {"torch.float8_e5m2fnuz", Meaning::Unsupported, DType::U8, kNoDType},
    {"torch.float8_e8m0fnu", Meaning::Unsupported, DType::U8, kNoDType},
    {"torch.float4_e2m1fn_x2", Meaning::Unsupported, DType::U8, kNoDType},
    {"torch.ComplexFloatStorage", Meaning::Unsupported, DType::U8, kNoDType},
    {"torch.ComplexDoubleStorage", Meaning::Unsupported, DType::U8, kNoDType},
    {"torch.QInt8Storage", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch.QInt32Storage", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch.QUInt8Storage", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch.QUInt4x2Storage", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch.QUInt2x4Storage", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch.qint8", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch.qint32", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch.quint8", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch._utils._rebuild_qtensor", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch._utils._rebuild_sparse_tensor", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch._utils._rebuild_nested_tensor", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch._utils._rebuild_wrapper_subclass", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch._utils._rebuild_meta_tensor_no_storage", Meaning::Unsupported, DType::U8,
     "is a meta tensor without data; save the real weights"},
    {"torch._utils._rebuild_device_tensor_from_numpy", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch._utils._rebuild_device_tensor_from_cpu_tensor", Meaning::Unsupported, DType::U8,
     kNotDense},
    {"torch.serialization._get_layout", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch.per_tensor_affine", Meaning::Unsupported, DType::U8, kNotDense},
    {"torch.per_channel_affine", Meaning::Unsupported, DType::U8, kNotDense},
}};

const AllowedGlobal* find_global(std::string_view name) {
  for (const auto& entry : kAllowedGlobals) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------
class Machine {
 public:
  Machine(std::span<const std::byte> program, std::string_view name, const StorageLoader& loader,
          const ReadLimits& limits)
      : program_(program), name_(name), loader_(loader), limits_(limits) {}

  Unpickled run() {
    if (program_.size() > limits_.max_pickle_bytes) {
      error(fmt::format("pickle is {} bytes, over the limit of {}; {}", program_.size(),
                        limits_.max_pickle_bytes, kLimitHint));
    }
    while (true) {
      op_start_ = position_;
      const std::uint8_t op = read_u8();
      if (op == kStop) {
        Unpickled result;
        result.root = pop();
        result.arena = std::move(arena_);
        return result;
      }
      step(op);
    }
  }

 private:
  // -- errors -------------------------------------------------------------------------
  [[noreturn]] void error(std::string_view message) const {
    fail(kComponent, fmt::format("{}: {}", name_, message));
  }
  [[noreturn]] void error_at(std::string_view message) const {
    fail(kComponent, fmt::format("{}: {} (opcode at byte {})", name_, message, op_start_));
  }
  [[noreturn]] void over_limit(std::string_view message) const {
    fail(kComponent,
         fmt::format("{}: {} (opcode at byte {}); {}", name_, message, op_start_, kLimitHint));
  }

  // -- reading the program --------------------------------------------------------------
  std::span<const std::byte> take(std::size_t count) {
    if (count > program_.size() - position_)
      error_at("pickle ends in the middle of an opcode (truncated file?)");
    const auto bytes = program_.subspan(position_, count);
    position_ += count;
    return bytes;
  }
  std::uint8_t read_u8() { return std::to_integer<std::uint8_t>(take(1)[0]); }
  std::uint64_t read_le(std::size_t count) {
    const auto bytes = take(count);
    std::uint64_t value = 0;
    for (std::size_t i = count; i-- > 0;)
      value = (value << 8) | std::to_integer<std::uint64_t>(bytes[i]);
    return value;
  }
  std::string read_string(std::size_t count) {
    const auto bytes = take(count);
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }
  std::string read_line() {
    const auto rest = program_.subspan(position_);
    const auto newline = std::find(rest.begin(), rest.end(), std::byte{'\n'});
    if (newline == rest.end()) error_at("GLOBAL name is not terminated by a newline");
    std::string line = read_string(static_cast<std::size_t>(newline - rest.begin()));
    position_ += 1;
    return line;
  }

  // -- the stack, marks and memo --------------------------------------------------------
  // Every value, container or stack slot and memo entry counts against max_pickle_values,
  // however the program reuses the memo: copying one list into a thousand torch.Size calls
  // costs a thousand lists.
  void spend(std::size_t cells) {
    if (cells > limits_.max_pickle_values - cells_) {
      over_limit(fmt::format("pickle creates more than {} values and container slots",
                             limits_.max_pickle_values));
    }
    cells_ += cells;
  }
  // Text that calls copy (bytearray, encode, device) cannot add up to more than the program.
  void spend_text(std::size_t bytes) {
    if (bytes > program_.size() - copied_bytes_) {
      error_at("calls copy more text than the pickle holds");
    }
    copied_bytes_ += bytes;
  }
  std::string copy_text(std::string_view text) {
    spend_text(text.size());
    return std::string(text);
  }
  Value* make(Value::Kind kind) {
    spend(1);
    arena_.push_back(std::make_unique<Value>());
    arena_.back()->kind = kind;
    return arena_.back().get();
  }
  void push(Value* value) { stack_.push_back(value); }
  Value* pop() {
    if (stack_.size() <= floor()) error_at("opcode needs a value but the stack is empty");
    Value* value = stack_.back();
    stack_.pop_back();
    return value;
  }
  Value* top() {
    if (stack_.size() <= floor()) error_at("opcode needs a value but the stack is empty");
    return stack_.back();
  }
  [[nodiscard]] std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<Value*> pop_mark() {
    if (marks_.empty()) error_at("opcode needs a MARK but none is open");
    std::vector<Value*> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()),
                              stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  Value* memo_get(std::uint64_t index) {
    const auto found = memo_.find(index);
    if (found == memo_.end())
      error_at(fmt::format("memo entry {} is read before it is written", index));
    spend(1);  // one more stack slot
    return found->second;
  }
  void memo_put(std::uint64_t index) {
    // Python numbers memo entries 0, 1, 2...: an index past the limit is a bomb, not a file.
    if (index >= limits_.max_memo_entries) {
      over_limit(fmt::format("memo index {} is past the limit of {} entries", index,
                             limits_.max_memo_entries));
    }
    Value* value = top();
    if (!memo_.contains(index)) spend(1);
    memo_[index] = value;
  }

  // -- one opcode ------------------------------------------------------------------------
  void step(std::uint8_t op) {
    switch (op) {
      case kProto: {
        const std::uint8_t protocol = read_u8();
        if (protocol > 5)
          error_at(fmt::format("pickle protocol {} is not one Python writes", protocol));
        return;
      }
      case kMark:
        if (marks_.size() >= limits_.max_depth) {
          over_limit(fmt::format("marks nest deeper than the limit of {}", limits_.max_depth));
        }
        marks_.push_back(stack_.size());
        return;
      case kNone:
        push(make(Value::Kind::None));
        return;
      case kNewTrue:
      case kNewFalse: {
        Value* value = make(Value::Kind::Bool);
        value->boolean = op == kNewTrue;
        push(value);
        return;
      }
      case kBinInt:
        return push_int(static_cast<std::int32_t>(static_cast<std::uint32_t>(read_le(4))));
      case kBinInt1:
        return push_int(read_u8());
      case kBinInt2:
        return push_int(static_cast<std::int64_t>(read_le(2)));
      case kLong1:
        return push_long(read_u8());
      case kBinFloat: {
        std::uint64_t bits = 0;  // BINFLOAT is big-endian
        for (const std::byte byte : take(8))
          bits = (bits << 8) | std::to_integer<std::uint64_t>(byte);
        Value* value = make(Value::Kind::Float);
        value->number = std::bit_cast<double>(bits);
        push(value);
        return;
      }
      case kBinUnicode: {
        const auto length = read_le(4);
        Value* value = make(Value::Kind::String);
        value->text = read_string(length);
        push(value);
        return;
      }
      case kShortBinString: {
        Value* value = make(Value::Kind::String);
        value->text = read_string(read_u8());
        push(value);
        return;
      }
      case kEmptyTuple:
        push(make(Value::Kind::Tuple));
        return;
      case kEmptyList:
        push(make(Value::Kind::List));
        return;
      case kEmptyDict:
        push(make(Value::Kind::Dict));
        return;
      case kEmptySet:
        push(make(Value::Kind::Set));
        return;
      case kTuple: {
        Value* tuple = make(Value::Kind::Tuple);
        tuple->items = pop_mark();
        spend(tuple->items.size());
        push(tuple);
        return;
      }
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        const std::size_t count = op - kTuple1 + 1;
        Value* tuple = make(Value::Kind::Tuple);
        spend(count);
        tuple->items.resize(count);
        for (std::size_t i = count; i-- > 0;) tuple->items[i] = pop();
        push(tuple);
        return;
      }
      case kAppend: {
        Value* item = pop();
        Value* list = top();
        if (list->kind != Value::Kind::List) error_at("APPEND to something that is not a list");
        spend(1);
        list->items.push_back(item);
        return;
      }
      case kAppends: {
        auto items = pop_mark();
        Value* list = top();
        if (list->kind != Value::Kind::List) error_at("APPENDS to something that is not a list");
        spend(items.size());
        list->items.insert(list->items.end(), items.begin(), items.end());
        return;
      }
      case kSetItem: {
        Value* value = pop();
        Value* key = pop();
        set_items({key, value});
        return;
      }
      case kSetItems: {
        const auto items = pop_mark();
        if (items.size() % 2 != 0) error_at("SETITEMS with an odd number of values");
        set_items(items);
        return;
      }
      case kBinGet:
        push(memo_get(read_u8()));
        return;
      case kLongBinGet:
        push(memo_get(read_le(4)));
        return;
      case kBinPut:
        memo_put(read_u8());
        return;
      case kLongBinPut:
        memo_put(read_le(4));
        return;
      case kGlobal:
        return push_global();
      case kBinPersId:
        return persistent_load();
      case kReduce: {
        Value* args = pop();
        Value* callable = pop();
        if (args->kind != Value::Kind::Tuple) error_at("REDUCE arguments are not a tuple");
        push(call(callable, args->items));
        return;
      }
      case kNewObj: {
        Value* args = pop();
        Value* cls = pop();
        if (args->kind != Value::Kind::Tuple) error_at("NEWOBJ arguments are not a tuple");
        push(construct(cls, args->items));
        return;
      }
      case kBuild: {
        Value* state = pop();
        Value* object = top();
        build(object, state);
        return;
      }
      default:
        break;
    }
    for (const auto& refused : kRefusedOpcodes) {
      if (refused.code == op) {
        error_at(
            fmt::format("opcode {} (0x{:02x}) is outside the subset torch.load(weights_only=True) "
                        "accepts; the file was not written by torch.save",
                        refused.name, op));
      }
    }
    error_at(fmt::format("unknown opcode 0x{:02x}; the file is corrupt or not a pickle", op));
  }

  void push_int(std::int64_t number) {
    Value* value = make(Value::Kind::Int);
    value->integer = number;
    push(value);
  }

  void push_long(std::size_t count) {
    const auto bytes = take(count);
    if (count <= 8) {
      // Little-endian two's complement, sign-extended.
      std::uint64_t raw = 0;
      for (std::size_t i = count; i-- > 0;)
        raw = (raw << 8) | std::to_integer<std::uint64_t>(bytes[i]);
      if (count > 0 && count < 8 &&
          (std::to_integer<std::uint8_t>(bytes[count - 1]) & 0x80U) != 0) {
        raw |= ~std::uint64_t{0} << (8 * count);
      }
      return push_int(static_cast<std::int64_t>(raw));
    }
    Value* value = make(Value::Kind::BigInt);
    value->text = "0x";
    for (std::size_t i = count; i-- > 0;) {
      value->text += fmt::format("{:02x}", std::to_integer<unsigned>(bytes[i]));
    }
    push(value);
  }

  void set_items(const std::vector<Value*>& items) {
    Value* dict = top();
    if (dict->kind != Value::Kind::Dict) error_at("SETITEM(S) on something that is not a dict");
    spend(items.size());
    dict->items.insert(dict->items.end(), items.begin(), items.end());
  }

  void push_global() {
    std::string module = read_line();
    const std::string name = read_line();
    if (module == "__builtin__") module = "builtins";  // Python 2 spelling
    const std::string full = module + "." + name;
    const AllowedGlobal* allowed = find_global(full);
    if (allowed == nullptr) {
      error_at(fmt::format(
          "global '{}' is not allowed: torch2mlx reads only what torch.load(weights_only=True) "
          "accepts and never runs code from a checkpoint. If you trust this file, load it in "
          "torch and save its state_dict() instead",
          full));
    }
    Value* value = make(Value::Kind::Global);
    value->text = full;
    push(value);
  }

  static std::string_view text_of(const Value* value) {
    if (value->kind == Value::Kind::String || value->kind == Value::Kind::Bytes) return value->text;
    return {};
  }

  void persistent_load() {
    Value* pid = pop();
    // ('storage', <StorageType>, key, location, numel)
    if (pid->kind != Value::Kind::Tuple || pid->items.size() != 5 ||
        text_of(pid->items[0]) != "storage") {
      error_at("persistent id is not a ('storage', type, key, location, numel) tuple");
    }
    const Value* type = pid->items[1];
    const AllowedGlobal* global =
        type->kind == Value::Kind::Global ? find_global(type->text) : nullptr;
    if (global == nullptr ||
        (global->meaning != Meaning::StorageType && global->meaning != Meaning::Unsupported)) {
      error_at("persistent id does not name a storage type");
    }
    if (global->meaning == Meaning::Unsupported) {
      error_at(fmt::format("storage of type {} {}", global->name, global->why));
    }
    const Value* key = pid->items[2];
    const Value* numel = pid->items[4];
    if ((key->kind != Value::Kind::String && key->kind != Value::Kind::Bytes) ||
        numel->kind != Value::Kind::Int || numel->integer < 0) {
      error_at("persistent id has a malformed storage key or size");
    }
    StorageRef ref{key->text, global->dtype, std::string(text_of(pid->items[3])), numel->integer};
    Value* storage = make(Value::Kind::Storage);
    storage->dtype = ref.dtype;
    storage->integer = ref.numel;
    storage->storage = loader_(ref);
    if (!storage->storage) error_at(fmt::format("storage '{}' could not be loaded", ref.key));
    if (static_cast<std::uint64_t>(ref.numel) > storage->storage->nbytes / itemsize(ref.dtype)) {
      error_at(fmt::format("storage '{}' declares {} elements of {} but holds {} bytes", ref.key,
                           ref.numel, dtype_name(ref.dtype), storage->storage->nbytes));
    }
    push(storage);
  }

  // -- interpreting the allowed callables ------------------------------------------------
  const AllowedGlobal& callable_of(const Value* value) {
    const AllowedGlobal* global =
        value->kind == Value::Kind::Global ? find_global(value->text) : nullptr;
    if (global == nullptr) error_at("REDUCE or NEWOBJ on a value that is not an allowed callable");
    if (global->meaning == Meaning::Unsupported) {
      error_at(fmt::format("{} {}", global->name, global->why));
    }
    return *global;
  }

  std::vector<std::int64_t> int_tuple(const Value* value, std::string_view what) {
    if (value->kind != Value::Kind::Tuple && value->kind != Value::Kind::List) {
      error_at(fmt::format("tensor {} is not a tuple", what));
    }
    spend(value->items.size());
    std::vector<std::int64_t> numbers;
    for (const Value* item : value->items) {
      if (item->kind != Value::Kind::Int)
        error_at(fmt::format("tensor {} holds a non-integer", what));
      numbers.push_back(item->integer);
    }
    return numbers;
  }

  void check_tensor_metadata(const Value* metadata) {
    // {'conj': True} or {'neg': True} ask torch to conjugate or negate lazily.
    if (metadata->kind == Value::Kind::None) return;
    if (metadata->kind != Value::Kind::Dict) error_at("tensor metadata is not a dict");
    for (std::size_t i = 1; i < metadata->items.size(); i += 2) {
      if (metadata->items[i]->kind == Value::Kind::Bool && metadata->items[i]->boolean) {
        error_at(
            fmt::format("tensor carries a lazy '{}' bit; call .resolve_conj().resolve_neg() in "
                        "torch before saving",
                        text_of(metadata->items[i - 1])));
      }
    }
  }

  Value* rebuild_tensor(const std::vector<Value*>& args, std::optional<DType> dtype) {
    const Value* storage = args[0];
    if (storage->kind != Value::Kind::Storage)
      error_at("tensor is rebuilt from something that is not a storage");
    if (args[1]->kind != Value::Kind::Int) error_at("tensor storage offset is not an integer");
    Value* value = make(Value::Kind::Tensor);
    Tensor& tensor = value->tensor;
    tensor.dtype = dtype.value_or(storage->dtype);
    tensor.offset = args[1]->integer;
    tensor.shape = int_tuple(args[2], "size");
    tensor.strides = int_tuple(args[3], "stride");
    tensor.storage = storage->storage;
    check_view_in_bounds(tensor, tensor.storage->nbytes,
                         fmt::format("{}: tensor at byte {}", name_, op_start_));
    if (++tensor_count_ > limits_.max_tensors) {
      over_limit(fmt::format("more than {} tensors", limits_.max_tensors));
    }
    value->storage = storage->storage;
    return value;
  }

  void expect_args(const std::vector<Value*>& args, std::size_t low, std::size_t high,
                   std::string_view what) {
    if (args.size() < low || args.size() > high) {
      error_at(fmt::format("{} called with {} arguments", what, args.size()));
    }
  }

  Value* call(const Value* callable, const std::vector<Value*>& args) {
    const AllowedGlobal& global = callable_of(callable);
    switch (global.meaning) {
      case Meaning::Dict: {
        Value* dict = make(Value::Kind::Dict);
        if (!args.empty()) error_at(fmt::format("{} called with arguments", global.name));
        return dict;
      }
      case Meaning::Set: {
        Value* set = make(Value::Kind::Set);
        if (!args.empty()) {
          spend(args[0]->items.size());
          set->items = args[0]->items;
        }
        return set;
      }
      case Meaning::ByteArray: {
        Value* bytes = make(Value::Kind::Bytes);
        if (!args.empty()) bytes->text = copy_text(text_of(args[0]));
        return bytes;
      }
      case Meaning::Complex: {
        expect_args(args, 2, 2, global.name);
        Value* text = make(Value::Kind::String);
        auto part = [](const Value* v) {
          return v->kind == Value::Kind::Float ? v->number : static_cast<double>(v->integer);
        };
        text->text = fmt::format("({}+{}j)", part(args[0]), part(args[1]));
        return text;
      }
      case Meaning::Encode:
        return encode(args);
      case Meaning::Size: {
        expect_args(args, 0, 1, global.name);
        Value* tuple = make(Value::Kind::Tuple);
        if (!args.empty()) {
          spend(args[0]->items.size());
          tuple->items = args[0]->items;
        }
        return tuple;
      }
      case Meaning::Device: {
        expect_args(args, 1, 2, global.name);
        Value* device = make(Value::Kind::String);
        device->text = copy_text(text_of(args[0]));
        if (args.size() == 2 && args[1]->kind == Value::Kind::Int)
          device->text += fmt::format(":{}", args[1]->integer);
        return device;
      }
      case Meaning::RebuildTensor:
        expect_args(args, 4, 4, global.name);
        return rebuild_tensor(args, std::nullopt);
      case Meaning::RebuildTensorV2:
        expect_args(args, 6, 7, global.name);
        if (args.size() == 7) check_tensor_metadata(args[6]);
        return rebuild_tensor(args, std::nullopt);
      case Meaning::RebuildTensorV3: {
        expect_args(args, 7, 8, global.name);
        const AllowedGlobal* dtype =
            args[6]->kind == Value::Kind::Global ? find_global(args[6]->text) : nullptr;
        if (args.size() == 8) check_tensor_metadata(args[7]);
        if (dtype != nullptr && dtype->meaning == Meaning::Unsupported && dtype->why == kNoDType) {
          // A dtype torch2mlx lacks (float8, complex32): refused by flatten, which knows the
          // tensor's name. Its bytes are viewed as uint8 meanwhile and never read.
          Value* tensor = rebuild_tensor(args, DType::U8);
          tensor->text = dtype->name.substr(dtype->name.find('.') + 1);
          return tensor;
        }
        if (dtype == nullptr || dtype->meaning != Meaning::DType)
          error_at("_rebuild_tensor_v3 without a dtype");
        return rebuild_tensor(args, dtype->dtype);
      }
      case Meaning::RebuildParameter:
        expect_args(args, 3, 4, global.name);
        if (args[0]->kind != Value::Kind::Tensor)
          error_at("parameter is rebuilt from something that is not a tensor");
        return args[0];
      case Meaning::RebuildFromType: {
        // _rebuild_from_type_v2(func, new_type, args, state): the tensor is func(*args).
        expect_args(args, 4, 4, global.name);
        if (args[2]->kind != Value::Kind::Tuple)
          error_at("_rebuild_from_type_v2 arguments are not a tuple");
        // torch wraps one rebuild call; nesting it in itself would recurse without bound.
        if (callable_of(args[0]).meaning == Meaning::RebuildFromType)
          error_at("_rebuild_from_type_v2 wraps another _rebuild_from_type_v2");
        return call(args[0], args[2]->items);
      }
      case Meaning::Parameter:
      case Meaning::TensorClass:
      case Meaning::DType:
      case Meaning::StorageType:
      case Meaning::Unsupported:
        break;
    }
    error_at(fmt::format("{} cannot be called while loading weights", global.name));
  }

  Value* construct(const Value* cls, const std::vector<Value*>& args) {
    const AllowedGlobal& global = callable_of(cls);
    if (global.meaning == Meaning::Parameter) {
      if (args.empty() || args[0]->kind != Value::Kind::Tensor)
        error_at("Parameter() without a tensor");
      return args[0];
    }
    if (global.meaning == Meaning::Dict) return make(Value::Kind::Dict);
    if (global.meaning == Meaning::Set) return make(Value::Kind::Set);
    error_at(fmt::format("NEWOBJ cannot create {}", global.name));
  }

  void build(Value* object, const Value* state) {
    // OrderedDict state is its __dict__ (state_dict()._metadata: per-module versions, not
    // weights); Parameter state is its Python attributes. Neither changes a tensor.
    if (object->kind == Value::Kind::Dict) return;
    if (object->kind == Value::Kind::Tensor &&
        (state->kind == Value::Kind::Dict || state->kind == Value::Kind::None ||
         (state->kind == Value::Kind::Tuple && state->items.empty()))) {
      return;
    }
    error_at("BUILD on an object torch2mlx cannot set state on");
  }

  Value* encode(const std::vector<Value*>& args) {
    // _codecs.encode(text, 'latin1') is how protocol 2 spells bytes: each code point < 256
    // is one byte. The text arrived as UTF-8.
    expect_args(args, 1, 2, "_codecs.encode");
    const std::string_view text = text_of(args[0]);
    const std::string_view encoding = args.size() == 2 ? text_of(args[1]) : "utf-8";
    Value* bytes = make(Value::Kind::Bytes);
    if (encoding == "utf-8" || encoding == "utf8") {
      bytes->text = copy_text(text);
      return bytes;
    }
    if (encoding != "latin1" && encoding != "latin-1")
      error_at(fmt::format("_codecs.encode with encoding '{}'", encoding));
    spend_text(text.size());  // the latin1 bytes are at most as long as the text
    for (std::size_t i = 0; i < text.size(); ++i) {
      const auto lead = static_cast<unsigned char>(text[i]);
      if (lead < 0x80) {
        bytes->text.push_back(static_cast<char>(lead));
      } else if ((lead & 0xE0U) == 0xC0U && i + 1 < text.size()) {
        const unsigned code =
            ((lead & 0x1FU) << 6U) | (static_cast<unsigned char>(text[++i]) & 0x3FU);
        if (code > 0xFF) error_at("latin1 text holds a character above U+00FF");
        bytes->text.push_back(static_cast<char>(code));
      } else {
        error_at("latin1 text holds a character above U+00FF");
      }
    }
    return bytes;
  }

  std::span<const std::byte> program_;
  std::string_view name_;
  const StorageLoader& loader_;
  const ReadLimits& limits_;
  std::size_t position_ = 0;
  std::size_t op_start_ = 0;
  std::size_t tensor_count_ = 0;
  std::size_t cells_ = 0;
  std::size_t copied_bytes_ = 0;
  std::vector<Value*> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, Value*> memo_;
  std::vector<std::unique_ptr<Value>> arena_;
};

// ---------------------------------------------------------------------------------------
std::string short_repr(const Value& value) {
  constexpr std::size_t kMax = 60;
  auto clip = [&](std::string text) {
    if (text.size() > kMax) text = text.substr(0, kMax) + "...";
    return text;
  };
  switch (value.kind) {
    case Value::Kind::None:
      return "None";
    case Value::Kind::Bool:
      return value.boolean ? "True" : "False";
    case Value::Kind::Int:
      return fmt::format("{}", value.integer);
    case Value::Kind::BigInt:
      return value.text;
    case Value::Kind::Float:
      return fmt::format("{}", value.number);
    case Value::Kind::String:
      return clip(fmt::format("'{}'", value.text));
    case Value::Kind::Bytes:
      return fmt::format("<{} bytes>", value.text.size());
    case Value::Kind::Global:
      return value.text;
    case Value::Kind::Storage:
      return fmt::format("<storage of {} {}>", value.integer, dtype_name(value.dtype));
    case Value::Kind::Tuple:
      return value.items.empty() ? "()" : fmt::format("<tuple of {}>", value.items.size());
    case Value::Kind::List:
      return value.items.empty() ? "[]" : fmt::format("<list of {}>", value.items.size());
    case Value::Kind::Dict:
      return value.items.empty() ? "{}" : fmt::format("<dict of {}>", value.items.size() / 2);
    case Value::Kind::Set:
      return fmt::format("<set of {}>", value.items.size());
    case Value::Kind::Tensor:
      return "<tensor>";
  }
  return "?";
}

std::string_view type_name(const Value& value) {
  switch (value.kind) {
    case Value::Kind::None:
      return "None";
    case Value::Kind::Bool:
      return "bool";
    case Value::Kind::Int:
    case Value::Kind::BigInt:
      return "int";
    case Value::Kind::Float:
      return "float";
    case Value::Kind::String:
      return "str";
    case Value::Kind::Bytes:
      return "bytes";
    case Value::Kind::Tuple:
      return "tuple";
    case Value::Kind::List:
      return "list";
    case Value::Kind::Dict:
      return "dict";
    case Value::Kind::Set:
      return "set";
    case Value::Kind::Global:
      return "global";
    case Value::Kind::Storage:
      return "storage";
    case Value::Kind::Tensor:
      return "tensor";
  }
  return "?";
}

struct Flattener {
  std::string_view name;
  const ReadLimits& limits;
  std::vector<NamedTensor>& tensors;
  std::vector<Leaf>& others;
  std::unordered_set<const Value*> on_path;
  // A value reached through k shared references is flattened k times: a few bytes of memo
  // references can expand exponentially, so visits and names have a budget.
  std::size_t visits = 0;
  std::size_t name_bytes = 0;

  static std::string join(const std::string& prefix, std::string_view key) {
    return prefix.empty() ? std::string(key) : prefix + "." + std::string(key);
  }

  static std::string key_text(const Value& key) {
    if (key.kind == Value::Kind::String || key.kind == Value::Kind::Bytes) return key.text;
    return short_repr(key);
  }

  // A tensor whose dtype (torch's name, e.g. "float8_e4m3fn") torch2mlx has no DType for.
  [[noreturn]] void refuse_dtype(const std::string& path, std::string_view dtype) const {
    if (dtype.starts_with("float8") || dtype.starts_with("float4")) {
      fail(kComponent, fmt::format("{}: tensor '{}' is {}, which MLX has no dtype for; cast it to "
                                   "bfloat16 in torch before saving",
                                   name, path, dtype));
    }
    fail(kComponent, fmt::format("{}: tensor '{}' is {}, which torch2mlx does not convert; cast "
                                 "it to a real dtype in torch before saving",
                                 name, path, dtype));
  }

  void visit(const Value& value, const std::string& path, std::size_t depth) {
    if (depth > limits.max_depth) {
      fail(kComponent, fmt::format("{}: '{}' nests deeper than the limit of {}; {}", name, path,
                                   limits.max_depth, kLimitHint));
    }
    // A tensor copies its shape and strides; a container is walked item by item.
    visits += 1 + (value.kind == Value::Kind::Tensor ? 2 * value.tensor.shape.size()
                                                     : value.items.size());
    name_bytes += path.size();
    if (visits > limits.max_pickle_values || name_bytes > limits.max_header_bytes) {
      fail(kComponent,
           fmt::format("{}: the object expands to more than {} values or {} bytes of names "
                       "(shared references are expanded each time they are reached); {}",
                       name, limits.max_pickle_values, limits.max_header_bytes, kLimitHint));
    }
    const bool container = value.kind == Value::Kind::Dict || value.kind == Value::Kind::List ||
                           value.kind == Value::Kind::Tuple;
    if (value.kind == Value::Kind::Tensor) {
      if (!value.text.empty()) refuse_dtype(path, value.text);
      if (value.tensor.shape.size() > kMaxDims) {
        fail(kComponent,
             fmt::format("{}: tensor '{}' has {} dims, more than the {} numpy and MLX support; "
                         "reshape it to at most {} dims in torch before saving",
                         name, path, value.tensor.shape.size(), kMaxDims, kMaxDims));
      }
      tensors.push_back({path, value.tensor});
      return;
    }
    if (!container || value.items.empty()) {
      others.push_back({path, std::string(type_name(value)), short_repr(value)});
      return;
    }
    if (!on_path.insert(&value).second) {
      fail(kComponent, fmt::format("{}: '{}' contains itself; recursive structures hold no weights",
                                   name, path));
    }
    if (value.kind == Value::Kind::Dict) {
      // As in a Python dict, a key set twice keeps its first position and its last value.
      std::vector<std::string> keys;
      std::unordered_map<std::string, const Value*> latest;
      for (std::size_t i = 0; i + 1 < value.items.size(); i += 2) {
        std::string key = key_text(*value.items[i]);
        if (latest.insert_or_assign(key, value.items[i + 1]).second) keys.push_back(std::move(key));
      }
      for (const auto& key : keys) visit(*latest.at(key), join(path, key), depth + 1);
    } else {
      for (std::size_t i = 0; i < value.items.size(); ++i) {
        visit(*value.items[i], join(path, std::to_string(i)), depth + 1);
      }
    }
    on_path.erase(&value);
  }
};

}  // namespace

Unpickled unpickle(std::span<const std::byte> program, std::string_view name,
                   const StorageLoader& load_storage, const ReadLimits& limits) {
  return Machine(program, name, load_storage, limits).run();
}

void flatten(const Value& root, std::string_view name, const ReadLimits& limits,
             std::vector<NamedTensor>& tensors, std::vector<Leaf>& others) {
  Flattener flattener{name, limits, tensors, others, {}};
  flattener.visit(root, "", 0);
}

std::vector<std::string> allowed_globals() {
  std::vector<std::string> names;
  names.reserve(kAllowedGlobals.size());
  for (const auto& entry : kAllowedGlobals) names.emplace_back(entry.name);
  return names;
}

}  // namespace torch2mlx::pickle
