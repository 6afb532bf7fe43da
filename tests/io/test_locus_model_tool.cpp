// locus-model, run as other programs run it: its exit codes, messages and files.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <locus/io.hpp>
#include <locus/locus.hpp>

#include "temp_dir.hpp"

#ifdef LOCUS_MODEL_TOOL

namespace fs = std::filesystem;
using locus_test::TempDir;
using namespace locus;

namespace {

const fs::path fixtures = fs::path(LOCUS_TEST_DATA_DIR) / "keras";

struct ToolRun {
  int status = -1;
  std::string output;  ///< stdout and stderr together
};

ToolRun tool(const std::string& args) {
  const std::string cmd = std::string("'") + LOCUS_MODEL_TOOL + "' " + args + " 2>&1";
  ToolRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  while (const std::size_t n = std::fread(buf.data(), 1, buf.size(), p))
    r.output.append(buf.data(), n);
  const int s = pclose(p);
  r.status = WIFEXITED(s) ? WEXITSTATUS(s) : -1;
  return r;
}

std::string q(const fs::path& p) {
  return "'" + p.string() + "'";
}

double max_abs_difference(const fs::path& a, const fs::path& b) {
  const auto x = io::read_npy(io::read_file(a), a.string()),
             y = io::read_npy(io::read_file(b), b.string());
  if (x.shape != y.shape) return INFINITY;
  double d = 0;
  for (std::size_t i = 0; i < x.data.size(); ++i)
    d = std::max(d, std::abs(double(x.data[i]) - y.data[i]));
  return d;
}

}  // namespace

TEST(LocusModelTool, SummaryPrintsTheLayersOrTheTypedError) {
  const ToolRun ok = tool("summary " + q(fixtures / "func_residual.keras"));
  EXPECT_EQ(ok.status, 0) << ok.output;
  for (const char* s : {"Conv2D", "BatchNormalization", "Add", "SeparableConv2D", "Total params"})
    EXPECT_NE(ok.output.find(s), std::string::npos) << s << "\n" << ok.output;
  const ToolRun h5 = tool("summary " + q(fixtures / "seq_cnn.k2.h5"));
  EXPECT_EQ(h5.status, 0) << h5.output;
  const ToolRun lstm = tool("summary " + q(fixtures / "unsupported_lstm.keras"));
  EXPECT_EQ(lstm.status, 1);
  EXPECT_NE(lstm.output.find("LSTM"), std::string::npos) << lstm.output;
  EXPECT_NE(lstm.output.find("my_lstm"), std::string::npos) << lstm.output;
  const ToolRun missing = tool("summary /nonexistent/model.keras");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.output.find("/nonexistent/model.keras"), std::string::npos) << missing.output;
}

TEST(LocusModelTool, PredictWritesWhatKerasPredicted) {
  TempDir dir;
  for (const char* device : {"cpu", "gpu"}) {
    for (const char* batch : {"1", "2", "32"}) {
      const fs::path out = dir.path / (std::string(device) + batch + ".npy");
      const ToolRun r = tool("predict " + q(fixtures / "seq_cnn.keras") + " " +
                             q(fixtures / "seq_cnn.input.npy") + " " + q(out) + " --device " +
                             device + " --batch-size " + batch);
      ASSERT_EQ(r.status, 0) << r.output;
      EXPECT_LE(max_abs_difference(out, fixtures / "seq_cnn.output.npy"), 1e-5)
          << device << " batch " << batch;
    }
  }
  // A wrong input shape is the model's typed error, not a crash.
  const ToolRun wrong = tool("predict " + q(fixtures / "seq_cnn.keras") + " " +
                             q(fixtures / "func_merge.input0.npy") + " " + q(dir.path / "x.npy"));
  EXPECT_EQ(wrong.status, 1) << wrong.output;
  EXPECT_FALSE(fs::exists(dir.path / "x.npy"));
}

TEST(LocusModelTool, ConvertWritesTheFormatOfTheExtension) {
  TempDir dir;
  const fs::path k = dir.path / "m.keras", w = dir.path / "m.weights.h5";
  ASSERT_EQ(tool("convert " + q(fixtures / "func_residual.h5") + " " + q(k)).status, 0);
  ASSERT_EQ(tool("convert " + q(fixtures / "func_residual.keras") + " " + q(w)).status, 0);
  const auto a = load_model<Device<CPU>>(k);
  auto b = load_model<Device<CPU>>(fixtures / "func_residual.keras", {.compile = false});
  load_weights(b, w);
  const auto x = io::read_npy(io::read_file(fixtures / "func_residual.input.npy"), "input");
  const auto xt = Tensor<float, Device<CPU>>::from_data(Shape(x.shape), x.data.data());
  const auto ya = a.predict(xt), yb = b.predict(xt);
  EXPECT_EQ(std::vector<float>(ya.data(), ya.data() + ya.size()),
            std::vector<float>(yb.data(), yb.data() + yb.size()));
}

TEST(LocusModelTool, UsageErrorsExitWithTwo) {
  EXPECT_EQ(tool("").status, 2);
  EXPECT_EQ(tool("frobnicate x").status, 2);
  EXPECT_EQ(tool("predict a.keras in.npy").status, 2);
  EXPECT_EQ(tool("predict a.keras in.npy out.npy --device tpu").status, 2);
  EXPECT_EQ(tool("predict a.keras in.npy out.npy --batch-size 0").status, 2);
  EXPECT_EQ(tool("convert a.keras b.onnx").status, 2);
}

#endif  // LOCUS_MODEL_TOOL
