// Compile-time enforcement of the type contract, with diagnostics written for people.
//
// A misuse must produce one readable first line that names what is wrong and how to fix
// it. static_assert messages must be string literals, so the device names are spelled
// into the literals: each (left, right) pair of the devices a program can realistically
// name (the host and GPUs 0..3) gets its own specialisation with its own sentence. Pairs
// beyond that fall back to a sentence that points at the instantiation note, which names
// the exact types.
#pragma once

#include <type_traits>

#include "../device.hpp"

namespace locus::detail {

template <class...>
inline constexpr bool dependent_false = false;

// ---- one device per expression ---------------------------------------------------------

template <class Left, class Right, class Context = void>
struct device_mismatch {
  static_assert(dependent_false<Left, Right, Context>,
                "locus: the operands live on different devices (named in the 'required from' "
                "note); copy one of them explicitly with locus::to<Dev>(x)");
};

// LS/RS name the devices as a reader says them; LQ is the left device fully qualified,
// so the suggested fix compiles as written.
#define LOCUS_DEVICE_MISMATCH_(L, R, LS, RS, LQ)                              \
  template <class Context>                                                    \
  struct device_mismatch<L, R, Context> {                                     \
    static_assert(dependent_false<Context>,                                   \
                  "locus: operands live on different devices, " LS " and " RS \
                  "; copy one explicitly, e.g. locus::to<" LQ ">(x)");        \
  };
#define LOCUS_CPU_ "Device<CPU>"
#define LOCUS_GPU_(N) "Device<GPU, " #N ">"
#define LOCUS_QCPU_ "locus::Device<locus::CPU>"
#define LOCUS_QGPU_(N) "locus::Device<locus::GPU, " #N ">"
#define LOCUS_CPU_GPU_PAIR_(N)                                                               \
  LOCUS_DEVICE_MISMATCH_(Device<CPU>, Device<GPU LOCUS_COMMA_ N>, LOCUS_CPU_, LOCUS_GPU_(N), \
                         LOCUS_QCPU_)                                                        \
  LOCUS_DEVICE_MISMATCH_(Device<GPU LOCUS_COMMA_ N>, Device<CPU>, LOCUS_GPU_(N), LOCUS_CPU_, \
                         LOCUS_QGPU_(N))
#define LOCUS_GPU_PAIR_(A, B)                                                                   \
  LOCUS_DEVICE_MISMATCH_(Device<GPU LOCUS_COMMA_ A>, Device<GPU LOCUS_COMMA_ B>, LOCUS_GPU_(A), \
                         LOCUS_GPU_(B), LOCUS_QGPU_(A))
#define LOCUS_COMMA_ ,

LOCUS_CPU_GPU_PAIR_(0)
LOCUS_CPU_GPU_PAIR_(1)
LOCUS_CPU_GPU_PAIR_(2)
LOCUS_CPU_GPU_PAIR_(3)
LOCUS_GPU_PAIR_(0, 1)
LOCUS_GPU_PAIR_(0, 2)
LOCUS_GPU_PAIR_(0, 3)
LOCUS_GPU_PAIR_(1, 0)
LOCUS_GPU_PAIR_(1, 2)
LOCUS_GPU_PAIR_(1, 3)
LOCUS_GPU_PAIR_(2, 0)
LOCUS_GPU_PAIR_(2, 1)
LOCUS_GPU_PAIR_(2, 3)
LOCUS_GPU_PAIR_(3, 0)
LOCUS_GPU_PAIR_(3, 1)
LOCUS_GPU_PAIR_(3, 2)

#undef LOCUS_GPU_PAIR_
#undef LOCUS_CPU_GPU_PAIR_
#undef LOCUS_DEVICE_MISMATCH_

/// Instantiating this with two different devices stops compilation with the sentence
/// above; with equal devices it is an empty type.
template <class Left, class Right, class Context = void>
struct require_same_device : device_mismatch<Left, Right, Context> {};
template <class D, class Context>
struct require_same_device<D, D, Context> {};

/// Folds the devices of two operands into the device of the result (as xtensor folds
/// expression tags). Mismatch is reported by require_same_device, not by a missing type.
template <class Left, class Right>
struct common_device {
  using type = Left;
};
template <class Left, class Right>
using common_device_t = typename common_device<Left, Right>::type;

// ---- no host access to device data -----------------------------------------------------

template <class Dev, class Context = void>
struct host_access_denied {
  static_assert(dependent_false<Dev, Context>,
                "locus: a tensor on an OpenCL device has no host access (element access, "
                "data(), iterators, stream output); copy it first: "
                "auto h = locus::to<locus::Device<locus::CPU>>(t);");
};
template <class Context>
struct host_access_denied<Device<CPU>, Context> {};

#define LOCUS_HOST_ACCESS_(N)                                                   \
  template <class Context>                                                      \
  struct host_access_denied<Device<GPU, N>, Context> {                          \
    static_assert(dependent_false<Context>,                                     \
                  "locus: a tensor on Device<GPU, " #N                          \
                  "> has no host access (element access, "                      \
                  "data(), iterators, stream output); copy it first: auto h = " \
                  "locus::to<locus::Device<locus::CPU>>(t);");                  \
  };
LOCUS_HOST_ACCESS_(0)
LOCUS_HOST_ACCESS_(1)
LOCUS_HOST_ACCESS_(2)
LOCUS_HOST_ACCESS_(3)
#undef LOCUS_HOST_ACCESS_

// ---- no implicit construction or assignment across devices -----------------------------

template <class Dst, class Src, class Context = void>
struct cross_device_conversion {
  static_assert(dependent_false<Dst, Src, Context>,
                "locus: a tensor cannot be converted implicitly to another device (devices "
                "named in the 'required from' note); copy it explicitly with "
                "locus::to<Dev>(x)");
};

template <class D, class Context>
struct cross_device_conversion<D, D, Context> {};

#define LOCUS_CONVERSION_(D, S, DS, SS, DQ)                                 \
  template <class Context>                                                  \
  struct cross_device_conversion<D, S, Context> {                           \
    static_assert(dependent_false<Context>,                                 \
                  "locus: a tensor on " SS " cannot become a tensor on " DS \
                  " implicitly; copy it explicitly: locus::to<" DQ ">(x)"); \
  };
#define LOCUS_CONVERSION_CPU_GPU_(N)                                                    \
  LOCUS_CONVERSION_(Device<CPU>, Device<GPU LOCUS_COMMA_ N>, LOCUS_CPU_, LOCUS_GPU_(N), \
                    LOCUS_QCPU_)                                                        \
  LOCUS_CONVERSION_(Device<GPU LOCUS_COMMA_ N>, Device<CPU>, LOCUS_GPU_(N), LOCUS_CPU_, \
                    LOCUS_QGPU_(N))
#define LOCUS_CONVERSION_GPU_(A, B)                                                        \
  LOCUS_CONVERSION_(Device<GPU LOCUS_COMMA_ A>, Device<GPU LOCUS_COMMA_ B>, LOCUS_GPU_(A), \
                    LOCUS_GPU_(B), LOCUS_QGPU_(A))
LOCUS_CONVERSION_CPU_GPU_(0)
LOCUS_CONVERSION_CPU_GPU_(1)
LOCUS_CONVERSION_CPU_GPU_(2)
LOCUS_CONVERSION_CPU_GPU_(3)
LOCUS_CONVERSION_GPU_(0, 1)
LOCUS_CONVERSION_GPU_(1, 0)
LOCUS_CONVERSION_GPU_(0, 2)
LOCUS_CONVERSION_GPU_(2, 0)
LOCUS_CONVERSION_GPU_(1, 2)
LOCUS_CONVERSION_GPU_(2, 1)

// ---- objects bound to one device (models, optimizers) never become another's ------------
//
// LOCUS_BOUND_OBJECT_MISMATCH_(NAME, WHAT, FIX) defines NAME<Dst, Src>: empty for equal
// devices, a sentence naming both devices and FIX (with the destination device spelled
// in) for every pair a program can realistically name.
#define LOCUS_BOUND_PAIR_(NAME, WHAT, FIX, D, S, DS, SS, DQ)                     \
  template <class Context>                                                       \
  struct NAME<D, S, Context> {                                                   \
    static_assert(dependent_false<Context>,                                      \
                  "locus: " WHAT " bound to " SS " cannot be used as one on " DS \
                  "; copy it explicitly: locus::to<" DQ ">(" FIX ")");           \
  };
#define LOCUS_BOUND_CPU_GPU_(NAME, WHAT, FIX, N)                                             \
  LOCUS_BOUND_PAIR_(NAME, WHAT, FIX, Device<CPU>, Device<GPU LOCUS_COMMA_ N>, LOCUS_CPU_,    \
                    LOCUS_GPU_(N), LOCUS_QCPU_)                                              \
  LOCUS_BOUND_PAIR_(NAME, WHAT, FIX, Device<GPU LOCUS_COMMA_ N>, Device<CPU>, LOCUS_GPU_(N), \
                    LOCUS_CPU_, LOCUS_QGPU_(N))
#define LOCUS_BOUND_GPU_(NAME, WHAT, FIX, A, B)                                              \
  LOCUS_BOUND_PAIR_(NAME, WHAT, FIX, Device<GPU LOCUS_COMMA_ A>, Device<GPU LOCUS_COMMA_ B>, \
                    LOCUS_GPU_(A), LOCUS_GPU_(B), LOCUS_QGPU_(A))
#define LOCUS_BOUND_OBJECT_MISMATCH_(NAME, WHAT, FIX)                                           \
  template <class Dst, class Src, class Context = void>                                         \
  struct NAME {                                                                                 \
    static_assert(                                                                              \
        dependent_false<Dst, Src, Context>,                                                     \
        "locus: " WHAT                                                                          \
        " bound to one device cannot be used as one of another (devices "                       \
        "named in the 'required from' note); copy it explicitly with locus::to<Dev>(" FIX ")"); \
  };                                                                                            \
  template <class D, class Context>                                                             \
  struct NAME<D, D, Context> {};                                                                \
  LOCUS_BOUND_CPU_GPU_(NAME, WHAT, FIX, 0)                                                      \
  LOCUS_BOUND_CPU_GPU_(NAME, WHAT, FIX, 1)                                                      \
  LOCUS_BOUND_CPU_GPU_(NAME, WHAT, FIX, 2)                                                      \
  LOCUS_BOUND_CPU_GPU_(NAME, WHAT, FIX, 3)                                                      \
  LOCUS_BOUND_GPU_(NAME, WHAT, FIX, 0, 1)                                                       \
  LOCUS_BOUND_GPU_(NAME, WHAT, FIX, 1, 0)                                                       \
  LOCUS_BOUND_GPU_(NAME, WHAT, FIX, 0, 2)                                                       \
  LOCUS_BOUND_GPU_(NAME, WHAT, FIX, 2, 0)                                                       \
  LOCUS_BOUND_GPU_(NAME, WHAT, FIX, 1, 2)                                                       \
  LOCUS_BOUND_GPU_(NAME, WHAT, FIX, 2, 1)

LOCUS_BOUND_OBJECT_MISMATCH_(model_device_mismatch, "a model", "model")
LOCUS_BOUND_OBJECT_MISMATCH_(optimizer_device_mismatch, "an optimizer",
                             "model, {.optimizer = true}")
LOCUS_BOUND_OBJECT_MISMATCH_(dataset_device_mismatch, "a dataset", "dataset")

// ---- data-parallel replicas (parallel/mirrored.hpp) -------------------------------------
//
// Mirrored splits each global batch from the host, so its data lives on Device<CPU>; data on
// a device would have to come back first. Named for each device a program can name.
template <class Dev, class Context = void>
struct mirrored_data_on_device {};
#define LOCUS_MIRRORED_DATA_(N)                                                     \
  template <class Context>                                                          \
  struct mirrored_data_on_device<Device<GPU, N>, Context> {                         \
    static_assert(dependent_false<Context>,                                       \
                  "locus: Mirrored splits each global batch from Device<CPU>; "   \
                  "data on " LOCUS_GPU_(N) " cannot feed it: give it host data, " \
                  "e.g. locus::to<" LOCUS_QCPU_ ">(x)"); \
  };
LOCUS_MIRRORED_DATA_(0)
LOCUS_MIRRORED_DATA_(1)
LOCUS_MIRRORED_DATA_(2)
LOCUS_MIRRORED_DATA_(3)
#undef LOCUS_MIRRORED_DATA_

// ---- int8 calibration (inference/quantized_plan.hpp) -------------------------------------
//
// Calibration runs the float graph on the host whatever the plan's device, so its data are
// host tensors; data on a device would have to come back first, explicitly.
template <class Dev, class Context = void>
struct calibration_data_on_device {};
#define LOCUS_CALIBRATION_DATA_(N)                                                         \
  template <class Context>                                                                 \
  struct calibration_data_on_device<Device<GPU, N>, Context> {                             \
    static_assert(dependent_false<Context>,                                                \
                  "locus: calibrate runs on Device<CPU>; data on " LOCUS_GPU_(             \
                      N) " cannot feed it: give it host data, e.g. locus::to<" LOCUS_QCPU_ \
                         ">(x)");                                                          \
  };
LOCUS_CALIBRATION_DATA_(0)
LOCUS_CALIBRATION_DATA_(1)
LOCUS_CALIBRATION_DATA_(2)
LOCUS_CALIBRATION_DATA_(3)
#undef LOCUS_CALIBRATION_DATA_

// A device listed twice: two replicas cannot share one device's memory and queue.
template <class Dev, class Context = void>
struct mirrored_duplicate_device {
  static_assert(dependent_false<Dev, Context>,
                "locus: Mirrored lists one device twice (named in the 'required from' note); "
                "give each replica a device of its own");
};
template <class Context>
struct mirrored_duplicate_device<Device<CPU>, Context> {
  static_assert(dependent_false<Context>,
                "locus: Mirrored lists Device<CPU> twice; give each replica a device of its "
                "own, e.g. Mirrored<Device<GPU, 0>, Device<GPU, 1>>");
};
#define LOCUS_MIRRORED_TWICE_(N)                                                       \
  template <class Context>                                                             \
  struct mirrored_duplicate_device<Device<GPU, N>, Context> {                          \
    static_assert(dependent_false<Context>,                                          \
                  "locus: Mirrored lists " LOCUS_GPU_(N) " twice; give each replica a " \
                  "device of its own, e.g. Mirrored<Device<GPU, 0>, Device<GPU, 1>>"); \
  };
LOCUS_MIRRORED_TWICE_(0)
LOCUS_MIRRORED_TWICE_(1)
LOCUS_MIRRORED_TWICE_(2)
LOCUS_MIRRORED_TWICE_(3)
#undef LOCUS_MIRRORED_TWICE_

// replica<D>() for a device that holds no replica: names the device asked for and, as the
// fix, the first replica's device.
template <class First, class Asked, class Context = void>
struct mirrored_no_replica {
  static_assert(dependent_false<First, Asked, Context>,
                "locus: this Mirrored model has no replica on the device asked for (named in "
                "the 'required from' note); ask for one of its devices, e.g. replica<0>()");
};
#define LOCUS_NO_REPLICA_(F, A, FS, AS, FQ)                               \
  template <class Context>                                                \
  struct mirrored_no_replica<F, A, Context> {                             \
    static_assert(dependent_false<Context>,                               \
                  "locus: this Mirrored model has no replica on " AS      \
                  "; "                                                    \
                  "ask for one it has, e.g. replica<" FQ ">() (" FS ")"); \
  };
#define LOCUS_NO_REPLICA_CPU_GPU_(N)                                                    \
  LOCUS_NO_REPLICA_(Device<CPU>, Device<GPU LOCUS_COMMA_ N>, LOCUS_CPU_, LOCUS_GPU_(N), \
                    LOCUS_QCPU_)                                                        \
  LOCUS_NO_REPLICA_(Device<GPU LOCUS_COMMA_ N>, Device<CPU>, LOCUS_GPU_(N), LOCUS_CPU_, \
                    LOCUS_QGPU_(N))
#define LOCUS_NO_REPLICA_GPU_(A, B)                                                        \
  LOCUS_NO_REPLICA_(Device<GPU LOCUS_COMMA_ A>, Device<GPU LOCUS_COMMA_ B>, LOCUS_GPU_(A), \
                    LOCUS_GPU_(B), LOCUS_QGPU_(A))
LOCUS_NO_REPLICA_CPU_GPU_(0)
LOCUS_NO_REPLICA_CPU_GPU_(1)
LOCUS_NO_REPLICA_CPU_GPU_(2)
LOCUS_NO_REPLICA_CPU_GPU_(3)
LOCUS_NO_REPLICA_GPU_(0, 2)
LOCUS_NO_REPLICA_GPU_(0, 3)
LOCUS_NO_REPLICA_GPU_(1, 2)
LOCUS_NO_REPLICA_GPU_(1, 3)
LOCUS_NO_REPLICA_GPU_(2, 0)
LOCUS_NO_REPLICA_GPU_(1, 0)
#undef LOCUS_NO_REPLICA_GPU_
#undef LOCUS_NO_REPLICA_CPU_GPU_
#undef LOCUS_NO_REPLICA_

#undef LOCUS_BOUND_OBJECT_MISMATCH_
#undef LOCUS_BOUND_GPU_
#undef LOCUS_BOUND_CPU_GPU_
#undef LOCUS_BOUND_PAIR_
#undef LOCUS_CONVERSION_GPU_
#undef LOCUS_CONVERSION_CPU_GPU_
#undef LOCUS_CONVERSION_
#undef LOCUS_CPU_
#undef LOCUS_GPU_
#undef LOCUS_QCPU_
#undef LOCUS_QGPU_
#undef LOCUS_COMMA_

// ---- element types meet only through an explicit cast ----------------------------------

template <class To, class From, class Context = void>
struct element_type_mismatch {
  static_assert(dependent_false<To, From, Context>,
                "locus: the element types differ (named in the 'required from' note); convert "
                "explicitly with locus::cast<T>(x)");
};
template <class T, class Context>
struct element_type_mismatch<T, T, Context> {};

}  // namespace locus::detail
