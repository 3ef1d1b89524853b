#!/bin/bash -eu
# OSS-Fuzz / ClusterFuzzLite build of tinymalloc's fuzz targets.
#
# Uses only what the OSS-Fuzz base-builder image provides to a build script: $CC $CXX $CFLAGS
# $CXXFLAGS (the sanitizer and coverage flags are already in them) $LIB_FUZZING_ENGINE $SRC
# $WORK $OUT, plus CMake and Ninja. The checkout is $SRC/tinymalloc (the Dockerfile copies it
# there); the build tree goes to $WORK and nothing is written into the sources.
#
# For every target <t> of fuzz/ it writes to $OUT:
#   <t>                   the libFuzzer binary (fuzz/<t>.cc linked with $LIB_FUZZING_ENGINE)
#   <t>.dict, <t>.options  from fuzz/ (the options' `dict = <t>.dict` names the file beside it)
#   <t>_seed_corpus.zip   corpus/<t>/ and corpus/regressions/<t>/, flat
#
# Checked without Docker by tools/tm-oss-fuzz-check (ctest label oss-fuzz), which runs this
# script with the variables set the way OSS-Fuzz's `compile` sets them.

repo="$SRC/tinymalloc"
build="$WORK/tinymalloc-build"

# The op-program harness (harness/) is left out of the coverage feedback, as in the `fuzz`
# preset: the allocator's edges are what the fuzzer should chase, not the checker's.
cflags_extra=""
if [[ "$CFLAGS" == *fuzzer-no-link* ]]; then
  cflags_extra="-fsanitize-coverage-ignorelist=$repo/sanitizers/fuzz-coverage-ignorelist.txt"
fi

# Build type "None": no flags of CMake's own, so $CFLAGS' optimisation level and debug info
# are what the compiler sees (assertions stay on). TM_SANITIZER=none: the instrumentation is
# in $CFLAGS already. Only the allocator, the harness and the fuzz targets are configured.
cmake -S "$repo" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=None \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" \
  -DCMAKE_C_FLAGS="$CFLAGS $cflags_extra" -DCMAKE_CXX_FLAGS="$CXXFLAGS $cflags_extra" \
  -DTM_SANITIZER=none -DTM_BUILD_OVERRIDE=OFF -DTM_FUZZ_TARGETS_ONLY=ON \
  -DTM_FUZZ_ENGINE="$LIB_FUZZING_ENGINE"

# One target per fuzz/<t>.options file; every one must build.
targets=()
for options in "$repo"/fuzz/*.options; do
  name="$(basename "$options" .options)"
  targets+=("$name")
done
cmake --build "$build" --target "${targets[@]/#/fuzz_}"

for t in "${targets[@]}"; do
  cp "$build/fuzz/fuzz_$t" "$OUT/$t"
  cp "$repo/fuzz/$t.options" "$OUT/$t.options"
  if [[ -f "$repo/fuzz/$t.dict" ]]; then cp "$repo/fuzz/$t.dict" "$OUT/$t.dict"; fi
  # Seeds: the shipped corpus and the regressions (README files are not inputs).
  seeds=()
  for dir in "$repo/corpus/$t" "$repo/corpus/regressions/$t"; do
    [[ -d "$dir" ]] || continue
    while IFS= read -r -d '' f; do seeds+=("$f"); done < <(find "$dir" -type f ! -name 'README*' -print0)
  done
  rm -f "$OUT/${t}_seed_corpus.zip"
  if ((${#seeds[@]} > 0)); then zip -q -j "$OUT/${t}_seed_corpus.zip" "${seeds[@]}"; fi
done
