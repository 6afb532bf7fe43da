// The low-level file layer of the io component: whole-file reads and atomic writes,
// in-memory zip archives, HDF5 files in memory, and .npy arrays. Every reader is checked
// on what it must accept (round trips, and files built here byte by byte or with the HDF5
// C API the way other writers build them) and on what it must refuse without crashing
// (truncated, corrupted, forged inputs).
#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <locus/io/file.hpp>
#include <locus/io/hdf5.hpp>
#include <locus/io/npy.hpp>
#include <locus/io/zip.hpp>

namespace {

namespace fs = std::filesystem;
using locus::format_error;
using locus::io_error;

std::vector<std::byte> bytes_of(const std::string& text) {
  std::vector<std::byte> out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

std::string text_of(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

/// Runs `f`, expects an exception of type E whose message contains every one of `parts`.
template <class E>
void expect_throw_with(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no exception thrown";
  } catch (const E& e) {
    std::string message = e.what();
    for (const std::string& part : parts)
      EXPECT_NE(message.find(part), std::string::npos) << "'" << part << "' not in: " << message;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

/// A fresh directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "locus_io_files_XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ignored);
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  std::vector<std::string> entries() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path_))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

 private:
  fs::path path_;
};

mode_t current_umask() {
  mode_t mask = ::umask(022);
  ::umask(mask);
  return mask;
}

// ---- file.hpp --------------------------------------------------------------------------

TEST(IoFiles, WriteAtomicallyThenReadBackLeavesNoTemporary) {
  TempDir dir;
  const fs::path target = dir.path() / "model.keras";
  std::vector<std::byte> payload(200000);
  for (std::size_t i = 0; i < payload.size(); ++i)
    payload[i] = static_cast<std::byte>((i * 131 + 7) & 0xff);
  locus::io::write_file_atomically(target, payload);
  EXPECT_EQ(locus::io::read_file(target), payload);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.keras"});

  struct stat info {};
  ASSERT_EQ(::stat(target.c_str(), &info), 0);
  const mode_t mode = info.st_mode & 0777;
  EXPECT_EQ(mode, 0666 & ~current_umask());
  EXPECT_NE(mode, 0600) << "the temporary's private mode leaked into the result";
}

TEST(IoFiles, WriteAtomicallyReplacesAnExistingFile) {
  TempDir dir;
  const fs::path target = dir.path() / "weights.h5";
  locus::io::write_file_atomically(target, bytes_of("old contents, longer than the new"));
  locus::io::write_file_atomically(target, bytes_of("new"));
  EXPECT_EQ(text_of(locus::io::read_file(target)), "new");
  locus::io::write_file_atomically(target, {});
  EXPECT_TRUE(locus::io::read_file(target).empty());
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"weights.h5"});
}

TEST(IoFiles, WriteAtomicallyOverADirectoryFailsAndRemovesTheTemporary) {
  // rename() of a file over a non-empty directory fails for every user, root included.
  TempDir dir;
  const fs::path target = dir.path() / "taken";
  fs::create_directory(target);
  locus::io::write_file_atomically(target / "inside", bytes_of("x"));
  expect_throw_with<io_error>(
      [&] { locus::io::write_file_atomically(target, bytes_of("payload")); },
      {target.string(), "rename"});
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"taken"});
  EXPECT_EQ(text_of(locus::io::read_file(target / "inside")), "x");
}

TEST(IoFiles, WriteAtomicallyIntoAMissingDirectoryIsAnIoError) {
  TempDir dir;
  const fs::path target = dir.path() / "no_such_dir" / "file.bin";
  expect_throw_with<io_error>([&] { locus::io::write_file_atomically(target, bytes_of("x")); },
                              {target.string(), std::strerror(ENOENT)});
  EXPECT_TRUE(dir.entries().empty());
}

TEST(IoFiles, WriteAtomicallyIntoAReadOnlyDirectoryKeepsTheOldFile) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  TempDir dir;
  const fs::path target = dir.path() / "model.keras";
  locus::io::write_file_atomically(target, bytes_of("previous model"));
  fs::permissions(dir.path(), fs::perms::owner_read | fs::perms::owner_exec);
  expect_throw_with<io_error>(
      [&] { locus::io::write_file_atomically(target, bytes_of("replacement")); },
      {target.string(), std::strerror(EACCES)});
  fs::permissions(dir.path(), fs::perms::owner_all);
  EXPECT_EQ(text_of(locus::io::read_file(target)), "previous model");
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.keras"});
}

TEST(IoFiles, ReadFileErrorsNameThePath) {
  TempDir dir;
  const fs::path missing = dir.path() / "missing.h5";
  expect_throw_with<io_error>([&] { locus::io::read_file(missing); },
                              {missing.string(), std::strerror(ENOENT)});
  expect_throw_with<io_error>([&] { locus::io::read_file(dir.path()); },
                              {dir.path().string(), "directory"});
  const fs::path big = dir.path() / "big.bin";
  locus::io::write_file_atomically(big, std::vector<std::byte>(1000));
  expect_throw_with<format_error>([&] { locus::io::read_file(big, 999); }, {big.string(), "999"});
  EXPECT_EQ(locus::io::read_file(big, 1000).size(), 1000u);
}

// ---- zip.hpp ---------------------------------------------------------------------------

struct Entry {
  std::string name;
  std::vector<std::byte> data;
};

std::vector<Entry> sample_entries() {
  std::vector<std::byte> weights(5000);
  for (std::size_t i = 0; i < weights.size(); ++i)
    weights[i] = static_cast<std::byte>((i * 37 + i / 256) & 0xff);
  return {{"config.json", bytes_of("{\"class_name\": \"Sequential\"}")},
          {"metadata.json", bytes_of("{\"keras_version\": \"3.0.0\"}")},
          {"empty.bin", {}},
          {"model.weights.h5", weights}};
}

