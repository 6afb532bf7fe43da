# cmake -DREADME=<README.md> -DSNIPPET=<file> -P LocusReadmeCheck.cmake
# Fails unless the first ```cpp block of README equals SNIPPET minus its first (comment)
# line, so the README example is the code that tests/compile_pass/readme_example.cpp
# proves to compile.
file(READ "${README}" readme)
string(FIND "${readme}" "```cpp\n" start)
if(start EQUAL -1)
  message(FATAL_ERROR "${README} has no ```cpp block")
endif()
math(EXPR start "${start} + 7")
string(SUBSTRING "${readme}" ${start} -1 rest)
string(FIND "${rest}" "```" stop)
string(SUBSTRING "${rest}" 0 ${stop} block)
file(READ "${SNIPPET}" snippet)
string(FIND "${snippet}" "\n" eol)
math(EXPR eol "${eol} + 1")
string(SUBSTRING "${snippet}" ${eol} -1 snippet)
if(NOT block STREQUAL snippet)
  message(FATAL_ERROR "The example in ${README} differs from ${SNIPPET}; keep them identical "
                      "(the snippet is what the compile_pass test compiles).\n--- README:\n${block}"
                      "\n--- snippet:\n${snippet}")
endif()
message("README example and ${SNIPPET} agree")
