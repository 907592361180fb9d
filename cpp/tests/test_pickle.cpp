#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "test_util.h"
#include "torch2mlx/error.h"
#include "torch2mlx/pickle.h"

namespace torch2mlx {
namespace {

using pickle::StorageRef;
using pickle::Value;
using test::Contains;
using test::error_of;
using test::PickleBuilder;
using test::StartsWith;

constexpr std::string_view kName = "data.pkl";
constexpr std::string_view kPrefix = "[pickle] data.pkl: ";

/// Storages held in memory by key; each key yields one Storage object (as torch_zip does),
/// and every request is recorded.
class FakeStorages {
 public:
  void add(const std::string& key, std::vector<std::byte> bytes) { bytes_[key] = std::move(bytes); }

  [[nodiscard]] pickle::StorageLoader loader() {
    return [this](const StorageRef& ref) -> std::shared_ptr<Storage> {
      requests.push_back(ref);
      if (auto found = cache_.find(ref.key); found != cache_.end()) return found->second;
      auto& bytes = bytes_.at(ref.key);
      auto storage = std::make_shared<Storage>(Storage{bytes.data(), bytes.size(), nullptr});
      cache_.emplace(ref.key, storage);
      return storage;
    };
  }

  std::vector<StorageRef> requests;

 private:
  std::map<std::string, std::vector<std::byte>> bytes_;
  std::map<std::string, std::shared_ptr<Storage>> cache_;
};

/// A loader for programs that hold no tensors.
std::shared_ptr<Storage> no_storage(const StorageRef& ref) {
  ADD_FAILURE() << "unexpected storage request for " << ref.key;
  return nullptr;
}

pickle::Unpickled run(const PickleBuilder& program,
                      const pickle::StorageLoader& loader = no_storage,
                      const ReadLimits& limits = {}) {
  return pickle::unpickle(program.bytes(), kName, loader, limits);
}

struct Flat {
  std::vector<NamedTensor> tensors;
  std::vector<Leaf> others;
};

Flat flat(const pickle::Unpickled& unpickled, const ReadLimits& limits = {}) {
  Flat result;
  pickle::flatten(*unpickled.root, kName, limits, result.tensors, result.others);
  return result;
}

std::string run_error(const PickleBuilder& program,
                      const pickle::StorageLoader& loader = no_storage,
                      const ReadLimits& limits = {}) {
  return error_of([&] { (void)run(program, loader, limits); });
}

::testing::AssertionResult IsLeaf(const Leaf& leaf, std::string_view path, std::string_view type,
                                  std::string_view repr) {
  if (leaf.path == path && leaf.type == type && leaf.repr == repr) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "leaf {" << leaf.path << ", " << leaf.type << ", " << leaf.repr << "} is not {" << path
         << ", " << type << ", " << repr << "}";
}

std::vector<float> floats_of(const Tensor& tensor) {
  std::vector<std::byte> packed(tensor.nbytes());
  copy_contiguous(tensor, packed.data());
  return test::values_at<float>(packed.data(), static_cast<std::size_t>(tensor.numel()));
}

// ---------------------------------------------------------------------------------------
// Plain Python values.

TEST(Unpickle, FlattensNestedContainersToDottedKeys) {
  // {'model': {'layers': [1, (2.5, None)]}, 'name': 'x', 'flag': True}
  PickleBuilder program;
  program.proto().empty_dict().binput(0).mark();
  program.binunicode("model").empty_dict().binput(1);
  program.binunicode("layers").empty_list().binput(2);
  program.mark().binint1(1).binfloat(2.5).none().tuple2().appends().setitem();
  program.binunicode("name").binunicode("x").binunicode("flag").newtrue().setitems().stop();

  const Flat result = flat(run(program));
  EXPECT_TRUE(result.tensors.empty());
  ASSERT_EQ(result.others.size(), 5U);
  EXPECT_TRUE(IsLeaf(result.others[0], "model.layers.0", "int", "1"));
  EXPECT_TRUE(IsLeaf(result.others[1], "model.layers.1.0", "float", "2.5"));
  EXPECT_TRUE(IsLeaf(result.others[2], "model.layers.1.1", "None", "None"));
  EXPECT_TRUE(IsLeaf(result.others[3], "name", "str", "'x'"));
  EXPECT_TRUE(IsLeaf(result.others[4], "flag", "bool", "True"));
}

TEST(Unpickle, ReportsEmptyContainersAsLeaves) {
  PickleBuilder program;
  program.proto().empty_dict().mark();
  program.binunicode("l").empty_list().binunicode("t").empty_tuple().binunicode("d").empty_dict();
  program.setitems().stop();
  const Flat result = flat(run(program));
  ASSERT_EQ(result.others.size(), 3U);
  EXPECT_TRUE(IsLeaf(result.others[0], "l", "list", "[]"));
  EXPECT_TRUE(IsLeaf(result.others[1], "t", "tuple", "()"));
  EXPECT_TRUE(IsLeaf(result.others[2], "d", "dict", "{}"));
}

TEST(Unpickle, ReadsIntegersOfEveryWidth) {
  PickleBuilder program;
  program.proto().empty_list().mark();
  program.binint1(255).binint2(65535).binint(-5).binint(INT32_MAX);
  program.long1(-1).long1(-300).long1(std::int64_t{1} << 40).long1(INT64_MIN).long1(INT64_MAX);
  program.op(0x8a).byte(0);  // LONG1 with no digits is 0
  program.appends().stop();

  const pickle::Unpickled unpickled = run(program);
  std::vector<std::int64_t> numbers;
  for (const Value* item : unpickled.root->items) {
    ASSERT_EQ(item->kind, Value::Kind::Int);
    numbers.push_back(item->integer);
  }
  EXPECT_EQ(numbers, (std::vector<std::int64_t>{255, 65535, -5, INT32_MAX, -1, -300,
                                                std::int64_t{1} << 40, INT64_MIN, INT64_MAX, 0}));
  const Flat result = flat(unpickled);
  EXPECT_TRUE(IsLeaf(result.others[2], "2", "int", "-5"));
  EXPECT_TRUE(IsLeaf(result.others[5], "5", "int", "-300"));
}

TEST(Unpickle, KeepsIntegersBeyondInt64AsBigInts) {
  // 2**64 as LONG1: nine little-endian bytes 00 .. 00 01.
  PickleBuilder program;
  program.proto().op(0x8a).byte(9);
  for (int i = 0; i < 8; ++i) program.byte(0);
  program.byte(1).stop();
  const pickle::Unpickled unpickled = run(program);
  EXPECT_EQ(unpickled.root->kind, Value::Kind::BigInt);
  const Flat result = flat(unpickled);
  ASSERT_EQ(result.others.size(), 1U);
  EXPECT_EQ(result.others[0].type, "int");
  EXPECT_EQ(result.others[0].repr, "0x010000000000000000");
}

TEST(Unpickle, ReadsBigEndianDoubles) {
  PickleBuilder program;
  program.proto().binfloat(-0.125).stop();
  const pickle::Unpickled unpickled = run(program);
  ASSERT_EQ(unpickled.root->kind, Value::Kind::Float);
  EXPECT_EQ(unpickled.root->number, -0.125);
  EXPECT_TRUE(IsLeaf(flat(unpickled).others.at(0), "", "float", "-0.125"));
}

TEST(Unpickle, MemoSharesOneValue) {
  // shared = [7]; {'a': shared, 'b': shared}
  PickleBuilder program;
  program.proto().empty_dict().binput(0).mark();
  program.binunicode("a").empty_list().binput(1).binint1(7).append();
  program.binunicode("b").binget(1).setitems().stop();

  const pickle::Unpickled unpickled = run(program);
  ASSERT_EQ(unpickled.root->items.size(), 4U);
  EXPECT_EQ(unpickled.root->items[1], unpickled.root->items[3]);
  const Flat result = flat(unpickled);
  ASSERT_EQ(result.others.size(), 2U);  // shared, not cyclic: both paths are reported
  EXPECT_TRUE(IsLeaf(result.others[0], "a.0", "int", "7"));
  EXPECT_TRUE(IsLeaf(result.others[1], "b.0", "int", "7"));
}

TEST(Unpickle, DictKeySetTwiceKeepsFirstPositionAndLastValue) {
  // {'x': 1, 'y': 2, 'x': 3}
  PickleBuilder program;
  program.proto().empty_dict().mark();
  program.binunicode("x").binint1(1).binunicode("y").binint1(2).binunicode("x").binint1(3);
  program.setitems().stop();
  const Flat result = flat(run(program));
  ASSERT_EQ(result.others.size(), 2U);
  EXPECT_TRUE(IsLeaf(result.others[0], "x", "int", "3"));
  EXPECT_TRUE(IsLeaf(result.others[1], "y", "int", "2"));
}

TEST(Unpickle, NonStringKeysAreRenderedInThePath) {
  // {0: 'a', None: 'b'}
  PickleBuilder program;
  program.proto().empty_dict().mark().binint1(0).binunicode("a").none().binunicode("b");
  program.setitems().stop();
  const Flat result = flat(run(program));
  ASSERT_EQ(result.others.size(), 2U);
  EXPECT_EQ(result.others[0].path, "0");
  EXPECT_EQ(result.others[1].path, "None");
}

// ---------------------------------------------------------------------------------------
// Tensors.

TEST(Unpickle, RebuildTensorV2ViewsTheLoadedStorage) {
  FakeStorages storages;
  storages.add("0", test::raw_bytes(std::vector<float>{0, 1, 2, 3, 4, 5}));
  // {'w': <2x3 over storage '0'>, 'wt': <its 3x2 transpose, offset 0>}
  PickleBuilder program;
  program.proto().empty_dict().binput(0).mark();
  program.binunicode("w").float_tensor("0", 6, 0, {2, 3}, {3, 1});
  program.binunicode("wt").float_tensor("0", 6, 0, {3, 2}, {1, 3});
  program.setitems().stop();

  const Flat result = flat(run(program, storages.loader()));
  EXPECT_TRUE(result.others.empty());
  ASSERT_EQ(result.tensors.size(), 2U);
  const Tensor& w = result.tensors[0].tensor;
  const Tensor& wt = result.tensors[1].tensor;
  EXPECT_EQ(result.tensors[0].name, "w");
  EXPECT_EQ(w.dtype, DType::F32);  // from torch.FloatStorage
  EXPECT_EQ(w.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(w.strides, (std::vector<std::int64_t>{3, 1}));
  EXPECT_EQ(w.offset, 0);
  EXPECT_EQ(floats_of(w), (std::vector<float>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(result.tensors[1].name, "wt");
  EXPECT_EQ(wt.strides, (std::vector<std::int64_t>{1, 3}));
  EXPECT_EQ(floats_of(wt), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(w.storage.get(), wt.storage.get());  // tied weights stay tied

  ASSERT_EQ(storages.requests.size(), 2U);
  EXPECT_EQ(storages.requests[0].key, "0");
  EXPECT_EQ(storages.requests[0].dtype, DType::F32);
  EXPECT_EQ(storages.requests[0].location, "cpu");
  EXPECT_EQ(storages.requests[0].numel, 6);
}

TEST(Unpickle, RebuildTensorV2HonoursTheStorageOffset) {
  FakeStorages storages;
  storages.add("3", test::raw_bytes(std::vector<float>{0, 1, 2, 3, 4, 5}));
  PickleBuilder program;
  program.proto().float_tensor("3", 6, 4, {2}, {1}).stop();
  const Flat result = flat(run(program, storages.loader()));
  ASSERT_EQ(result.tensors.size(), 1U);
  EXPECT_EQ(result.tensors[0].tensor.offset, 4);
  EXPECT_EQ(floats_of(result.tensors[0].tensor), (std::vector<float>{4, 5}));
}

TEST(Unpickle, RebuildTensorV3TakesItsDTypeFromTheArguments) {
  FakeStorages storages;
  storages.add("u", test::raw_bytes(std::vector<std::uint16_t>{1, 2, 65535, 4}));
  PickleBuilder program;
  program.proto().global("torch._utils", "_rebuild_tensor_v3").mark();
  program.storage("torch.storage", "UntypedStorage", "u", 8);  // numel counts bytes
  program.integer(0).int_tuple({2, 2}).int_tuple({2, 1}).newfalse().ordered_dict();
  program.global("torch", "uint16").tuple().reduce().stop();

  const Flat result = flat(run(program, storages.loader()));
  ASSERT_EQ(result.tensors.size(), 1U);
  const Tensor& tensor = result.tensors[0].tensor;
  EXPECT_EQ(tensor.dtype, DType::U16);
  EXPECT_EQ(tensor.shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(test::values_at<std::uint16_t>(tensor.data(), 4),
            (std::vector<std::uint16_t>{1, 2, 65535, 4}));
  EXPECT_EQ(storages.requests.at(0).dtype, DType::U8);
}

TEST(Unpickle, RebuildParameterUnwrapsTheTensor) {
  FakeStorages storages;
  storages.add("0", test::raw_bytes(std::vector<float>{1, 2}));
  PickleBuilder program;
  program.proto().empty_dict().binunicode("p");
  program.global("torch._utils", "_rebuild_parameter").mark();
  program.float_tensor("0", 2, 0, {2}, {1}).newtrue().ordered_dict().tuple().reduce();
  program.setitem().stop();

  const Flat result = flat(run(program, storages.loader()));
  ASSERT_EQ(result.tensors.size(), 1U);
  EXPECT_EQ(result.tensors[0].name, "p");
  EXPECT_EQ(floats_of(result.tensors[0].tensor), (std::vector<float>{1, 2}));
}

TEST(Unpickle, OrderedDictStateIsAcceptedAndIgnored) {
  // What torch.save(model.state_dict()) writes: OrderedDict() with items, then BUILD with
  // {'_metadata': OrderedDict({'': {'version': 1}})}.
  FakeStorages storages;
  storages.add("0", test::raw_bytes(std::vector<float>{1, 2, 3}));
  PickleBuilder program;
  program.proto().ordered_dict().binput(0).mark();
  program.binunicode("w").float_tensor("0", 3, 0, {3}, {1}).setitems();
  program.empty_dict().binunicode("_metadata").ordered_dict();
  program.binunicode("").empty_dict().binunicode("version").binint1(1).setitem().setitem();
  program.setitem().build().stop();

  const Flat result = flat(run(program, storages.loader()));
  ASSERT_EQ(result.tensors.size(), 1U);
  EXPECT_EQ(result.tensors[0].name, "w");
  EXPECT_TRUE(result.others.empty());
}

// ---------------------------------------------------------------------------------------
// Refusals.

TEST(UnpickleRefuses, OsSystem) {
  PickleBuilder program;
  program.proto().global("os", "system").binunicode("echo hi").tuple1().reduce().stop();
  const std::string message = run_error(program);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "os.system"));
  EXPECT_TRUE(Contains(message, "not allowed"));
}

TEST(UnpickleRefuses, BuiltinsEvalInBothSpellings) {
  PickleBuilder modern;
  modern.proto().global("builtins", "eval").stop();
  EXPECT_TRUE(Contains(run_error(modern), "global 'builtins.eval' is not allowed"));
  PickleBuilder python2;
  python2.proto().global("__builtin__", "eval").stop();
  EXPECT_TRUE(Contains(run_error(python2), "global 'builtins.eval' is not allowed"));
}

TEST(UnpickleRefuses, ReduceOnANonCallable) {
  PickleBuilder none_call;
  none_call.proto().none().empty_tuple().reduce().stop();
  const std::string message = run_error(none_call);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "not an allowed callable"));

  PickleBuilder dtype_call;  // allowed as a value, but not callable
  dtype_call.proto().global("torch", "float32").empty_tuple().reduce().stop();
  EXPECT_TRUE(Contains(run_error(dtype_call), "torch.float32 cannot be called"));
}

TEST(UnpickleRefuses, UnknownOpcode) {
  PickleBuilder program;
  program.proto().op(0xff).stop();
  const std::string message = run_error(program);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "unknown opcode 0xff"));
  EXPECT_TRUE(Contains(message, "byte 2"));
}

TEST(UnpickleRefuses, RealOpcodesOutsideTheSubsetByName) {
  PickleBuilder inst;
  inst.proto().mark().op('i').raw("os\nsystem\n").stop();
  const std::string message = run_error(inst);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "opcode INST (0x69)"));

  PickleBuilder stack_global;
  stack_global.proto().binunicode("os").binunicode("system").op(0x93).stop();
  EXPECT_TRUE(Contains(run_error(stack_global), "opcode STACK_GLOBAL (0x93)"));
}

