// File output shared by the seed generators: corpus file names (SHA-1 of the content, as
// libFuzzer names its corpus files), mkdir -p, writing and cleaning a corpus directory.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace tmtools {

// Hex SHA-1 of msg.
inline std::string sha1_hex(const std::vector<uint8_t>& msg) {
  uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
  std::vector<uint8_t> m = msg;
  const uint64_t bits = static_cast<uint64_t>(msg.size()) * 8;
  m.push_back(0x80);
  while (m.size() % 64 != 56) m.push_back(0);
  for (int i = 7; i >= 0; --i) m.push_back(static_cast<uint8_t>(bits >> (8 * i)));
  auto rol = [](uint32_t x, int n) { return (x << n) | (x >> (32 - n)); };
  for (size_t off = 0; off < m.size(); off += 64) {
    uint32_t w[80];
    for (int i = 0; i < 16; ++i) {
      w[i] = static_cast<uint32_t>(m[off + 4 * i]) << 24 | static_cast<uint32_t>(m[off + 4 * i + 1]) << 16 |
             static_cast<uint32_t>(m[off + 4 * i + 2]) << 8 | m[off + 4 * i + 3];
    }
    for (int i = 16; i < 80; ++i) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; ++i) {
      uint32_t f, k;
      if (i < 20) {
        f = (b & c) | (~b & d);
        k = 0x5A827999;
      } else if (i < 40) {
        f = b ^ c ^ d;
        k = 0x6ED9EBA1;
      } else if (i < 60) {
        f = (b & c) | (b & d) | (c & d);
        k = 0x8F1BBCDC;
      } else {
        f = b ^ c ^ d;
        k = 0xCA62C1D6;
      }
      const uint32_t t = rol(a, 5) + f + e + k + w[i];
      e = d;
      d = c;
      c = rol(b, 30);
      b = a;
      a = t;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
  }
  char out[41];
  for (int i = 0; i < 5; ++i) snprintf(out + 8 * i, 9, "%08x", h[i]);
  return out;
}

// mkdir -p; false (with a message) on errors.
inline bool mkdirs(const std::string& path) {
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
      fprintf(stderr, "seed generator: mkdir %s: %s\n", cur.c_str(), strerror(errno));
      return false;
    }
  }
  return true;
}

// Writes `size` bytes to path; false (with a message) on errors.
inline bool write_file(const std::string& path, const void* data, size_t size) {
  FILE* f = fopen(path.c_str(), "wb");
  if (!f) {
    fprintf(stderr, "seed generator: cannot write %s: %s\n", path.c_str(), strerror(errno));
    return false;
  }
  fwrite(data, 1, size, f);
  return fclose(f) == 0;
}
inline bool write_file(const std::string& path, const std::string& data) {
  return write_file(path, data.data(), data.size());
}
inline bool write_file(const std::string& path, const std::vector<uint8_t>& data) {
  return write_file(path, data.data(), data.size());
}

// Removes the plain files of dir (not dot files).
inline void clean_dir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> names;
  while (const dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  }
  closedir(d);
  for (const auto& n : names) unlink((dir + "/" + n).c_str());
}

}  // namespace tmtools
