// heap_mt op format: decoder (total: any byte string decodes), canonical encoder, printer.
// Specified in harness/FORMAT.md ("Multi-threaded programs"); keep the two in sync. Heap
// ops reuse the v1 operand decoding (decode_operands) and the general profile's size aliases.
#include <cstdio>
#include <string>

#include "tm_harness_mt.h"

namespace tmh {

namespace {

constexpr uint8_t kOpThread = 32;
constexpr uint8_t kOpBarrier = 33;
constexpr uint8_t kOpGive = 34;
constexpr uint8_t kOpSend = 35;
constexpr uint8_t kOpRecv = 36;
constexpr uint8_t kOpDrain = 37;
constexpr uint8_t kOpExit = 38;
constexpr uint8_t kOpYield = 39;
constexpr uint8_t kOpSendRange = 40;
constexpr uint8_t kOpMigrate = 41;
constexpr uint8_t kOpNext = 42;

// Heap-op aliases (opcodes 16-31 and 48-63, alias index 0-31): canonical ops repeated by
// weight, in opcode order. No OOM windows (they are phase-wide here; canonical 9 still works).
//                                  mal cal rea fre ali pos usa chk ref oom frr alr swp rel tou pee
constexpr uint8_t kMtHeapWeights[16] = {6, 2, 5, 6, 1, 1, 1, 1, 1, 0, 2, 2, 1, 1, 1, 1};

// Alias index -> canonical heap op.
OpKind heap_alias(unsigned j) {
  unsigned acc = 0;
  for (unsigned k = 0; k < kCanonicalOpcodes; ++k) {
    acc += kMtHeapWeights[k];
    if (j < acc) return static_cast<OpKind>(k);
  }
  return OpKind::kMalloc;
}

// Thread-op aliases 43-47.
uint8_t thread_alias(unsigned c) {
  switch (c) {
    case 43:
      return kOpSend;
    case 44:
      return kOpRecv;
    case 45:
      return kOpNext;
    case 46:
      return kOpBarrier;
    default:
      return kOpThread;
  }
}

// A thread op with its canonical opcode.
MtOp make(MtKind k) {
  MtOp m;
  m.kind = k;
  m.opcode = static_cast<uint8_t>(kOpThread + static_cast<unsigned>(k) - static_cast<unsigned>(MtKind::kThread));
  return m;
}

}  // namespace

// Name of a thread-op kind ("send"), as traces print it.
const char* mt_kind_name(MtKind k) {
  static const char* const names[] = {"heap",  "thread", "barrier", "give",       "send",    "recv",
                                      "drain", "exit",   "yield",   "send_range", "migrate", "next"};
  const unsigned i = static_cast<unsigned>(k);
  return i < sizeof names / sizeof names[0] ? names[i] : "?";
}

// Constructors of the thread ops (canonical opcodes) and of a heap op in a heap_mt stream.
MtOp MtOp::heap(const Op& op) {
  MtOp m;
  m.kind = MtKind::kHeap;
  m.op = op;
  m.opcode = static_cast<uint8_t>(op.kind);
  return m;
}
MtOp MtOp::select(unsigned thread) {
  MtOp m = make(MtKind::kThread);
  m.thread = static_cast<uint8_t>(thread);
  return m;
}
MtOp MtOp::barrier() { return make(MtKind::kBarrier); }
MtOp MtOp::give(unsigned slot, unsigned thread, unsigned dest_slot) {
  MtOp m = make(MtKind::kGive);
  m.slot = static_cast<uint8_t>(slot % kSlots);
  m.thread = static_cast<uint8_t>(thread);
  m.slot2 = static_cast<uint8_t>(dest_slot % kSlots);
  return m;
}
MtOp MtOp::send(unsigned slot, unsigned thread) {
  MtOp m = make(MtKind::kSend);
  m.slot = static_cast<uint8_t>(slot % kSlots);
  m.thread = static_cast<uint8_t>(thread);
  return m;
}
MtOp MtOp::recv(unsigned slot) {
  MtOp m = make(MtKind::kRecv);
  m.slot = static_cast<uint8_t>(slot % kSlots);
  return m;
}
MtOp MtOp::drain() { return make(MtKind::kDrain); }
MtOp MtOp::exit() { return make(MtKind::kExit); }
MtOp MtOp::yield(uint8_t arg) {
  MtOp m = make(MtKind::kYield);
  m.arg = arg;
  return m;
}
MtOp MtOp::send_range(unsigned first, unsigned count, unsigned thread) {
  MtOp m = make(MtKind::kSendRange);
  m.slot = static_cast<uint8_t>(first % kSlots);
  m.arg = static_cast<uint8_t>((count == 0 ? 0 : count - 1) % kMtSendRangeMax);
  m.thread = static_cast<uint8_t>(thread);
  return m;
}
MtOp MtOp::migrate(unsigned thread) {
  MtOp m = make(MtKind::kMigrate);
  m.thread = static_cast<uint8_t>(thread);
  return m;
}
MtOp MtOp::next() { return make(MtKind::kNext); }

uint8_t MtProgram::make_config(unsigned threads, bool strict_overlap, bool owners_free, MtArenaMode arenas) {
  if (threads < kMtMinThreads) threads = kMtMinThreads;
  if (threads > kMtMaxThreads) threads = kMtMaxThreads;
  return static_cast<uint8_t>((threads - kMtMinThreads) | (strict_overlap ? kMtConfigStrictOverlap : 0) |
                              (owners_free ? kMtConfigOwnersFree : 0) |
                              (static_cast<unsigned>(arenas) & 3u) << kMtConfigArenaShift);
}

MtProgram decode_mt(const uint8_t* data, size_t size) {
  MtProgram p;
  p.input_size = size;
  p.header = size > 0 ? data[0] : 0;
  p.config = size > 1 ? data[1] : 0;
  const unsigned n = p.threads();
  size_t pos = 2;
  auto byte = [&]() -> uint8_t { return pos < size ? data[pos++] : (pos++, uint8_t{0}); };
  while (pos < size && p.ops.size() < kMaxOps) {
    MtOp m;
    m.pos = static_cast<uint32_t>(pos);
    m.opcode = byte();
    unsigned c = m.opcode & (kOpcodeSpace - 1);
    if (c < 32 || c >= 48) {
      m.kind = MtKind::kHeap;
      m.op.opcode = m.opcode;
      m.op.pos = m.pos;
      m.op.kind = c < kCanonicalOpcodes ? static_cast<OpKind>(c) : heap_alias(c < 32 ? c - 16 : c - 32);
      pos = decode_operands(data, size, pos, Profile::kGeneral, &m.op);
      p.ops.push_back(m);
      continue;
    }
    if (c > kOpNext) c = thread_alias(c);
    m.kind = static_cast<MtKind>(static_cast<unsigned>(MtKind::kThread) + (c - kOpThread));
    switch (m.kind) {
      case MtKind::kThread:
      case MtKind::kMigrate:
        m.thread = static_cast<uint8_t>(byte() % n);
        break;
      case MtKind::kGive:
        m.slot = byte() % kSlots;
        m.thread = static_cast<uint8_t>(byte() % n);
        m.slot2 = byte() % kSlots;
        break;
      case MtKind::kSend:
        m.slot = byte() % kSlots;
        m.thread = static_cast<uint8_t>(byte() % n);
        break;
      case MtKind::kRecv:
        m.slot = byte() % kSlots;
        break;
      case MtKind::kYield:
        m.arg = byte();
        break;
      case MtKind::kSendRange:
        m.slot = byte() % kSlots;
        m.arg = static_cast<uint8_t>(byte() % kMtSendRangeMax);
        m.thread = static_cast<uint8_t>(byte() % n);
        break;
      case MtKind::kBarrier:
      case MtKind::kDrain:
      case MtKind::kExit:
      case MtKind::kNext:
      case MtKind::kHeap:
        break;
    }
    p.ops.push_back(m);
  }
  return p;
}

void encode_mt_op(const MtOp& m, std::vector<uint8_t>& out) {
  if (m.kind == MtKind::kHeap) {
    encode_op(m.op, out);
    return;
  }
  out.push_back(make(m.kind).opcode);
  switch (m.kind) {
    case MtKind::kThread:
    case MtKind::kMigrate:
      out.push_back(m.thread);
      break;
    case MtKind::kGive:
      out.push_back(m.slot);
      out.push_back(m.thread);
      out.push_back(m.slot2);
      break;
    case MtKind::kSend:
      out.push_back(m.slot);
      out.push_back(m.thread);
      break;
    case MtKind::kRecv:
      out.push_back(m.slot);
      break;
    case MtKind::kYield:
      out.push_back(m.arg);
      break;
    case MtKind::kSendRange:
      out.push_back(m.slot);
      out.push_back(m.arg);
      out.push_back(m.thread);
      break;
    case MtKind::kBarrier:
    case MtKind::kDrain:
    case MtKind::kExit:
    case MtKind::kNext:
    case MtKind::kHeap:
      break;
  }
}

std::vector<uint8_t> encode_mt(const MtProgram& p) {
  std::vector<uint8_t> out;
  out.push_back(p.header);
  out.push_back(p.config);
  for (const MtOp& m : p.ops) encode_mt_op(m, out);
  return out;
}

std::string format_mt_op(const MtOp& m, size_t index, unsigned thread) {
  std::string s = "#" + std::to_string(index) + " [t" + std::to_string(thread) + "] ";
  if (m.kind == MtKind::kHeap) {
    const std::string h = format_op(m.op, index);
    const size_t sp = h.find(' ');
    return s + (sp == std::string::npos ? h : h.substr(sp + 1));
  }
  s += mt_kind_name(m.kind);
  const std::string slot = " slot " + std::to_string(m.slot);
  const std::string to = " thread " + std::to_string(m.thread);
  switch (m.kind) {
    case MtKind::kThread:
      s += ": the following ops run on" + to;
      break;
    case MtKind::kBarrier:
      s += ": end of the phase";
      break;
    case MtKind::kGive:
      s += slot + " ->" + to + " slot " + std::to_string(m.slot2) + " (at the phase end)";
      break;
    case MtKind::kSend:
      s += slot + " -> mailbox of" + to;
      break;
    case MtKind::kRecv:
      s += slot + " <- own mailbox";
      break;
    case MtKind::kDrain:
      s += ": free every block of the own mailbox";
      break;
    case MtKind::kExit:
      s += ": this OS thread exits; a new one runs the thread's later ops";
      break;
    case MtKind::kYield:
      s += (m.arg & 128) ? " (spin " + std::to_string(((m.arg & 127u) + 1) * 64) + ")"
                         : " (sched_yield x" + std::to_string((m.arg & 7u) + 1) + ")";
      break;
    case MtKind::kSendRange:
      s += " slots " + std::to_string(m.slot) + ".." + std::to_string((m.slot + m.range_count() - 1) % kSlots) +
           " -> mailbox of" + to;
      break;
    case MtKind::kMigrate:
      s += ": every block ->" + to + " (same slots, at the phase end)";
      break;
    case MtKind::kNext:
      s += ": the following ops run on the next thread";
      break;
    case MtKind::kHeap:
      break;
  }
  return s;
}

std::string format_mt_program(const MtProgram& p) {
  static const char* const orders[4] = {"slot-ascending", "slot-descending", "address-ascending", "address-descending"};
  char buf[400];
  std::string flags;
  if (p.paranoid()) flags += " paranoid";
  if (p.fill_usable()) flags += " fill-usable";
  if (p.strict_overlap()) flags += " strict-overlap";
  if (p.owners_free()) flags += " owners-free";
  static const char* const arena_modes[4] = {"", " arenas=per-thread", " arenas=shared", " arenas=two"};
  flags += arena_modes[static_cast<int>(p.arena_mode())];
  if (p.eager_purge()) flags += " eager-purge";
  snprintf(buf, sizeof buf,
           "tinymalloc harness trace: heap_mt format (header 0x%02x, config 0x%02x), %u threads, %zu ops, %zu bytes; "
           "flags:%s; final frees %s by %s\n",
           p.header, p.config, p.threads(), p.ops.size(), p.input_size, flags.empty() ? " none" : flags.c_str(),
           orders[static_cast<int>(p.end_order())], p.owners_free() ? "each thread (own blocks)" : "the main thread");
  std::string s = buf;
  unsigned cur = 0;
  size_t phase = 0;
  s += "-- phase 0\n";
  for (size_t i = 0; i < p.ops.size(); ++i) {
    const MtOp& m = p.ops[i];
    if (m.kind == MtKind::kThread) cur = m.thread;
    if (m.kind == MtKind::kNext) cur = (cur + 1) % p.threads();
    s += format_mt_op(m, i, cur);
    s += '\n';
    if (m.kind == MtKind::kBarrier) {
      if (phase + 1 < kMtMaxPhases) {
        s += "-- phase " + std::to_string(++phase) + "\n";
      } else {
        s += "   (phase limit reached: barrier ignored)\n";
      }
    }
  }
  return s;
}

}  // namespace tmh
