# Runs PROGRAM (leaky.c) with LD_PRELOAD=LIBRARY and TINYMALLOC_OPTIONS=leaks=1,leak_exitcode=23
# and checks the leak report on stderr and the exit status.
#   cmake -DPROGRAM=... -DLIBRARY=... -P check_leaky.cmake
set(ENV{LD_PRELOAD} "${LIBRARY}")
set(ENV{TINYMALLOC_OPTIONS} "leaks=1,leak_exitcode=23")
execute_process(COMMAND "${PROGRAM}" RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
message(STATUS "exit status: ${status}\nstdout:\n${out}stderr:\n${err}")

set(site "0x[0-9a-f]+")
set(expected
    "^tinymalloc: leak report: 14 blocks, 4433 bytes in 3 allocation sites\n"
    "tinymalloc:   4096 bytes in 1 blocks allocated at ${site} main\\+0x[0-9a-f]+ \\(leaky\\)\n"
    "tinymalloc:   320 bytes in 10 blocks allocated at ${site} build_list\\+0x[0-9a-f]+ \\(leaky\\)\n"
    "tinymalloc:   17 bytes in 3 blocks allocated at ${site} make_name\\+0x[0-9a-f]+ \\(leaky\\)\n$")
string(CONCAT expected ${expected})
if(NOT status EQUAL 23)
  message(FATAL_ERROR "expected exit status 23 (leak_exitcode), got '${status}'")
endif()
if(NOT out STREQUAL "leaky: done\n")
  message(FATAL_ERROR "the program's own output is missing or wrong")
endif()
if(NOT err MATCHES "${expected}")
  message(FATAL_ERROR "the leak report does not match:\n${expected}")
endif()