std::vector<std::byte> sample_archive() {
  locus::io::ZipWriter writer("sample.keras");
  for (const Entry& e : sample_entries()) writer.add(e.name, e.data);
  return writer.finish();
}

/// Opens an archive and reads every entry of sample_entries() by name.
std::map<std::string, std::vector<std::byte>> read_sample_entries(std::vector<std::byte> bytes) {
  auto reader = locus::io::ZipReader::from_bytes(std::move(bytes), "sample.keras");
  std::map<std::string, std::vector<std::byte>> out;
  for (const Entry& e : sample_entries()) out[e.name] = reader.read(e.name, 1 << 20);
  return out;
}

std::size_t find_bytes(const std::vector<std::byte>& haystack, const std::string& needle,
                       std::size_t from = 0) {
  std::string text = text_of(haystack);
  return text.find(needle, from);
}

TEST(IoFiles, ZipRoundTripWithSeveralEntriesIncludingAnEmptyOne) {
  auto reader = locus::io::ZipReader::from_bytes(sample_archive(), "sample.keras");
  std::vector<std::string> expected_names;
  for (const Entry& e : sample_entries()) expected_names.push_back(e.name);
  EXPECT_EQ(reader.names(), expected_names);
  for (const Entry& e : sample_entries()) {
    EXPECT_TRUE(reader.contains(e.name));
    EXPECT_EQ(reader.read(e.name, e.data.size()), e.data) << e.name;
  }
  EXPECT_FALSE(reader.contains("config"));
  EXPECT_FALSE(reader.contains(std::string("config.json\0x", 13)));
  // Moving keeps the archive readable (libzip points into bytes the reader owns).
  locus::io::ZipReader moved = std::move(reader);
  EXPECT_EQ(text_of(moved.read("config.json", 100)), "{\"class_name\": \"Sequential\"}");
}

TEST(IoFiles, ZipWriterStoresEntriesUncompressed) {
  // Stored entries keep their bytes verbatim in the archive, as Keras writes them.
  std::vector<std::byte> archive = sample_archive();
  EXPECT_NE(find_bytes(archive, "{\"keras_version\": \"3.0.0\"}"), std::string::npos);
}

TEST(IoFiles, ZipWithNoEntriesIsAValidEmptyArchive) {
  locus::io::ZipWriter writer;
  auto reader = locus::io::ZipReader::from_bytes(writer.finish(), "empty.zip");
  EXPECT_TRUE(reader.names().empty());
  EXPECT_THROW(writer.finish(), io_error);
}

TEST(IoFiles, ZipWriterRefusesDuplicateAndInvalidNames) {
  locus::io::ZipWriter writer("out.keras");
  writer.add("a.json", bytes_of("1"));
  expect_throw_with<io_error>([&] { writer.add("a.json", bytes_of("2")); },
                              {"out.keras", "a.json"});
  EXPECT_THROW(writer.add("", bytes_of("2")), io_error);
  auto reader = locus::io::ZipReader::from_bytes(writer.finish(), "out.keras");
  EXPECT_EQ(text_of(reader.read("a.json", 10)), "1");
  EXPECT_THROW(writer.add("b.json", bytes_of("3")), io_error);
}

TEST(IoFiles, ZipMissingOrOversizedEntryIsAFormatErrorNamingIt) {
  auto reader = locus::io::ZipReader::from_bytes(sample_archive(), "sample.keras");
  expect_throw_with<format_error>([&] { reader.read("variables.h5", 100); },
                                  {"sample.keras", "variables.h5"});
  expect_throw_with<format_error>([&] { reader.read("model.weights.h5", 4999); },
                                  {"sample.keras", "model.weights.h5", "4999"});
}

TEST(IoFiles, ZipThatIsNotAZipIsAFormatError) {
  expect_throw_with<format_error>([] { locus::io::ZipReader::from_bytes({}, "nothing.keras"); },
                                  {"nothing.keras"});
  expect_throw_with<format_error>(
      [] { locus::io::ZipReader::from_bytes(bytes_of(std::string(4096, 'z')), "junk.keras"); },
      {"junk.keras"});
}

TEST(IoFiles, ZipTruncatedAtEverySeventhByteIsAFormatError) {
  const std::vector<std::byte> archive = sample_archive();
  for (std::size_t cut = 0; cut < archive.size(); cut += 7) {
    std::vector<std::byte> prefix(archive.begin(), archive.begin() + static_cast<long>(cut));
    EXPECT_THROW(read_sample_entries(prefix), format_error) << "cut at " << cut;
  }
}

TEST(IoFiles, ZipWithCorruptCentralDirectoryIsReadCorrectlyOrRefused) {
  // Each byte of the central directory is flipped in turn. Some fields do not matter to a
  // reader (times, attributes), so an archive may still open; what must never happen is
  // a crash, or entries read back with other contents than were written.
  const std::vector<std::byte> archive = sample_archive();
  const auto expected = read_sample_entries(archive);
  const std::size_t central = find_bytes(archive, "PK\x01\x02");
  ASSERT_NE(central, std::string::npos);
  std::size_t refused = 0;
  for (std::size_t i = central; i < archive.size(); ++i) {
    std::vector<std::byte> corrupt = archive;
    corrupt[i] ^= std::byte{0xff};
    try {
      EXPECT_EQ(read_sample_entries(corrupt), expected) << "flipped byte " << i;
    } catch (const format_error&) {
      ++refused;
    }
  }
  EXPECT_GT(refused, (archive.size() - central) / 4);

  // The CRC of an entry in the central directory no longer matching its local header.
  std::vector<std::byte> bad_crc = archive;
  bad_crc[central + 16] ^= std::byte{0x01};
  EXPECT_THROW(read_sample_entries(bad_crc), format_error);
}