TEST(UnpickleRefuses, TruncatedPrograms) {
  PickleBuilder mid_argument;
  mid_argument.proto().op('J').byte(1).byte(2);  // BININT needs four bytes
  const std::string message = run_error(mid_argument);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "truncated"));

  PickleBuilder no_stop;
  no_stop.proto().none();
  EXPECT_TRUE(Contains(run_error(no_stop), "truncated"));

  PickleBuilder short_string;
  short_string.proto().op('X').le(100, 4).raw("abc");
  EXPECT_TRUE(Contains(run_error(short_string), "truncated"));

  PickleBuilder unterminated_global;
  unterminated_global.proto().op('c').raw("torch");
  EXPECT_TRUE(StartsWith(run_error(unterminated_global), kPrefix));

  EXPECT_TRUE(StartsWith(run_error(PickleBuilder{}), kPrefix));  // empty
}

TEST(UnpickleRefuses, MemoGetBeforePut) {
  PickleBuilder program;
  program.proto().binget(3).stop();
  const std::string message = run_error(program);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "memo entry 3 is read before it is written"));
}

TEST(UnpickleRefuses, PoppingPastAnOpenMark) {
  PickleBuilder program;
  program.proto().none().mark().tuple1().stop();
  EXPECT_TRUE(Contains(run_error(program), "stack is empty"));
}

