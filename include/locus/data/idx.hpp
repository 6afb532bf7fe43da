// The IDX file format (MNIST, Fashion-MNIST, EMNIST...), plain or gzip-compressed.
//
// An IDX file is a 4-byte magic (0x00 0x00 <type> <ndim>), ndim big-endian 32-bit
// extents, then the elements, row-major and big-endian:
//   0x08 unsigned byte, 0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
// A file that starts with the gzip magic (0x1f 0x8b) is decompressed with zlib on the fly,
// whatever its name. Every inconsistency (magic, type, rank, sizes, truncation, trailing
// bytes, gzip corruption) is a locus::format_error naming the file; a file that cannot be
// opened is a locus::io_error. Sizes are checked before anything large is allocated.
#pragma once

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "../backend/cpu/backend.hpp"
#include "../device.hpp"
#include "../error.hpp"
#include "../shape.hpp"
#include "../tensor.hpp"

namespace locus::data {

/// The element type codes of the IDX format.
enum class idx_type : std::uint8_t {
  u8 = 0x08,   ///< unsigned byte
  i8 = 0x09,   ///< signed byte
  i16 = 0x0B,  ///< 16-bit signed integer
  i32 = 0x0C,  ///< 32-bit signed integer
  f32 = 0x0D,  ///< IEEE 754 single
  f64 = 0x0E,  ///< IEEE 754 double
};

/// Bytes per element of a type code (0 for a code that is not an IDX type).
constexpr std::size_t idx_element_size(idx_type t) noexcept {
  switch (t) {
    case idx_type::u8:
    case idx_type::i8:
      return 1;
    case idx_type::i16:
      return 2;
    case idx_type::i32:
    case idx_type::f32:
      return 4;
    case idx_type::f64:
      return 8;
  }
  return 0;
}

/// "ubyte (0x08)" and so on, for messages.
inline std::string idx_type_name(idx_type t) {
  const char* name = "unknown";
  switch (t) {
    case idx_type::u8:
      name = "ubyte";
      break;
    case idx_type::i8:
      name = "sbyte";
      break;
    case idx_type::i16:
      name = "short";
      break;
    case idx_type::i32:
      name = "int";
      break;
    case idx_type::f32:
      name = "float";
      break;
    case idx_type::f64:
      name = "double";
      break;
  }
  char code[8];
  std::snprintf(code, sizeof code, "0x%02X", static_cast<unsigned>(t));
  return std::string(name) + " (" + code + ")";
}

namespace detail {

template <class S, class T>
void convert_idx_as(const std::byte* src, std::size_t count, T* out, T scale) {
  const bool scaled = std::is_floating_point_v<T> && scale != T(1);
  if constexpr (std::is_same_v<S, std::uint8_t> && std::is_floating_point_v<T>) {
    // One table lookup per pixel: the common case (8-bit images scaled to [0, 1]).
    T table[256];
    for (int v = 0; v < 256; ++v) table[v] = scaled ? static_cast<T>(v) * scale : static_cast<T>(v);
    const auto* p = reinterpret_cast<const unsigned char*>(src);
    for (std::size_t i = 0; i < count; ++i) out[i] = table[p[i]];
  } else {
    for (std::size_t i = 0; i < count; ++i) {
      S v;
      std::memcpy(&v, src + i * sizeof(S), sizeof(S));
      out[i] = static_cast<T>(v);
      if (scaled) out[i] *= scale;
    }
  }
}

/// `count` elements of type `type` (host byte order) at `src`, converted to T, times
/// `scale` (only for floating-point T and a scale other than 1).
template <class T>
void convert_idx(idx_type type, const std::byte* src, std::size_t count, T* out, T scale) {
  static_assert(std::is_arithmetic_v<T>, "locus: IDX elements convert to arithmetic types");
  switch (type) {
    case idx_type::u8:
      return convert_idx_as<std::uint8_t>(src, count, out, scale);
    case idx_type::i8:
      return convert_idx_as<std::int8_t>(src, count, out, scale);
    case idx_type::i16:
      return convert_idx_as<std::int16_t>(src, count, out, scale);
    case idx_type::i32:
      return convert_idx_as<std::int32_t>(src, count, out, scale);
    case idx_type::f32:
      return convert_idx_as<float>(src, count, out, scale);
    case idx_type::f64:
      return convert_idx_as<double>(src, count, out, scale);
  }
}

}  // namespace detail

/// The content of an IDX file: its type code, its extents and its elements, already
/// converted from big-endian to the host's byte order (so `bytes` holds `size()` values of
/// the C++ type matching `type`, back to back).
struct idx_array {
  idx_type type = idx_type::u8;
  Shape dims;
  std::vector<std::byte> bytes;

