# Compile-fail and compile-pass tests.
#
#   locus_add_compile_fail_test(NAME <name> SOURCE <file> EXPECT <regex>
#                               [DEFINITIONS <def>...] [LIBRARIES <target>...]
#                               [LABELS <label>...])
#       Registers the ctest <name>. It passes only if compiling <file> FAILS and the first
#       line of the compiler output that contains "error:" (MSVC: "error Cnnnn:") matches
#       <regex> (CMake regular-expression syntax, searched anywhere in the line).
#
#   locus_add_compile_pass_test(NAME <name> SOURCE <file>
#                               [DEFINITIONS <def>...] [LIBRARIES <target>...]
#                               [LABELS <label>...] [OPTIONS <flag>...] [CODEGEN])
#       Registers the ctest <name>. It passes only if <file> compiles. OPTIONS are added
#       to its compile command; CODEGEN compiles to an object file even where other checks
#       stop after the front end (needed for the optimiser's warnings, which -fsyntax-only
#       never reaches).
#
# How it works. Each snippet becomes an OBJECT library that is EXCLUDE_FROM_ALL, so the
# build never compiles it, and that links locus::locus and gets the project warnings: the
# snippet is compiled with exactly the compiler, flags, definitions and include
# directories a real user of locus::locus gets. The ctest runs
# `cmake -P LocusCompileCheck.cmake`, at test time (never at configure time), which
#   - with the Makefile and Ninja generators: looks the snippet's compile command up in
#     compile_commands.json (written by CMake, so it is the real command), points its
#     output into a scratch directory and runs it with execute_process; these tests are
#     independent and run in parallel; with GCC and Clang it adds -fsyntax-only
#     (LOCUS_COMPILE_CHECK_SYNTAX_ONLY, default ON): templates are still instantiated and
#     every static_assert still fires, only code generation is skipped;
#   - with any other generator: runs `cmake --build <dir> --target <object library>`;
#     those tests share a RESOURCE_LOCK because build tools do not like two builds of one
#     tree at once.
# The script prints the whole compiler output, then its verdict.
#
# Precompiled header (LOCUS_COMPILE_CHECK_PCH, default ON; GCC and Clang). Parsing
# <locus/locus.hpp> is most of a check's time (about 4 s of 4.6 s with GCC 12), so the
# checks compiled with exactly the flags of a plain user of locus::locus reuse one
# precompiled <locus/locus.hpp>: the OBJECT library locus_compile_check_pch (built by
# default; it compiles one empty file) carries it with those flags, and each such check
# gets `target_precompile_headers(REUSE_FROM locus_compile_check_pch)`, so its replayed
# command force-includes the header (GCC: `-include` of the .gch; Clang: `-include-pch`)
# and the snippet's own #include <locus/locus.hpp> is a no-op. Templates are instantiated
# and static_asserts fire in the snippet as before; one difference in the output: GCC 12
# tracks no macro expansions in a compile that uses a PCH (-ftrack-macro-expansion=2 does
# not bring them back), so an error raised inside a macro is placed at the macro's
# expansion point rather than its spelling, without the "in expansion of macro" notes
# (the message is the same; EXPECT regexes match messages, never locations).
#   The ctest compile_checks.precompiled_header builds the PCH target (a no-op when it is
# up to date) before any check that uses it runs (a test fixture): the checks replay their
# commands at test time, the clang phase of scripts/test.sh runs them without a build, and
# a check of an edited header must never go through a stale PCH (neither GCC 12 nor
# Clang 14 notices one: a check then passes on the header as it was).
#   Checks that do NOT use it: those with OPTIONS or CODEGEN (the -march matrix: other
# target flags, code generation); those with DEFINITIONS other than the snippets' own
# switch LOCUS_SHOULD_FAIL (which no header mentions) or LIBRARIES other than locus::io
# (include directories only; both compilers accept the PCH with them, checked), because a
# macro or flag could change what the header means; and snippets that #define or #undef
# anything before their last #include (the force-included header would be read before
# that macro). A PCH that is missing or unusable fails the check (LocusCompileCheck.cmake)
# rather than being silently skipped.
#
# The expectation is written to a file at configure time and read back by the script, so
# a regex may contain any character (quotes, semicolons, brackets).
include_guard(GLOBAL)

set(_LOCUS_COMPILE_CHECK_SCRIPT "${CMAKE_CURRENT_LIST_DIR}/LocusCompileCheck.cmake")

