// Uses an installed locus through find_package(locus CONFIG REQUIRED COMPONENTS io): saves
// a model, loads it back and checks that it predicts the same.
#include <cstdlib>
#include <iostream>

#include <locus/io.hpp>
#include <locus/locus.hpp>

int main(int argc, char** argv) {
  using Host = locus::Device<locus::CPU>;
  const std::string path = argc > 1 ? argv[1] : "consumer.keras";
  locus::Sequential<Host> m(locus::Input({4}), locus::Dense(3, locus::Activation::relu),
                            locus::Dense(2));
  m.build(/*seed=*/1);
  locus::save_model(m, path);
  const auto loaded = locus::load_model<Host>(path);
  const auto x = locus::Tensor<float, Host>::ones({5, 4});
  const auto a = m.predict(x), b = loaded.predict(x);
  bool same = a.size() == b.size();
  for (std::size_t i = 0; same && i < a.size(); ++i) same = a.data()[i] == b.data()[i];
  std::cout << "locus consumer_io: saved and loaded " << path << ", predictions "
            << (same ? "equal" : "DIFFER") << '\n';
  return same ? EXIT_SUCCESS : EXIT_FAILURE;
}
