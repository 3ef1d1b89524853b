// Coverage builds only: a unit test process that ends by abort() still writes its coverage
// profile. Death tests end that way (an allocator report, then abort), and clang's profile
// runtime writes only at a normal exit, so without this what a death test ran would count as
// never run (tools/tm-coverage's [unit] answers). Elsewhere the runtime is absent and this
// does nothing.
#include <csignal>

extern "C" int __llvm_profile_write_file(void) __attribute__((weak));

namespace {

// Writes the profile, then lets SIGABRT end the process as it would have.
void write_profile_then_abort(int signal_number) {
  __llvm_profile_write_file();
  std::signal(signal_number, SIG_DFL);
  std::raise(signal_number);
}

// Installs the handler before any test runs (a death test's child inherits it, whether it is
// forked or started again).
[[maybe_unused]] const bool g_installed = [] {
  if (__llvm_profile_write_file == nullptr) return false;
  std::signal(SIGABRT, write_profile_then_abort);
  return true;
}();

}  // namespace
