// Writes a tensor to safetensors with the installed core, reads it back, and checks it.
#include <torch2mlx/checkpoint.h>
#include <torch2mlx/safetensors.h>

#include <array>
#include <cstring>
#include <iostream>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer OUT.safetensors\n";
    return 2;
  }
  const std::array<float, 6> values{1, 2, 3, 4, 5, 6};
  std::vector<std::byte> bytes(sizeof(values));
  std::memcpy(bytes.data(), values.data(), sizeof(values));
  const std::vector<torch2mlx::NamedTensor> tensors{
      {"weight", torch2mlx::make_owned_tensor(torch2mlx::DType::F32, {2, 3}, bytes)}};
  torch2mlx::write_safetensors(argv[1], tensors, {{"format", "mlx"}});

  const torch2mlx::Checkpoint back = torch2mlx::read_checkpoint(argv[1]);
  const auto& tensor = back.tensors.at(0).tensor;
  const bool same = back.format == "safetensors" &&
                    tensor.shape == std::vector<std::int64_t>{2, 3} &&
                    std::memcmp(tensor.data(), values.data(), sizeof(values)) == 0;
  std::cout << (same ? "find_package(torch2mlx): ok\n" : "find_package(torch2mlx): MISMATCH\n");
  return same ? 0 : 1;
}