TEST(UnpickleRefuses, MarksNestedBeyondTheDepthLimit) {
  ReadLimits limits;
  limits.max_depth = 8;
  PickleBuilder within;
  within.proto();
  for (int i = 0; i < 8; ++i) within.mark();
  for (int i = 0; i < 8; ++i) within.tuple();
  within.stop();
  EXPECT_NO_THROW((void)run(within, no_storage, limits));

  PickleBuilder beyond;
  beyond.proto();
  for (int i = 0; i < 9; ++i) beyond.mark();
  const std::string message = run_error(beyond, no_storage, limits);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "marks nest deeper than the limit of 8"));
}

TEST(UnpickleRefuses, FlatteningTuplesNestedTenThousandDeep) {
  PickleBuilder program;
  program.proto().none();
  for (int i = 0; i < 10000; ++i) program.tuple1();
  program.stop();
  const pickle::Unpickled unpickled = run(program);  // building the graph is fine
  const std::string message = error_of([&] { (void)flat(unpickled); });
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "nests deeper than the limit of 512"));
}

TEST(UnpickleRefuses, TensorViewBeyondItsStorage) {
  FakeStorages storages;
  storages.add("0", test::raw_bytes(std::vector<float>{0, 1, 2, 3, 4, 5}));
  PickleBuilder program;
  program.proto().float_tensor("0", 6, 1, {2, 3}, {3, 1}).stop();  // offset 1: one past the end
  const std::string message = run_error(program, storages.loader());
  // The bounds check belongs to the tensor component; it names the pickle and the opcode.
  EXPECT_TRUE(StartsWith(message, "[tensor] data.pkl: tensor at byte "));
  EXPECT_TRUE(Contains(message, "view ends at byte 28 but its storage holds 24 bytes"));
}

