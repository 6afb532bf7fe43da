// The IDX reader and the Fashion-MNIST loader.
//
// Small IDX files are written by the tests themselves (big-endian by hand, plain and
// gzip-compressed with zlib's gzwrite) into a temporary directory, so every value and
// every defect is known exactly. The Fashion-MNIST tests read the real files of Debian's
// `dataset-fashion-mnist` package and compare them with an independent decoder (zlib's
// inflate on the whole .gz file, bytes compared directly); they fail, never skip, when the
// package is missing.
#include <gtest/gtest.h>
#include <zlib.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <locus/backend/cpu/backend.hpp>
#include <locus/data/fashion_mnist.hpp>
#include <locus/data/idx.hpp>
#include <locus/tensor.hpp>

namespace {

namespace fs = std::filesystem;
using namespace locus;
using namespace locus::data;
using bytes_t = std::vector<unsigned char>;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---- writing IDX files by hand ------------------------------------------------------------

void put_be(bytes_t& out, std::uint64_t v, int nbytes) {
  for (int i = nbytes - 1; i >= 0; --i) out.push_back(static_cast<unsigned char>(v >> (8 * i)));
}

bytes_t idx_header(unsigned char type, const std::vector<std::uint32_t>& dims) {
  bytes_t h = {0, 0, type, static_cast<unsigned char>(dims.size())};
  for (auto d : dims) put_be(h, d, 4);
  return h;
}

template <class T>
bytes_t be_payload(const std::vector<T>& values) {
  bytes_t out;
  for (T v : values) {
    std::uint64_t bits = 0;
    if constexpr (sizeof(T) == 1) {
      bits = std::bit_cast<std::uint8_t>(v);
    } else if constexpr (sizeof(T) == 2) {
      bits = std::bit_cast<std::uint16_t>(v);
    } else if constexpr (sizeof(T) == 4) {
      bits = std::bit_cast<std::uint32_t>(v);
    } else {
      bits = std::bit_cast<std::uint64_t>(v);
    }
    put_be(out, bits, sizeof(T));
  }
  return out;
}

bytes_t concat(bytes_t a, const bytes_t& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

void write_plain(const fs::path& p, const bytes_t& data) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(f.good()) << p;
}

void write_gz(const fs::path& p, const bytes_t& data) {
  gzFile g = gzopen(p.string().c_str(), "wb");
  ASSERT_NE(g, nullptr) << p;
  if (!data.empty()) {
    ASSERT_EQ(gzwrite(g, data.data(), static_cast<unsigned>(data.size())),
              static_cast<int>(data.size()));
  }
  ASSERT_EQ(gzclose(g), Z_OK);
}

bytes_t read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return bytes_t(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// An independent gzip decoder for the checks on the real files: the whole file in memory,
// zlib's inflate (not gzread, which the reader uses), gzip framing with CRC check.
bytes_t gunzip(const fs::path& p) {
  const bytes_t in = read_file(p);
  z_stream zs{};
  EXPECT_EQ(inflateInit2(&zs, 16 + MAX_WBITS), Z_OK);
  zs.next_in = const_cast<unsigned char*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  bytes_t out;
  unsigned char buf[1 << 16];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = buf;
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      ADD_FAILURE() << "inflate failed on " << p << ": " << rc;
      break;
    }
    out.insert(out.end(), buf, buf + (sizeof buf - zs.avail_out));
  }
  inflateEnd(&zs);
  return out;
}

std::uint32_t be32(const bytes_t& b, std::size_t off) {
  return (std::uint32_t{b[off]} << 24) | (std::uint32_t{b[off + 1]} << 16) |
         (std::uint32_t{b[off + 2]} << 8) | std::uint32_t{b[off + 3]};
}

