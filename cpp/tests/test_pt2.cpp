// The .pt2 reader over archives built here: the JSON members in the shape torch 2.13 writes
// them (cut down to what a one-node program needs), storages as raw little-endian bytes.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "test_util.h"
#include "torch2mlx/checkpoint.h"
#include "torch2mlx/error.h"
#include "torch2mlx/graph.h"
#include "torch2mlx/mapped_file.h"
#include "torch2mlx/pt2.h"

namespace torch2mlx {
namespace {

using test::Contains;
using test::error_of;
using test::StartsWith;
using test::ZipMember;

const std::vector<float> kValues{1.5F, -2.0F, 3.25F, 0.0F, 1e-3F, 42.0F};

// ---------------------------------------------------------------------------------------
// JSON members.

std::string sym_ints(const std::vector<std::int64_t>& values) {
  std::string out = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ", ";
    out += R"({"as_int": )" + std::to_string(values[i]) + "}";
  }
  return out + "]";
}

/// A schema.py TensorMeta.
struct Meta {
  int dtype = 7;  // FLOAT
  std::vector<std::int64_t> sizes{2, 3};
  std::vector<std::int64_t> strides{3, 1};
  std::int64_t offset = 0;
  int layout = 7;  // Strided

  [[nodiscard]] std::string json() const {
    return R"({"dtype": )" + std::to_string(dtype) + R"(, "sizes": )" + sym_ints(sizes) +
           R"(, "requires_grad": false, "device": {"type": "cpu", "index": null}, "strides": )" +
           sym_ints(strides) + R"(, "storage_offset": {"as_int": )" + std::to_string(offset) +
           R"(}, "layout": )" + std::to_string(layout) + "}";
  }
};

/// One entry of a payload config: "name": PayloadMeta.
std::string payload(std::string_view name, std::string_view path_name, const Meta& meta = {},
                    bool use_pickle = false) {
  return "\"" + std::string(name) + R"(": {"path_name": ")" + std::string(path_name) +
         R"(", "is_param": true, "use_pickle": )" + (use_pickle ? "true" : "false") +
         R"(, "tensor_meta": )" + meta.json() + "}";
}

std::string config(const std::vector<std::string>& payloads) {
  std::string out = R"({"config": {)";
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    if (i > 0) out += ", ";
    out += payloads[i];
  }
  return out + "}}";
}

/// A graph input bound to a stored tensor: schema.py's parameter, buffer or tensor_constant.
struct Bound {
  std::string kind = "parameter";  // "parameter", "buffer", "tensor_constant"
  std::string name = "p_w";        // the graph value
  std::string target = "w";        // the state-dict or constant name
  Meta meta;                       // what the graph declares for it
};