TEST(UnpickleRefuses, StorageLargerThanTheLoaderHolds) {
  FakeStorages storages;
  storages.add("0", test::raw_bytes(std::vector<float>{0, 1, 2, 3, 4, 5}));
  PickleBuilder program;
  program.proto().float_tensor("0", 10, 0, {10}, {1}).stop();
  const std::string message = run_error(program, storages.loader());
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "storage '0' declares 10 elements of float32 but holds 24 bytes"));
}

TEST(UnpickleRefuses, StorageTheLoaderCannotProvide) {
  PickleBuilder program;
  program.proto().float_tensor("0", 1, 0, {1}, {1}).stop();
  const pickle::StorageLoader missing = [](const StorageRef&) -> std::shared_ptr<Storage> {
    return nullptr;
  };
  EXPECT_TRUE(Contains(run_error(program, missing), "storage '0' could not be loaded"));
}

TEST(UnpickleRefuses, LazyConjugateBit) {
  FakeStorages storages;
  storages.add("0", test::raw_bytes(std::vector<float>{0, 1}));
  PickleBuilder program;
  program.proto().global("torch._utils", "_rebuild_tensor_v2").mark();
  program.storage("torch", "FloatStorage", "0", 2).integer(0).int_tuple({2}).int_tuple({1});
  program.newfalse().ordered_dict().empty_dict().binunicode("conj").newtrue().setitem();
  program.tuple().reduce().stop();
  EXPECT_TRUE(Contains(run_error(program, storages.loader()), "lazy 'conj' bit"));
}