// Sets (or unsets) an environment variable for the lifetime of the guard.
class env_guard {
 public:
  env_guard(const char* name, const std::optional<std::string>& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~env_guard() {
    if (old_) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  env_guard(const env_guard&) = delete;
  env_guard& operator=(const env_guard&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

class IdxTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("locus_test_data_" + std::to_string(getpid()) + "_" +
                                        info->test_suite_name() + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

 public:
  // Writes `data` plain or gzip-compressed; the name never ends in .gz, so detection
  // has to come from the content.
  fs::path write(const std::string& name, const bytes_t& data, bool gzip) {
    const fs::path p = dir_ / name;
    if (gzip) {
      write_gz(p, data);
    } else {
      write_plain(p, data);
    }
    return p;
  }

  // Asserts that reading fails with exactly exception type E, a message naming the
  // file and containing `what`.
  template <class E>
  void expect_error(const fs::path& p, const std::string& what) {
    try {
      (void)read_idx(p);
      ADD_FAILURE() << "read_idx(" << p << ") did not throw (expected: " << what << ")";
    } catch (const format_error& e) {
      EXPECT_TRUE((std::is_same_v<E, format_error>))
          << "format_error for " << p << ": " << e.what();
      EXPECT_TRUE(contains(e.what(), p.string())) << e.what();
      EXPECT_TRUE(contains(e.what(), what)) << "expected '" << what << "' in: " << e.what();
    } catch (const io_error& e) {
      EXPECT_TRUE((std::is_same_v<E, io_error>)) << "io_error for " << p << ": " << e.what();
      EXPECT_TRUE(contains(e.what(), p.string())) << e.what();
      EXPECT_TRUE(contains(e.what(), what)) << "expected '" << what << "' in: " << e.what();
    }
  }

  fs::path dir_;
};

// ---- round trips --------------------------------------------------------------------------

template <class T>
void check_round_trip(IdxTest& t, unsigned char code, const std::vector<T>& values) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "plain");
    const std::vector<std::uint32_t> dims = {1, static_cast<std::uint32_t>(values.size())};
    const fs::path p = t.write("rt_" + std::to_string(code),
                               concat(idx_header(code, dims), be_payload(values)), gzip);
    const idx_array a = read_idx(p);
    EXPECT_EQ(static_cast<int>(a.type), code);
    EXPECT_EQ(a.dims, (Shape{1, values.size()}));
    EXPECT_EQ(a.size(), values.size());
    EXPECT_EQ(a.element_size(), sizeof(T));
    ASSERT_EQ(a.bytes.size(), values.size() * sizeof(T));
    for (std::size_t i = 0; i < values.size(); ++i) {
      T host;
      std::memcpy(&host, a.bytes.data() + i * sizeof(T), sizeof(T));
      EXPECT_EQ(host, values[i]) << "raw element " << i;
      EXPECT_EQ(a.at<T>(i), values[i]) << "element " << i;
      EXPECT_EQ(a.at<double>(i), static_cast<double>(values[i])) << "element " << i;
    }
    EXPECT_EQ(a.to_vector<T>(), values);
  }
}

using IdxRoundTrip = IdxTest;

TEST_F(IdxRoundTrip, UnsignedByte) {
  check_round_trip<std::uint8_t>(*this, 0x08, {0, 1, 127, 128, 254, 255});
}
TEST_F(IdxRoundTrip, SignedByte) {
  check_round_trip<std::int8_t>(*this, 0x09, {-128, -1, 0, 1, 127});
}
TEST_F(IdxRoundTrip, Short) {
  check_round_trip<std::int16_t>(*this, 0x0B, {-32768, -256, -2, 0, 1, 258, 32767});
}
TEST_F(IdxRoundTrip, Int) {
  check_round_trip<std::int32_t>(*this, 0x0C,
                                 {std::numeric_limits<std::int32_t>::min(), -65536, -1, 0,
                                  0x01020304, std::numeric_limits<std::int32_t>::max()});
}
TEST_F(IdxRoundTrip, Float) {
  check_round_trip<float>(
      *this, 0x0D,
      {-1.5f, 0.0f, 3.25f, 1e-30f, 6.5e37f, -0.1f, std::numeric_limits<float>::denorm_min()});
}
TEST_F(IdxRoundTrip, Double) {
  check_round_trip<double>(
      *this, 0x0E,
      {-1.5, 0.0, 3.25, 1e-300, 1e300, 0.1, std::numeric_limits<double>::denorm_min()});
}

TEST_F(IdxTest, DimensionsAreBigEndian) {
  // 258 = 0x00000102 and 65537 = 0x00010001: a little-endian reading would give absurd sizes.
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "plain");
    bytes_t payload(2 * 3 * 258);
    for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<unsigned char>(i * 7);
    auto a = read_idx(write("dims", concat(idx_header(0x08, {2, 3, 258}), payload), gzip));
    EXPECT_EQ(a.dims, (Shape{2, 3, 258}));
    // Row-major: element (1, 2, 257) is the last one.
    EXPECT_EQ(a.at<int>(1 * 3 * 258 + 2 * 258 + 257),
              static_cast<unsigned char>((payload.size() - 1) * 7));

