# Settings for everything the locus project itself builds (tests, examples, benchmarks,
# tools, compile checks). None of this is part of the installed locus::locus target.
#
#   locus_target_warnings(<target>)
#       -Wall -Wextra -Wpedantic (MSVC: /W4 /permissive-), plus -Werror (/WX) when
#       LOCUS_WERROR is ON.
#   locus_configure_program(<target> [OPTIMIZE] [SANITIZE])
#       links locus::locus, adds the warnings; OPTIMIZE links locus::optimize unless
#       LOCUS_PORTABLE is ON; SANITIZE adds ASan+UBSan when LOCUS_SANITIZE is ON.
#   locus_set_test_environment(<test>...)
#       the environment every test that may touch OpenCL runs with.
include_guard(GLOBAL)

# The environment of every test: PoCL's CPU device may stand in for Device<GPU> only with
# this explicit opt-in (DESIGN rule 6), and PoCL shows two devices so Device<GPU, 1> is
# testable. Kept as a list; each element is NAME=VALUE.
set(LOCUS_TEST_ENVIRONMENT "LOCUS_OPENCL_ALLOW_CPU=1" "POCL_DEVICES=pthread pthread")
if(LOCUS_SANITIZE)
  list(APPEND LOCUS_TEST_ENVIRONMENT
       "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=0:check_initialization_order=1"
       "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0"
       "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()

set(LOCUS_SANITIZE_FLAGS -fsanitize=address,undefined -fno-omit-frame-pointer
                         -fno-sanitize-recover=all)

function(locus_target_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 /permissive-)
    if(LOCUS_WERROR)
      target_compile_options(${target} PRIVATE /WX)
    endif()
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic)
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
      # GCC 12 false positive at -O2/-O3 in its own libstdc++ headers: -Wrestrict inside
      # std::string's char_traits (GCC bug 105329, GCC 12.1-12.3). GCC 12's AVX-512 header
      # false positives (bug 105593) are silenced where locus includes xsimd
      # (backend/cpu/simd.hpp), so -Wuninitialized and -Wmaybe-uninitialized stay on here.
      target_compile_options(${target} PRIVATE -Wno-restrict)
    endif()
    if(LOCUS_WERROR)
      target_compile_options(${target} PRIVATE -Werror)
    endif()
  endif()
endfunction()

function(locus_configure_program target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "OPTIMIZE;SANITIZE" "" "")
  target_link_libraries(${target} PRIVATE locus::locus)
  locus_target_warnings(${target})
  if(arg_OPTIMIZE AND NOT LOCUS_PORTABLE)
    target_link_libraries(${target} PRIVATE locus::optimize)
  endif()
  if(arg_SANITIZE AND LOCUS_SANITIZE)
    if(MSVC)
      target_compile_options(${target} PRIVATE /fsanitize=address)
    else()
      target_compile_options(${target} PRIVATE ${LOCUS_SANITIZE_FLAGS})
      target_link_options(${target} PRIVATE -fsanitize=address,undefined)
    endif()
  endif()
  # Handy for tests and examples that read the Fashion-MNIST files of the Debian package
  # dataset-fashion-mnist; programs may still take another path at run time.
  target_compile_definitions(
    ${target} PRIVATE LOCUS_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                      LOCUS_FASHION_MNIST_DIR="/usr/share/datasets/fashion-mnist")
endfunction()

function(locus_set_test_environment)
  foreach(test IN LISTS ARGN)
    set_property(TEST ${test} APPEND PROPERTY ENVIRONMENT ${LOCUS_TEST_ENVIRONMENT})
  endforeach()
endfunction()