TEST(IoFiles, ZipWithCorruptEntryDataFailsItsCrc) {
  std::vector<std::byte> archive = sample_archive();
  const std::size_t data = find_bytes(archive, "{\"class_name\"");
  ASSERT_NE(data, std::string::npos);
  archive[data + 3] ^= std::byte{0x20};
  auto reader = locus::io::ZipReader::from_bytes(archive, "sample.keras");
  expect_throw_with<format_error>([&] { reader.read("config.json", 1000); },
                                  {"sample.keras", "config.json"});
  EXPECT_EQ(text_of(reader.read("metadata.json", 1000)), "{\"keras_version\": \"3.0.0\"}");
}

/// The offsets of the local header and of the central directory record of the entry
/// `name` in an archive of stored entries.
std::pair<std::size_t, std::size_t> headers_of(const std::vector<std::byte>& archive,
                                               const std::string& name) {
  std::size_t local = 0;
  for (local = find_bytes(archive, "PK\x03\x04"); local != std::string::npos;
       local = find_bytes(archive, "PK\x03\x04", local + 1))
    if (text_of(archive).compare(local + 30, name.size(), name) == 0) break;
  std::size_t central = find_bytes(archive, "PK\x01\x02");
  for (; central != std::string::npos; central = find_bytes(archive, "PK\x01\x02", central + 1))
    if (text_of(archive).compare(central + 46, name.size(), name) == 0) break;
  return {local, central};
}

void set_u16(std::vector<std::byte>& bytes, std::size_t offset, unsigned value) {
  bytes[offset] = static_cast<std::byte>(value & 0xff);
  bytes[offset + 1] = static_cast<std::byte>((value >> 8) & 0xff);
}

TEST(IoFiles, ZipUnsupportedCompressionAndEncryptionAreFormatErrors) {
  const std::vector<std::byte> archive = sample_archive();
  const auto [local, central] = headers_of(archive, "config.json");
  ASSERT_NE(local, std::string::npos);
  ASSERT_NE(central, std::string::npos);

  // Method 6 (implode) is a real zip method that libzip does not decode; an unassigned
  // method number (99) is refused already when the archive is opened.
  std::vector<std::byte> unknown_method = archive;
  set_u16(unknown_method, local + 8, 6);
  set_u16(unknown_method, central + 10, 6);
  auto reader = locus::io::ZipReader::from_bytes(unknown_method, "odd.keras");
  expect_throw_with<format_error>([&] { reader.read("config.json", 1000); },
                                  {"odd.keras", "config.json", "compression"});

  std::vector<std::byte> unassigned_method = archive;
  set_u16(unassigned_method, local + 8, 99);
  set_u16(unassigned_method, central + 10, 99);
  EXPECT_THROW(
      locus::io::ZipReader::from_bytes(unassigned_method, "odd.keras").read("config.json", 1000),
      format_error);

  std::vector<std::byte> encrypted = archive;
  set_u16(encrypted, local + 6, 1);
  set_u16(encrypted, central + 8, 1);
  expect_throw_with<format_error>(
      [&] {
        locus::io::ZipReader::from_bytes(encrypted, "locked.keras").read("config.json", 1000);
      },
      {"locked.keras", "config.json"});
}

TEST(IoFiles, ZipEntryLargerThanItsDeclaredSizeIsRefused) {
  // The declared size is under the limit; the entry's data is not.
  const std::vector<std::byte> archive = sample_archive();
  const auto [local, central] = headers_of(archive, "model.weights.h5");
  std::vector<std::byte> forged = archive;
  set_u16(forged, local + 22, 100);
  set_u16(forged, local + 24, 0);
  set_u16(forged, central + 24, 100);
  set_u16(forged, central + 26, 0);
  EXPECT_THROW(
      locus::io::ZipReader::from_bytes(forged, "forged.keras").read("model.weights.h5", 1000),
      format_error);
}

// ---- hdf5.hpp --------------------------------------------------------------------------

std::vector<float> ramp_float(std::size_t n, float scale) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = scale * (static_cast<float>(i) - 3.5f);
  return v;
}

/// A file with groups, attributes and datasets of every kind the writer makes.
std::vector<std::byte> sample_hdf5() {
  auto file = locus::io::H5File::create_in_memory("sample.h5");
  auto root = file.root();
  root.set_string_attribute("keras_version", "3.1.0");
  root.set_string_attribute("unicode", "caf\xc3\xa9 \xe2\x86\x92 \xce\xbb");
  root.set_string_list_attribute("layer_names", {"dense", "dense_1", "batch_normalization"});
  root.set_string_list_attribute("no_layers", {});
  auto layers = root.create_group("layers");
  auto dense = layers.create_group("dense");
  auto vars = dense.create_group("vars");
  std::vector<float> kernel = ramp_float(2 * 3 * 4 * 5, 0.25f);
  vars.write("0", {2, 3, 4, 5}, kernel.data());
  std::vector<double> bias = {1.0 / 3.0, -2.5e-300, 7.0};
  vars.write("1", {3}, bias.data());
  float scale = 0.125f;
  vars.write("scalar", {}, &scale);
  vars.write("empty", {0, 4}, static_cast<const float*>(nullptr));
  root.create_group("optimizer/vars").write_int64_scalar("iterations", -1234567890123ll);
  return file.image();
}