TEST(UnpickleRefuses, AListThatContainsItself) {
  // l = []; l.append(l)
  PickleBuilder program;
  program.proto().empty_list().binput(0).binget(0).append().stop();
  const pickle::Unpickled unpickled = run(program);
  const std::string message = error_of([&] { (void)flat(unpickled); });
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "contains itself"));
}

TEST(UnpickleRefuses, AMemoIndexPastTheLimit) {
  // LONG_BINPUT 0xFFFFFFFF: Python numbers memo entries from 0, so no file gets there.
  PickleBuilder program;
  program.proto().none().op('r').le(0xFFFFFFFFU, 4).stop();
  const std::string message = run_error(program);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "memo index 4294967295 is past the limit of 16777216 entries"));

  PickleBuilder within;
  within.proto().none().op('r').le(70000, 4).op('j').le(70000, 4).tuple2().stop();
  EXPECT_EQ(run(within).root->items.size(), 2U);
}

TEST(UnpickleRefuses, MoreValuesThanTheLimit) {
  ReadLimits limits;
  limits.max_pickle_values = 1000;
  PickleBuilder within;
  within.proto().empty_list().mark();
  for (int i = 0; i < 400; ++i) within.none();
  within.appends().stop();
  EXPECT_NO_THROW((void)run(within, no_storage, limits));

  PickleBuilder flood;
  flood.proto();
  for (int i = 0; i < 1001; ++i) flood.none();
  const std::string message = run_error(flood, no_storage, limits);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "creates more than 1000 values and container slots"));
}