/// The JSON of a program computing mul(x, <first bound input>) with `bound` as its stored
/// inputs; `node_input` replaces the tensor the node reads second.
std::string program_json(const std::vector<Bound>& bound, std::string_view node_input = {},
                         int schema_major = 8) {
  std::string inputs;
  std::string specs;
  std::string values;
  for (const Bound& input : bound) {
    const std::string key =
        input.kind == "tensor_constant" ? "tensor_constant_name" : input.kind + "_name";
    inputs += R"({"as_tensor": {"name": ")" + input.name + R"("}}, )";
    specs += R"({")" + input.kind + R"(": {"arg": {"name": ")" + input.name + R"("}, ")" + key +
             R"(": ")" + input.target + R"("}}, )";
    values += "\"" + input.name + "\": " + input.meta.json() + ", ";
  }
  const std::string read =
      node_input.empty() ? (bound.empty() ? "x" : bound.front().name) : std::string(node_input);
  const Meta plain;
  return R"({"graph_module": {"graph": {"inputs": [)" + inputs +
         R"({"as_tensor": {"name": "x"}}], "outputs": [{"as_tensor": {"name": "mul"}}], "nodes": [)"
         R"({"target": "torch.ops.aten.mul.Tensor", "inputs": [)"
         R"({"name": "self", "arg": {"as_tensor": {"name": "x"}}, "kind": 1}, )"
         R"({"name": "other", "arg": {"as_tensor": {"name": ")" +
         read +
         R"("}}, "kind": 1}], "outputs": [{"as_tensor": {"name": "mul"}}], "metadata": )"
         R"({"stack_trace": "File \"m.py\", line 7, in forward", "nn_module_stack": )"
         R"("L__self__,,__main__.M;L__self___lin,lin,torch.nn.modules.linear.Linear"}, "name": "mul"}], )"
         R"("tensor_values": {)" +
         values + R"("x": )" + plain.json() + R"(, "mul": )" + plain.json() +
         R"(}, "sym_int_values": {}, "sym_bool_values": {}, "is_single_tensor_return": false, )"
         R"("custom_obj_values": {}, "sym_float_values": {}}, "signature": {"input_specs": [)" +
         specs +
         R"({"user_input": {"arg": {"as_tensor": {"name": "x"}}}}], "output_specs": )"
         R"([{"user_output": {"arg": {"as_tensor": {"name": "mul"}}}}]}, "module_call_graph": )"
         R"([{"fqn": "", "signature": {"inputs": [], "outputs": [], "in_spec": "[1, {}]", )"
         R"("out_spec": "[1, {}]", "forward_arg_names": ["x"]}}], "metadata": {}, )"
         R"("treespec_namedtuple_fields": {}}, "opset_version": {"aten": 10}, )"
         R"("range_constraints": {}, "schema_version": {"major": )" +
         std::to_string(schema_major) +
         R"(, "minor": 20}, "verifiers": ["TRAINING"], "torch_version": "2.13.0+cpu", )"
         R"("guards_code": []})";
}

// ---------------------------------------------------------------------------------------
// Archives.

/// The members torch.export.save writes for a program whose one parameter 'w' is a 2x3
/// float32 tensor stored in weight_0.
std::vector<ZipMember> pt2_members() {
  return {
      {"model/archive_format", test::bytes_of("pt2")},
      {"model/archive_version", test::bytes_of("0")},
      {"model/byteorder", test::bytes_of("little")},
      {"model/models/model.json", test::bytes_of(program_json({Bound{}}))},
      {"model/data/weights/model_weights_config.json",
       test::bytes_of(config({payload("w", "weight_0")}))},
      {"model/data/weights/weight_0", test::raw_bytes(kValues)},
      {"model/data/constants/model_constants_config.json", test::bytes_of(config({}))},
  };
}

/// `members` with the member called `name` given `data` (added if there is none).
std::vector<ZipMember> with(std::vector<ZipMember> members, std::string_view name,
                            std::vector<std::byte> data) {
  for (auto& member : members) {
    if (member.name == name) {
      member.data = std::move(data);
      return members;
    }
  }
  members.push_back({std::string(name), std::move(data)});
  return members;
}

std::vector<ZipMember> with(std::vector<ZipMember> members, std::string_view name,
                            std::string_view text) {
  return with(std::move(members), name, test::bytes_of(text));
}

std::vector<ZipMember> without(std::vector<ZipMember> members, std::string_view name) {
  std::erase_if(members, [&](const ZipMember& member) { return member.name == name; });
  return members;
}

/// data.pkl of torch.save({'w': <2x3 float tensor over storage '0'>}).
std::vector<std::byte> state_dict_program() {
  test::PickleBuilder program;
  program.proto().empty_dict().binput(0).binunicode("w");
  program.float_tensor("0", 6, 0, {2, 3}, {3, 1}).binput(1).setitem().stop();
  return program.bytes();
}

std::vector<float> floats_of(const Tensor& tensor) {
  std::vector<float> values;
  const auto* data = tensor.storage->data;
  for (std::int64_t i = 0; i < tensor.numel(); ++i) {
    // A 1-d or 2-d view, walked through its strides.
    std::int64_t offset = tensor.offset;
    std::int64_t rest = i;
    for (std::size_t d = tensor.shape.size(); d-- > 0;) {
      offset += (rest % tensor.shape[d]) * tensor.strides[d];
      rest /= tensor.shape[d];
    }
    values.push_back(test::values_at<float>(data + offset * 4, 1).front());
  }
  return values;
}

class Pt2 : public ::testing::Test {
 protected:
  /// Writes `members` to <dir>/<name> and returns the path.
  std::filesystem::path write(const std::vector<ZipMember>& members,
                              std::string_view name = "model.pt2") {
    const auto path = dir_ / name;
    test::write_zip(path, members);
    return path;
  }

