// NumPy .npy arrays (format versions 1.0, 2.0 and 3.0), read into float and written as
// little-endian float32, the way numpy.save writes them. Keras keeps optimizer and
// preprocessing state in .npy entries; tests and tools exchange arrays with Python the
// same way. The reader validates the header strictly (it runs on untrusted files): magic,
// version, header length, the exact set of dictionary keys, and that the shape times the
// item size is exactly the payload, with every product checked for overflow.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../error.hpp"

namespace locus::io {

/// An array read from a .npy file, in C (row-major) order.
struct NpyArray {
  std::vector<std::size_t> shape;  ///< {} for a 0-d array (one element)
  std::vector<float> data;
};

namespace detail {

/// The header dictionary of a .npy file.
struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::size_t> shape;
};

/// A strict parser of the Python literal NumPy writes as the header:
/// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
/// NumPy reads it with ast.literal_eval; this accepts the same dictionaries with string,
/// boolean and tuple-of-integer values, either quote character and any spacing, and
/// nothing else.
class NpyHeaderParser {
 public:
  NpyHeaderParser(std::string_view text, const std::string& what) : text_(text), what_(what) {}

  NpyHeader parse() {
    NpyHeader header;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    expect('{');
    for (;;) {
      skip_space();
      if (peek() == '}') break;
      std::string key = string_value();
      expect(':');
      if (key == "descr" && !seen_descr) {
        header.descr = string_value();
        seen_descr = true;
      } else if (key == "fortran_order" && !seen_order) {
        header.fortran_order = bool_value();
        seen_order = true;
      } else if (key == "shape" && !seen_shape) {
        header.shape = shape_value();
        seen_shape = true;
      } else {
        fail("unexpected or repeated key '" + key + "'");
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() != '}') fail("expected ',' or '}'");
    }
    expect('}');
    // NumPy pads the header with spaces and ends it with '\n'; nothing else may follow.
    while (pos_ < text_.size()) {
      char c = text_[pos_++];
      if (c != ' ' && c != '\n' && c != '\t' && c != '\r' && c != '\0')
        fail("unexpected text after the header dictionary");
    }
    if (!seen_descr || !seen_order || !seen_shape)
      fail("the header lacks one of 'descr', 'fortran_order', 'shape'");
    return header;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    throw format_error(what_ + ": bad .npy header: " + why);
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++pos_;
  }
  std::string string_value() {
    skip_space();
    char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected a string");
    ++pos_;
    std::string value;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\') fail("escapes in strings are not supported");
      value += text_[pos_++];
    }
    if (pos_ >= text_.size()) fail("unterminated string");
    ++pos_;
    return value;
  }
  bool bool_value() {
    skip_space();
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("expected True or False");
  }
  std::vector<std::size_t> shape_value() {
    expect('(');
    std::vector<std::size_t> shape;
    bool trailing_comma = false;
    for (;;) {
      skip_space();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') fail("expected a non-negative integer in the shape");
      std::size_t value = 0;
      while (peek() >= '0' && peek() <= '9') {
        auto digit = static_cast<std::size_t>(peek() - '0');
        if (value > (std::numeric_limits<std::size_t>::max() - digit) / 10)
          fail("a dimension overflows");
        value = value * 10 + digit;
        ++pos_;
      }
      // Python writes long integers with an 'L' suffix in NumPy files from Python 2.
      if (peek() == 'L') ++pos_;
      shape.push_back(value);
      skip_space();
      trailing_comma = false;
      if (peek() == ',') {
        ++pos_;
        trailing_comma = true;
        continue;
      }
      if (peek() != ')') fail("expected ',' or ')' in the shape");
    }
    // (3) is the integer 3 in Python, not a tuple: a 1-tuple needs its comma.
    if (shape.size() == 1 && !trailing_comma) fail("the shape is not a tuple");
    ++pos_;
    return shape;
  }

  std::string_view text_;
  const std::string& what_;
  std::size_t pos_ = 0;
};

template <class T>
T load_little_endian(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
    auto* bytes = reinterpret_cast<unsigned char*>(&value);
    for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(bytes[i], bytes[sizeof(T) - 1 - i]);
  }
  return value;
}

template <class T>
void convert_npy(const std::byte* payload, std::vector<float>& out) {
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<float>(load_little_endian<T>(payload + i * sizeof(T)));
}

/// Reorders Fortran-order (column-major) values into C order.
inline std::vector<float> fortran_to_c(const std::vector<float>& values,
                                       const std::vector<std::size_t>& shape) {
  std::vector<float> result(values.size());
  if (values.empty()) return result;
  const std::size_t rank = shape.size();
  std::vector<std::size_t> index(rank, 0);
  // Walk the C-order positions with an odometer, keeping the Fortran offset alongside.
  std::vector<std::size_t> fortran_stride(rank, 1);
  for (std::size_t k = 1; k < rank; ++k) fortran_stride[k] = fortran_stride[k - 1] * shape[k - 1];
  for (std::size_t c = 0; c < values.size(); ++c) {
    std::size_t f = 0;
    for (std::size_t k = 0; k < rank; ++k) f += index[k] * fortran_stride[k];
    result[c] = values[f];
    for (std::size_t k = rank; k-- > 0;) {
      if (++index[k] < shape[k]) break;
      index[k] = 0;
    }
  }
  return result;
}

}  // namespace detail

