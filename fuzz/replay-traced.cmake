# Replays every file under DIR through a fuzz binary with trace mode on (the allocator records
# every call into OUT/trace-<pid>.bin, bounded by trace_max_mb=1), then reads the trace back:
#
#   cmake -DBIN=<fuzz binary> -DDIR=<dir> -DOUT=<dir> -DPYTHON=<python3> -DTOOL=<tm-trace2corpus> -P replay-traced.cmake
#
# Every check of the replay holds with each call routed through the trace layer, and the trace
# must stay within 1 MiB, keep window 0 and, once past half of that, thin out the later windows
# (docs/harness.md "Real-program traces").
foreach(v BIN DIR OUT PYTHON TOOL)
  if(NOT ${v})
    message(FATAL_ERROR "replay-traced: -D${v}=... is required")
  endif()
endforeach()
file(REMOVE_RECURSE "${OUT}")
file(MAKE_DIRECTORY "${OUT}")
execute_process(COMMAND ${CMAKE_COMMAND} -E env "TINYMALLOC_OPTIONS=trace=${OUT}/trace-%p.bin,trace_max_mb=1"
                        ${CMAKE_COMMAND} -DBIN=${BIN} -DDIR=${DIR} -DREQUIRE=1
                        -P ${CMAKE_CURRENT_LIST_DIR}/replay.cmake
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "replay-traced: the traced replay failed (${rc})")
endif()
file(GLOB traces "${OUT}/trace-*.bin")
list(LENGTH traces n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "replay-traced: expected one trace file in ${OUT}, found ${n}")
endif()
file(SIZE "${traces}" bytes)
if(bytes GREATER 1048576)
  message(FATAL_ERROR "replay-traced: ${traces} is ${bytes} bytes, over trace_max_mb=1")
endif()
execute_process(COMMAND ${PYTHON} ${TOOL} --print ${traces} OUTPUT_VARIABLE calls RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "replay-traced: ${TOOL} --print could not read ${traces} (${rc})")
endif()
string(REGEX MATCHALL "\nwindow [0-9]+" windows "${calls}")
list(LENGTH windows kept)
list(GET windows 0 first)
list(GET windows -1 last)
string(REGEX REPLACE "\nwindow " "" last_index "${last}")
# Past half of the bound the stride of kept windows has doubled: some window was skipped.
if(NOT first STREQUAL "\nwindow 0" OR (bytes GREATER 524288 AND NOT last_index GREATER_EQUAL kept))
  message(FATAL_ERROR "replay-traced: ${bytes} bytes, ${kept} windows kept, the last ${last_index}: window 0 must "
                      "be kept, and past half of the bound later ones thinned")
endif()
message(STATUS "replay-traced: ${bytes} bytes, ${kept} windows kept of ${last_index} + 1")