option(LOCUS_COMPILE_CHECK_SYNTAX_ONLY
       "Compile-fail/pass tests stop after the front end (-fsyntax-only: templates are instantiated and static_asserts fire; no code generation)"
       ON)
option(LOCUS_COMPILE_CHECK_PCH
       "Compile-fail/pass tests (GCC, Clang) reuse one precompiled <locus/locus.hpp> (see cmake/LocusCompileFail.cmake)"
       ON)

# The DEFINITIONS and LIBRARIES a check may have and still reuse the precompiled header:
# LOCUS_SHOULD_FAIL is the snippets' own switch (no header mentions it), locus::io adds
# only include directories (-isystem), which neither GCC nor Clang checks a PCH against.
set(_LOCUS_COMPILE_CHECK_PCH_DEFINITIONS LOCUS_SHOULD_FAIL)
set(_LOCUS_COMPILE_CHECK_PCH_LIBRARIES locus::io)

# The target carrying the precompiled <locus/locus.hpp> of the compile checks, with the
# flags of a check (locus::locus, the project warnings), and the test fixture that brings
# it up to date before the checks run (see the top of this file). Created with the first
# check that uses it, in that check's directory (no directory of the project adds flags of
# its own).
function(_locus_compile_check_pch_target)
  if(TARGET locus_compile_check_pch)
    return()
  endif()
  set(source "${PROJECT_BINARY_DIR}/compile_checks/locus_compile_check_pch.cpp")
  file(CONFIGURE OUTPUT "${source}"
       CONTENT "// Generated by LocusCompileFail.cmake: carries the precompiled <locus/locus.hpp> of the compile checks.\n"
       @ONLY)
  add_library(locus_compile_check_pch OBJECT "${source}")
  target_link_libraries(locus_compile_check_pch PRIVATE locus::locus)
  if(COMMAND locus_target_warnings)
    locus_target_warnings(locus_compile_check_pch)
  endif()
  target_precompile_headers(locus_compile_check_pch PRIVATE <locus/locus.hpp>)
  set_target_properties(locus_compile_check_pch PROPERTIES FOLDER "compile_checks")
  set(build_command "${CMAKE_COMMAND}" --build "${PROJECT_BINARY_DIR}" --target locus_compile_check_pch)
  if(CMAKE_CONFIGURATION_TYPES)
    list(APPEND build_command --config "$<CONFIG>")
  endif()
  add_test(NAME compile_checks.precompiled_header COMMAND ${build_command})
  set_tests_properties(compile_checks.precompiled_header
                       PROPERTIES LABELS compile TIMEOUT 300 FIXTURES_SETUP locus_compile_check_pch
                                  RESOURCE_LOCK locus_compile_checks)
endfunction()

# Whether the check of <source> may reuse the precompiled header (see the top of this file).
function(_locus_compile_check_uses_pch out source definitions libraries options codegen)
  set(${out} OFF PARENT_SCOPE)
  if(NOT LOCUS_COMPILE_CHECK_PCH OR NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang"
     OR CMAKE_CXX_SIMULATE_ID STREQUAL "MSVC" OR options OR codegen)
    return()
  endif()
  foreach(definition IN LISTS definitions)
    if(NOT definition IN_LIST _LOCUS_COMPILE_CHECK_PCH_DEFINITIONS)
      return()
    endif()
  endforeach()
  foreach(library IN LISTS libraries)
    if(NOT library IN_LIST _LOCUS_COMPILE_CHECK_PCH_LIBRARIES)
      return()
    endif()
  endforeach()
  file(READ "${source}" content)
  # Everything before the snippet's last #include (the regex is greedy).
  string(REGEX MATCH "^(.*)\n[ \t]*#[ \t]*include" before_last_include "\n${content}")
  if(CMAKE_MATCH_1 MATCHES "\n[ \t]*#[ \t]*(define|undef)[ \t]")
    return()
  endif()
  set(${out} ON PARENT_SCOPE)
endfunction()