TEST(UnpickleRefuses, OneListCopiedIntoManyCalls) {
  // l = [None] * 1000, then torch.Size(l) and set(l) again and again: a few bytes per copy
  // of 1000 slots. Without a budget, a 1 MB program asks for hundreds of gigabytes.
  for (const auto& [module, name] : {std::pair{"torch", "Size"}, std::pair{"builtins", "set"}}) {
    PickleBuilder program;
    program.proto().empty_list().binput(0).mark();
    for (int i = 0; i < 1000; ++i) program.none();
    program.appends().global(module, name).binput(1).binget(0).tuple1().binput(2);
    program.empty_list().mark();
    for (int i = 0; i < 5000; ++i) program.binget(1).binget(2).reduce();
    program.appends().stop();
    const std::string message = run_error(program);
    EXPECT_TRUE(StartsWith(message, kPrefix)) << name;
    EXPECT_TRUE(Contains(message, "creates more than 4194304 values")) << name;
  }
}

TEST(UnpickleRefuses, OneStringCopiedIntoManyCalls) {
  // s = 'x' * 10000, then bytearray(s) a thousand times.
  PickleBuilder program;
  program.proto().binunicode(std::string(10000, 'x')).binput(0);
  program.global("builtins", "bytearray").binput(1).binget(0).tuple1().binput(2);
  program.empty_list().mark();
  for (int i = 0; i < 1000; ++i) program.binget(1).binget(2).reduce();
  program.appends().stop();
  const std::string message = run_error(program);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "calls copy more text than the pickle holds"));
}

TEST(UnpickleRefuses, RebuildFromTypeNestedInItself) {
  // f = _rebuild_from_type_v2; f(f, None, (f, None, (... 100000 deep ...), None), None):
  // each level would recurse once more in the interpreter.
  PickleBuilder program;
  program.proto().global("torch._tensor", "_rebuild_from_type_v2").binput(1).empty_tuple();
  for (int i = 0; i < 100000; ++i) {
    program.binput(2).mark().binget(1).none().binget(2).none().tuple();
  }
  program.binput(3).binget(1).binget(3).reduce().stop();
  const std::string message = run_error(program);
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "_rebuild_from_type_v2 wraps another _rebuild_from_type_v2"));
}

TEST(UnpickleRefuses, FlatteningSharedListsThatDoubleAtEachLevel) {
  // l0 = [None]; l1 = [l0, l0]; ...; l60 = [l59, l59]: 60 levels of sharing, 2**60 paths.
  PickleBuilder program;
  program.proto().empty_list().none().append().binput(0);
  for (int i = 0; i < 60; ++i) program.empty_list().mark().binget(0).binget(0).appends().binput(0);
  program.stop();
  const pickle::Unpickled unpickled = run(program);  // 200 values: building it is cheap
  const std::string message = error_of([&] { (void)flat(unpickled); });
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "expands to more than 4194304 values"));
}