    auto b = read_idx(write("dims2", concat(idx_header(0x08, {65537}), bytes_t(65537, 9)), gzip));
    EXPECT_EQ(b.dims, (Shape{65537}));
    EXPECT_EQ(b.at<int>(65536), 9);
  }
}

TEST_F(IdxTest, EightDimensionsAndEmptyArraysAreValid) {
  auto a = read_idx(write(
      "eight",
      concat(idx_header(0x0C, {1, 2, 1, 1, 1, 1, 1, 2}), be_payload<std::int32_t>({5, -6, 7, -8})),
      false));
  EXPECT_EQ(a.dims.rank(), 8u);
  EXPECT_EQ(a.to_vector<int>(), (std::vector<int>{5, -6, 7, -8}));
  auto e = read_idx(write("empty", idx_header(0x0D, {0, 28, 28}), true));
  EXPECT_EQ(e.dims, (Shape{0, 28, 28}));
  EXPECT_TRUE(e.bytes.empty());
}

TEST_F(IdxTest, LargeGzipFileRoundTrips) {
  // Larger than the reader's first 64 MiB buffer, so the growth path is exercised.
  const std::size_t n = (std::size_t{64} << 20) + 12345;
  bytes_t payload(n);
  for (std::size_t i = 0; i < n; ++i)
    payload[i] = static_cast<unsigned char>((i * 2654435761u) >> 13);
  const auto p =
      write("large", concat(idx_header(0x08, {static_cast<std::uint32_t>(n)}), payload), true);
  const auto a = read_idx(p);
  ASSERT_EQ(a.bytes.size(), n);
  EXPECT_EQ(std::memcmp(a.bytes.data(), payload.data(), n), 0);
}

TEST_F(IdxTest, GzipIsDetectedByContentNotName) {
  const bytes_t file = concat(idx_header(0x08, {3}), bytes_t{1, 2, 3});
  const auto gz_named_plain = dir_ / "plain.gz";
  write_plain(gz_named_plain, file);
  EXPECT_EQ(read_idx(gz_named_plain).to_vector<int>(), (std::vector<int>{1, 2, 3}));
  const auto plain_named_gz = dir_ / "compressed-idx1-ubyte";
  write_gz(plain_named_gz, file);
  ASSERT_NE(read_file(plain_named_gz), file);  // really compressed
  EXPECT_EQ(read_idx(plain_named_gz).to_vector<int>(), (std::vector<int>{1, 2, 3}));
}

// ---- images and labels --------------------------------------------------------------------