TEST(IoFiles, Hdf5RoundTripOfGroupsAttributesAndDatasets) {
  auto file = locus::io::H5File::from_bytes(sample_hdf5(), "sample.h5");
  auto root = file.root();
  EXPECT_EQ(root.path(), "/");
  EXPECT_EQ(root.members(), (std::vector<std::string>{"layers", "optimizer"}));
  EXPECT_EQ(root.string_attribute("keras_version"), "3.1.0");
  EXPECT_EQ(root.string_attribute("unicode"), "caf\xc3\xa9 \xe2\x86\x92 \xce\xbb");
  EXPECT_EQ(root.string_list_attribute("layer_names"),
            (std::vector<std::string>{"dense", "dense_1", "batch_normalization"}));
  EXPECT_TRUE(root.string_list_attribute("no_layers").empty());
  EXPECT_TRUE(root.has_attribute("keras_version"));
  EXPECT_FALSE(root.has_attribute("backend"));

  EXPECT_TRUE(root.contains("layers/dense/vars/0"));
  EXPECT_TRUE(root.is_dataset("layers/dense/vars/0"));
  EXPECT_FALSE(root.is_group("layers/dense/vars/0"));
  EXPECT_TRUE(root.is_group("/layers/dense"));
  EXPECT_FALSE(root.contains("layers/missing/vars/0"));
  EXPECT_FALSE(root.contains("layers/dense/vars/0/deeper"));

  auto vars = root.group("layers").group("dense/vars");
  EXPECT_EQ(vars.path(), "/layers/dense/vars");
  EXPECT_EQ(vars.members(), (std::vector<std::string>{"0", "1", "empty", "scalar"}));

  auto info = vars.dataset_info("0");
  EXPECT_EQ(info.shape, (std::vector<std::size_t>{2, 3, 4, 5}));
  EXPECT_TRUE(info.is_float);
  EXPECT_FALSE(info.is_integer);
  EXPECT_EQ(info.element_bytes, 4u);
  EXPECT_EQ(vars.read_float("0"), ramp_float(120, 0.25f));
  EXPECT_EQ(vars.read_double("0").size(), 120u);
  EXPECT_EQ(vars.read_double("0")[7], 0.25 * 3.5);

  EXPECT_EQ(vars.dataset_info("1").element_bytes, 8u);
  EXPECT_EQ(vars.read_double("1"), (std::vector<double>{1.0 / 3.0, -2.5e-300, 7.0}));
  EXPECT_EQ(vars.read_float("1")[0], static_cast<float>(1.0 / 3.0));

  EXPECT_TRUE(vars.dataset_info("scalar").shape.empty());
  EXPECT_EQ(vars.read_float("scalar"), std::vector<float>{0.125f});
  EXPECT_EQ(vars.dataset_info("empty").shape, (std::vector<std::size_t>{0, 4}));
  EXPECT_TRUE(vars.read_float("empty").empty());

  auto iterations = root.dataset_info("optimizer/vars/iterations");
  EXPECT_TRUE(iterations.is_integer);
  EXPECT_EQ(iterations.element_bytes, 8u);
  EXPECT_EQ(root.read_int64_scalar("optimizer/vars/iterations"), -1234567890123ll);
  EXPECT_THROW(vars.read_int64_scalar("1"), format_error);  // three values
}

TEST(IoFiles, Hdf5EmptyListIsWrittenAsAnEmptyFloat64ArrayLikeH5py) {
  auto file = locus::io::H5File::create_in_memory("empty_list.h5");
  file.root().set_string_list_attribute("names", {});
  auto image = file.image();
  // Inspect what was written with the C API itself.
  hid_t access = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_core(access, 1 << 16, 0);
  H5Pset_file_image(access, image.data(), image.size());
  hid_t f = H5Fopen("inspect_empty_list", H5F_ACC_RDONLY, access);
  ASSERT_GE(f, 0);
  hid_t attribute = H5Aopen_by_name(f, "/", "names", H5P_DEFAULT, H5P_DEFAULT);
  hid_t type = H5Aget_type(attribute);
  hid_t space = H5Aget_space(attribute);
  EXPECT_GT(H5Tequal(type, H5T_IEEE_F64LE), 0);
  EXPECT_EQ(H5Sget_simple_extent_ndims(space), 1);
  EXPECT_EQ(H5Sget_simple_extent_npoints(space), 0);
  H5Sclose(space);
  H5Tclose(type);
  H5Aclose(attribute);
  H5Fclose(f);
  H5Pclose(access);
}

TEST(IoFiles, Hdf5AttributesAreReplacedAndDatasetsAreNot) {
  auto file = locus::io::H5File::create_in_memory("rewrite.h5");
  auto root = file.root();
  root.set_string_attribute("name", "first");
  root.set_string_attribute("name", "second");
  root.set_string_list_attribute("list", {"a"});
  root.set_string_list_attribute("list", {});
  EXPECT_EQ(root.string_attribute("name"), "second");
  EXPECT_TRUE(root.string_list_attribute("list").empty());
  root.write_int64_scalar("step", 1);
  expect_throw_with<io_error>([&] { root.write_int64_scalar("step", 2); }, {"rewrite.h5", "/step"});
  EXPECT_THROW(root.create_group("step"), io_error);
  EXPECT_THROW(root.set_string_attribute("bad", std::string("a\0b", 3)), io_error);
  EXPECT_EQ(root.read_int64_scalar("step"), 1);
}

