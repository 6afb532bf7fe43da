// In-memory zip archives over libzip: the container of a .keras file (config.json,
// metadata.json, model.weights.h5). Reading works on bytes already in memory, so that
// one code path serves files, buffers and the fuzzers; every way an archive can be wrong
// is a format_error naming the archive and the entry, never a crash or an unbounded
// allocation.
#pragma once

#include <zip.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"

namespace locus::io {

namespace detail {

/// Owns a zip_error_t, whose message libzip formats lazily and must be freed.
class ZipErrorText {
 public:
  ZipErrorText() noexcept { zip_error_init(&error_); }
  ZipErrorText(const ZipErrorText&) = delete;
  ZipErrorText& operator=(const ZipErrorText&) = delete;
  ~ZipErrorText() { zip_error_fini(&error_); }
  zip_error_t* get() noexcept { return &error_; }
  std::string text() { return zip_error_strerror(&error_); }

 private:
  zip_error_t error_;
};

/// Closes an entry opened with zip_fopen_index.
struct ZipFileCloser {
  void operator()(zip_file_t* file) const noexcept { zip_fclose(file); }
};

}  // namespace detail

/// A read-only zip archive held in memory. Move-only: it owns the bytes and the libzip
/// handle that points into them.
class ZipReader {
 public:
  /// Opens `bytes` as a zip archive; `what` names it in messages (a file name, or
  /// "<memory>"). libzip checks the central directory against the local headers
  /// (ZIP_CHECKCONS), so an archive whose two indexes disagree is refused here rather
  /// than read inconsistently later.
  static ZipReader from_bytes(std::vector<std::byte> bytes, std::string what) {
    // libzip treats an empty source as an empty archive (it is how it creates new ones);
    // a file, though, is a zip only if it has at least the 22-byte end-of-central-directory
    // record.
    if (bytes.size() < 22)
      throw format_error(what + ": not a zip archive (" + std::to_string(bytes.size()) +
                         " bytes, shorter than an end-of-central-directory record)");
    ZipReader reader;
    reader.what_ = std::move(what);
    // The bytes live on the heap behind a unique_ptr so that libzip's pointer into them
    // stays valid when the reader is moved.
    reader.bytes_ = std::make_unique<std::vector<std::byte>>(std::move(bytes));
    detail::ZipErrorText error;
    zip_source_t* source =
        zip_source_buffer_create(reader.bytes_->data(), reader.bytes_->size(), 0, error.get());
    if (source == nullptr)
      throw format_error(reader.what_ + ": cannot open as a zip archive: " + error.text());
    reader.archive_ = zip_open_from_source(source, ZIP_RDONLY | ZIP_CHECKCONS, error.get());
    if (reader.archive_ == nullptr) {
      zip_source_free(source);  // only a successful open takes ownership of the source
      throw format_error(reader.what_ + ": not a valid zip archive: " + error.text());
    }
    return reader;
  }

  ZipReader(ZipReader&& other) noexcept
      : what_(std::move(other.what_)),
        bytes_(std::move(other.bytes_)),
        archive_(std::exchange(other.archive_, nullptr)) {}
  ZipReader& operator=(ZipReader&& other) noexcept {
    if (this != &other) {
      close();
      what_ = std::move(other.what_);
      bytes_ = std::move(other.bytes_);
      archive_ = std::exchange(other.archive_, nullptr);
    }
    return *this;
  }
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;
  ~ZipReader() { close(); }

  /// The name given to from_bytes, for messages of callers.
  const std::string& what() const noexcept { return what_; }

  /// The entry names, in the order of the central directory.
  std::vector<std::string> names() const {
    std::vector<std::string> result;
    zip_int64_t count = zip_get_num_entries(archive_, 0);
    for (zip_int64_t i = 0; i < count; ++i) {
      const char* name = zip_get_name(archive_, static_cast<zip_uint64_t>(i), 0);
      if (name == nullptr)
        throw format_error(what_ + ": entry " + std::to_string(i) +
                           " has no readable name: " + zip_strerror(archive_));
      result.emplace_back(name);
    }
    return result;
  }

  bool contains(const std::string& name) const { return locate(name) >= 0; }

