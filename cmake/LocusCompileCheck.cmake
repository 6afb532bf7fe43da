# Runs one compile check at test time: `cmake -P LocusCompileCheck.cmake` with
#   LOCUS_CC_MODE         fail | pass
#   LOCUS_CC_STRATEGY     compdb (replay compile_commands.json) | build (cmake --build)
#   LOCUS_CC_SOURCE       the generated wrapper source (unique per check)
#   LOCUS_CC_SNIPPET      the snippet it includes (for messages)
#   LOCUS_CC_COMPDB       path of compile_commands.json
#   LOCUS_CC_EXPECT_FILE  file holding the regex the first error line must match (fail)
#   LOCUS_CC_WORK_DIR     scratch directory of this check
#   LOCUS_CC_BUILD_DIR, LOCUS_CC_TARGET, LOCUS_CC_CONFIG   for the build strategy
#   LOCUS_CC_SYNTAX_ONLY  ON: GCC/Clang run the front end only (-fsyntax-only), which
#                         instantiates templates and fires every static_assert but skips
#                         code generation (about twice as fast)
#   LOCUS_CC_PCH          ON: the command force-includes the precompiled <locus/locus.hpp>
#                         of locus_compile_check_pch; a PCH that is not built or that the
#                         compiler cannot use fails the check (the verdict would not be
#                         about the snippet, or GCC would quietly parse the header instead)
# See LocusCompileFail.cmake.
cmake_minimum_required(VERSION 3.20)

foreach(var LOCUS_CC_MODE LOCUS_CC_STRATEGY LOCUS_CC_SOURCE LOCUS_CC_WORK_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "LocusCompileCheck.cmake: ${var} is not set")
  endif()
endforeach()

function(_locus_cc_from_compdb out_command out_directory)
  if(NOT EXISTS "${LOCUS_CC_COMPDB}")
    message(FATAL_ERROR "no ${LOCUS_CC_COMPDB}; reconfigure the build directory")
  endif()
  file(READ "${LOCUS_CC_COMPDB}" db)
  string(JSON count LENGTH "${db}")
  file(REAL_PATH "${LOCUS_CC_SOURCE}" wanted)
  set(index 0)
  while(index LESS count)
    string(JSON file GET "${db}" ${index} file)
    string(JSON directory GET "${db}" ${index} directory)
    if(NOT IS_ABSOLUTE "${file}")
      set(file "${directory}/${file}")
    endif()
    if(EXISTS "${file}")
      file(REAL_PATH "${file}" file)
    endif()
    if(file STREQUAL wanted)
      string(JSON command ERROR_VARIABLE no_command GET "${db}" ${index} command)
      if(no_command)
        # "arguments" form: a JSON array of strings.
        string(JSON nargs LENGTH "${db}" ${index} arguments)
        set(command "")
        math(EXPR last "${nargs} - 1")
        foreach(i RANGE ${last})
          string(JSON arg GET "${db}" ${index} arguments ${i})
          list(APPEND command "${arg}")
        endforeach()
      else()
        separate_arguments(command UNIX_COMMAND "${command}")
      endif()
      set(${out_command} "${command}" PARENT_SCOPE)
      set(${out_directory} "${directory}" PARENT_SCOPE)
      return()
    endif()
    math(EXPR index "${index} + 1")
  endwhile()
  message(FATAL_ERROR "${LOCUS_CC_SOURCE} is not in ${LOCUS_CC_COMPDB}; reconfigure the build "
                      "directory")
endfunction()

# The object file and dependency files go to the scratch directory, so nothing the build
# system owns is touched and checks can run in parallel.
function(_locus_cc_redirect_outputs in_command out_command)
  set(result "")
  set(skip_next OFF)
  set(replace_next OFF)
  foreach(arg IN LISTS in_command)
    if(skip_next)
      set(skip_next OFF)
    elseif(replace_next)
      list(APPEND result "${LOCUS_CC_WORK_DIR}/check.o")
      set(replace_next OFF)
    elseif(arg STREQUAL "-o")
      list(APPEND result "-o")
      set(replace_next ON)
    elseif(arg MATCHES "^-(MD|MMD)$" OR arg MATCHES "^[-/]showIncludes")
      # dependency output: not needed
    elseif(arg MATCHES "^-(MT|MF|MQ)$")
      set(skip_next ON)
    elseif(arg MATCHES "^-(MT|MF|MQ).")
    elseif(arg MATCHES "^[-/]Fo")
      list(APPEND result "/Fo${LOCUS_CC_WORK_DIR}/check.obj")
    elseif(arg MATCHES "^[-/]Fd")
      list(APPEND result "/Fd${LOCUS_CC_WORK_DIR}/check.pdb")
    else()
      list(APPEND result "${arg}")
    endif()
  endforeach()
  set(${out_command} "${result}" PARENT_SCOPE)
endfunction()