  /// Number of elements (the product of the extents).
  std::size_t size() const noexcept { return dims.size(); }
  std::size_t element_size() const noexcept { return idx_element_size(type); }

  /// Element i (row-major), converted to T with static_cast.
  template <class T>
  T at(std::size_t i) const {
    if (i >= size()) {
      throw argument_error("locus::data::idx_array::at: index " + std::to_string(i) +
                           " is out of range for " + std::to_string(size()) + " elements");
    }
    T v{};
    convert(&v, i, 1);
    return v;
  }

  /// Elements [first, first + count) converted to T with static_cast, times `scale`
  /// (the multiplication happens only for floating-point T and a scale other than 1).
  template <class T>
  void convert(T* out, std::size_t first, std::size_t count, T scale = T(1)) const {
    if (first > size() || count > size() - first) {
      throw argument_error("locus::data::idx_array::convert: range [" + std::to_string(first) +
                           ", " + std::to_string(first) + " + " + std::to_string(count) +
                           ") is out of range for " + std::to_string(size()) + " elements");
    }
    detail::convert_idx(type, bytes.data() + first * element_size(), count, out, scale);
  }

  /// All elements, converted to T.
  template <class T>
  std::vector<T> to_vector() const {
    std::vector<T> v(size());
    convert(v.data(), 0, v.size());
    return v;
  }

  /// All elements as a host tensor of shape `dims`, converted to T.
  template <Element T>
  Tensor<T, Device<CPU>> to_tensor() const {
    Tensor<T, Device<CPU>> t(uninitialized, dims);
    convert(t.data(), 0, t.size());
    return t;
  }
};

namespace detail {

inline std::string idx_where(const std::filesystem::path& p) {
  return "locus::data::read_idx: '" + p.string() + "': ";
}

/// Reads the bytes of a plain or a gzip file, turning every failure into an exception.
class idx_source {
 public:
  explicit idx_source(const std::filesystem::path& path) : path_(path) {
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (!std::filesystem::exists(st)) {
      throw io_error(idx_where(path) + "cannot open the file: it does not exist");
    }
    if (std::filesystem::is_directory(st)) {
      throw io_error(idx_where(path) + "cannot open the file: it is a directory");
    }
    file_ = std::fopen(path.string().c_str(), "rb");
    if (!file_) {
      throw io_error(idx_where(path) + "cannot open the file: " + std::strerror(errno));
    }
    file_size_ = std::filesystem::file_size(path, ec);
    if (ec) {
      close();
      throw io_error(idx_where(path) + "cannot read the file size: " + ec.message());
    }
    unsigned char head[2] = {0, 0};
    const std::size_t got = std::fread(head, 1, 2, file_);
    if (got == 2 && head[0] == 0x1f && head[1] == 0x8b) {
      // gzip: reopen through zlib, with a large buffer so that inflation runs in big blocks.
      std::fclose(file_);
      file_ = nullptr;
      gz_ = gzopen(path.string().c_str(), "rb");
      if (!gz_) {
        throw io_error(idx_where(path) + "cannot open the gzip file: " + std::strerror(errno));
      }
      gzbuffer(gz_, 1u << 20);
    } else if (std::fseek(file_, 0, SEEK_SET) != 0) {
      const int err = errno;
      close();
      throw io_error(idx_where(path) + "cannot rewind the file: " + std::strerror(err));
    }
  }
  idx_source(const idx_source&) = delete;
  idx_source& operator=(const idx_source&) = delete;
  ~idx_source() { close(); }

  bool gzip() const noexcept { return gz_ != nullptr; }
  /// Size of the file on disk (compressed size for gzip).
  std::uintmax_t file_size() const noexcept { return file_size_; }