  /// The uncompressed bytes of entry `name`. format_error if it is missing, larger than
  /// max_bytes (by the size the archive declares, and again by the bytes actually
  /// inflated, since the declaration may lie), encrypted, compressed with a method libzip
  /// cannot decode, or if its data or CRC is wrong.
  std::vector<std::byte> read(const std::string& name, std::size_t max_bytes) const {
    const std::string where = what_ + ": entry '" + name + "'";
    zip_int64_t index = locate(name);
    if (index < 0) throw format_error(where + " is missing");
    const auto entry = static_cast<zip_uint64_t>(index);
    zip_stat_t stat;
    zip_stat_init(&stat);
    if (zip_stat_index(archive_, entry, 0, &stat) != 0)
      throw format_error(where + ": cannot stat: " + zip_strerror(archive_));
    if ((stat.valid & ZIP_STAT_SIZE) == 0) throw format_error(where + ": has no declared size");
    if (stat.size > max_bytes)
      throw format_error(where + ": declares " + std::to_string(stat.size) +
                         " bytes, more than the " + std::to_string(max_bytes) + "-byte limit");
    if ((stat.valid & ZIP_STAT_ENCRYPTION_METHOD) != 0 && stat.encryption_method != ZIP_EM_NONE)
      throw format_error(where + ": is encrypted");
    if ((stat.valid & ZIP_STAT_COMP_METHOD) != 0 &&
        !zip_compression_method_supported(stat.comp_method, 0))
      throw format_error(where + ": compression method " + std::to_string(stat.comp_method) +
                         " is not supported");
    std::unique_ptr<zip_file_t, detail::ZipFileCloser> file(zip_fopen_index(archive_, entry, 0));
    if (!file) throw format_error(where + ": cannot open: " + zip_strerror(archive_));

    // The declared size only bounds the first allocation; the buffer grows with the data
    // actually inflated, so a lying header cannot make us allocate more than max_bytes + 1
    // chunk.
    std::vector<std::byte> data;
    data.reserve(
        static_cast<std::size_t>(std::min<zip_uint64_t>(stat.size, zip_uint64_t{64} << 20)));
    constexpr std::size_t chunk = std::size_t{1} << 16;
    std::size_t used = 0;
    for (;;) {
      data.resize(used + chunk);
      zip_int64_t n = zip_fread(file.get(), data.data() + used, chunk);
      if (n < 0) throw format_error(where + ": corrupt data: " + zip_file_strerror(file.get()));
      if (n == 0) break;
      used += static_cast<std::size_t>(n);
      if (used > max_bytes)
        throw format_error(where + ": inflates to more than the " + std::to_string(max_bytes) +
                           "-byte limit");
    }
    data.resize(used);
    if (used != stat.size)
      throw format_error(where + ": holds " + std::to_string(used) + " bytes but declares " +
                         std::to_string(stat.size));
    return data;
  }

 private:
  ZipReader() = default;

  zip_int64_t locate(const std::string& name) const {
    // A name with a NUL inside would be cut short by libzip and match another entry.
    if (name.find('\0') != std::string::npos) return -1;
    return zip_name_locate(archive_, name.c_str(), 0);
  }

  void close() noexcept {
    if (archive_ != nullptr) zip_discard(archive_);  // read-only: nothing to write back
    archive_ = nullptr;
  }

  std::string what_;
  std::unique_ptr<std::vector<std::byte>> bytes_;
  zip_t* archive_ = nullptr;
};

/// Builds a zip archive in memory. Entries are stored uncompressed (ZIP_CM_STORE), as
/// Keras writes .keras files: the weights are HDF5 floats that barely compress, and a
/// stored entry can be read back without inflating. Move-only.
class ZipWriter {
 public:
  /// `what` names the archive in messages.
  explicit ZipWriter(std::string what = "<memory>") : what_(std::move(what)) {
    detail::ZipErrorText error;
    buffer_ = zip_source_buffer_create(nullptr, 0, 0, error.get());
    if (buffer_ == nullptr) throw io_error(what_ + ": cannot create a zip buffer: " + error.text());
    // zip_close frees the archive's source; keep the buffer alive to read the result.
    zip_source_keep(buffer_);
    archive_ = zip_open_from_source(buffer_, ZIP_TRUNCATE, error.get());
    if (archive_ == nullptr) {
      // A failed open takes no ownership: drop the creation reference and the kept one.
      zip_source_free(buffer_);
      zip_source_free(buffer_);
      buffer_ = nullptr;
      throw io_error(what_ + ": cannot create a zip archive: " + error.text());
    }
  }