TEST_F(IdxTest, ImagesBecomeNhwcFloatsScaled) {
  bytes_t px(2 * 2 * 3);
  for (std::size_t i = 0; i < px.size(); ++i) px[i] = static_cast<unsigned char>(i * 23);
  px.back() = 255;
  const auto p = write("img", concat(idx_header(0x08, {2, 2, 3}), px), true);
  const auto t = read_idx_images(p);
  EXPECT_EQ(t.shape(), (Shape{2, 2, 3, 1}));
  for (std::size_t i = 0; i < px.size(); ++i) {
    EXPECT_FLOAT_EQ(t.data()[i], px[i] / 255.0f) << i;
  }
  EXPECT_EQ(t(1, 1, 2, 0), 1.0f);
  EXPECT_EQ(t(0, 0, 0, 0), 0.0f);

  const auto raw = read_idx_images(p, 1.0f);
  EXPECT_EQ(raw(0, 1, 1, 0), static_cast<float>(px[4]));
  const auto first = read_idx_images(p, 1.0f, 1);
  EXPECT_EQ(first.shape(), (Shape{1, 2, 3, 1}));
  EXPECT_EQ(first(0, 1, 2, 0), static_cast<float>(px[5]));
  EXPECT_EQ(read_idx_images(p, 1.0f, 99).shape(), (Shape{2, 2, 3, 1}));

  // Float images are scaled too; four dimensions are kept as NHWC.
  const auto pf =
      write("imgf", concat(idx_header(0x0D, {1, 1, 2, 2}), be_payload<float>({1, 2, 3, 4})), false);
  const auto tf = read_idx_images(pf, 0.5f);
  EXPECT_EQ(tf.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(tf(0, 0, 1, 1), 2.0f);

  const auto bad = write("img1d", concat(idx_header(0x08, {3}), bytes_t{1, 2, 3}), false);
  EXPECT_THROW((void)read_idx_images(bad), format_error);
}

TEST_F(IdxTest, LabelsBecomeInt32) {
  const auto p = write("lab", concat(idx_header(0x08, {5}), bytes_t{9, 0, 0, 3, 255}), true);
  const auto t = read_idx_labels(p);
  EXPECT_EQ(t.shape(), (Shape{5}));
  EXPECT_EQ(std::vector<std::int32_t>(t.begin(), t.end()),
            (std::vector<std::int32_t>{9, 0, 0, 3, 255}));
  EXPECT_EQ(read_idx_labels(p, 2).shape(), (Shape{2}));
  EXPECT_EQ(read_idx_labels(p, 2)(1), 0);

  const auto ps =
      write("labs", concat(idx_header(0x0B, {2}), be_payload<std::int16_t>({-7, 1000})), false);
  const auto ts = read_idx_labels(ps);
  EXPECT_EQ(ts(0), -7);
  EXPECT_EQ(ts(1), 1000);

  const auto pf = write("labf", concat(idx_header(0x0D, {1}), be_payload<float>({1.0f})), false);
  try {
    (void)read_idx_labels(pf);
    ADD_FAILURE() << "float labels accepted";
  } catch (const format_error& e) {
    EXPECT_TRUE(contains(e.what(), "integer labels")) << e.what();
  }
  const auto p2 = write("lab2d", concat(idx_header(0x08, {1, 2}), bytes_t{1, 2}), false);
  EXPECT_THROW((void)read_idx_labels(p2), format_error);
}

// ---- rejections ---------------------------------------------------------------------------

TEST_F(IdxTest, RejectsBadMagic) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "plain");
    expect_error<format_error>(write("m1", bytes_t{1, 0, 8, 1, 0, 0, 0, 1, 5}, gzip), "bad magic");
    expect_error<format_error>(write("m2", bytes_t{0, 7, 8, 1, 0, 0, 0, 1, 5}, gzip), "bad magic");
    expect_error<format_error>(write("m3", bytes_t{'h', 'e', 'l', 'l', 'o', '\n', 0, 0}, gzip),
                               "bad magic");
  }
}

TEST_F(IdxTest, RejectsUnknownTypeCode) {
  for (unsigned char code : {0x00, 0x07, 0x0A, 0x0F, 0xFF}) {
    SCOPED_TRACE(code);
    expect_error<format_error>(write("t", bytes_t{0, 0, code, 1, 0, 0, 0, 1, 5}, code & 1),
                               "unknown element type code");
  }
}

TEST_F(IdxTest, RejectsBadRank) {
  expect_error<format_error>(write("r0", bytes_t{0, 0, 8, 0, 1, 2, 3}, false), "0 dimensions");
  expect_error<format_error>(write("r9", idx_header(0x08, {1, 1, 1, 1, 1, 1, 1, 1, 1}), true),
                             "9 dimensions");
}