TEST(IoFiles, Hdf5MissingObjectsAreFormatErrorsNamingThePath) {
  auto file = locus::io::H5File::from_bytes(sample_hdf5(), "sample.h5");
  auto layers = file.root().group("layers");
  expect_throw_with<format_error>([&] { layers.group("conv2d/vars"); },
                                  {"sample.h5", "no group '/layers/conv2d/vars'"});
  expect_throw_with<format_error>([&] { layers.group("dense/vars/0"); },
                                  {"sample.h5", "'/layers/dense/vars/0'"});
  expect_throw_with<format_error>([&] { layers.read_float("dense/vars/7"); },
                                  {"sample.h5", "'/layers/dense/vars/7'"});
  expect_throw_with<format_error>([&] { layers.read_float("dense/vars"); },
                                  {"sample.h5", "'/layers/dense/vars'"});
  expect_throw_with<format_error>([&] { layers.dataset_info("x/y"); },
                                  {"sample.h5", "'/layers/x/y'"});
  expect_throw_with<format_error>([&] { layers.string_attribute("backend"); },
                                  {"sample.h5", "backend", "/layers"});
  expect_throw_with<format_error>([&] { layers.string_list_attribute("weight_names"); },
                                  {"sample.h5", "weight_names", "/layers"});
}

TEST(IoFiles, Hdf5GarbageAndTruncatedImagesAreFormatErrors) {
  expect_throw_with<format_error>([] { locus::io::H5File::from_bytes({}, "empty.h5"); },
                                  {"empty.h5"});
  expect_throw_with<format_error>(
      [] { locus::io::H5File::from_bytes(bytes_of(std::string(5000, '\x42')), "junk.h5"); },
      {"junk.h5"});
  // The signature alone, then garbage: HDF5 itself must refuse it.
  std::string forged = std::string("\x89HDF\r\n\x1a\n", 8) + std::string(3000, '\x07');
  expect_throw_with<format_error>(
      [&] { locus::io::H5File::from_bytes(bytes_of(forged), "forged.h5"); }, {"forged.h5"});

  const std::vector<std::byte> image = sample_hdf5();
  for (std::size_t cut = 0; cut < image.size();
       cut += std::max<std::size_t>(1, image.size() / 40)) {
    std::vector<std::byte> prefix(image.begin(), image.begin() + static_cast<long>(cut));
    EXPECT_THROW(
        {
          auto file = locus::io::H5File::from_bytes(prefix, "cut.h5");
          auto vars = file.root().group("layers/dense/vars");
          vars.read_float("0");
          vars.read_double("1");
          file.root().string_list_attribute("layer_names");
        },
        format_error)
        << "cut at " << cut << " of " << image.size();
  }
}

TEST(IoFiles, Hdf5CorruptGlobalHeapIsRefusedBeforeHdf5ReadsIt) {
  // Variable-length strings live in global heap collections, whose sizes HDF5 1.10 trusts
  // (a forged one makes it allocate or copy out of bounds): they are checked first.
  const std::vector<std::byte> image = sample_hdf5();
  const std::size_t heap = find_bytes(image, std::string("GCOL\x01\0\0\0", 8));
  ASSERT_NE(heap, std::string::npos);
  ASSERT_NO_THROW(locus::io::H5File::from_bytes(image, "sample.h5"));

  std::vector<std::byte> huge_collection = image;
  huge_collection[heap + 14] = std::byte{0x7f};  // the 8-byte size now exceeds the file
  expect_throw_with<format_error>(
      [&] { locus::io::H5File::from_bytes(huge_collection, "heap.h5"); },
      {"heap.h5", "global heap"});

  // The first object's size (after the 16-byte collection header and 8 bytes of index,
  // reference count and reserved) made larger than the collection.
  std::vector<std::byte> huge_object = image;
  huge_object[heap + 16 + 8 + 3] = std::byte{0x40};
  expect_throw_with<format_error>([&] { locus::io::H5File::from_bytes(huge_object, "obj.h5"); },
                                  {"obj.h5", "global heap"});

  // A free-space entry (index 0) of size 0 would make HDF5's walk loop forever.
  std::vector<std::byte> empty_free_space = image;
  for (std::size_t i = 0; i < 16; ++i) empty_free_space[heap + 16 + i] = std::byte{0};
  expect_throw_with<format_error>(
      [&] { locus::io::H5File::from_bytes(empty_free_space, "free.h5"); },
      {"free.h5", "global heap"});
}

TEST(IoFiles, Hdf5TwoImagesOpenAtOnceStayDistinct) {
  auto a = locus::io::H5File::create_in_memory("a.h5");
  a.root().set_string_attribute("id", "a");
  auto b = locus::io::H5File::create_in_memory("b.h5");
  b.root().set_string_attribute("id", "b");
  auto ra = locus::io::H5File::from_bytes(a.image(), "a.h5");
  auto rb = locus::io::H5File::from_bytes(b.image(), "b.h5");
  EXPECT_EQ(ra.root().string_attribute("id"), "a");
  EXPECT_EQ(rb.root().string_attribute("id"), "b");
}

TEST(IoFiles, Hdf5GroupOutlivesItsFileObject) {
  std::optional<locus::io::H5Group> vars;
  {
    auto file = locus::io::H5File::from_bytes(sample_hdf5(), "sample.h5");
    vars = file.root().group("layers/dense/vars");
  }
  EXPECT_EQ(vars->read_float("scalar"), std::vector<float>{0.125f});
}

/// Builds an HDF5 image with the C API alone, as another writer (h5py, Keras 2) would.
class ForeignHdf5 {
 public:
  ForeignHdf5() {
    access_ = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(access_, 1 << 16, 0);
    file_ = H5Fcreate("locus_test_foreign_image", H5F_ACC_TRUNC, H5P_DEFAULT, access_);
  }
  ~ForeignHdf5() {
    if (file_ >= 0) H5Fclose(file_);
    H5Pclose(access_);
  }
  hid_t file() const { return file_; }