/// Reads a .npy array of dtype '<f4', '<f8', '<i4', '<i8', '|u1' ('<u1'), '|i1' into
/// float (integers and doubles are converted; doubles round to the nearest float).
/// Fortran-order arrays are reordered into C order. format_error naming `what` for any
/// other dtype, a bad magic or version, a header that does not fit or does not parse,
/// or a payload whose size is not exactly the shape's product times the item size.
inline NpyArray read_npy(std::span<const std::byte> bytes, const std::string& what) {
  static constexpr unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  if (bytes.size() < 10) throw format_error(what + ": not a .npy file (too short)");
  for (std::size_t i = 0; i < 6; ++i)
    if (bytes[i] != std::byte{magic[i]}) throw format_error(what + ": not a .npy file (bad magic)");
  const auto major = static_cast<unsigned>(bytes[6]);
  const auto minor = static_cast<unsigned>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0)
    throw format_error(what + ": unsupported .npy version " + std::to_string(major) + "." +
                       std::to_string(minor));
  // Version 1 has a 2-byte header length, versions 2 and 3 a 4-byte one (3 differs from 2
  // only in allowing UTF-8 in the header, which the keys here never need).
  std::size_t header_length = 0;
  std::size_t header_start = 0;
  if (major == 1) {
    header_length = detail::load_little_endian<std::uint16_t>(bytes.data() + 8);
    header_start = 10;
  } else {
    if (bytes.size() < 12) throw format_error(what + ": .npy header truncated");
    header_length = detail::load_little_endian<std::uint32_t>(bytes.data() + 8);
    header_start = 12;
  }
  if (header_length > bytes.size() - header_start)
    throw format_error(what + ": .npy header of " + std::to_string(header_length) +
                       " bytes runs past the end of the file");
  std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + header_start),
                               header_length);
  detail::NpyHeader header = detail::NpyHeaderParser(header_text, what).parse();

  std::size_t item = 0;
  const std::string& d = header.descr;
  if (d == "<f4" || d == "<i4")
    item = 4;
  else if (d == "<f8" || d == "<i8")
    item = 8;
  else if (d == "|u1" || d == "<u1" || d == "|i1")
    item = 1;
  else
    throw format_error(what + ": unsupported .npy dtype '" + d + "'");

  std::size_t count = 1;
  for (std::size_t dim : header.shape) {
    if (dim != 0 && count > std::numeric_limits<std::size_t>::max() / dim)
      throw format_error(what + ": .npy shape overflows");
    count *= dim;
  }
  const std::size_t payload = bytes.size() - header_start - header_length;
  if (count > std::numeric_limits<std::size_t>::max() / item || count * item != payload)
    throw format_error(what + ": .npy shape needs " +
                       (count > std::numeric_limits<std::size_t>::max() / item
                            ? std::string("more bytes than fit in memory")
                            : std::to_string(count * item) + " bytes") +
                       ", the file holds " + std::to_string(payload));

  NpyArray array;
  array.shape = header.shape;
  array.data.resize(count);
  const std::byte* data = bytes.data() + header_start + header_length;
  if (d == "<f4")
    detail::convert_npy<float>(data, array.data);
  else if (d == "<f8")
    detail::convert_npy<double>(data, array.data);
  else if (d == "<i4")
    detail::convert_npy<std::int32_t>(data, array.data);
  else if (d == "<i8")
    detail::convert_npy<std::int64_t>(data, array.data);
  else if (d == "|i1")
    detail::convert_npy<std::int8_t>(data, array.data);
  else
    detail::convert_npy<std::uint8_t>(data, array.data);
  if (header.fortran_order && array.shape.size() > 1)
    array.data = detail::fortran_to_c(array.data, array.shape);
  return array;
}

/// Writes a .npy version 1.0 file of little-endian float32 in C order, byte for byte as
/// numpy.save writes it: the header dictionary padded with spaces so that the data starts
/// at a multiple of 64 bytes, '\n' last. shape_error if the shape's product is not
/// data.size().
inline std::vector<std::byte> write_npy(const std::vector<std::size_t>& shape,
                                        std::span<const float> data) {
  std::size_t count = 1;
  for (std::size_t dim : shape) {
    if (dim != 0 && count > std::numeric_limits<std::size_t>::max() / dim)
      throw shape_error("write_npy: shape overflows");
    count *= dim;
  }
  if (count != data.size())
    throw shape_error("write_npy: shape holds " + std::to_string(count) + " elements, data " +
                      std::to_string(data.size()));
  // Python's repr of a tuple: "()", "(3,)", "(2, 3)".
  std::string tuple = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) tuple += ", ";
    tuple += std::to_string(shape[i]);
  }
  if (shape.size() == 1) tuple += ",";
  tuple += ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + tuple + ", }";
  // Version 1.0 stores the header length in 2 bytes; NumPy moves to 2.0 beyond that.
  const bool version2 = header.size() + 1 + 10 > 65535;
  const std::size_t prefix = version2 ? 12 : 10;
  const std::size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header += '\n';

  std::vector<std::byte> out;
  out.reserve(total + data.size() * 4);
  static constexpr unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  for (unsigned char c : magic) out.push_back(std::byte{c});
  out.push_back(std::byte{static_cast<unsigned char>(version2 ? 2 : 1)});
  out.push_back(std::byte{0});
  const std::size_t length = header.size();
  for (std::size_t i = 0; i < (version2 ? 4u : 2u); ++i)
    out.push_back(std::byte{static_cast<unsigned char>((length >> (8 * i)) & 0xff)});
  for (char c : header) out.push_back(static_cast<std::byte>(c));
  for (float value : data) {
    auto bits = std::bit_cast<std::uint32_t>(value);
    for (int i = 0; i < 4; ++i)
      out.push_back(std::byte{static_cast<unsigned char>((bits >> (8 * i)) & 0xff)});
  }
  return out;
}

}  // namespace locus::io