  ZipWriter(ZipWriter&& other) noexcept
      : what_(std::move(other.what_)),
        contents_(std::move(other.contents_)),
        buffer_(std::exchange(other.buffer_, nullptr)),
        archive_(std::exchange(other.archive_, nullptr)),
        entries_(other.entries_) {}
  ZipWriter& operator=(ZipWriter&& other) noexcept {
    if (this != &other) {
      release();
      what_ = std::move(other.what_);
      contents_ = std::move(other.contents_);
      buffer_ = std::exchange(other.buffer_, nullptr);
      archive_ = std::exchange(other.archive_, nullptr);
      entries_ = other.entries_;
    }
    return *this;
  }
  ZipWriter(const ZipWriter&) = delete;
  ZipWriter& operator=(const ZipWriter&) = delete;
  ~ZipWriter() { release(); }

  /// Adds entry `name` with a copy of `bytes`. io_error if the name is empty, holds a NUL,
  /// is already in the archive, or if finish() was called.
  void add(const std::string& name, std::span<const std::byte> bytes) {
    const std::string where = what_ + ": entry '" + name + "'";
    if (archive_ == nullptr) throw io_error(where + ": the archive is already finished");
    if (name.empty() || name.find('\0') != std::string::npos)
      throw io_error(where + ": not a valid entry name");
    if (zip_name_locate(archive_, name.c_str(), 0) >= 0)
      throw io_error(where + ": is already in the archive");
    // libzip reads the data only in zip_close, so the copy must live until then.
    contents_.push_back(std::make_unique<std::vector<std::byte>>(bytes.begin(), bytes.end()));
    const std::vector<std::byte>& copy = *contents_.back();
    zip_source_t* source = zip_source_buffer(archive_, copy.data(), copy.size(), 0);
    if (source == nullptr) throw io_error(where + ": cannot add: " + zip_strerror(archive_));
    zip_int64_t index = zip_file_add(archive_, name.c_str(), source, ZIP_FL_ENC_UTF_8);
    if (index < 0) {
      zip_source_free(source);
      throw io_error(where + ": cannot add: " + zip_strerror(archive_));
    }
    if (zip_set_file_compression(archive_, static_cast<zip_uint64_t>(index), ZIP_CM_STORE, 0) != 0)
      throw io_error(where + ": cannot set stored compression: " + zip_strerror(archive_));
    ++entries_;
  }

  /// Writes the central directory and returns the archive's bytes. The writer is spent
  /// afterwards.
  std::vector<std::byte> finish() {
    if (archive_ == nullptr) throw io_error(what_ + ": the archive is already finished");
    if (entries_ == 0) {
      // libzip removes an archive that has no entries instead of writing one; a file with
      // no entries is still a valid zip: just the end-of-central-directory record.
      release();
      std::vector<std::byte> empty(22, std::byte{0});
      const unsigned char signature[4] = {'P', 'K', 5, 6};
      for (int i = 0; i < 4; ++i) empty[static_cast<std::size_t>(i)] = std::byte{signature[i]};
      return empty;
    }
    if (zip_close(archive_) != 0) {
      std::string reason = zip_strerror(archive_);
      release();
      throw io_error(what_ + ": cannot write the zip archive: " + reason);
    }
    archive_ = nullptr;
    contents_.clear();

    zip_stat_t stat;
    zip_stat_init(&stat);
    std::string reason;
    std::vector<std::byte> result;
    if (zip_source_open(buffer_) != 0) {
      reason = zip_error_strerror(zip_source_error(buffer_));
    } else {
      if (zip_source_stat(buffer_, &stat) != 0 || (stat.valid & ZIP_STAT_SIZE) == 0) {
        reason = zip_error_strerror(zip_source_error(buffer_));
      } else {
        result.resize(static_cast<std::size_t>(stat.size));
        std::size_t used = 0;
        while (used < result.size()) {
          zip_int64_t n = zip_source_read(buffer_, result.data() + used, result.size() - used);
          if (n <= 0) {
            reason = n < 0 ? zip_error_strerror(zip_source_error(buffer_)) : "short read";
            break;
          }
          used += static_cast<std::size_t>(n);
        }
      }
      zip_source_close(buffer_);
    }
    release();
    if (!reason.empty()) throw io_error(what_ + ": cannot read back the zip archive: " + reason);
    return result;
  }

 private:
  void release() noexcept {
    if (archive_ != nullptr) zip_discard(archive_);
    archive_ = nullptr;
    if (buffer_ != nullptr) zip_source_free(buffer_);
    buffer_ = nullptr;
    contents_.clear();
  }

  std::string what_;
  std::vector<std::unique_ptr<std::vector<std::byte>>> contents_;
  zip_source_t* buffer_ = nullptr;
  zip_t* archive_ = nullptr;
  std::size_t entries_ = 0;
};

}  // namespace locus::io