  /// A 1-D or scalar attribute of fixed-length strings of `size` bytes with `padding`.
  void fixed_strings(const std::string& name, const std::vector<std::string>& values,
                     std::size_t size, H5T_str_t padding, bool scalar = false) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, size);
    H5Tset_strpad(type, padding);
    hsize_t dims[1] = {values.size()};
    hid_t space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, dims, nullptr);
    std::vector<char> buffer(values.size() * size, padding == H5T_STR_SPACEPAD ? ' ' : '\0');
    for (std::size_t i = 0; i < values.size(); ++i)
      std::memcpy(buffer.data() + i * size, values[i].data(), values[i].size());
    hid_t attribute = H5Acreate2(file_, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
    // HDF5 refuses a null buffer, even for no elements.
    if (!values.empty()) {
      EXPECT_GE(H5Awrite(attribute, type, buffer.data()), 0);
    }
    H5Aclose(attribute);
    H5Sclose(space);
    H5Tclose(type);
  }

  void int_dataset(const std::string& name, const std::vector<std::int32_t>& values,
                   std::vector<hsize_t> dims) {
    hid_t space = dims.empty()
                      ? H5Screate(H5S_SCALAR)
                      : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    hid_t dataset = H5Dcreate2(file_, name.c_str(), H5T_STD_I32BE, space, H5P_DEFAULT, H5P_DEFAULT,
                               H5P_DEFAULT);
    EXPECT_GE(H5Dwrite(dataset, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
    H5Dclose(dataset);
    H5Sclose(space);
  }

  std::vector<std::byte> image() {
    H5Fflush(file_, H5F_SCOPE_GLOBAL);
    ssize_t size = H5Fget_file_image(file_, nullptr, 0);
    std::vector<std::byte> bytes(static_cast<std::size_t>(size));
    H5Fget_file_image(file_, bytes.data(), bytes.size());
    return bytes;
  }

 private:
  hid_t access_ = -1;
  hid_t file_ = -1;
};

TEST(IoFiles, Hdf5FixedLengthStringAttributesAsKeras2WroteThem) {
  ForeignHdf5 foreign;
  // Keras 2 stored layer_names as a numpy '|S' array: fixed length, NUL padded.
  foreign.fixed_strings("layer_names", {"dense", "dense_1", "activation_12"}, 13, H5T_STR_NULLPAD);
  foreign.fixed_strings("backend", {"tensorflow"}, 10, H5T_STR_NULLPAD, /*scalar=*/true);
  foreign.fixed_strings("nullterm", {"abc"}, 8, H5T_STR_NULLTERM);
  foreign.fixed_strings("spaced", {"x y", "z"}, 6, H5T_STR_SPACEPAD);
  foreign.fixed_strings("empty_list", {}, 4, H5T_STR_NULLPAD);
  {
    // A scalar attribute whose type is a 1-element array of variable-length strings.
    hid_t string = H5Tcopy(H5T_C_S1);
    H5Tset_size(string, H5T_VARIABLE);
    hsize_t one[1] = {1};
    hid_t array = H5Tarray_create2(string, 1, one);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attribute = H5Acreate2(foreign.file(), "wrapped", array, space, H5P_DEFAULT, H5P_DEFAULT);
    const char* value = "inside an array";
    EXPECT_GE(H5Awrite(attribute, array, &value), 0);
    H5Aclose(attribute);
    H5Sclose(space);
    H5Tclose(array);
    H5Tclose(string);
  }
  {
    // Not a string at all, and a 2-D string array: both refused.
    hsize_t dims[2] = {2, 2};
    hid_t space = H5Screate_simple(2, dims, nullptr);
    hid_t numbers =
        H5Acreate2(foreign.file(), "numbers", H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT);
    std::int32_t values[4] = {1, 2, 3, 4};
    H5Awrite(numbers, H5T_NATIVE_INT32, values);
    H5Aclose(numbers);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, 2);
    hid_t grid = H5Acreate2(foreign.file(), "grid", type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(grid, type, "abcdefgh");
    H5Aclose(grid);
    H5Tclose(type);
    H5Sclose(space);
  }
  auto file = locus::io::H5File::from_bytes(foreign.image(), "keras2.h5");
  auto root = file.root();
  EXPECT_EQ(root.string_list_attribute("layer_names"),
            (std::vector<std::string>{"dense", "dense_1", "activation_12"}));
  EXPECT_EQ(root.string_attribute("backend"), "tensorflow");
  EXPECT_EQ(root.string_attribute("nullterm"), "abc");
  EXPECT_EQ(root.string_list_attribute("spaced"), (std::vector<std::string>{"x y", "z"}));
  EXPECT_TRUE(root.string_list_attribute("empty_list").empty());
  EXPECT_EQ(root.string_attribute("wrapped"), "inside an array");
  // A 1-element list is also a single string.
  EXPECT_EQ(root.string_attribute("nullterm"), root.string_list_attribute("nullterm")[0]);
  expect_throw_with<format_error>([&] { root.string_attribute("layer_names"); },
                                  {"keras2.h5", "layer_names"});
  expect_throw_with<format_error>([&] { root.string_list_attribute("numbers"); },
                                  {"keras2.h5", "numbers"});
  expect_throw_with<format_error>([&] { root.string_attribute("numbers"); },
                                  {"keras2.h5", "numbers"});
  expect_throw_with<format_error>([&] { root.string_list_attribute("grid"); },
                                  {"keras2.h5", "grid"});
  expect_throw_with<format_error>([&] { root.string_list_attribute("backend"); },
                                  {"keras2.h5", "backend"});
}

TEST(IoFiles, Hdf5IntegerDatasetsConvertAndStringDatasetsAreRefused) {
  ForeignHdf5 foreign;
  foreign.int_dataset("ints", {-3, 0, 70000, 5, 6, 7}, {2, 3});
  foreign.int_dataset("step", {41}, {});
  {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, 4);
    hid_t dataset =
        H5Dcreate2(foreign.file(), "text", type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(dataset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, "abcd");
    H5Dclose(dataset);
    double iterations = 12.0, fraction = 2.5;
    hid_t d1 = H5Dcreate2(foreign.file(), "float_step", H5T_IEEE_F32LE, space, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d1, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &iterations);
    H5Dclose(d1);
    hid_t d2 = H5Dcreate2(foreign.file(), "fraction", H5T_IEEE_F64LE, space, H5P_DEFAULT,
                          H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d2, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &fraction);
    H5Dclose(d2);
    H5Tclose(type);
    H5Sclose(space);
    // Links that would lead out of the image are not followed.
    H5Lcreate_soft("/ints", foreign.file(), "soft", H5P_DEFAULT, H5P_DEFAULT);
    H5Lcreate_external("/etc/other.h5", "/x", foreign.file(), "external", H5P_DEFAULT, H5P_DEFAULT);
  }
  auto file = locus::io::H5File::from_bytes(foreign.image(), "foreign.h5");
  auto root = file.root();
  auto info = root.dataset_info("ints");
  EXPECT_TRUE(info.is_integer);
  EXPECT_EQ(info.element_bytes, 4u);
  EXPECT_EQ(root.read_float("ints"), (std::vector<float>{-3, 0, 70000, 5, 6, 7}));
  EXPECT_EQ(root.read_double("ints")[2], 70000.0);
  EXPECT_EQ(root.read_int64_scalar("step"), 41);
  EXPECT_EQ(root.read_int64_scalar("float_step"), 12);
  EXPECT_THROW(root.read_int64_scalar("fraction"), format_error);
  expect_throw_with<format_error>([&] { root.read_float("text"); }, {"foreign.h5", "/text"});
  expect_throw_with<format_error>([&] { root.read_float("soft"); }, {"foreign.h5", "soft"});
  expect_throw_with<format_error>([&] { root.contains("external/x"); }, {"foreign.h5", "external"});
  EXPECT_EQ(root.members(), (std::vector<std::string>{"external", "float_step", "fraction", "ints",
                                                      "soft", "step", "text"}));
}

// ---- npy.hpp ---------------------------------------------------------------------------

/// A .npy file built per the NumPy format specification.
std::vector<std::byte> build_npy(const std::string& header_dict,
                                 const std::vector<std::byte>& payload, int major = 1) {
  std::string header = header_dict;
  const std::size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string out = std::string("\x93NUMPY", 6) + static_cast<char>(major) + '\0';
  for (std::size_t i = 0; i < (major == 1 ? 2u : 4u); ++i)
    out += static_cast<char>((header.size() >> (8 * i)) & 0xff);
  out += header;
  std::vector<std::byte> bytes = bytes_of(out);
  bytes.insert(bytes.end(), payload.begin(), payload.end());
  return bytes;
}

template <class T>
std::vector<std::byte> little_endian(const std::vector<T>& values) {
  std::vector<std::byte> out;
  for (T value : values) {
    unsigned char raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T));
    // The test machine's byte order, made little-endian explicitly.
    if constexpr (std::endian::native == std::endian::big) std::reverse(raw, raw + sizeof(T));
    for (unsigned char c : raw) out.push_back(std::byte{c});
  }
  return out;
}