  /// The error reading `members` gives; checks that it is a pt2 error naming the file.
  std::string refusal(const std::vector<ZipMember>& members, std::string_view component = "pt2") {
    const auto path = write(members);
    const std::string message = error_of([&] { (void)read_pt2(path); });
    EXPECT_TRUE(StartsWith(message, "[" + std::string(component) + "] " + path.string()));
    // read_checkpoint (load_state_dict, inspect) refuses it the same way.
    EXPECT_EQ(error_of([&] { (void)read_checkpoint(path); }), message);
    return message;
  }

  test::TempDir dir_;
};

// ---------------------------------------------------------------------------------------
// Reading.

TEST_F(Pt2, ReadsTheGraphAndTheWeights) {
  const auto path = write(pt2_members());
  const ExportedProgram program = read_pt2(path);
  EXPECT_EQ(program.schema_version, (std::pair<int, int>{8, 20}));
  EXPECT_EQ(program.torch_version, "2.13.0+cpu");
  ASSERT_EQ(program.nodes.size(), 1U);
  EXPECT_EQ(program.nodes[0].target, "aten.mul.Tensor");
  ASSERT_EQ(program.weights.size(), 1U);
  const auto& [name, w] = program.weights[0];
  EXPECT_EQ(name, "w");
  EXPECT_EQ(w.dtype, DType::F32);
  EXPECT_EQ(w.shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(floats_of(w), kValues);
  // A view of the mapping, not a copy.
  EXPECT_NE(w.storage->file, nullptr);
  EXPECT_EQ(w.storage->nbytes, 24U);
}

TEST_F(Pt2, ReadCheckpointReturnsTheWeights) {
  const auto path = write(pt2_members());
  EXPECT_EQ(detect_format(path), "pt2");
  const Checkpoint checkpoint = read_checkpoint(path);
  EXPECT_EQ(checkpoint.format, "pt2");
  EXPECT_EQ(checkpoint.files, std::vector<std::string>{path.string()});
  EXPECT_EQ(checkpoint.metadata.at("schema_version"), "8.20");
  ASSERT_EQ(checkpoint.tensors.size(), 1U);
  EXPECT_EQ(floats_of(checkpoint.tensors[0].tensor), kValues);
}

TEST_F(Pt2, TiedWeightsShareOneStorage) {
  Meta row{.sizes = {3}, .strides = {1}, .offset = 3};
  const auto path = write(with(pt2_members(), "model/data/weights/model_weights_config.json",
                               config({payload("w", "weight_0"), payload("tied", "weight_0"),
                                       payload("row", "weight_0", row)})));
  const ExportedProgram program = read_pt2(path);
  ASSERT_EQ(program.weights.size(), 3U);
  EXPECT_EQ(program.weights[0].name, "w");
  EXPECT_EQ(program.weights[1].name, "tied");
  EXPECT_EQ(program.weights[0].tensor.storage, program.weights[1].tensor.storage);
  EXPECT_EQ(program.weights[0].tensor.storage, program.weights[2].tensor.storage);
  EXPECT_EQ(floats_of(program.weights[2].tensor), (std::vector<float>{0.0F, 1e-3F, 42.0F}));
}

TEST_F(Pt2, ReadsStridedViews) {
  // The first column of w, as a transposed view of its storage.
  Meta column{.sizes = {2}, .strides = {3}, .offset = 0};
  const auto path =
      write(with(pt2_members(), "model/data/weights/model_weights_config.json",
                 config({payload("w", "weight_0"), payload("c", "weight_0", column)})));
  EXPECT_EQ(floats_of(read_pt2(path).weights.at(1).tensor), (std::vector<float>{1.5F, 0.0F}));
}

TEST_F(Pt2, ReadsConstantsAndBuffers) {
  const Meta small{.sizes = {2}, .strides = {1}};
  const Bound constant{"tensor_constant", "c_table", "table", small};
  const Bound buffer{"buffer", "b_steps", "steps", small};
  auto members =
      with(pt2_members(), "model/models/model.json", program_json({Bound{}, constant, buffer}));
  members = with(members, "model/data/constants/model_constants_config.json",
                 config({payload("table", "tensor_0", small)}));
  members = with(members, "model/data/weights/model_weights_config.json",
                 config({payload("w", "weight_0"), payload("steps", "weight_1", small)}));
  members =
      with(members, "model/data/constants/tensor_0", test::raw_bytes(std::vector{7.0F, 8.0F}));
  members = with(members, "model/data/weights/weight_1", test::raw_bytes(std::vector{1.0F, 2.0F}));
  const ExportedProgram program = read_pt2(write(members));
  ASSERT_EQ(program.weights.size(), 3U);
  EXPECT_EQ(program.weights[1].name, "steps");
  EXPECT_EQ(program.weights[2].name, "table");
  EXPECT_EQ(floats_of(program.weights[2].tensor), (std::vector<float>{7.0F, 8.0F}));
}

TEST_F(Pt2, HeadersOnlyGivesSizesWithoutData) {
  ReadOptions options;
  options.headers_only = true;
  const ExportedProgram program = read_pt2(write(pt2_members()), options);
  ASSERT_EQ(program.weights.size(), 1U);
  EXPECT_EQ(program.weights[0].tensor.storage->data, nullptr);
  EXPECT_EQ(program.weights[0].tensor.storage->nbytes, 24U);
}

TEST_F(Pt2, SwapsABigEndianArchive) {
  std::vector<std::byte> swapped = test::raw_bytes(kValues);
  byteswap_elements(swapped.data(), swapped.size(), 4);
  auto members = with(pt2_members(), "model/byteorder", "big");
  members = with(members, "model/data/weights/weight_0", swapped);
  EXPECT_EQ(floats_of(read_pt2(write(members)).weights.at(0).tensor), kValues);
}

TEST_F(Pt2, ReadsAnArchiveWithoutAnArchiveVersionAsVersion0) {
  EXPECT_EQ(read_pt2(write(without(pt2_members(), "model/archive_version"))).weights.size(), 1U);
}

TEST_F(Pt2, ReadsAPickledTensorWithTheRestrictedUnpickler) {
  // torch.save of one tensor, as use_pickle members hold it.
  test::PickleBuilder program;
  program.proto().float_tensor("0", 6, 0, {2, 3}, {3, 1}).stop();
  const auto nested =
      write({{"archive/data.pkl", program.bytes()}, {"archive/data/0", test::raw_bytes(kValues)}},
            "nested.pt");
  const auto path = write(with(with(pt2_members(), "model/data/weights/model_weights_config.json",
                                    config({payload("w", "weight_7", Meta{}, true)})),
                               "model/data/weights/weight_7", test::read_file(nested)));
  EXPECT_EQ(floats_of(read_pt2(path).weights.at(0).tensor), kValues);
}

TEST_F(Pt2, ReadsTheLegacyLayout) {
  const auto state_dict = write(
      {{"archive/data.pkl", state_dict_program()}, {"archive/data/0", test::raw_bytes(kValues)}},
      "state_dict.pt");
  const auto path =
      write({{"serialized_exported_program.json", test::bytes_of(program_json({Bound{}}))},
             {"serialized_state_dict.pt", test::read_file(state_dict)},
             {"serialized_constants.pt", {}},
             {"version", test::bytes_of("8.20")}});
  EXPECT_EQ(detect_format(path), "pt2");
  const ExportedProgram program = read_pt2(path);
  ASSERT_EQ(program.weights.size(), 1U);
  EXPECT_EQ(program.weights[0].name, "w");
  EXPECT_EQ(floats_of(program.weights[0].tensor), kValues);
}

// ---------------------------------------------------------------------------------------
// Refusals.

TEST_F(Pt2, RefusesAMissingStorage) {
  const std::string message = refusal(without(pt2_members(), "model/data/weights/weight_0"));
  EXPECT_TRUE(Contains(message, "weight 'w'"));
  EXPECT_TRUE(Contains(message, "model/data/weights/weight_0, which is missing"));
}

TEST_F(Pt2, RefusesATruncatedStorage) {
  const std::string message = refusal(
      with(pt2_members(), "model/data/weights/weight_0", test::raw_bytes(std::vector{1.0F, 2.0F})));
  EXPECT_TRUE(Contains(message, "weight 'w'"));
  EXPECT_TRUE(Contains(message, "view ends at byte 24 but its storage holds 8 bytes"));
}

TEST_F(Pt2, RefusesAnOffsetPastTheEnd) {
  const Meta far{.offset = std::int64_t{1} << 61};
  const std::string message =
      refusal(with(pt2_members(), "model/data/weights/model_weights_config.json",
                   config({payload("w", "weight_0", far)})));
  EXPECT_TRUE(Contains(message, "weight 'w'"));
}

TEST_F(Pt2, RefusesNegativeStridesAndSizes) {
  const Meta negative{.strides = {-3, 1}};
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/data/weights/model_weights_config.json",
                                    config({payload("w", "weight_0", negative)}))),
                       "negative stride"));
  const Meta shrunk{.sizes = {-2, 3}};
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/data/weights/model_weights_config.json",
                                    config({payload("w", "weight_0", shrunk)}))),
                       "negative or overflowing"));
}

