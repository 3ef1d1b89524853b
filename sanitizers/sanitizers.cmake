# The one place that maps TM_SANITIZER to compiler and linker flags.
#
# Included by the top-level CMakeLists.txt. The flags are applied globally
# (add_compile_options / add_link_options) so every target in the tree - the allocator,
# tests, harness, fuzz targets, properties - is instrumented the same way. The
# CMakePresets.json presets only pick the compiler and set TM_SANITIZER; they carry no
# sanitizer flags of their own.
#
# Values:
#   none      no instrumentation
#   asan      AddressSanitizer + UndefinedBehaviorSanitizer (UB is fatal)
#   tsan      ThreadSanitizer
#   msan      MemorySanitizer with origin tracking. Clang only, and every linked library must be
#             instrumented: gtest/RapidCheck binaries report false positives at startup, so only
#             the fuzz targets (corpus replay) are meaningful under msan.
#   coverage  clang source-based coverage (llvm-profdata / llvm-cov)
#   fuzz      libFuzzer instrumentation without the libFuzzer main, plus ASan + UBSan. Fuzz
#             targets add TM_FUZZ_ENGINE (e.g. -fsanitize=fuzzer) to their own link flags. The
#             harness (harness/) is left out of the coverage instrumentation
#             (fuzz-coverage-ignorelist.txt): the allocator's coverage is the feedback.
#   fuzz-plain  libFuzzer instrumentation only, no ASan: fuzzing another allocator under
#             LD_PRELOAD (ASan's runtime would own malloc, so the preloaded one never ran).
#             The harness is instrumented (its outcomes are the feedback: the allocator
#             under test is not instrumented). Used by tools/tm-check-allocator.
#
# Runtime options (ASAN_OPTIONS, UBSAN_OPTIONS, TSAN_OPTIONS, MSAN_OPTIONS, LLVM_PROFILE_FILE) are
# set in the test presets of CMakePresets.json. No suppression file is used: the reference runs
# (gtest + RapidCheck under ASan/UBSan and TSan with clang 14) gave no false positives. If one
# becomes necessary, add sanitizers/<tool>.supp and reference it from that tool's *_OPTIONS in the
# test preset, with a comment saying why.
#
# Sanitizer builds use -O1: fast enough for the suites, and keeps useful stack traces.
# They keep assertions on (the presets use CMAKE_BUILD_TYPE=Debug; the -O1 here comes after
# the build type's flags on the command line, so it wins).

set(TM_SANITIZER_VALUES none asan tsan msan coverage fuzz fuzz-plain)

set(_tm_common -g -O1 -fno-omit-frame-pointer -fno-optimize-sibling-calls)
set(_tm_asan_ubsan -fsanitize=address,undefined -fno-sanitize-recover=undefined)

if(TM_SANITIZER STREQUAL "none")
  set(TM_SANITIZER_COMPILE_FLAGS "")
  set(TM_SANITIZER_LINK_FLAGS "")
elseif(TM_SANITIZER STREQUAL "asan")
  set(TM_SANITIZER_COMPILE_FLAGS ${_tm_common} ${_tm_asan_ubsan})
  set(TM_SANITIZER_LINK_FLAGS ${_tm_asan_ubsan})
elseif(TM_SANITIZER STREQUAL "tsan")
  set(TM_SANITIZER_COMPILE_FLAGS ${_tm_common} -fsanitize=thread)
  set(TM_SANITIZER_LINK_FLAGS -fsanitize=thread)
elseif(TM_SANITIZER STREQUAL "msan")
  set(TM_SANITIZER_COMPILE_FLAGS ${_tm_common} -fsanitize=memory -fsanitize-memory-track-origins=2)
  set(TM_SANITIZER_LINK_FLAGS -fsanitize=memory)
elseif(TM_SANITIZER STREQUAL "coverage")
  set(TM_SANITIZER_COMPILE_FLAGS -g -O0 -fprofile-instr-generate -fcoverage-mapping)
  set(TM_SANITIZER_LINK_FLAGS -fprofile-instr-generate)
elseif(TM_SANITIZER STREQUAL "fuzz")
  set(TM_SANITIZER_COMPILE_FLAGS
      ${_tm_common} -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
      -fsanitize-coverage-ignorelist=${CMAKE_CURRENT_LIST_DIR}/fuzz-coverage-ignorelist.txt)
  # fuzzer-no-link at link time pulls no libFuzzer main; the ASan/UBSan runtimes provide the
  # coverage callbacks for binaries that are not fuzz targets (tests, replay drivers).
  set(TM_SANITIZER_LINK_FLAGS -fsanitize=fuzzer-no-link,address,undefined)
elseif(TM_SANITIZER STREQUAL "fuzz-plain")
  set(TM_SANITIZER_COMPILE_FLAGS -g -O2 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link)
  set(TM_SANITIZER_LINK_FLAGS -fsanitize=fuzzer-no-link)
else()
  message(FATAL_ERROR "TM_SANITIZER='${TM_SANITIZER}' is not one of: ${TM_SANITIZER_VALUES}")
endif()

if(NOT TM_SANITIZER STREQUAL "none" AND NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  # asan/tsan/coverage flags also exist in g++, but the presets and the notes were verified
  # with clang 14 only; msan, coverage (-fprofile-instr-generate) and fuzz need clang.
  if(TM_SANITIZER MATCHES "^(msan|coverage|fuzz|fuzz-plain)$")
    message(FATAL_ERROR "TM_SANITIZER=${TM_SANITIZER} needs clang (use the CMake presets)")
  endif()
  message(WARNING "TM_SANITIZER=${TM_SANITIZER} with ${CMAKE_CXX_COMPILER_ID}: only clang 14 is tested")
endif()

add_compile_options(${TM_SANITIZER_COMPILE_FLAGS})
add_link_options(${TM_SANITIZER_LINK_FLAGS})

unset(_tm_common)
unset(_tm_asan_ubsan)