TEST(UnpickleRefuses, FlatteningToNamesLongerThanTheLimit) {
  ReadLimits limits;
  limits.max_header_bytes = 100000;
  // {'k' * 1000: [None] * 200}: 200 names of over 1000 bytes each.
  PickleBuilder program;
  program.proto().empty_dict().binunicode(std::string(1000, 'k')).empty_list().mark();
  for (int i = 0; i < 200; ++i) program.none();
  program.appends().setitem().stop();
  const pickle::Unpickled unpickled = run(program);
  EXPECT_NO_THROW((void)flat(unpickled));
  const std::string message = error_of([&] { (void)flat(unpickled, limits); });
  EXPECT_TRUE(StartsWith(message, kPrefix));
  EXPECT_TRUE(Contains(message, "100000 bytes of names"));
}

// One crafted program per refusal of the opcode machine that no test above reaches; each
// must be a [pickle] error at a byte offset that says what is wrong.
struct Refusal {
  std::string_view name;
  std::function<void(PickleBuilder&)> program;
  std::string_view message;
};

// A rebuild call of `callable` (module, name) on the arguments `arguments` writes.
std::function<void(PickleBuilder&)> call_of(std::string_view module, std::string_view name,
                                            std::function<void(PickleBuilder&)> arguments) {
  return [=](PickleBuilder& program) {
    program.global(module, name).mark();
    arguments(program);
    program.tuple().reduce();
  };
}