  /// Reads up to n bytes; fewer only at the end of the data.
  std::size_t read(void* dst, std::size_t n) {
    auto* out = static_cast<unsigned char*>(dst);
    std::size_t total = 0;
    while (total < n) {
      const std::size_t want = std::min<std::size_t>(n - total, std::size_t{1} << 30);
      std::size_t got = 0;
      if (gz_) {
        const int r = gzread(gz_, out + total, static_cast<unsigned>(want));
        check_gzip();
        if (r < 0) throw format_error(idx_where(path_) + "the gzip stream is corrupt");
        got = static_cast<std::size_t>(r);
      } else {
        got = std::fread(out + total, 1, want, file_);
        if (got < want && std::ferror(file_)) {
          throw io_error(idx_where(path_) + "read error: " + std::strerror(errno));
        }
      }
      total += got;
      if (got < want) break;
    }
    return total;
  }

 private:
  void check_gzip() {
    int code = Z_OK;
    const char* msg = gzerror(gz_, &code);
    if (code == Z_OK) return;
    const std::string text = msg ? msg : "unknown zlib error";
    if (code == Z_ERRNO) throw io_error(idx_where(path_) + "read error: " + std::strerror(errno));
    if (code == Z_BUF_ERROR) {
      throw format_error(idx_where(path_) +
                         "the gzip stream ends unexpectedly (the .gz file is truncated): " + text);
    }
    if (code == Z_MEM_ERROR) {
      throw out_of_memory_error(idx_where(path_) + "zlib ran out of memory", 0, 0);
    }
    throw format_error(idx_where(path_) + "the gzip stream is corrupt: " + text);
  }

  void close() noexcept {
    if (file_) std::fclose(file_);
    if (gz_) gzclose(gz_);
    file_ = nullptr;
    gz_ = nullptr;
  }