TEST(IoFiles, NpyRoundTripInNumpysExactLayout) {
  for (const std::vector<std::size_t>& shape :
       std::vector<std::vector<std::size_t>>{{}, {5}, {2, 3}, {2, 0, 4}, {1, 2, 3, 2}}) {
    std::size_t count = 1;
    for (std::size_t d : shape) count *= d;
    std::vector<float> values = ramp_float(count, -1.75f);
    std::vector<std::byte> file = locus::io::write_npy(shape, values);
    const std::string text = text_of(file);
    ASSERT_GE(file.size(), 10u);
    EXPECT_EQ(text.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
    const std::size_t header_length =
        static_cast<unsigned char>(text[8]) |
        (static_cast<std::size_t>(static_cast<unsigned char>(text[9])) << 8);
    EXPECT_EQ((10 + header_length) % 64, 0u);
    EXPECT_EQ(text[10 + header_length - 1], '\n');
    std::string tuple = "(";
    for (std::size_t i = 0; i < shape.size(); ++i)
      tuple += (i ? ", " : "") + std::to_string(shape[i]);
    tuple += shape.size() == 1 ? ",)" : ")";
    EXPECT_EQ(text.substr(10, header_length)
                  .rfind("{'descr': '<f4', 'fortran_order': False, 'shape': " + tuple + ", }", 0),
              0u)
        << text.substr(10, header_length);
    EXPECT_EQ(file.size(), 10 + header_length + 4 * count);

    locus::io::NpyArray back = locus::io::read_npy(file, "round.npy");
    EXPECT_EQ(back.shape, shape);
    EXPECT_EQ(back.data, values);
  }
  EXPECT_THROW(locus::io::write_npy({2, 2}, std::vector<float>(3)), locus::shape_error);
}

TEST(IoFiles, NpyReadsEverySupportedDtype) {
  const std::string shape = "'shape': (2, 2), }";
  auto read = [&](const std::string& descr, const std::vector<std::byte>& payload) {
    auto array = locus::io::read_npy(
        build_npy("{'descr': '" + descr + "', 'fortran_order': False, " + shape, payload),
        descr + ".npy");
    EXPECT_EQ(array.shape, (std::vector<std::size_t>{2, 2})) << descr;
    return array.data;
  };
  EXPECT_EQ(read("<f4", little_endian<float>({1.5f, -2.0f, 1e-30f, 3e38f})),
            (std::vector<float>{1.5f, -2.0f, 1e-30f, 3e38f}));
  const std::vector<double> doubles = {0.1, -1e200, 5e-324, 2.0};
  std::vector<float> expected_doubles;
  for (double d : doubles) expected_doubles.push_back(static_cast<float>(d));
  EXPECT_EQ(read("<f8", little_endian<double>(doubles)), expected_doubles);
  EXPECT_EQ(read("<i4", little_endian<std::int32_t>({-2147483647 - 1, -1, 0, 16777217})),
            (std::vector<float>{-2147483648.0f, -1.0f, 0.0f, static_cast<float>(16777217)}));
  EXPECT_EQ(read("<i8", little_endian<std::int64_t>({-5, 1ll << 40, 7, 0})),
            (std::vector<float>{-5.0f, static_cast<float>(1ll << 40), 7.0f, 0.0f}));
  EXPECT_EQ(read("|u1", little_endian<std::uint8_t>({0, 1, 128, 255})),
            (std::vector<float>{0, 1, 128, 255}));
  EXPECT_EQ(read("<u1", little_endian<std::uint8_t>({9, 8, 7, 6})),
            (std::vector<float>{9, 8, 7, 6}));
  EXPECT_EQ(read("|i1", little_endian<std::int8_t>({-128, -1, 0, 127})),
            (std::vector<float>{-128, -1, 0, 127}));
}

TEST(IoFiles, NpyVersions2And3AndDoubleQuotesAndFortranOrder) {
  auto payload = little_endian<float>({1, 2, 3, 4, 5, 6});
  for (int major : {2, 3}) {
    auto array = locus::io::read_npy(
        build_npy("{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (6,)}", payload,
                  major),
        "v.npy");
    EXPECT_EQ(array.shape, std::vector<std::size_t>{6});
    EXPECT_EQ(array.data, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  }
  // Column-major values of the 2x3 matrix [[1, 2, 3], [4, 5, 6]] come back in row-major order.
  auto fortran =
      locus::io::read_npy(build_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }",
                                    little_endian<float>({1, 4, 2, 5, 3, 6})),
                          "f.npy");
  EXPECT_EQ(fortran.shape, (std::vector<std::size_t>{2, 3}));
  EXPECT_EQ(fortran.data, (std::vector<float>{1, 2, 3, 4, 5, 6}));
  // A 2x2x2 check of the general reordering: element (i, j, k) at Fortran offset i + 2j + 4k.
  std::vector<float> column_major(8), row_major(8);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      for (int k = 0; k < 2; ++k) {
        float value = static_cast<float>(100 * i + 10 * j + k);
        column_major[static_cast<std::size_t>(i + 2 * j + 4 * k)] = value;
        row_major[static_cast<std::size_t>(4 * i + 2 * j + k)] = value;
      }
  auto cube =
      locus::io::read_npy(build_npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2, 2), }",
                                    little_endian<float>(column_major)),
                          "cube.npy");
  EXPECT_EQ(cube.data, row_major);
}

