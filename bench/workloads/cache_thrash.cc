// cache_thrash: active false sharing (Hoard cache-thrash); see false_sharing.h.
//
// Result line: cache_thrash threads=N ops=<objects allocated> checksum=0x... time_s=...
#include "false_sharing.h"

int main(int argc, char** argv) { return bench::false_sharing_main("cache_thrash", false, argc, argv); }
