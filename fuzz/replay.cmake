# Replays every file under DIR (recursively) through a fuzz binary, once.
#
#   cmake -DBIN=<fuzz binary> -DDIR=<dir> [-DREQUIRE=1] [-DBACKEND=system] -P replay.cmake
#
# Files are listed here, at test time (new corpus / regression files need no reconfigure),
# and passed explicitly together with -runs=0, which works for both builds: libFuzzer runs
# each listed file once, the standalone driver ignores the flag. A bare directory is never
# passed (libFuzzer would start fuzzing it). Dot files and README* are skipped.
# REQUIRE=1: an empty or missing DIR is an error (seed corpora); otherwise it passes.
if(NOT BIN OR NOT DIR)
  message(FATAL_ERROR "usage: cmake -DBIN=<binary> -DDIR=<dir> [-DREQUIRE=1] [-DBACKEND=name] -P replay.cmake")
endif()
set(files "")
if(IS_DIRECTORY "${DIR}")
  file(GLOB_RECURSE all LIST_DIRECTORIES false "${DIR}/*")
  foreach(f IN LISTS all)
    get_filename_component(name "${f}" NAME)
    if(NOT name MATCHES "^\\." AND NOT name MATCHES "^README")
      list(APPEND files "${f}")
    endif()
  endforeach()
endif()
list(LENGTH files n)
if(n EQUAL 0)
  if(REQUIRE)
    message(FATAL_ERROR "replay: no input files under ${DIR} (run tools/gen-corpus)")
  endif()
  message(STATUS "replay: no files under ${DIR}; nothing to replay")
  return()
endif()
list(SORT files)
set(env_args "")
if(BACKEND)
  set(env_args "TM_HARNESS_BACKEND=${BACKEND}")
endif()
message(STATUS "replay: ${n} file(s) from ${DIR} through ${BIN} ${env_args}")
execute_process(COMMAND ${CMAKE_COMMAND} -E env ${env_args} ${BIN} -runs=0 ${files} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "replay: ${BIN} failed (${rc}) on an input from ${DIR}; the report above names the op. "
                      "Reproduce with tools/tm-repro <file>.")
endif()
message(STATUS "replay: ${n} file(s) passed")