TEST(IoFiles, NpyMalformedFilesAreFormatErrors) {
  const auto four = little_endian<float>({1, 2, 3, 4});
  const std::string good = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";
  ASSERT_EQ(locus::io::read_npy(build_npy(good, four), "good.npy").data.size(), 4u);

  auto refuse = [](const std::vector<std::byte>& bytes, const std::string& why) {
    expect_throw_with<format_error>([&] { locus::io::read_npy(bytes, "bad.npy"); }, {"bad.npy"});
    (void)why;
  };
  std::vector<std::byte> bad_magic = build_npy(good, four);
  bad_magic[1] = std::byte{'n'};
  refuse(bad_magic, "magic");
  std::vector<std::byte> bad_version = build_npy(good, four);
  bad_version[6] = std::byte{4};
  refuse(bad_version, "version");
  std::vector<std::byte> long_header = build_npy(good, four);
  long_header[9] = std::byte{0x7f};
  refuse(long_header, "header length past the end");
  refuse(std::vector<std::byte>(long_header.begin(), long_header.begin() + 9), "too short");
  refuse(build_npy(good, little_endian<float>({1, 2, 3})), "payload too short");
  refuse(build_npy(good, little_endian<float>({1, 2, 3, 4, 5})), "payload too long");
  refuse(build_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, "
                   "4294967296), }",
                   four),
         "shape overflows");
  refuse(build_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }", four),
         "huge shape");
  refuse(
      build_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
                four),
      "dimension overflows");
  refuse(build_npy("{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", four),
         "big-endian");
  refuse(build_npy("{'descr': '<f2', 'fortran_order': False, 'shape': (8,), }", four), "float16");
  refuse(build_npy("{'descr': '<f4', 'shape': (4,), }", four), "missing key");
  refuse(build_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'extra': 1}", four),
         "extra key");
  refuse(build_npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (4,)}", four),
         "repeated key");
  refuse(build_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4), }", four),
         "not a tuple");
  refuse(build_npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (4,), }", four), "not a bool");
  refuse(build_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }", four), "negative");
  refuse(build_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), } x", four),
         "trailing text");
  refuse(build_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), ", four),
         "unterminated");
}

}  // namespace