# Positional (not ARGN) so that a regex containing ';' reaches here intact.
function(_locus_add_compile_check mode arg_NAME arg_SOURCE arg_EXPECT arg_DEFINITIONS
         arg_LIBRARIES arg_LABELS arg_OPTIONS arg_CODEGEN)
  if(NOT arg_NAME OR NOT arg_SOURCE)
    message(FATAL_ERROR "locus_add_compile_${mode}_test: NAME and SOURCE are required")
  endif()
  get_filename_component(source "${arg_SOURCE}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT EXISTS "${source}")
    message(FATAL_ERROR "locus_add_compile_${mode}_test(${arg_NAME}): no file ${source}")
  endif()
  if(mode STREQUAL "fail")
    if(arg_EXPECT STREQUAL "")
      message(FATAL_ERROR "locus_add_compile_fail_test(${arg_NAME}): EXPECT <regex> is required")
    endif()
    # Reject an invalid regular expression now, not at test time.
    if("" MATCHES "${arg_EXPECT}")
    endif()
  endif()

  string(MAKE_C_IDENTIFIER "locus_cc_${mode}_${arg_NAME}" target)
  set(work "${CMAKE_CURRENT_BINARY_DIR}/compile_checks/${target}")
  file(MAKE_DIRECTORY "${work}")

  # A wrapper gives every check its own source file, hence its own unique entry in
  # compile_commands.json even when one snippet is compiled twice (with and without the
  # mistake). Diagnostics still point into the snippet itself.
  set(wrapper "${work}/${arg_NAME}.cpp")
  file(CONFIGURE OUTPUT "${wrapper}"
       CONTENT "// Generated by LocusCompileFail.cmake; compiles @source@\n#include \"@source@\"\n"
       @ONLY)

  add_library(${target} OBJECT EXCLUDE_FROM_ALL "${wrapper}")
  target_link_libraries(${target} PRIVATE locus::locus ${arg_LIBRARIES})
  target_compile_definitions(${target} PRIVATE ${arg_DEFINITIONS})
  if(COMMAND locus_target_warnings)
    locus_target_warnings(${target})
  endif()
  target_compile_options(${target} PRIVATE ${arg_OPTIONS})
  set_target_properties(${target} PROPERTIES EXPORT_COMPILE_COMMANDS ON FOLDER "compile_checks")
  _locus_compile_check_uses_pch(use_pch "${source}" "${arg_DEFINITIONS}" "${arg_LIBRARIES}"
                                "${arg_OPTIONS}" "${arg_CODEGEN}")
  if(use_pch)
    _locus_compile_check_pch_target()
    target_precompile_headers(${target} REUSE_FROM locus_compile_check_pch)
  endif()
  # Lets a developer compile every must-compile snippet at once:
  #   cmake --build build --target locus_compile_pass_snippets
  if(mode STREQUAL "pass")
    if(NOT TARGET locus_compile_pass_snippets)
      add_custom_target(locus_compile_pass_snippets)
    endif()
    add_dependencies(locus_compile_pass_snippets ${target})
  endif()

  set(expect_file "${work}/expect.txt")
  if(mode STREQUAL "fail")
    file(WRITE "${expect_file}" "${arg_EXPECT}")
  else()
    file(REMOVE "${expect_file}")
  endif()

  if(CMAKE_GENERATOR MATCHES "Ninja|Makefiles" AND NOT CMAKE_GENERATOR MATCHES "Multi-Config")
    set(strategy compdb)
    if(LOCUS_COMPILE_CHECK_SYNTAX_ONLY AND NOT arg_CODEGEN AND CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang"
       AND NOT CMAKE_CXX_SIMULATE_ID STREQUAL "MSVC")
      set(syntax_only ON)
    else()
      set(syntax_only OFF)
    endif()
  else()
    set(syntax_only OFF)
    set(strategy build)
  endif()

  add_test(
    NAME ${arg_NAME}
    COMMAND
      "${CMAKE_COMMAND}" "-DLOCUS_CC_MODE=${mode}" "-DLOCUS_CC_STRATEGY=${strategy}"
      "-DLOCUS_CC_SOURCE=${wrapper}" "-DLOCUS_CC_SNIPPET=${source}"
      "-DLOCUS_CC_COMPDB=${CMAKE_BINARY_DIR}/compile_commands.json"
      "-DLOCUS_CC_EXPECT_FILE=${expect_file}" "-DLOCUS_CC_WORK_DIR=${work}"
      "-DLOCUS_CC_BUILD_DIR=${CMAKE_BINARY_DIR}" "-DLOCUS_CC_TARGET=${target}"
      "-DLOCUS_CC_CONFIG=$<CONFIG>" "-DLOCUS_CC_SYNTAX_ONLY=${syntax_only}" "-DLOCUS_CC_PCH=${use_pch}"
      -P "${_LOCUS_COMPILE_CHECK_SCRIPT}")
  set(labels compile ${arg_LABELS})
  set_tests_properties(${arg_NAME} PROPERTIES LABELS "${labels}" TIMEOUT 300)
  if(use_pch)
    set_tests_properties(${arg_NAME} PROPERTIES FIXTURES_REQUIRED locus_compile_check_pch)
  endif()
  if(strategy STREQUAL "build")
    set_tests_properties(${arg_NAME} PROPERTIES RESOURCE_LOCK locus_compile_checks)
  endif()
endfunction()

function(locus_add_compile_fail_test)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "NAME;SOURCE;EXPECT" "DEFINITIONS;LIBRARIES;LABELS")
  _locus_add_compile_check(fail "${arg_NAME}" "${arg_SOURCE}" "${arg_EXPECT}" "${arg_DEFINITIONS}"
                           "${arg_LIBRARIES}" "${arg_LABELS}" "" OFF)
