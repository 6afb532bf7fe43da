// The exception hierarchy. Every failure locus reports at run time is one of these, so a
// caller can catch exactly the class of problem it can handle (a bad shape, a missing
// device, a corrupt file) and nothing is ever reported as a bare std::runtime_error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace locus {

/// Base of every locus exception.
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Operands or arguments whose shapes do not fit the operation.
class shape_error : public error {
 public:
  using error::error;
};

/// An axis outside [-rank, rank).
class axis_error : public shape_error {
 public:
  using shape_error::shape_error;
};

/// A bad argument value that is not a shape (negative batch size, unknown option...).
class argument_error : public error {
 public:
  using error::error;
};

/// A layer or model configuration that locus cannot build: an unknown key value, a
/// missing entry, a layer class it does not have, a graph that does not connect.
class config_error : public argument_error {
 public:
  using argument_error::argument_error;
};

/// A request that is well formed but that this build or machine cannot serve, refused
/// rather than served some other way: a layer an inference plan has no lowering for, an
/// int8 kernel the CPU lacks, a device without what a quantized plan needs.
class unsupported_error : public argument_error {
 public:
  using argument_error::argument_error;
};

/// A class label outside [0, classes) given to a sparse loss (Keras raises
/// InvalidArgumentError on the CPU). label() is the offending value (the smallest negative
/// one, else the largest one), classes() the number of classes of the model's output.
class label_error : public argument_error {
 public:
  label_error(const std::string& what, std::int64_t label, std::size_t classes)
      : argument_error(what), label_(label), classes_(classes) {}
  std::int64_t label() const noexcept { return label_; }
  std::size_t classes() const noexcept { return classes_; }

 private:
  std::int64_t label_;
  std::size_t classes_;
};

/// A device could not be used. Never followed by a silent fallback to another device.
class device_error : public error {
 public:
  using error::error;
};

/// The OpenCL ICD loader found no platform at all (error -1001).
class no_platform_error : public device_error {
 public:
  using device_error::device_error;
};

/// Platforms exist, but not the requested device index.
class no_device_error : public device_error {
 public:
  using device_error::device_error;
};

/// The requested OpenCL device is a CPU device and the user did not opt in.
class not_a_gpu_error : public device_error {
 public:
  using device_error::device_error;
};

/// An OpenCL program failed to build; what() carries the build log, kernel, device,
/// driver and options.
class kernel_build_error : public device_error {
 public:
  using device_error::device_error;
};

/// A device or host allocation failed. The device stays usable.
class out_of_memory_error : public device_error {
 public:
  out_of_memory_error(const std::string& what, std::size_t requested, std::size_t available)
      : device_error(what), requested_(requested), available_(available) {}
  std::size_t requested() const noexcept { return requested_; }
  std::size_t available() const noexcept { return available_; }

 private:
  std::size_t requested_;
  std::size_t available_;
};

/// Any other OpenCL error; what() names the call and the error code.
class opencl_error : public device_error {
 public:
  opencl_error(const std::string& what, int code) : device_error(what), code_(code) {}
  int code() const noexcept { return code_; }

 private:
  int code_;
};

/// Processes training together could not complete a collective operation (MPI): another
/// process failed, stopped answering, or the transport reported an error. The operation
/// cannot be retried (a collective that one process left never completes), so a program
/// stops every process when it sees this (mpi::DataParallel::fit does).
class communication_error : public error {
 public:
  using error::error;
};

/// Reading or writing a file failed (missing, unreadable, not writable).
class io_error : public error {
 public:
  using error::error;
};

/// A file was read but its content is not what it claims to be (bad magic, truncated,
/// corrupt, does not match the model it is loaded into).
class format_error : public io_error {
 public:
  using io_error::io_error;
};

/// A model file that is well formed but does not fit the model it is loaded into: another
/// number of layers, another class, name or weight count, or a weight of another shape.
/// layer() names the layer ("dense", "inner/dense_1"); expected() and found() say what the
/// model has and what the file holds ("(256, 3)" and "(255, 3)", or class names).
class model_mismatch_error : public format_error {
 public:
  model_mismatch_error(const std::string& what, std::string layer, std::string expected,
                       std::string found)
      : format_error(what),
        layer_(std::move(layer)),
        expected_(std::move(expected)),
        found_(std::move(found)) {}
  const std::string& layer() const noexcept { return layer_; }
  const std::string& expected() const noexcept { return expected_; }
  const std::string& found() const noexcept { return found_; }

 private:
  std::string layer_, expected_, found_;
};

/// A data pipeline's user function (a Dataset::map function, a generator) failed on an
/// element. record() is the index of the element's first source record in its epoch; the
/// function's own exception is nested (std::rethrow_if_nested(e) rethrows it).
class record_error : public error {
 public:
  record_error(const std::string& what, std::uint64_t record) : error(what), record_(record) {}
  std::uint64_t record() const noexcept { return record_; }

 private:
  std::uint64_t record_;
};

}  // namespace locus