TEST(UnpickleRefuses, EveryMalformedProgramWithItsReason) {
  const auto storage = [](PickleBuilder& program) {
    program.storage("torch", "FloatStorage", "0", 4);
  };
  const std::vector<Refusal> refusals = {
      {"global without a newline", [](PickleBuilder& p) { p.op('c').raw("torch\nfloat32"); },
       "GLOBAL name is not terminated by a newline"},
      {"tuple without a mark", [](PickleBuilder& p) { p.none().tuple(); },
       "opcode needs a MARK but none is open"},
      {"protocol 9", [](PickleBuilder& p) { p.op(0x80).byte(9); },
       "pickle protocol 9 is not one Python writes"},
      {"append to a dict", [](PickleBuilder& p) { p.empty_dict().none().append(); },
       "APPEND to something that is not a list"},
      {"appends to a tuple", [](PickleBuilder& p) { p.empty_tuple().mark().none().appends(); },
       "APPENDS to something that is not a list"},
      {"setitems with an odd count",
       [](PickleBuilder& p) { p.empty_dict().mark().none().setitems(); },
       "SETITEMS with an odd number of values"},
      {"setitem on a list", [](PickleBuilder& p) { p.empty_list().none().none().setitem(); },
       "SETITEM(S) on something that is not a dict"},
      {"reduce with a list",
       [](PickleBuilder& p) { p.global("collections", "OrderedDict").empty_list().reduce(); },
       "REDUCE arguments are not a tuple"},
      {"newobj with a list",
       [](PickleBuilder& p) { p.global("collections", "OrderedDict").empty_list().op(0x81); },
       "NEWOBJ arguments are not a tuple"},
      {"persistent id that is a string",
       [](PickleBuilder& p) { p.binunicode("storage").binpersid(); },
       "persistent id is not a ('storage', type, key, location, numel) tuple"},
      {"persistent id naming a dtype",
       [](PickleBuilder& p) {
         p.mark().binunicode("storage").global("torch", "float32").binunicode("0");
         p.binunicode("cpu").integer(4).tuple().binpersid();
       },
       "persistent id does not name a storage type"},
      {"quantized storage", [](PickleBuilder& p) { p.storage("torch", "QInt8Storage", "0", 4); },
       "storage of type torch.QInt8Storage"},
      {"storage key that is a number",
       [](PickleBuilder& p) {
         p.mark().binunicode("storage").global("torch", "FloatStorage").integer(0);
         p.binunicode("cpu").integer(4).tuple().binpersid();
       },
       "persistent id has a malformed storage key or size"},
      {"complex dtype called", call_of("torch", "complex64", [](PickleBuilder&) {}),
       "torch.complex64"},
      {"tensor size that is a string",
       call_of("torch._utils", "_rebuild_tensor_v2",
               [&](PickleBuilder& p) {
                 storage(p);
                 p.integer(0).binunicode("2x2").int_tuple({2, 1}).newfalse().ordered_dict();
               }),
       "tensor size is not a tuple"},
      {"tensor stride holding a float",
       call_of("torch._utils", "_rebuild_tensor_v2",
               [&](PickleBuilder& p) {
                 storage(p);
                 p.integer(0).int_tuple({2, 2}).mark().binfloat(2.0).integer(1).tuple();
                 p.newfalse().ordered_dict();
               }),
       "tensor stride holds a non-integer"},
      {"tensor metadata that is a list",
       call_of("torch._utils", "_rebuild_tensor_v2",
               [&](PickleBuilder& p) {
                 storage(p);
                 p.integer(0).int_tuple({2, 2}).int_tuple({2, 1}).newfalse().ordered_dict();
                 p.empty_list();  // the seventh argument, torch's metadata dict
               }),
       "tensor metadata is not a dict"},
      {"tensor from a string",
       call_of("torch._utils", "_rebuild_tensor_v2",
               [](PickleBuilder& p) {
                 p.binunicode("0").integer(0).int_tuple({2}).int_tuple({1}).newfalse();
                 p.ordered_dict();
               }),
       "tensor is rebuilt from something that is not a storage"},
      {"tensor offset that is a string",
       call_of("torch._utils", "_rebuild_tensor_v2",
               [&](PickleBuilder& p) {
                 storage(p);
                 p.binunicode("0").int_tuple({2}).int_tuple({1}).newfalse().ordered_dict();
               }),
       "tensor storage offset is not an integer"},
      {"rebuild with one argument",
       call_of("torch._utils", "_rebuild_tensor_v2", [&](PickleBuilder& p) { storage(p); }),
       "torch._utils._rebuild_tensor_v2 called with 1 arguments"},
      {"OrderedDict with arguments",
       call_of("collections", "OrderedDict", [](PickleBuilder& p) { p.none(); }),
       "collections.OrderedDict called with arguments"},
      {"parameter from a string",
       call_of("torch._utils", "_rebuild_parameter",
               [](PickleBuilder& p) { p.binunicode("w").newtrue().ordered_dict(); }),
       "parameter is rebuilt from something that is not a tensor"},
      {"Parameter() of nothing",
       [](PickleBuilder& p) { p.global("torch.nn.parameter", "Parameter").empty_tuple().op(0x81); },
       "Parameter() without a tensor"},
      {"state set on a list", [](PickleBuilder& p) { p.empty_list().integer(3).build(); },
       "BUILD on an object torch2mlx cannot set state on"},
      {"encode to ascii",
       call_of("_codecs", "encode",
               [](PickleBuilder& p) { p.binunicode("abc").binunicode("ascii"); }),
       "_codecs.encode with encoding 'ascii'"},
      {"latin1 above U+00FF (two bytes)",
       call_of("_codecs", "encode",
               [](PickleBuilder& p) { p.binunicode("\xc4\x80").binunicode("latin1"); }),
       "latin1 text holds a character above U+00FF"},
      {"latin1 above U+00FF (three bytes)",
       call_of("_codecs", "encode",
               [](PickleBuilder& p) { p.binunicode("\xe2\x82\xac").binunicode("latin1"); }),
       "latin1 text holds a character above U+00FF"},
  };
  for (const Refusal& refusal : refusals) {
    PickleBuilder program;
    program.proto();
    refusal.program(program);
    program.stop();
    FakeStorages storages;
    storages.add("0", test::raw_bytes(std::vector<float>{1, 2, 3, 4}));
    const std::string message = run_error(program, storages.loader());
    EXPECT_TRUE(StartsWith(message, kPrefix)) << refusal.name << ": " << message;
    EXPECT_TRUE(Contains(message, refusal.message)) << refusal.name << ": " << message;
    EXPECT_TRUE(Contains(message, "byte ")) << refusal.name << ": " << message;
  }
}

TEST(AllowedGlobals, ListRebuildFunctionsButNothingThatRunsCode) {
  const std::vector<std::string> names = pickle::allowed_globals();
  auto has = [&](std::string_view name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  EXPECT_TRUE(has("torch._utils._rebuild_tensor_v2"));
  EXPECT_TRUE(has("collections.OrderedDict"));
  EXPECT_FALSE(has("os.system"));
  EXPECT_FALSE(has("builtins.eval"));
  EXPECT_FALSE(has("builtins.exec"));
}

}  // namespace
}  // namespace torch2mlx