TEST_F(IdxTest, RejectsTruncatedHeader) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "plain");
    expect_error<format_error>(write("empty", bytes_t{}, gzip), "truncated header");
    expect_error<format_error>(write("h3", bytes_t{0, 0, 8}, gzip), "truncated header");
    expect_error<format_error>(write("h4", bytes_t{0, 0, 8, 3}, gzip), "truncated header");
    expect_error<format_error>(write("h9", bytes_t{0, 0, 8, 3, 0, 0, 0, 2, 0}, gzip),
                               "truncated header");
  }
}

TEST_F(IdxTest, RejectsTruncatedData) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "plain");
    // One element (and one byte of one element) short.
    expect_error<format_error>(
        write("d1", concat(idx_header(0x08, {2, 3}), bytes_t{1, 2, 3, 4, 5}), gzip),
        "truncated data");
    expect_error<format_error>(write("d2", concat(idx_header(0x0E, {2}), bytes_t(15, 1)), gzip),
                               "truncated data");
    expect_error<format_error>(write("d3", idx_header(0x0C, {1}), gzip), "truncated data");
  }
}

TEST_F(IdxTest, RejectsTrailingBytes) {
  for (bool gzip : {false, true}) {
    SCOPED_TRACE(gzip ? "gzip" : "plain");
    expect_error<format_error>(
        write("x1", concat(idx_header(0x08, {2, 3}), bytes_t{1, 2, 3, 4, 5, 6, 7}), gzip),
        "trailing data");
    expect_error<format_error>(
        write("x2", concat(idx_header(0x0B, {2}), bytes_t(4 + 100000, 0)), gzip), "100000 more");
  }
}

TEST_F(IdxTest, RejectsNegativeAndAbsurdDimensionsBeforeAllocating) {
  // A dimension with the sign bit set.
  expect_error<format_error>(
      write("neg", concat(idx_header(0x08, {0x80000000u}), bytes_t{1}), false), "negative");
  // 8 x (2^31 - 1) overflows any size_t.
  expect_error<format_error>(
      write("ovf", idx_header(0x0E, std::vector<std::uint32_t>(8, 0x7fffffffu)), true),
      "multiply to more elements");
  // 2^62 bytes: representable, but far beyond what a tiny file can hold; must not be
  // allocated (ASan and the test's own memory would notice).
  expect_error<format_error>(
      write("big", concat(idx_header(0x08, {0x7fffffffu, 0x7fffffffu}), bytes_t{1, 2, 3}), false),
      "truncated data");
  expect_error<format_error>(
      write("bigz", concat(idx_header(0x08, {0x7fffffffu, 0x7fffffffu}), bytes_t{1, 2, 3}), true),
      "more than a gzip file");
  // 1.6 GB promised by a gzip file of a few dozen bytes: within size_t, but beyond what
  // deflate can expand to.
  expect_error<format_error>(
      write("bigz2", concat(idx_header(0x08, {40000, 40000}), bytes_t{1, 2, 3}), true),
      "more than a gzip file");
}

TEST_F(IdxTest, RejectsCorruptGzip) {
  bytes_t payload(20000);
  for (std::size_t i = 0; i < payload.size(); ++i)
    payload[i] = static_cast<unsigned char>((i * i) >> 3);
  const auto good = write("good", concat(idx_header(0x08, {100, 200}), payload), true);
  ASSERT_NO_THROW((void)read_idx(good));
  const bytes_t gz = read_file(good);
  ASSERT_GT(gz.size(), 64u);

  // Garbage in the middle of the deflate stream.
  bytes_t mid = gz;
  for (std::size_t i = mid.size() / 2; i < mid.size() / 2 + 16; ++i) mid[i] ^= 0xA5;
  write_plain(dir_ / "mid", mid);
  expect_error<format_error>(dir_ / "mid", "gzip stream");

  // A wrong CRC-32 in the trailer: the data decompresses fine, the check must still fail.
  bytes_t crc = gz;
  crc[crc.size() - 8] ^= 0xFF;
  write_plain(dir_ / "crc", crc);
  expect_error<format_error>(dir_ / "crc", "gzip stream is corrupt");

  // A cut-off .gz file.
  bytes_t cut(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2));
  write_plain(dir_ / "cut", cut);
  expect_error<format_error>(dir_ / "cut", "truncated");

  // The gzip magic, then nonsense.
  write_plain(dir_ / "magic_only", bytes_t{0x1f, 0x8b, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42,
                                           0x42, 0x42, 0x42, 0x42});
  expect_error<format_error>(dir_ / "magic_only", "gzip");
}