  std::filesystem::path path_;
  std::FILE* file_ = nullptr;
  gzFile gz_ = nullptr;
  std::uintmax_t file_size_ = 0;
};

inline std::uint32_t load_be32(const unsigned char* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         std::uint32_t{p[3]};
}

/// Big-endian elements to host order, in place.
inline void to_host_order(std::byte* data, std::size_t nbytes, std::size_t esize) noexcept {
  if constexpr (std::endian::native == std::endian::big) {
    (void)data;
    (void)nbytes;
    (void)esize;
  } else {
    if (esize == 1) return;
    auto* p = reinterpret_cast<unsigned char*>(data);
    for (std::size_t i = 0; i + esize <= nbytes; i += esize) std::reverse(p + i, p + i + esize);
  }
}

// Deflate cannot expand data by more than 1032:1, so a gzip file of N bytes never holds
// more than about 1032 * N bytes: a header that promises more is corrupt, and we say so
// before allocating anything.
inline constexpr std::uintmax_t max_deflate_ratio = 1032;

}  // namespace detail

namespace detail {

/// What the header of an IDX file says, after it has been checked.
struct idx_header {
  idx_type type = idx_type::u8;
  Shape dims;
  std::size_t data_bytes = 0;
  /// A plain file whose size on disk matches the header exactly (a gzip file's
  /// uncompressed size is known only once the stream has ended).
  bool size_verified = false;
};

/// "the header (ubyte (0x08), dimensions [...]) promises N data bytes", for messages.
inline std::string idx_promise(const idx_header& h) {
  return "the header (" + idx_type_name(h.type) + ", dimensions " + to_string(h.dims) +
         ") promises " + std::to_string(h.data_bytes) + " data bytes";
}

/// Reads and checks the header of the IDX file `src` reads (see read_idx_stream), leaving
/// `src` at the first data byte.
inline idx_header read_idx_header(idx_source& src, const std::string& where) {
  unsigned char magic[4];
  const std::size_t got_magic = src.read(magic, 4);
  if (got_magic < 4) {
    throw format_error(where + "truncated header: the file holds " + std::to_string(got_magic) +
                       " byte(s), an IDX header needs at least 8");
  }
  if (magic[0] != 0 || magic[1] != 0) {
    char hex[64];
    std::snprintf(hex, sizeof hex, "%02x %02x %02x %02x", magic[0], magic[1], magic[2], magic[3]);
    throw format_error(where + "bad magic: expected 00 00 <type> <ndim>, found " + hex +
                       " (not an IDX file)");
  }
  idx_header h;
  h.type = static_cast<idx_type>(magic[2]);
  const std::size_t esize = idx_element_size(h.type);
  if (esize == 0) {
    char code[8];
    std::snprintf(code, sizeof code, "0x%02X", magic[2]);
    throw format_error(where + "unknown element type code " + code +
                       " (IDX knows 0x08 ubyte, 0x09 sbyte, 0x0B short, 0x0C int, 0x0D float, "
                       "0x0E double)");
  }
  const std::size_t ndim = magic[3];
  if (ndim == 0 || ndim > Shape::max_rank) {
    throw format_error(where + "the header declares " + std::to_string(ndim) +
                       " dimensions; locus reads IDX files with 1 to " +
                       std::to_string(Shape::max_rank));
  }

  unsigned char raw_dims[4 * Shape::max_rank];
  const std::size_t got_dims = src.read(raw_dims, 4 * ndim);
  if (got_dims < 4 * ndim) {
    throw format_error(where + "truncated header: " + std::to_string(ndim) + " dimensions need " +
                       std::to_string(4 * ndim) + " bytes after the magic, the file holds " +
                       std::to_string(got_dims));
  }
  const std::size_t header_bytes = 4 + 4 * ndim;
  std::size_t count = 1;
  bool overflow = false;
  for (std::size_t d = 0; d < ndim; ++d) {
    const std::uint32_t v = load_be32(raw_dims + 4 * d);
    if (v > static_cast<std::uint32_t>(std::numeric_limits<std::int32_t>::max())) {
      throw format_error(where + "dimension " + std::to_string(d) + " is " + std::to_string(v) +
                         ", negative as a signed 32-bit integer");
    }
    h.dims.push_back(v);
    if (v != 0 && count > std::numeric_limits<std::size_t>::max() / v) overflow = true;
    count *= v;
  }
  const auto max_bytes = static_cast<std::size_t>(std::numeric_limits<std::ptrdiff_t>::max());
  if (overflow || count > (max_bytes - header_bytes) / esize) {
    throw format_error(where + "the dimensions " + to_string(h.dims) +
                       " multiply to more elements than any file can hold");
  }
  h.data_bytes = count * esize;
  const std::string promised = idx_promise(h);

  if (!src.gzip()) {
    // Plain file: the size on disk must match exactly, checked before allocating.
    const std::uintmax_t expected = header_bytes + h.data_bytes;
    if (src.file_size() < expected) {
      throw format_error(where + "truncated data: " + promised + ", but only " +
                         std::to_string(src.file_size() - header_bytes) + " follow the header");
    }
    if (src.file_size() > expected) {
      throw format_error(where + "trailing data: " + promised + ", but " +
                         std::to_string(src.file_size() - expected) + " more byte(s) follow them");
    }
    h.size_verified = true;
  } else {
    const std::uintmax_t bound = src.file_size() * max_deflate_ratio + 4096;
    if (h.data_bytes > bound) {
      throw format_error(where + promised + ", more than a gzip file of " +
                         std::to_string(src.file_size()) + " bytes can hold (at most about " +
                         std::to_string(bound) + "); the dimensions are corrupt");
    }
  }
  return h;
}

/// Throws format_error when `src` holds more bytes (reading on to the end also makes zlib
/// verify the CRC and length of a gzip stream).
inline void check_idx_end(idx_source& src, const std::string& where, const idx_header& h) {
  std::uintmax_t extra = 0;
  unsigned char sink[1 << 14];
  for (std::size_t n; (n = src.read(sink, sizeof sink)) > 0;) extra += n;
  if (extra) {
    throw format_error(where + "trailing data: " + idx_promise(h) + ", but " +
                       std::to_string(extra) + " more byte(s) follow them");
  }
}

/// Reads an IDX file in chunks: checks the header, calls `begin(header)` (which may throw
/// to reject the file before any data is read), passes the data in host byte order to
/// `consume(const std::byte* data, std::size_t first_element, std::size_t elements)`, and
/// checks that the data ends exactly where the header says.
template <class Begin, class Consume>
void read_idx_stream(const std::filesystem::path& path, Begin&& begin, Consume&& consume) {
  idx_source src(path);
  const std::string where = idx_where(path);
  const idx_header h = read_idx_header(src, where);
  const std::size_t esize = idx_element_size(h.type);
  const std::string promised = idx_promise(h);
  begin(std::as_const(h));

  // 4 MiB chunks: large enough that zlib inflates straight into them, small enough to
  // stay in cache while they are converted. A multiple of every element size.
  constexpr std::size_t chunk = std::size_t{4} << 20;
  std::vector<std::byte> buf(std::min(chunk, h.data_bytes));
  for (std::size_t done = 0; done < h.data_bytes;) {
    const std::size_t want = std::min(chunk, h.data_bytes - done);
    const std::size_t got = src.read(buf.data(), want);
    if (got < want) {
      throw format_error(where + "truncated data: " + promised + ", but " +
                         (src.gzip() ? "the decompressed stream holds" : "the file holds") +
                         " only " + std::to_string(done + got) + " after the header");
    }
    to_host_order(buf.data(), want, esize);
    consume(static_cast<const std::byte*>(buf.data()), done / esize, want / esize);
    done += want;
  }
  check_idx_end(src, where, h);
}

/// Reads an IDX file straight into a host tensor of T, chunk by chunk (no copy of the
/// whole file in between). `shape_for(header)` checks the header (throwing format_error
/// to reject it) and returns the shape of the whole array as a tensor; the first
/// `limit` entries of its first axis are kept.
template <Element T, class ShapeFor>
Tensor<T, Device<CPU>> read_idx_tensor(const std::filesystem::path& path, ShapeFor&& shape_for,
                                       T scale, std::size_t limit) {
  Tensor<T, Device<CPU>> t;
  idx_type type = idx_type::u8;
  std::size_t keep = 0;
  read_idx_stream(
      path,
      [&](const idx_header& h) {
        Shape s = shape_for(h);
        type = h.type;
        if (s.rank() > 0) s[0] = std::min(s[0], limit);
        t = Tensor<T, Device<CPU>>(uninitialized, s);
        keep = t.size();
      },
      [&](const std::byte* data, std::size_t first, std::size_t n) {
        if (first < keep)
          convert_idx(type, data, std::min(n, keep - first), t.data() + first, scale);
      });
  return t;
}

}  // namespace detail

/// Reads an IDX file (plain or gzip-compressed, detected from its first bytes).
inline idx_array read_idx(const std::filesystem::path& path) {
  idx_array a;
  detail::read_idx_stream(
      path,
      [&](const detail::idx_header& h) {
        a.type = h.type;
        a.dims = h.dims;
        // A gzip header may still lie about the size: grow as the data arrives.
        a.bytes.reserve(h.size_verified ? h.data_bytes
                                        : std::min(h.data_bytes, std::size_t{64} << 20));
      },
      [&](const std::byte* data, std::size_t, std::size_t n) {
        a.bytes.insert(a.bytes.end(), data, data + n * a.element_size());
      });
  return a;
}

/// All samples up to this count (the default of every `limit` parameter).
inline constexpr std::size_t all_samples = std::numeric_limits<std::size_t>::max();

/// Images from an IDX file of shape [N, rows, cols] (or [N, rows, cols, channels]) as a
/// float tensor [min(N, limit), rows, cols, 1] (NHWC, like Keras), each value times `scale`
/// (8-bit pixels land in [0, 1] with the default).
inline Tensor<float, Device<CPU>> read_idx_images(const std::filesystem::path& path,
                                                  float scale = 1.0f / 255,
                                                  std::size_t limit = all_samples) {
  return detail::read_idx_tensor<float>(
      path,
      [&](const detail::idx_header& h) {
        if (h.dims.rank() != 3 && h.dims.rank() != 4) {
          throw format_error(detail::idx_where(path) +
                             "expected images of shape [N, rows, cols] or [N, rows, cols, "
                             "channels], found dimensions " +
                             to_string(h.dims));
        }
        Shape s = h.dims;
        if (s.rank() == 3) s.push_back(1);
        return s;
      },
      scale, limit);
}

/// Labels from a one-dimensional IDX file of integers, as int32 [min(N, limit)].
inline Tensor<std::int32_t, Device<CPU>> read_idx_labels(const std::filesystem::path& path,
                                                         std::size_t limit = all_samples) {
  return detail::read_idx_tensor<std::int32_t>(
      path,
      [&](const detail::idx_header& h) {
        if (h.dims.rank() != 1) {
          throw format_error(detail::idx_where(path) +
                             "expected labels of shape [N], found dimensions " + to_string(h.dims));
        }
        if (h.type == idx_type::f32 || h.type == idx_type::f64) {
          throw format_error(detail::idx_where(path) +
                             "expected integer labels, found elements of type " +
                             idx_type_name(h.type));
        }
        return h.dims;
      },
      std::int32_t{1}, limit);
}

}  // namespace locus::data