// `text` with its first `from` replaced by `to`.
std::string replaced(std::string text, std::string_view from, std::string_view to) {
  text.replace(text.find(from), from.size(), to);
  return text;
}

TEST_F(Pt2, RefusesPayloadDescriptionsTorchNeverWrites) {
  const std::string name = "model/data/weights/model_weights_config.json";
  // As many strides as sizes, flags that are booleans, a path for every tensor: a config
  // torch wrote has all three.
  const Meta short_strides{.strides = {3}};
  EXPECT_TRUE(Contains(
      refusal(with(pt2_members(), name, config({payload("w", "weight_0", short_strides)}))),
      "has 2 sizes but 1 strides"));
  const std::string genuine = config({payload("w", "weight_0")});
  EXPECT_TRUE(
      Contains(refusal(with(pt2_members(), name,
                            replaced(genuine, R"("use_pickle": false)", R"("use_pickle": "no")"))),
               "'use_pickle' is not true or false"));
  EXPECT_TRUE(
      Contains(refusal(with(pt2_members(), name, replaced(genuine, R"("path_name")", R"("path")"))),
               "has no 'path_name'"));
}

TEST_F(Pt2, RefusesAStorageThatIsNotWholeElements) {
  auto bytes = test::raw_bytes(kValues);
  bytes.pop_back();
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/data/weights/weight_0", bytes)),
                       "not a whole number of 4-byte float32 elements"));
}

