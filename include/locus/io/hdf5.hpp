// RAII over the HDF5 C API, reduced to what model files need: groups, string attributes,
// and numeric datasets, in files held in memory (the core driver), since .keras archives
// carry their weights file as a zip entry and .h5 files are read whole anyway.
//
// HDF5 prints its error stack to stderr by default; here it is silenced and every failure
// becomes a format_error (reading) or io_error (writing) that names the file, the object
// path and HDF5's own innermost message. Reading runs on untrusted (fuzzed) files, so the
// element counts of datasets and attributes are checked against the bytes the file stores
// before anything is allocated, and links or storage that would reach outside the image
// (soft and external links, external raw data, virtual datasets) are refused.
#pragma once

#include <hdf5.h>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "../error.hpp"

namespace locus::io {

namespace detail {

/// Turns off HDF5's automatic printing of error stacks. The default error stack is per
/// thread in thread-safe builds of HDF5, hence once per thread.
inline void silence_hdf5() {
  thread_local const bool silenced = [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)silenced;
}

/// The description of the innermost entry of the current error stack (the place where
/// HDF5 first detected the problem, the most specific message), then clears the stack.
inline std::string hdf5_error_message() {
  std::string message;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned n, const H5E_error2_t* entry, void* data) -> herr_t {
        if (n == 0 && entry != nullptr && entry->desc != nullptr)
          *static_cast<std::string*>(data) = entry->desc;
        return 0;
      },
      &message);
  H5Eclear2(H5E_DEFAULT);
  return message.empty() ? std::string("unknown HDF5 error") : message;
}

/// An HDF5 identifier closed by `Close` (H5Oclose, H5Aclose, ...). Move-only.
template <herr_t (*Close)(hid_t)>
class H5Handle {
 public:
  H5Handle() noexcept = default;
  explicit H5Handle(hid_t id) noexcept : id_(id) {}
  H5Handle(H5Handle&& other) noexcept : id_(std::exchange(other.id_, H5I_INVALID_HID)) {}
  H5Handle& operator=(H5Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
    }
    return *this;
  }
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() { reset(); }

  hid_t get() const noexcept { return id_; }
  bool valid() const noexcept { return id_ >= 0; }
  void reset() noexcept {
    if (id_ >= 0) Close(id_);
    id_ = H5I_INVALID_HID;
  }

 private:
  hid_t id_ = H5I_INVALID_HID;
};

using H5Object = H5Handle<H5Oclose>;
using H5Attribute = H5Handle<H5Aclose>;
using H5Dataspace = H5Handle<H5Sclose>;
using H5Datatype = H5Handle<H5Tclose>;
using H5PropertyList = H5Handle<H5Pclose>;
using H5FileId = H5Handle<H5Fclose>;

/// What every handle of one file shares: the file, its name for messages.
struct H5FileState {
  H5FileId file;
  std::string what;
};

/// Throws Error (context and HDF5's innermost message) when `status` is negative, as every
/// HDF5 call reports failure; returns `status` otherwise.
template <class Error, class Status>
Status h5_check(Status status, const std::string& context) {
  if (status < 0) throw Error(context + ": " + hdf5_error_message());
  return status;
}