TEST_F(IdxTest, MissingFileIsAnIoErrorNamingThePath) {
  const auto p = dir_ / "no-such-file-idx3-ubyte.gz";
  expect_error<io_error>(p, "does not exist");
  expect_error<io_error>(dir_, "directory");
}

// ---- Fashion-MNIST ------------------------------------------------------------------------

const fs::path system_dir = fashion_mnist_system_dir;

fs::path system_file(const std::string& stem) {
  return system_dir / (stem + ".gz");
}

// Loaded once for all the tests that read the real data set.
const fashion_mnist& full_data_set() {
  static const fashion_mnist d = [] {
    env_guard env(fashion_mnist_dir_env, std::nullopt);
    const auto t0 = std::chrono::steady_clock::now();
    auto r = load_fashion_mnist();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("[ info     ] load_fashion_mnist(): %.3f s for 70000 images\n", s);
    return r;
  }();
  return d;
}

TEST(FashionMnist, TheDebianPackageIsInstalled) {
  for (const char* stem : {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"}) {
    EXPECT_TRUE(fs::is_regular_file(system_file(stem)))
        << system_file(stem) << " is missing: apt-get install dataset-fashion-mnist";
  }
}

TEST(FashionMnist, ShapesAndRanges) {
  const auto& d = full_data_set();
  EXPECT_EQ(d.train_images.shape(), (Shape{60000, 28, 28, 1}));
  EXPECT_EQ(d.train_labels.shape(), (Shape{60000}));
  EXPECT_EQ(d.test_images.shape(), (Shape{10000, 28, 28, 1}));
  EXPECT_EQ(d.test_labels.shape(), (Shape{10000}));
  for (const auto* images : {&d.train_images, &d.test_images}) {
    const auto [lo, hi] = std::minmax_element(images->begin(), images->end());
    EXPECT_EQ(*lo, 0.0f);
    EXPECT_EQ(*hi, 1.0f);
  }
  // The data set is balanced: 6000 training and 1000 test images per class.
  std::array<int, 10> train_counts{}, test_counts{};
  for (auto l : d.train_labels) {
    ASSERT_TRUE(l >= 0 && l <= 9) << l;
    ++train_counts[static_cast<std::size_t>(l)];
  }
  for (auto l : d.test_labels) {
    ASSERT_TRUE(l >= 0 && l <= 9) << l;
    ++test_counts[static_cast<std::size_t>(l)];
  }
  for (std::size_t c = 0; c < 10; ++c) {
    EXPECT_EQ(train_counts[c], 6000) << c;
    EXPECT_EQ(test_counts[c], 1000) << c;
  }
}

TEST(FashionMnist, MatchesAnIndependentDecoder) {
  const auto& d = full_data_set();
  struct split {
    const char* prefix;
    const Tensor<float, Device<CPU>>* images;
    const Tensor<std::int32_t, Device<CPU>>* labels;
    std::uint32_t n;
  };
  for (const split& s : {split{"train", &d.train_images, &d.train_labels, 60000},
                         split{"t10k", &d.test_images, &d.test_labels, 10000}}) {
    SCOPED_TRACE(s.prefix);
    const bytes_t lab = gunzip(system_file(std::string(s.prefix) + "-labels-idx1-ubyte"));
    ASSERT_EQ(lab.size(), 8u + s.n);
    EXPECT_EQ(be32(lab, 0), 0x00000801u);
    EXPECT_EQ(be32(lab, 4), s.n);
    for (std::size_t i = 0; i < s.n; ++i) ASSERT_EQ(s.labels->data()[i], lab[8 + i]) << i;

    const bytes_t img = gunzip(system_file(std::string(s.prefix) + "-images-idx3-ubyte"));
    ASSERT_EQ(img.size(), 16u + std::size_t{s.n} * 784);
    EXPECT_EQ(be32(img, 0), 0x00000803u);
    EXPECT_EQ(be32(img, 4), s.n);
    EXPECT_EQ(be32(img, 8), 28u);
    EXPECT_EQ(be32(img, 12), 28u);
    for (std::size_t i = 0; i < std::size_t{s.n} * 784; ++i) {
      ASSERT_FLOAT_EQ(s.images->data()[i], img[16 + i] / 255.0f) << i;
    }
  }
}

TEST(FashionMnist, KnownFirstLabels) {
  // Checked against Python's gzip module on the Debian files.
  const auto& d = full_data_set();
  const std::vector<std::int32_t> train = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
  const std::vector<std::int32_t> test = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
  EXPECT_EQ(std::vector<std::int32_t>(d.train_labels.begin(), d.train_labels.begin() + 10), train);
  EXPECT_EQ(std::vector<std::int32_t>(d.test_labels.begin(), d.test_labels.begin() + 10), test);
  EXPECT_EQ(fashion_mnist::class_names()[9], "Ankle boot");
  EXPECT_EQ(fashion_mnist::class_names()[0], "T-shirt/top");
  EXPECT_EQ(fashion_mnist::class_names().size(), 10u);
}

TEST(FashionMnist, LimitsTakeAPrefix) {
  env_guard env(fashion_mnist_dir_env, std::nullopt);
  const auto& d = full_data_set();
  const auto s = load_fashion_mnist(default_fashion_mnist_dir(), 100, 7);
  EXPECT_EQ(s.train_images.shape(), (Shape{100, 28, 28, 1}));
  EXPECT_EQ(s.train_labels.shape(), (Shape{100}));
  EXPECT_EQ(s.test_images.shape(), (Shape{7, 28, 28, 1}));
  EXPECT_EQ(s.test_labels.shape(), (Shape{7}));
  EXPECT_TRUE(std::equal(s.train_images.begin(), s.train_images.end(), d.train_images.begin()));
  EXPECT_TRUE(std::equal(s.test_labels.begin(), s.test_labels.end(), d.test_labels.begin()));
}

class FashionMnistDir : public IdxTest {
 protected:
  // A miniature Fashion-MNIST: n images whose pixels all equal their label * 10.
  void write_fake(const fs::path& dir, std::uint32_t n_images, std::uint32_t n_labels,
                  unsigned char max_label = 9, bool gzip = true) {
    fs::create_directories(dir);
    for (const char* prefix : {"train", "t10k"}) {
      bytes_t px, lab;
      for (std::uint32_t i = 0; i < n_images; ++i) {
        px.insert(px.end(), 784, static_cast<unsigned char>((i % 10) * 10));
      }
      for (std::uint32_t i = 0; i < n_labels; ++i) {
        lab.push_back(static_cast<unsigned char>(i == 0 ? max_label : i % 10));
      }
      const std::string suffix = gzip ? ".gz" : "";
      const auto images = dir / (std::string(prefix) + "-images-idx3-ubyte" + suffix);
      const auto labels = dir / (std::string(prefix) + "-labels-idx1-ubyte" + suffix);
      const bytes_t img_file = concat(idx_header(0x08, {n_images, 28, 28}), px);
      const bytes_t lab_file = concat(idx_header(0x08, {n_labels}), lab);
      if (gzip) {
        write_gz(images, img_file);
        write_gz(labels, lab_file);
      } else {
        write_plain(images, img_file);
        write_plain(labels, lab_file);
      }
    }
  }
};

TEST_F(FashionMnistDir, EnvironmentVariableOverridesTheDefault) {
  const auto fake = dir_ / "fake";
  write_fake(fake, 3, 3);
  {
    env_guard env(fashion_mnist_dir_env, fake.string());
    EXPECT_EQ(default_fashion_mnist_dir(), fake);
    const auto d = load_fashion_mnist();
    EXPECT_EQ(d.train_images.shape(), (Shape{3, 28, 28, 1}));
    EXPECT_EQ(d.test_labels.shape(), (Shape{3}));
    EXPECT_EQ(d.train_labels(0), 9);
    EXPECT_EQ(d.train_labels(2), 2);
    EXPECT_FLOAT_EQ(d.train_images(2, 5, 5, 0), 20 / 255.0f);
    // An explicit argument wins over the environment.
    EXPECT_EQ(load_fashion_mnist(system_dir, 5, 5).train_images.shape(), (Shape{5, 28, 28, 1}));
  }
  {
    env_guard env(fashion_mnist_dir_env, std::string());
    EXPECT_EQ(default_fashion_mnist_dir(), system_dir);  // empty means unset
  }
  {
    env_guard env(fashion_mnist_dir_env, std::nullopt);
    EXPECT_EQ(default_fashion_mnist_dir(), system_dir);
  }
}

TEST_F(FashionMnistDir, UncompressedFilesAreAcceptedToo) {
  const auto fake = dir_ / "plain";
  write_fake(fake, 4, 4, 9, false);
  const auto d = load_fashion_mnist(fake);
  EXPECT_EQ(d.test_images.shape(), (Shape{4, 28, 28, 1}));
}

TEST_F(FashionMnistDir, MissingDirectoryNamesThePackageAndTheVariable) {
  env_guard env(fashion_mnist_dir_env, std::nullopt);
  const auto missing = dir_ / "nowhere";
  try {
    (void)load_fashion_mnist(missing);
    ADD_FAILURE() << "no error for a missing directory";
  } catch (const format_error& e) {
    ADD_FAILURE() << "a missing directory is an io_error, not a format_error: " << e.what();
  } catch (const io_error& e) {
    const std::string m = e.what();
    EXPECT_TRUE(contains(m, missing.string())) << m;
    EXPECT_TRUE(contains(m, "apt-get install dataset-fashion-mnist")) << m;
    EXPECT_TRUE(contains(m, "LOCUS_FASHION_MNIST_DIR")) << m;
  }
  // Through the environment variable: the message says where it points.
  env_guard env2(fashion_mnist_dir_env, missing.string());
  try {
    (void)load_fashion_mnist();
    ADD_FAILURE() << "no error for a missing directory";
  } catch (const io_error& e) {
    EXPECT_TRUE(contains(e.what(), "LOCUS_FASHION_MNIST_DIR is set to '" + missing.string()))
        << e.what();
  }
}

TEST_F(FashionMnistDir, MissingFileNamesThePackage) {
  const auto fake = dir_ / "partial";
  write_fake(fake, 2, 2);
  fs::remove(fake / "t10k-labels-idx1-ubyte.gz");
  try {
    (void)load_fashion_mnist(fake);
    ADD_FAILURE() << "no error for a missing file";
  } catch (const io_error& e) {
    EXPECT_TRUE(contains(e.what(), "t10k-labels-idx1-ubyte")) << e.what();
    EXPECT_TRUE(contains(e.what(), "apt-get install dataset-fashion-mnist")) << e.what();
  }
}

TEST_F(FashionMnistDir, CountMismatchAndBadLabelsAreFormatErrors) {
  write_fake(dir_ / "mismatch", 3, 4);
  try {
    (void)load_fashion_mnist(dir_ / "mismatch");
    ADD_FAILURE() << "no error for 3 images and 4 labels";
  } catch (const format_error& e) {
    EXPECT_TRUE(contains(e.what(), "3 images")) << e.what();
    EXPECT_TRUE(contains(e.what(), "4 labels")) << e.what();
  }
  write_fake(dir_ / "label10", 3, 3, 10);
  EXPECT_THROW((void)load_fashion_mnist(dir_ / "label10"), format_error);

  // Images of the wrong size.
  const auto odd = dir_ / "odd";
  write_fake(odd, 2, 2);
  write_gz(odd / "train-images-idx3-ubyte.gz",
           concat(idx_header(0x08, {2, 27, 29}), bytes_t(2 * 27 * 29)));
  EXPECT_THROW((void)load_fashion_mnist(odd), format_error);
}

}  // namespace