endfunction()

function(locus_add_compile_pass_test)
  cmake_parse_arguments(PARSE_ARGV 0 arg "CODEGEN" "NAME;SOURCE" "DEFINITIONS;LIBRARIES;LABELS;OPTIONS")
  _locus_add_compile_check(pass "${arg_NAME}" "${arg_SOURCE}" "" "${arg_DEFINITIONS}"
                           "${arg_LIBRARIES}" "${arg_LABELS}" "${arg_OPTIONS}" "${arg_CODEGEN}")
endfunction()

# locus_add_compile_checks_from_directories(FAIL_DIR <dir> PASS_DIR <dir>)
#
# The convention for snippet files:
#   FAIL_DIR/<rule>.cpp starts with the line `// EXPECT: <regex>`.
#     If it mentions LOCUS_SHOULD_FAIL (the mistake sits in `#ifdef LOCUS_SHOULD_FAIL`),
#     it yields compile_fail.<rule> (compiled with -DLOCUS_SHOULD_FAIL, must fail with the
#     expected first error) and a control (compiled as is, must compile: proves the snippet
#     fails for the intended reason only), compiled with other controls in a batch
#     compile_fail.controls_<n> (see _locus_add_compile_controls).
#     Otherwise PASS_DIR/<rule>.cpp must exist and is its must-compile twin.
#   PASS_DIR/<name>.cpp yields compile_pass.<name> (must compile).
# A fail snippet without a twin is a configure error. Adding a file adds its tests.
function(locus_add_compile_checks_from_directories)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "FAIL_DIR;PASS_DIR" "")
  file(GLOB fail_sources CONFIGURE_DEPENDS "${arg_FAIL_DIR}/*.cpp")
  file(GLOB pass_sources CONFIGURE_DEPENDS "${arg_PASS_DIR}/*.cpp")
  list(SORT fail_sources)
  list(SORT pass_sources)

  foreach(source IN LISTS fail_sources)
    get_filename_component(rule "${source}" NAME_WE)
    file(READ "${source}" content)
    string(FIND "${content}" "\n" eol)
    string(SUBSTRING "${content}" 0 ${eol} first_line)
    string(REGEX REPLACE "\r$" "" first_line "${first_line}")
    if(NOT first_line MATCHES "^// EXPECT: (.+)$")
      message(FATAL_ERROR "${source}: the first line must be `// EXPECT: <regex>` (the expected "
                          "start of the first compiler error line)")
    endif()
    set(expect "${CMAKE_MATCH_1}")
    string(STRIP "${expect}" expect)

    if(content MATCHES "LOCUS_SHOULD_FAIL")
      locus_add_compile_fail_test(NAME compile_fail.${rule} SOURCE "${source}" EXPECT "${expect}"
                                  DEFINITIONS LOCUS_SHOULD_FAIL)
      list(APPEND controls "${source}")
    elseif(EXISTS "${arg_PASS_DIR}/${rule}.cpp")
      locus_add_compile_fail_test(NAME compile_fail.${rule} SOURCE "${source}" EXPECT "${expect}")
    else()
      message(FATAL_ERROR
        "${source}: a compile-fail snippet needs a twin that compiles: either put the mistake "
        "in `#ifdef LOCUS_SHOULD_FAIL` ... `#else` (the correct code) `#endif`, or add "
        "${arg_PASS_DIR}/${rule}.cpp")
    endif()
  endforeach()

  _locus_add_compile_controls(${controls})

  foreach(source IN LISTS pass_sources)
    get_filename_component(name "${source}" NAME_WE)
    locus_add_compile_pass_test(NAME compile_pass.${name} SOURCE "${source}")
  endforeach()