TEST_F(Pt2, RefusesAnEmptyStorageForANonEmptyTensor) {
  EXPECT_TRUE(Contains(
      refusal(with(pt2_members(), "model/data/weights/weight_0", std::vector<std::byte>{})),
      "fake or meta tensor"));
}

TEST_F(Pt2, RefusesDtypesMlxLacksNamingTheTensor) {
  const Meta complex{.dtype = 10};
  const std::string message =
      refusal(with(pt2_members(), "model/data/weights/model_weights_config.json",
                   config({payload("w", "weight_0", complex)})));
  EXPECT_TRUE(Contains(message, "weight 'w'"));
  EXPECT_TRUE(Contains(message, "dtype complex64"));
  const Meta float8{.dtype = 29};
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/data/weights/model_weights_config.json",
                                    config({payload("w", "weight_0", float8)}))),
                       "dtype float8_e4m3fn"));
  const Meta unknown{.dtype = 99};
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/data/weights/model_weights_config.json",
                                    config({payload("w", "weight_0", unknown)}))),
                       "unknown ScalarType code 99"));
}

TEST_F(Pt2, RefusesASparseLayout) {
  const Meta sparse{.layout = 1};
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/data/weights/model_weights_config.json",
                                    config({payload("w", "weight_0", sparse)}))),
                       "not a strided"));
}

TEST_F(Pt2, RefusesSymbolicSizesInAStoredTensor) {
  const std::string symbolic =
      R"({"config": {"w": {"path_name": "weight_0", "is_param": true, "use_pickle": false, )"
      R"("tensor_meta": {"dtype": 7, "sizes": [{"as_expr": {"expr_str": "s0"}}, {"as_int": 3}], )"
      R"("strides": [{"as_int": 3}, {"as_int": 1}], "storage_offset": {"as_int": 0}}}}})";
  EXPECT_TRUE(Contains(
      refusal(with(pt2_members(), "model/data/weights/model_weights_config.json", symbolic)),
      "is not a concrete integer"));
}

