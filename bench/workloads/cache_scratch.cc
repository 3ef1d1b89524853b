// cache_scratch: passive false sharing (Hoard cache-scratch); see false_sharing.h.
//
// Result line: cache_scratch threads=N ops=<objects allocated> checksum=0x... time_s=...
#include "false_sharing.h"

int main(int argc, char** argv) { return bench::false_sharing_main("cache_scratch", true, argc, argv); }