endfunction()

# The controls (the snippets compiled as they are, without LOCUS_SHOULD_FAIL) are compiled
# in batches: one translation unit holds several snippets, each wrapped in a namespace of
# its own, after every header any of them includes (so the snippets' own #includes are
# no-ops inside the namespaces). Most of a snippet's compile time is the headers and the
# templates they share, so a batch costs little more than one snippet. A failing batch
# names the snippet in its diagnostics. Snippets therefore keep to namespace-scope code
# (no specialisations of locus templates, no main).
set(LOCUS_COMPILE_CONTROL_BATCH 8 CACHE STRING "Compile-fail controls per translation unit")
function(_locus_add_compile_controls)
  set(sources ${ARGN})
  list(LENGTH sources count)
  if(count EQUAL 0)
    return()
  endif()
  set(batch_dir "${CMAKE_CURRENT_BINARY_DIR}/compile_checks/controls")
  file(MAKE_DIRECTORY "${batch_dir}")
  set(batch 0)
  set(index 0)
  while(index LESS count)
    math(EXPR batch "${batch} + 1")
    set(headers "")
    set(bodies "")
    set(rules "")
    foreach(k RANGE 1 ${LOCUS_COMPILE_CONTROL_BATCH})
      if(NOT index LESS count)
        break()
      endif()
      list(GET sources ${index} source)
      math(EXPR index "${index} + 1")
      get_filename_component(rule "${source}" NAME_WE)
      string(MAKE_C_IDENTIFIER "${rule}" id)
      file(STRINGS "${source}" includes REGEX "^#include <[^>]+>")
      list(APPEND headers ${includes})
      string(APPEND bodies "namespace locus_control_${id} {\n#include \"${source}\"\n}  // namespace locus_control_${id}\n")
      list(APPEND rules "${rule}")
    endforeach()
    list(REMOVE_DUPLICATES headers)
    list(JOIN headers "\n" header_lines)
    list(JOIN rules ", " rule_list)
    set(file "${batch_dir}/controls_${batch}.cpp")
    file(CONFIGURE OUTPUT "${file}"
         CONTENT "// Generated by LocusCompileFail.cmake: the controls of ${rule_list}\n${header_lines}\n\n${bodies}"
         @ONLY)
    locus_add_compile_pass_test(NAME compile_fail.controls_${batch} SOURCE "${file}")
  endwhile()
endfunction()

# locus_add_component_compile_fail_tests(DIR <dir> LIBRARIES <target>...): the compile-fail
# rules of a package component (tests/io/compile_fail, tests/mpi/compile_fail). Each snippet
# must fail with its `// EXPECT:` first error line when LOCUS_SHOULD_FAIL is defined, and
# compile without it (its control, compile_fail.<rule>.control), both linked with LIBRARIES.
function(locus_add_component_compile_fail_tests)
  cmake_parse_arguments(PARSE_ARGV 0 arg "" "DIR" "LIBRARIES")
  file(GLOB sources CONFIGURE_DEPENDS "${arg_DIR}/*.cpp")
  list(SORT sources)
  foreach(source IN LISTS sources)
    get_filename_component(rule "${source}" NAME_WE)
    file(STRINGS "${source}" first_line LIMIT_COUNT 1)
    if(NOT first_line MATCHES "^// EXPECT: (.+)$")
      message(FATAL_ERROR "${source}: the first line must be `// EXPECT: <regex>`")
    endif()
    string(STRIP "${CMAKE_MATCH_1}" expect)
    locus_add_compile_fail_test(NAME compile_fail.${rule} SOURCE "${source}" EXPECT "${expect}"
                                DEFINITIONS LOCUS_SHOULD_FAIL LIBRARIES ${arg_LIBRARIES})
    locus_add_compile_pass_test(NAME compile_fail.${rule}.control SOURCE "${source}"
                                LIBRARIES ${arg_LIBRARIES})
  endforeach()
endfunction()
