// Pieces shared by the OpenCL C sources: element type names and the per-type prelude.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

namespace locus::backend::opencl::kernels {

/// The OpenCL C spelling of a locus element type.
template <class T>
constexpr const char* cl_type_name() {
  if constexpr (std::is_same_v<T, float>) {
    return "float";
  } else if constexpr (std::is_same_v<T, double>) {
    return "double";
  } else {
    static_assert(std::is_same_v<T, std::int32_t>,
                  "locus: OpenCL element types are float, double, int32");
    return "int";
  }
}

/// "#define T float" plus what the type needs: the fp64 pragma for double (buffers of
/// double are refused earlier on devices without cl_khr_fp64), limits, and an integer flag.
template <class T>
std::string type_prelude() {
  std::string s;
  if constexpr (std::is_same_v<T, double>) s += "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n";
  s += std::string("#define T ") + cl_type_name<T>() + "\n";
  if constexpr (std::is_same_v<T, float>) {
    s += "#define T_LOWEST (-FLT_MAX)\n#define T_MAX FLT_MAX\n";
  } else if constexpr (std::is_same_v<T, double>) {
    s += "#define T_LOWEST (-DBL_MAX)\n#define T_MAX DBL_MAX\n";
  } else {
    s += "#define T_LOWEST INT_MIN\n#define T_MAX INT_MAX\n#define LOCUS_INT 1\n";
  }
  return s;
}

/// Options common to every locus program: the language version locus is written in.
inline const char* base_options() {
  return "-cl-std=CL1.2";
}

}  // namespace locus::backend::opencl::kernels