TEST_F(Pt2, RefusesAPathNameThatLeavesItsFolder) {
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/data/weights/model_weights_config.json",
                                    config({payload("w", "../models/model.json")}))),
                       "not a plain file name"));
}

TEST_F(Pt2, RefusesBadConfigs) {
  const std::string name = "model/data/weights/model_weights_config.json";
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), name, "{\"config\": ")), "not valid JSON"));
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), name, "[1, 2]")), "no 'config' object"));
  EXPECT_TRUE(
      Contains(refusal(with(pt2_members(), name, R"({"config": {"w": 3}})")),
               "weight 'w' (model/data/weights/model_weights_config.json) is not an object"));
  EXPECT_TRUE(
      Contains(refusal(with(pt2_members(), name, std::string(100000, '[') + "]")), "nests deeper"));
  EXPECT_TRUE(Contains(refusal(without(pt2_members(), name)), "is missing"));
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), name,
                                    config({payload("w", "weight_0"), payload("w", "weight_0")}))),
                       "lists tensor 'w' twice"));
  EXPECT_TRUE(Contains(
      refusal(with(pt2_members(), name,
                   "{\"config\": {\"v\": 1}, " + config({payload("w", "weight_0")}).substr(1))),
      "more than one 'config' object"));
}

TEST_F(Pt2, RefusesASharedStorageWithTwoDtypes) {
  const Meta ints{.dtype = 4};  // INT
  EXPECT_TRUE(
      Contains(refusal(with(pt2_members(), "model/data/weights/model_weights_config.json",
                            config({payload("w", "weight_0"), payload("bits", "weight_0", ints)}))),
               "share model/data/weights/weight_0 but have dtypes"));
}

TEST_F(Pt2, RefusesAGraphInputWithoutItsTensor) {
  const std::string message =
      refusal(with(pt2_members(), "model/data/weights/model_weights_config.json", config({})));
  EXPECT_TRUE(Contains(message, "the graph takes parameter 'w' as input 'p_w'"));
}

TEST_F(Pt2, RefusesATensorWhoseShapeDisagreesWithTheGraph) {
  const Meta flat{.sizes = {6}, .strides = {1}};
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/data/weights/model_weights_config.json",
                                    config({payload("w", "weight_0", flat)}))),
                       "stored as float32[6] but the graph declares its input 'p_w' as "
                       "float32[2, 3]"));
}

TEST_F(Pt2, RefusesANameStoredTwice) {
  auto members = with(pt2_members(), "model/data/constants/model_constants_config.json",
                      config({payload("w", "tensor_0")}));
  members = with(members, "model/data/constants/tensor_0", test::raw_bytes(kValues));
  EXPECT_TRUE(Contains(refusal(members), "tensor 'w' is stored twice"));
}

TEST_F(Pt2, RefusesUnknownArchiveVersionsAndFormats) {
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/archive_version", "1")),
                       "archive version 1, this reader supports archive version 0"));
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/archive_format", "pt3")),
                       "archive_format is 'pt3', not 'pt2'"));
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/archive_version", std::string(100, '0'))),
                       "should hold a short marker"));
  EXPECT_TRUE(
      Contains(refusal(with(pt2_members(), "model/byteorder", "middle")), "byteorder is 'middle'"));
}

TEST_F(Pt2, RefusesAnArchiveWithoutAProgram) {
  EXPECT_TRUE(Contains(refusal(without(pt2_members(), "model/models/model.json")), "AOTInductor"));
  auto two = without(pt2_members(), "model/models/model.json");
  two = with(two, "model/models/a.json", program_json({Bound{}}));
  two = with(two, "model/models/b.json", program_json({Bound{}}));
  EXPECT_TRUE(Contains(refusal(two), "2 programs (a, b)"));
}