# The PCH file the command uses must exist: Clang names it (`-Xclang -include-pch -Xclang
# <file>`); GCC is given the header (`-include <header>`) and uses <header>.gch next to it
# when there is one, else it parses the header's text without a word.
function(_locus_cc_check_pch_exists command)
  list(FILTER command EXCLUDE REGEX "^-Xclang$")
  set(pch "")
  set(next "")
  foreach(arg IN LISTS command)
    if(next STREQUAL "include-pch")
      set(pch "${arg}")
      break()
    elseif(next STREQUAL "include" AND arg MATCHES "cmake_pch\\.hxx$")
      set(pch "${arg}.gch")
    endif()
    set(next "")
    if(arg STREQUAL "-include-pch")
      set(next include-pch)
    elseif(arg STREQUAL "-include")
      set(next include)
    endif()
  endforeach()
  if(pch STREQUAL "")
    message(FATAL_ERROR "FAIL: this check uses the precompiled header of the compile checks, but "
                        "its compile command includes none; reconfigure the build directory")
  endif()
  if(NOT EXISTS "${pch}")
    message(FATAL_ERROR "FAIL: no precompiled header ${pch}: build the target "
                        "locus_compile_check_pch (the test compile_checks.precompiled_header "
                        "does), or configure with -DLOCUS_COMPILE_CHECK_PCH=OFF")
  endif()
endfunction()

if(LOCUS_CC_STRATEGY STREQUAL "compdb")
  _locus_cc_from_compdb(command directory)
  _locus_cc_redirect_outputs("${command}" command)
  if(LOCUS_CC_SYNTAX_ONLY)
    list(APPEND command -fsyntax-only)
  endif()
  file(REMOVE "${LOCUS_CC_WORK_DIR}/check.o" "${LOCUS_CC_WORK_DIR}/check.obj")
  if(LOCUS_CC_PCH)
    _locus_cc_check_pch_exists("${command}")
  endif()
else()
  set(command "${CMAKE_COMMAND}" --build "${LOCUS_CC_BUILD_DIR}" --target "${LOCUS_CC_TARGET}")
  if(LOCUS_CC_CONFIG)
    list(APPEND command --config "${LOCUS_CC_CONFIG}")
  endif()
  set(directory "${LOCUS_CC_BUILD_DIR}")
endif()

list(JOIN command " " shown)
message("locus compile check (${LOCUS_CC_MODE}): ${LOCUS_CC_SNIPPET}")
message("$ cd ${directory} && ${shown}")

execute_process(
  COMMAND ${command}
  WORKING_DIRECTORY "${directory}"
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE output
  ERROR_VARIABLE output)

# Colour codes would split "error:" from its line; drop them.
string(ASCII 27 esc)
string(REGEX REPLACE "${esc}\\[[0-9;]*[A-Za-z]" "" output "${output}")

# Show the compiler output (bounded: a template error can run to megabytes).
string(LENGTH "${output}" length)
if(length GREATER 20000)
  string(SUBSTRING "${output}" 0 20000 shown_output)
  set(shown_output "${shown_output}\n[... ${length} characters in all, truncated ...]")
else()
  set(shown_output "${output}")
endif()
message("---- compiler output ----\n${shown_output}\n-------------------------")

# A precompiled header the compiler could not use (stale, built with other flags): GCC
# warns and parses the header instead (an error under -Werror), Clang stops.
if(LOCUS_CC_PCH AND output MATCHES "invalid-pch|precompiled header|PCH file|AST file")
  message(FATAL_ERROR "FAIL: the precompiled header of the compile checks could not be used "
                      "(see the compiler output): rebuild the target locus_compile_check_pch, "
                      "or configure with -DLOCUS_COMPILE_CHECK_PCH=OFF")
endif()

# GCC and Clang: "file:line:col: error: ..." or "fatal error: ..."; MSVC: "error C2338: ...".
string(REGEX MATCH "[^\n]*(error|error C[0-9]+):[^\n]*" first_error "${output}")

if(LOCUS_CC_MODE STREQUAL "pass")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "FAIL: ${LOCUS_CC_SNIPPET} must compile but did not (exit ${rc}).\n"
                        "First error line:\n  ${first_error}")
  endif()
  message("PASS: ${LOCUS_CC_SNIPPET} compiles")
  return()
endif()

file(READ "${LOCUS_CC_EXPECT_FILE}" expect)
if(rc EQUAL 0)
  message(FATAL_ERROR "FAIL: ${LOCUS_CC_SNIPPET} compiled with LOCUS_SHOULD_FAIL, but the "
                      "mistake in it must not compile.\nExpected first error: ${expect}")
endif()
if(first_error STREQUAL "")
  message(FATAL_ERROR "FAIL: compilation failed (exit ${rc}) but printed no line with "
                      "'error:'.\nExpected first error: ${expect}")
endif()
if(NOT first_error MATCHES "${expect}")
  message(FATAL_ERROR "FAIL: the first error line does not match the expected regex.\n"
                      "  expected: ${expect}\n  first error line: ${first_error}")
endif()
message("PASS: compilation failed as expected; first error line matches '${expect}':\n"
        "  ${first_error}")