/// The 8-byte signature of an HDF5 superblock. HDF5 looks for it at offset 0 and at every
/// power of two from 512 on (a user block may precede it).
inline bool has_hdf5_signature(const std::vector<std::byte>& image) {
  static constexpr unsigned char magic[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  auto at = [&](std::size_t offset) {
    if (image.size() < 8 || offset > image.size() - 8) return false;
    for (std::size_t i = 0; i < 8; ++i)
      if (image[offset + i] != std::byte{magic[i]}) return false;
    return true;
  };
  if (at(0)) return true;
  for (std::size_t offset = 512; offset <= image.size() && offset != 0; offset *= 2)
    if (at(offset)) return true;
  return false;
}

/// Offset of the first HDF5 signature in `image` (has_hdf5_signature said there is one).
inline std::size_t hdf5_signature_offset(const std::vector<std::byte>& image) {
  static constexpr unsigned char magic[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  for (std::size_t offset = 0; offset <= image.size() - 8; offset = offset == 0 ? 512 : offset * 2)
    if (std::memcmp(image.data() + offset, magic, 8) == 0) return offset;
  return 0;
}

/// Checks every global heap collection of the image the way HDF5 1.10 will walk it, and
/// refuses the image if one is inconsistent. Variable-length strings (every string
/// attribute h5py writes) live in these collections, and HDF5 1.10 trusts their sizes: a
/// collection larger than the file makes it allocate that much, an object size that runs
/// past its collection makes it read out of bounds, a free-space object of size 0 makes
/// it loop forever. A collection is recognized by its signature and version ("GCOL", 1);
/// HDF5 skips the three reserved bytes after them without looking, so they may hold
/// anything (a collection with nonzero ones is still read, and walked). Five such bytes by
/// chance inside other data are not a concern.
inline void check_global_heaps(const std::vector<std::byte>& image, const std::string& what) {
  const std::size_t super = hdf5_signature_offset(image);
  if (image.size() - super < 16) throw format_error(what + ": HDF5 superblock truncated");
  const auto version = static_cast<unsigned>(image[super + 8]);
  const std::size_t length_at = version < 2 ? super + 14 : super + 10;
  const auto length_bytes = static_cast<std::size_t>(image[length_at]);
  if (length_bytes != 2 && length_bytes != 4 && length_bytes != 8 && length_bytes != 16 &&
      length_bytes != 32)
    throw format_error(what + ": HDF5 superblock has a bad size of lengths");
  // A length field, or SIZE_MAX when it does not fit in 64 bits.
  auto length_at_offset = [&](std::size_t offset) -> std::uint64_t {
    std::uint64_t value = 0;
    for (std::size_t i = 0; i < length_bytes; ++i) {
      auto byte = static_cast<std::uint64_t>(image[offset + i]);
      if (i >= 8) {
        if (byte != 0) return std::numeric_limits<std::uint64_t>::max();
      } else {
        value |= byte << (8 * i);
      }
    }
    return value;
  };
  auto align8 = [](std::uint64_t n) { return (n + 7) / 8 * 8; };
  const std::uint64_t header_size = align8(8 + length_bytes);         // H5HG_SIZEOF_HDR
  const std::uint64_t object_header_size = align8(8 + length_bytes);  // H5HG_SIZEOF_OBJHDR

  static constexpr unsigned char collection[5] = {'G', 'C', 'O', 'L', 1};
  const auto* begin = reinterpret_cast<const unsigned char*>(image.data());
  const auto* end = begin + image.size();
  for (const unsigned char* p = begin; (p = static_cast<const unsigned char*>(std::memchr(
                                            p, 'G', static_cast<std::size_t>(end - p))));
       ++p) {
    if (static_cast<std::size_t>(end - p) < 8 || std::memcmp(p, collection, 5) != 0) continue;
    const auto start = static_cast<std::size_t>(p - begin);
    const std::string where = what + ": global heap at byte " + std::to_string(start);
    if (image.size() - start < 8 + length_bytes) throw format_error(where + " is truncated");
    const std::uint64_t size = length_at_offset(start + 8);
    if (size < header_size || size > image.size() - start)
      throw format_error(where + " has a size that does not fit the file");
    // The object walk of H5HG__cache_heap_deserialize, with the checks it lacks.
    std::uint64_t offset = header_size;
    while (offset < size) {
      if (size - offset < object_header_size) break;  // a tail too small for an object: free
      const auto index = static_cast<unsigned>(image[start + offset]) |
                         (static_cast<unsigned>(image[start + offset + 1]) << 8);
      const std::uint64_t object_size = length_at_offset(start + offset + 8);
      std::uint64_t need = 0;
      if (index > 0) {
        if (object_size > size) throw format_error(where + " has an object larger than itself");
        need = object_header_size + align8(object_size);
      } else {
        need = object_size;  // the free space, its header included
      }
      if (need < object_header_size || need > size - offset)
        throw format_error(where + " has an object that does not fit it");
      offset += need;
    }
  }
}

/// A core-driver file name no other open file of this process has: HDF5 identifies
/// in-memory files by name, and two images opened under one name would be taken for the
/// same file.
inline std::string unique_image_name() {
  static std::atomic<std::uint64_t> counter{0};
  return "locus-memory-image-" + std::to_string(counter.fetch_add(1));
}

/// The file access properties of an in-memory file that never touches the disk.
inline H5PropertyList core_access(const std::string& what) {
  H5PropertyList access(h5_check<io_error>(H5Pcreate(H5P_FILE_ACCESS), what));
  h5_check<io_error>(H5Pset_fapl_core(access.get(), std::size_t{1} << 20, 0), what);
  return access;
}

/// Splits "a/b//c" into {"a", "b", "c"}; "." components name the same group and are
/// dropped.
inline std::vector<std::string> split_h5_path(const std::string& path) {
  std::vector<std::string> parts;
  std::string part;
  for (char c : path) {
    if (c == '/') {
      if (!part.empty() && part != ".") parts.push_back(part);
      part.clear();
    } else {
      part += c;
    }
  }
  if (!part.empty() && part != ".") parts.push_back(part);
  return parts;
}

/// `base` joined with `relative` as an absolute path; an absolute `relative` stays as is.
inline std::string join_h5_path(const std::string& base, const std::string& relative) {
  std::string result = !relative.empty() && relative[0] == '/' ? std::string() : base;
  for (const std::string& part : split_h5_path(relative)) {
    if (result.empty() || result.back() != '/') result += '/';
    result += part;
  }
  return result.empty() ? std::string("/") : result;
}

/// A checked product of dimensions; nullopt on overflow.
inline std::optional<std::size_t> element_count(const std::vector<std::size_t>& shape) {
  std::size_t count = 1;
  for (std::size_t d : shape) {
    if (d != 0 && count > std::numeric_limits<std::size_t>::max() / d) return std::nullopt;
    count *= d;
  }
  return count;
}

}  // namespace detail

/// Shape and element type of a dataset, as stored in the file.
struct H5DatasetInfo {
  std::vector<std::size_t> shape;  ///< {} for a scalar
  bool is_float = false;
  bool is_integer = false;
  std::size_t element_bytes = 0;
};

class H5File;

/// A group of an open HDF5 file (the root group is "/"). Copies share the open group.
/// Paths given to members are relative to this group unless they start with '/'.
class H5Group {
 public:
  /// The absolute path of the group in the file.
  std::string path() const { return path_; }
  /// The file's name for messages.
  const std::string& what() const noexcept { return file_->what; }

  /// Whether `relative_path` names an object. Each component is looked up in turn, so a
  /// missing intermediate group (or a dataset used as one) is "no", not an error.
  bool contains(const std::string& relative_path) const {
    return locate(relative_path).has_value();
  }
  bool is_group(const std::string& relative_path) const {
    auto object = locate(relative_path);
    return object && H5Iget_type(object->get()) == H5I_GROUP;
  }
  bool is_dataset(const std::string& relative_path) const {
    auto object = locate(relative_path);
    return object && H5Iget_type(object->get()) == H5I_DATASET;
  }

  /// The group at `path`; format_error "<file>: no group '<full path>'" when there is none.
  H5Group group(const std::string& path) const {
    auto object = locate(path);
    const std::string full = join_h5_path(path);
    if (!object || H5Iget_type(object->get()) != H5I_GROUP)
      throw format_error(what() + ": no group '" + full + "'");
    return H5Group(file_, std::move(*object), full);
  }

  /// Creates group `name` (intermediate groups too). io_error if it exists already.
  H5Group create_group(const std::string& name) {
    const std::string full = join_h5_path(name);
    if (contains(name)) throw io_error(what() + ": cannot create group '" + full + "': exists");
    detail::silence_hdf5();
    detail::H5PropertyList link = intermediate_groups(full);
    detail::H5Object created(detail::h5_check<io_error>(
        H5Gcreate2(id(), name.c_str(), link.get(), H5P_DEFAULT, H5P_DEFAULT),
        what() + ": cannot create group '" + full + "'"));
    return H5Group(file_, std::move(created), full);
  }

  /// The names of the links in this group, in name order.
  std::vector<std::string> members() const {
    detail::silence_hdf5();
    std::vector<std::string> names;
    hsize_t index = 0;
    herr_t status = H5Literate(
        id(), H5_INDEX_NAME, H5_ITER_INC, &index,
        [](hid_t, const char* name, const H5L_info_t*, void* data) -> herr_t {
          try {
            static_cast<std::vector<std::string>*>(data)->emplace_back(name);
            return 0;
          } catch (...) {
            return -1;  // no exception may cross HDF5's C frames
          }
        },
        &names);
    detail::h5_check<format_error>(status, what() + ": cannot list the members of '" + path_ + "'");
    return names;
  }

  // ---- attributes -------------------------------------------------------------------

  bool has_attribute(const std::string& name) const {
    if (name.empty() || name.find('\0') != std::string::npos) return false;
    detail::silence_hdf5();
    return detail::h5_check<format_error>(H5Aexists(id(), name.c_str()), attribute_context(name)) >
           0;
  }

  /// A string attribute holding one string: a scalar or a 1-element array, of fixed- or
  /// variable-length strings, ASCII or UTF-8, or a scalar of a 1-element array type.
  std::string string_attribute(const std::string& name) const {
    const std::string context = attribute_context(name);
    detail::H5Attribute attribute = open_attribute(name);
    detail::H5Dataspace space(
        detail::h5_check<format_error>(H5Aget_space(attribute.get()), context));
    H5S_class_t kind = H5Sget_simple_extent_type(space.get());
    hssize_t points = H5Sget_simple_extent_npoints(space.get());
    if (!(kind == H5S_SCALAR || (kind == H5S_SIMPLE && points == 1)))
      throw format_error(context + ": is not a single string");
    std::vector<std::string> values = read_strings(attribute.get(), 1, context);
    if (values.size() != 1) throw format_error(context + ": is not a single string");
    return values[0];
  }

  /// A 1-D array of fixed- or variable-length strings. h5py writes an empty list as an
  /// empty float64 array, so any empty array (and a null dataspace) is an empty list.
  std::vector<std::string> string_list_attribute(const std::string& name) const {
    const std::string context = attribute_context(name);
    detail::H5Attribute attribute = open_attribute(name);
    detail::H5Dataspace space(
        detail::h5_check<format_error>(H5Aget_space(attribute.get()), context));
    H5S_class_t kind = H5Sget_simple_extent_type(space.get());
    if (kind == H5S_NULL) return {};
    if (kind != H5S_SIMPLE || H5Sget_simple_extent_ndims(space.get()) != 1)
      throw format_error(context + ": is not a 1-D list of strings");
    hssize_t points =
        detail::h5_check<format_error>(H5Sget_simple_extent_npoints(space.get()), context);
    if (points == 0) return {};
    detail::H5Datatype type(detail::h5_check<format_error>(H5Aget_type(attribute.get()), context));
    if (H5Tget_class(type.get()) != H5T_STRING)
      throw format_error(context + ": is not a list of strings");
    return read_strings(attribute.get(), static_cast<std::size_t>(points), context);
  }

  /// Writes a variable-length UTF-8 string scalar, as h5py does; replaces an existing one.
  void set_string_attribute(const std::string& name, const std::string& value) {
    const std::string context = attribute_context(name);
    if (value.find('\0') != std::string::npos)
      throw io_error(context + ": a string attribute cannot hold a NUL character");
    detail::H5Datatype type = utf8_string_type(context);
    detail::H5Dataspace space(detail::h5_check<io_error>(H5Screate(H5S_SCALAR), context));
    detail::H5Attribute attribute = create_attribute(name, type.get(), space.get());
    const char* data = value.c_str();
    detail::h5_check<io_error>(H5Awrite(attribute.get(), type.get(), &data), context);
  }

  /// Writes a 1-D variable-length UTF-8 string array; an empty list is an empty float64
  /// array, which is what h5py writes for [] (its dtype is float64).
  void set_string_list_attribute(const std::string& name, const std::vector<std::string>& values) {
    const std::string context = attribute_context(name);
    const hsize_t dims[1] = {values.size()};
    detail::H5Dataspace space(
        detail::h5_check<io_error>(H5Screate_simple(1, dims, nullptr), context));
    if (values.empty()) {
      create_attribute(name, H5T_IEEE_F64LE, space.get());
      return;
    }
    std::vector<const char*> data;
    for (const std::string& value : values) {
      if (value.find('\0') != std::string::npos)
        throw io_error(context + ": a string attribute cannot hold a NUL character");
      data.push_back(value.c_str());
    }
    detail::H5Datatype type = utf8_string_type(context);
    detail::H5Attribute attribute = create_attribute(name, type.get(), space.get());
    detail::h5_check<io_error>(H5Awrite(attribute.get(), type.get(), data.data()), context);
  }

  // ---- datasets ---------------------------------------------------------------------

  H5DatasetInfo dataset_info(const std::string& path) const {
    detail::H5Object dataset = open_dataset(path);
    return info_of(dataset.get(), dataset_context(path));
  }

  /// The dataset's values converted to float by HDF5 (any integer or float type).
  std::vector<float> read_float(const std::string& path) const {
    return read_numeric<float>(path, H5T_NATIVE_FLOAT);
  }
  /// The dataset's values converted to double by HDF5 (any integer or float type).
  std::vector<double> read_double(const std::string& path) const {
    return read_numeric<double>(path, H5T_NATIVE_DOUBLE);
  }

  /// A dataset holding one integer (any shape with one element), or one float with an
  /// integral value in range (older Keras optimizers keep their step count as a float).
  std::int64_t read_int64_scalar(const std::string& path) const {
    const std::string context = dataset_context(path);
    H5DatasetInfo info = dataset_info(path);
    auto count = detail::element_count(info.shape);
    if (!count || *count != 1) throw format_error(context + ": is not a single value");
    if (info.is_integer) return read_numeric<std::int64_t>(path, H5T_NATIVE_INT64)[0];
    double value = read_double(path)[0];
    // 2^63 is exact as a double; anything at or above it does not fit.
    if (!std::isfinite(value) || value != std::floor(value) || value < -9223372036854775808.0 ||
        value >= 9223372036854775808.0)
      throw format_error(context + ": is not an integer");
    return static_cast<std::int64_t>(value);
  }

  /// Writes a float32 dataset; shape {} is a scalar. io_error if it exists already.
  void write(const std::string& name, const std::vector<std::size_t>& shape, const float* data) {
    write_numeric(name, shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data);
  }
  /// Writes a float64 dataset; shape {} is a scalar.
  void write(const std::string& name, const std::vector<std::size_t>& shape, const double* data) {
    write_numeric(name, shape, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, data);
  }
  /// Writes an int64 scalar dataset.
  void write_int64_scalar(const std::string& name, std::int64_t value) {
    write_numeric(name, {}, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
  }

 private:
  friend class H5File;

  // Datasets beyond this many elements are refused: model weights are far smaller, and
  // the cap bounds what a forged header can make us allocate.
  static constexpr std::size_t max_elements = std::size_t{1} << 31;
  // Deflate cannot expand data more than 1032:1; a chunked dataset claiming more than
  // that over its stored bytes (plus slack for fill values) is refused.
  static constexpr std::size_t max_expansion = 1032;
  static constexpr std::size_t fill_slack_bytes = std::size_t{1} << 20;

  H5Group(std::shared_ptr<detail::H5FileState> file, detail::H5Object group, std::string path)
      : file_(std::move(file)),
        group_(std::make_shared<detail::H5Object>(std::move(group))),
        path_(std::move(path)) {}

  hid_t id() const noexcept { return group_->get(); }

  std::string join_h5_path(const std::string& relative) const {
    return detail::join_h5_path(path_, relative);
  }
  std::string attribute_context(const std::string& name) const {
    return what() + ": attribute '" + name + "' of '" + path_ + "'";
  }
  std::string dataset_context(const std::string& path) const {
    return what() + ": dataset '" + join_h5_path(path) + "'";
  }

  /// Opens the object `path` names, following hard links only; nullopt when a component
  /// is missing or an intermediate one is not a group. Soft and external links are
  /// refused: an external link would make HDF5 open another file from the disk.
  std::optional<detail::H5Object> locate(const std::string& path) const {
    detail::silence_hdf5();
    const std::string context = what() + ": '" + join_h5_path(path) + "'";
    if (path.find('\0') != std::string::npos) return std::nullopt;
    detail::H5Object current(detail::h5_check<format_error>(
        H5Oopen(id(), !path.empty() && path[0] == '/' ? "/" : ".", H5P_DEFAULT), context));
    for (const std::string& part : detail::split_h5_path(path)) {
      if (H5Iget_type(current.get()) != H5I_GROUP) return std::nullopt;
      if (detail::h5_check<format_error>(H5Lexists(current.get(), part.c_str(), H5P_DEFAULT),
                                         context) == 0)
        return std::nullopt;
      H5L_info_t link;
      detail::h5_check<format_error>(H5Lget_info(current.get(), part.c_str(), &link, H5P_DEFAULT),
                                     context);
      if (link.type != H5L_TYPE_HARD)
        throw format_error(context + ": '" + part + "' is a soft or external link, not followed");
      current = detail::H5Object(detail::h5_check<format_error>(
          H5Oopen(current.get(), part.c_str(), H5P_DEFAULT), context));
    }
    return current;
  }

  detail::H5Object open_dataset(const std::string& path) const {
    auto object = locate(path);
    if (!object || H5Iget_type(object->get()) != H5I_DATASET)
      throw format_error(what() + ": no dataset '" + join_h5_path(path) + "'");
    return std::move(*object);
  }

  detail::H5Attribute open_attribute(const std::string& name) const {
    if (!has_attribute(name))
      throw format_error(what() + ": no attribute '" + name + "' on '" + path_ + "'");
    return detail::H5Attribute(detail::h5_check<format_error>(
        H5Aopen(id(), name.c_str(), H5P_DEFAULT), attribute_context(name)));
  }

  detail::H5Attribute create_attribute(const std::string& name, hid_t type, hid_t space) {
    const std::string context = attribute_context(name);
    if (name.empty() || name.find('\0') != std::string::npos)
      throw io_error(context + ": not a valid attribute name");
    detail::silence_hdf5();
    // h5py replaces an attribute that exists; so does this.
    if (detail::h5_check<io_error>(H5Aexists(id(), name.c_str()), context) > 0)
      detail::h5_check<io_error>(H5Adelete(id(), name.c_str()), context);
    return detail::H5Attribute(detail::h5_check<io_error>(
        H5Acreate2(id(), name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), context));
  }

  static detail::H5Datatype utf8_string_type(const std::string& context) {
    detail::H5Datatype type(detail::h5_check<io_error>(H5Tcopy(H5T_C_S1), context));
    detail::h5_check<io_error>(H5Tset_size(type.get(), H5T_VARIABLE), context);
    detail::h5_check<io_error>(H5Tset_cset(type.get(), H5T_CSET_UTF8), context);
    return type;
  }

  detail::H5PropertyList intermediate_groups(const std::string& context) const {
    detail::H5PropertyList link(
        detail::h5_check<io_error>(H5Pcreate(H5P_LINK_CREATE), what() + ": " + context));
    detail::h5_check<io_error>(H5Pset_create_intermediate_group(link.get(), 1),
                               what() + ": " + context);
    return link;
  }

  /// Reads the `points` elements of a string attribute (each element a string, or an
  /// array of strings) as strings. Fixed-length strings lose their padding: NUL padding
  /// ends at the first NUL, space padding is trimmed.
  static std::vector<std::string> read_strings(hid_t attribute, std::size_t points,
                                               const std::string& context) {
    detail::H5Datatype file_type(detail::h5_check<format_error>(H5Aget_type(attribute), context));
    detail::H5Datatype array_base;
    hid_t base = file_type.get();
    std::size_t per_element = 1;
    int array_rank = 0;
    hsize_t array_dims[H5S_MAX_RANK] = {};
    if (H5Tget_class(base) == H5T_ARRAY) {
      array_base = detail::H5Datatype(detail::h5_check<format_error>(H5Tget_super(base), context));
      array_rank = detail::h5_check<format_error>(H5Tget_array_ndims(base), context);
      if (array_rank < 1 || array_rank > H5S_MAX_RANK)
        throw format_error(context + ": array type of rank " + std::to_string(array_rank));
      detail::h5_check<format_error>(H5Tget_array_dims2(base, array_dims), context);
      std::vector<std::size_t> dims(array_dims, array_dims + array_rank);
      auto count = detail::element_count(dims);
      if (!count) throw format_error(context + ": array type too large");
      per_element = *count;
      base = array_base.get();
    }
    if (H5Tget_class(base) != H5T_STRING) throw format_error(context + ": is not a string");
    if (per_element != 0 && points > max_elements / per_element)
      throw format_error(context + ": too many strings");
    const std::size_t total = points * per_element;
    // Every stored string costs at least one byte of the attribute's storage (a fixed
    // string its size, a variable-length one a heap reference): a count beyond the storage
    // is a forged header, refused before allocating for it.
    const hsize_t storage = H5Aget_storage_size(attribute);
    const bool variable = detail::h5_check<format_error>(H5Tis_variable_str(base), context) > 0;
    const H5T_cset_t cset = H5Tget_cset(base);

    auto memory_type_of = [&](hid_t string_type) {
      if (array_rank == 0)
        return detail::H5Datatype(detail::h5_check<format_error>(H5Tcopy(string_type), context));
      return detail::H5Datatype(detail::h5_check<format_error>(
          H5Tarray_create2(string_type, static_cast<unsigned>(array_rank), array_dims), context));
    };

    std::vector<std::string> result;
    if (variable) {
      if (total > storage) throw format_error(context + ": more strings than stored bytes");
      detail::H5Datatype string_type(detail::h5_check<format_error>(H5Tcopy(H5T_C_S1), context));
      detail::h5_check<format_error>(H5Tset_size(string_type.get(), H5T_VARIABLE), context);
      if (cset >= 0) detail::h5_check<format_error>(H5Tset_cset(string_type.get(), cset), context);
      detail::H5Datatype memory = memory_type_of(string_type.get());
      std::vector<char*> pointers(total, nullptr);
      herr_t status = H5Aread(attribute, memory.get(), pointers.data());
      // HDF5 allocated each string; free them whether or not the read finished.
      auto free_all = [&] {
        for (char* p : pointers)
          if (p != nullptr) H5free_memory(p);
      };
      if (status < 0) {
        free_all();
        detail::h5_check<format_error>(status, context);
      }
      try {
        for (char* p : pointers) result.emplace_back(p != nullptr ? p : "");
      } catch (...) {
        free_all();
        throw;
      }
      free_all();
      return result;
    }

    const std::size_t size = H5Tget_size(base);
    if (size == 0) throw format_error(context + ": fixed-length string of size 0");
    if (total > storage / size) throw format_error(context + ": more strings than stored bytes");
    const H5T_str_t padding = H5Tget_strpad(base);
    detail::H5Datatype memory = memory_type_of(base);
    std::vector<char> buffer(total * size);
    detail::h5_check<format_error>(H5Aread(attribute, memory.get(), buffer.data()), context);
    for (std::size_t i = 0; i < total; ++i) {
      std::string value(buffer.data() + i * size, size);
      if (padding == H5T_STR_SPACEPAD) {
        value.erase(value.find_last_not_of(std::string(" \0", 2)) + 1);
      } else {
        auto end = value.find('\0');
        if (end != std::string::npos) value.erase(end);
      }
      result.push_back(std::move(value));
    }
    return result;
  }

  static H5DatasetInfo info_of(hid_t dataset, const std::string& context) {
    detail::H5Dataspace space(detail::h5_check<format_error>(H5Dget_space(dataset), context));
    H5S_class_t kind = H5Sget_simple_extent_type(space.get());
    H5DatasetInfo info;
    if (kind == H5S_SIMPLE) {
      int rank = detail::h5_check<format_error>(H5Sget_simple_extent_ndims(space.get()), context);
      if (rank > H5S_MAX_RANK) throw format_error(context + ": rank " + std::to_string(rank));
      hsize_t dims[H5S_MAX_RANK] = {};
      detail::h5_check<format_error>(H5Sget_simple_extent_dims(space.get(), dims, nullptr),
                                     context);
      for (int i = 0; i < rank; ++i) {
        if (dims[i] > std::numeric_limits<std::size_t>::max())
          throw format_error(context + ": dimension too large");
        info.shape.push_back(static_cast<std::size_t>(dims[i]));
      }
    } else if (kind != H5S_SCALAR) {
      throw format_error(context + ": has no data (null dataspace)");
    }
    detail::H5Datatype type(detail::h5_check<format_error>(H5Dget_type(dataset), context));
    H5T_class_t type_class = H5Tget_class(type.get());
    info.is_float = type_class == H5T_FLOAT;
    info.is_integer = type_class == H5T_INTEGER;
    info.element_bytes = H5Tget_size(type.get());
    return info;
  }

  template <class T>
  std::vector<T> read_numeric(const std::string& path, hid_t memory_type) const {
    const std::string context = dataset_context(path);
    detail::H5Object dataset = open_dataset(path);
    H5DatasetInfo info = info_of(dataset.get(), context);
    if (!info.is_float && !info.is_integer)
      throw format_error(context + ": holds neither integers nor floats");
    auto count = detail::element_count(info.shape);
    if (!count || *count > max_elements) throw format_error(context + ": more than 2^31 elements");
    if (info.element_bytes == 0 || info.element_bytes > 64)
      throw format_error(context + ": element of " + std::to_string(info.element_bytes) + " bytes");
    const std::size_t bytes = *count * info.element_bytes;
    check_storage(dataset.get(), bytes, context);
    std::vector<T> values(*count);
    if (*count > 0)
      detail::h5_check<format_error>(
          H5Dread(dataset.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()),
          context);
    return values;
  }

  /// Refuses raw data outside the image and sizes the stored bytes cannot back: a
  /// contiguous or compact dataset stores exactly its bytes; a chunked one at least
  /// 1/1032 of them (deflate's limit), up to some fill values.
  static void check_storage(hid_t dataset, std::size_t bytes, const std::string& context) {
    detail::H5PropertyList creation(
        detail::h5_check<format_error>(H5Dget_create_plist(dataset), context));
    if (detail::h5_check<format_error>(H5Pget_external_count(creation.get()), context) > 0)
      throw format_error(context + ": keeps its data in an external file, not read");
    H5D_layout_t layout = H5Pget_layout(creation.get());
    const hsize_t stored = H5Dget_storage_size(dataset);
    switch (layout) {
      case H5D_CONTIGUOUS:
      case H5D_COMPACT:
        if (stored != bytes)
          throw format_error(context + ": stores " + std::to_string(stored) +
                             " bytes, but its shape and type need " + std::to_string(bytes));
        return;
      case H5D_CHUNKED:
        if (bytes > fill_slack_bytes && (bytes - fill_slack_bytes) / max_expansion > stored)
          throw format_error(context + ": stores " + std::to_string(stored) +
                             " bytes, too few for the " + std::to_string(bytes) +
                             " its shape and type need");
        return;
      default:
        throw format_error(context + ": unsupported storage layout (virtual or unknown)");
    }
  }

  void write_numeric(const std::string& name, const std::vector<std::size_t>& shape,
                     hid_t file_type, hid_t memory_type, const void* data) {
    const std::string full = join_h5_path(name);
    const std::string context = what() + ": dataset '" + full + "'";
    if (detail::split_h5_path(name).empty()) throw io_error(context + ": empty name");
    if (shape.size() > H5S_MAX_RANK)
      throw io_error(context + ": rank " + std::to_string(shape.size()) + " is above HDF5's 32");
    auto count = detail::element_count(shape);
    if (!count) throw io_error(context + ": shape too large");
    if (*count > 0 && data == nullptr) throw io_error(context + ": no data given");
    if (contains(name)) throw io_error(context + ": exists already");
    std::vector<hsize_t> dims(shape.begin(), shape.end());
    detail::H5Dataspace space(detail::h5_check<io_error>(
        shape.empty() ? H5Screate(H5S_SCALAR)
                      : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
        context));
    detail::H5PropertyList link = intermediate_groups(full);
    detail::H5Object dataset(
        detail::h5_check<io_error>(H5Dcreate2(id(), name.c_str(), file_type, space.get(),
                                              link.get(), H5P_DEFAULT, H5P_DEFAULT),
                                   context));
    // HDF5 refuses a null buffer even for zero elements; there is nothing to write then.
    if (*count > 0)
      detail::h5_check<io_error>(
          H5Dwrite(dataset.get(), memory_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), context);
  }

  std::shared_ptr<detail::H5FileState> file_;
  std::shared_ptr<detail::H5Object> group_;
  std::string path_;
};

/// An HDF5 file held in memory: opened read-only from an image, or created empty and
/// turned into an image with image(). Copies share the open file.
class H5File {
 public:
  /// Opens `image` read-only; `what` names it in messages. format_error if it is not an
  /// HDF5 file (checked by its signature first, so garbage never reaches the parser) or
  /// HDF5 cannot open it.
  static H5File from_bytes(std::vector<std::byte> image, std::string what) {
    detail::silence_hdf5();
    if (!detail::has_hdf5_signature(image))
      throw format_error(what + ": not an HDF5 file (no HDF5 signature)");
    detail::check_global_heaps(image, what);
    detail::H5PropertyList access = detail::core_access(what);
    // H5Pset_file_image copies the image into the property list, and opening copies it
    // into the driver; `image` and `access` are released as soon as the file is open.
    detail::h5_check<format_error>(H5Pset_file_image(access.get(), image.data(), image.size()),
                                   what + ": cannot open");
    auto state = std::make_shared<detail::H5FileState>();
    state->what = std::move(what);
    state->file = detail::H5FileId(
        H5Fopen(detail::unique_image_name().c_str(), H5F_ACC_RDONLY, access.get()));
    if (!state->file.valid())
      throw format_error(state->what +
                         ": not a readable HDF5 file: " + detail::hdf5_error_message());
    return H5File(std::move(state));
  }

  /// A new, empty, writable file in memory, in HDF5's earliest format as h5py writes by
  /// default (readable by every HDF5 and h5py). That format keeps attributes in the object
  /// header, so one attribute's stored data is limited to 64 KiB (a variable-length string
  /// counts 16 bytes there, its text lives in the heap); a longer list is an io_error,
  /// and callers split it the way Keras 2 splits layer_names. (The 1.8 format lifts the
  /// limit, but HDF5 1.10's H5Fget_file_image writes its superblock with a wrong checksum.)
  static H5File create_in_memory(std::string what) {
    detail::silence_hdf5();
    detail::H5PropertyList access = detail::core_access(what);
    auto state = std::make_shared<detail::H5FileState>();
    state->what = std::move(what);
    state->file = detail::H5FileId(detail::h5_check<io_error>(
        H5Fcreate(detail::unique_image_name().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, access.get()),
        state->what + ": cannot create an HDF5 file in memory"));
    return H5File(std::move(state));
  }

  /// The bytes of the file as it is now (flushed first), ready to be written to disk or
  /// put in an archive.
  std::vector<std::byte> image() {
    const std::string context = state_->what + ": cannot take the file image";
    detail::silence_hdf5();
    detail::h5_check<io_error>(H5Fflush(state_->file.get(), H5F_SCOPE_GLOBAL), context);
    ssize_t size =
        detail::h5_check<io_error>(H5Fget_file_image(state_->file.get(), nullptr, 0), context);
    std::vector<std::byte> bytes(static_cast<std::size_t>(size));
    detail::h5_check<io_error>(H5Fget_file_image(state_->file.get(), bytes.data(), bytes.size()),
                               context);
    return bytes;
  }

  H5Group root() const {
    detail::silence_hdf5();
    detail::H5Object root(detail::h5_check<format_error>(
        H5Oopen(state_->file.get(), "/", H5P_DEFAULT), state_->what + ": cannot open '/'"));
    return H5Group(state_, std::move(root), "/");
  }

  const std::string& what() const noexcept { return state_->what; }

 private:
  explicit H5File(std::shared_ptr<detail::H5FileState> state) : state_(std::move(state)) {}

  std::shared_ptr<detail::H5FileState> state_;
};

}  // namespace locus::io