TEST_F(Pt2, LeavesGraphErrorsToTheGraphParser) {
  const std::string undefined = refusal(
      with(pt2_members(), "model/models/model.json", program_json({Bound{}}, "ghost")), "graph");
  EXPECT_TRUE(Contains(undefined, "model/models/model.json"));
  EXPECT_TRUE(Contains(undefined, "'ghost'"));
  // The node reads its own output: a cycle.
  EXPECT_TRUE(Contains(
      refusal(with(pt2_members(), "model/models/model.json", program_json({Bound{}}, "mul")),
              "graph"),
      "'mul'"));
  EXPECT_TRUE(Contains(
      refusal(with(pt2_members(), "model/models/model.json", program_json({Bound{}}, {}, 99)),
              "graph"),
      "schema version 99.20"));
  EXPECT_TRUE(Contains(refusal(with(pt2_members(), "model/models/model.json", "{"), "graph"),
                       "not valid JSON"));
}

TEST_F(Pt2, RefusesScriptObjectConstants) {
  auto members = with(pt2_members(), "model/data/constants/model_constants_config.json",
                      R"({"config": {"obj": {"path_name": "custom_obj_0", "is_param": false, )"
                      R"("use_pickle": true, "tensor_meta": null}}})");
  members = with(members, "model/data/constants/custom_obj_0", "x");
  EXPECT_TRUE(Contains(refusal(members), "constant 'obj'"));
}

TEST_F(Pt2, RefusesAPickledMemberNamedTwice) {
  test::PickleBuilder program;
  program.proto().float_tensor("0", 6, 0, {2, 3}, {3, 1}).stop();
  const auto nested =
      write({{"archive/data.pkl", program.bytes()}, {"archive/data/0", test::raw_bytes(kValues)}},
            "nested.pt");
  const std::string message = refusal(with(
      with(
          pt2_members(), "model/data/weights/model_weights_config.json",
          config({payload("w", "weight_7", Meta{}, true), payload("v", "weight_7", Meta{}, true)})),
      "model/data/weights/weight_7", test::read_file(nested)));
  EXPECT_TRUE(Contains(message, "weight 'v'"));
  EXPECT_TRUE(Contains(message, "named by more than one tensor"));
}

TEST_F(Pt2, RefusesAPickledTensorThatIsNotATorchSave) {
  const std::string message =
      refusal(with(with(pt2_members(), "model/data/weights/model_weights_config.json",
                        config({payload("w", "weight_7", Meta{}, true)})),
                   "model/data/weights/weight_7", "not a zip"));
  EXPECT_TRUE(Contains(message, "model/data/weights/weight_7 is not a readable torch.save"));
  EXPECT_TRUE(Contains(message, "[zip]"));
}

TEST_F(Pt2, RefusesAZipThatIsNotAnExportArchive) {
  EXPECT_TRUE(Contains(error_of([&] {
                         (void)read_pt2(write({{"a/data.pkl", {}}}));
                       }),
                       "not a torch.export archive"));
}

TEST_F(Pt2, RefusesBrokenLegacyArchives) {
  const auto program = test::bytes_of(program_json({}));
  EXPECT_TRUE(Contains(refusal({{"serialized_exported_program.json", program},
                                {"serialized_state_dict.pt", {}},
                                {"version", test::bytes_of("99.1")}}),
                       "archive version 99.1"));
  EXPECT_TRUE(Contains(refusal({{"serialized_exported_program.json", program},
                                {"serialized_state_dict.pt", {}},
                                {"version", test::bytes_of("eight")}}),
                       "version holds 'eight'"));
  EXPECT_TRUE(Contains(
      refusal({{"serialized_exported_program.json", program}, {"serialized_state_dict.pt", {}}}),
      "version is missing"));
  EXPECT_TRUE(Contains(
      refusal({{"serialized_exported_program.json", program}, {"version", test::bytes_of("8.20")}}),
      "serialized_state_dict.pt is missing"));
  // The weight the graph takes is not in the (empty) state dict.
  EXPECT_TRUE(Contains(
      refusal({{"serialized_exported_program.json", test::bytes_of(program_json({Bound{}}))},
               {"serialized_state_dict.pt", {}},
               {"version", test::bytes_of("8.20")}}),
      "the graph takes parameter 'w'"));
}

}  // namespace
}  // namespace torch2mlx
