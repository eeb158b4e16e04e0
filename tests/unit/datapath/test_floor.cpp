// SPDX-License-Identifier: MIT
// The kernel floor, checked without booting anything: every program in the
// compiled object declares the oldest kernel it must load on, and its helper
// calls, atomic instructions and the object's map types and flags are held to
// that kernel, through every subprogram it calls. Helper, map-type and flag
// IDs only grow, so "the newest ID a release knows" is a sound bound.
#include <bpf/libbpf.h>
#include <elf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "datapath/features.hpp"

namespace {

using tcptrack::KernelVersion;

struct ReleaseLimits {
    KernelVersion version;
    int last_helper;    // enum bpf_func_id: 155 = redirect_peer (5.10), 203 = dynptr_data (5.19)
    int last_map_type;  // enum bpf_map_type: 28 = INODE_STORAGE (5.10), 30 = BLOOM_FILTER (5.19)
    unsigned last_map_flag;  // highest BPF_F_* map flag: INNER_MAP (1 << 12, 5.10)
    bool atomic_fetch;       // BPF_ATOMIC beyond plain add (fetch, xchg, cmpxchg): 5.12
    bool kfuncs;             // calls to kernel functions (BPF_PSEUDO_KFUNC_CALL): 5.13
};

constexpr ReleaseLimits kReleases[] = {
    {{5, 10, 0}, 155, 28, 1u << 12, false, false},
    {{5, 19, 0}, 203, 30, 1u << 12, true, true},
};

const ReleaseLimits& limits(KernelVersion v) {
    for (const auto& r : kReleases)
        if (r.version == v) return r;
    ADD_FAILURE() << "no limits recorded for " << v.major << "." << v.minor;
    return kReleases[0];
}

std::string ver(KernelVersion v) { return std::to_string(v.major) + "." + std::to_string(v.minor); }

// Each program's floor: one datapath for every kernel from 5.10, so all of them.
const std::map<std::string, KernelVersion> kProgramFloor = {
    {"tcptrack_in", tcptrack::kKernelFloor},
    {"tcptrack_eg", tcptrack::kKernelFloor},
    {"tcptrack_in_l3", tcptrack::kKernelFloor},
    {"tcptrack_eg_l3", tcptrack::kKernelFloor},
    // Never attached; run by user space with BPF_PROG_TEST_RUN (sched_cls: 4.12).
    {"tcptrack_evict", tcptrack::kKernelFloor},
};

// Helper IDs named in the messages below (they only grow, so spelled out here
// rather than taken from a uapi header that may be older than the ID).
constexpr int kHelperRingbufOutput = 130;        // 5.8
constexpr int kHelperRingbufReserve = 131;       // 5.8
constexpr int kHelperMapLookupPercpuElem = 195;  // 5.19

// Helpers newer than the floor that the datapath calls only behind a CO-RE
// check of the running kernel's enum bpf_func_id (bpf_core_enum_value_exists)
// and a probed .rodata switch: on an older kernel both make the check a
// constant 0, and the verifier never walks the call. The kernel matrix loads the object on
// Linux 5.10, which is what proves the guard.
const std::map<int, const char*> kCoreGuardedHelpers = {
    {160,
     "bpf_ktime_get_coarse_ns (5.11): the RTT probe rate limit's clock, probed "
     "(ktime-coarse) and CO-RE-guarded (bpf/lib/parse.h)"},
};

// What one function's own instructions need beyond `lim`; calls into
// subprograms (BPF_PSEUDO_CALL) are followed by the caller of this.
std::vector<std::string> check_insns(const std::string& name, const bpf_insn* insn, std::size_t n,
                                     const ReleaseLimits& lim) {
    std::vector<std::string> out;
    const std::string where = name + " (floor Linux " + ver(lim.version) + ")";
    for (std::size_t i = 0; i < n; ++i) {
        const bpf_insn& in = insn[i];
        const std::string at = " at insn " + std::to_string(i);
        if (in.code == (BPF_JMP | BPF_CALL)) {
            if (in.src_reg == 0 && in.imm > lim.last_helper && !kCoreGuardedHelpers.count(in.imm))
                out.push_back(where + " calls helper #" + std::to_string(in.imm) + at +
                              ", newer than its floor knows");
            else if (in.src_reg == BPF_PSEUDO_KFUNC_CALL && !lim.kfuncs)
                out.push_back(where + " calls a kernel function" + at + " (needs Linux 5.13)");
            else if (in.src_reg != 0 && in.src_reg != BPF_PSEUDO_CALL &&
                     in.src_reg != BPF_PSEUDO_KFUNC_CALL)
                out.push_back(where + ": unknown call kind " + std::to_string(in.src_reg) + at);
        }
        if (BPF_CLASS(in.code) == BPF_STX && BPF_MODE(in.code) == BPF_ATOMIC && in.imm != BPF_ADD &&
            !lim.atomic_fetch)
            out.push_back(where + ": atomic op " + std::to_string(in.imm) + at +
                          " needs Linux 5.12 (only plain atomic add is older)");
    }
    return out;
}

// What a map needs beyond `lim`.
std::vector<std::string> check_map(const std::string& name, int type, unsigned flags,
                                   const ReleaseLimits& lim) {
    std::vector<std::string> out;
    if (type > lim.last_map_type)
        out.push_back("map '" + name + "' has type " + std::to_string(type) + ", which Linux " +
                      ver(lim.version) + " does not know");
    if (flags & ~((lim.last_map_flag << 1) - 1))
        out.push_back("map '" + name + "' has flags " + std::to_string(flags) +
                      ", newer than Linux " + ver(lim.version) + " knows");
    return out;
}

// The object's functions as its ELF holds them: libbpf lists programs but not
// the static __noinline subprograms they call (tt_create, tt_step), whose
// helpers count against every program that reaches them.
struct Function {
    std::string name;
    std::size_t section;
    std::size_t first;  // index of its first instruction in its section
    std::vector<bpf_insn> insns;
};

class ElfObject {
   public:
    explicit ElfObject(const char* path) { load(path); }

    const std::string& error() const { return error_; }
    std::vector<Function>& functions() { return funcs_; }
    const std::vector<Function>& functions() const { return funcs_; }
    int find(const std::string& name) const {
        for (std::size_t i = 0; i < funcs_.size(); ++i)
            if (funcs_[i].name == name) return static_cast<int>(i);
        return -1;
    }

    // The function a BPF_PSEUDO_CALL at insn i of f lands on (its first
    // instruction), or -1. As libbpf resolves it: through the call's relocation
    // when it has one (target = symbol + imm + 1), else relative to the call.
    int callee(const Function& f, std::size_t i) const {
        const bpf_insn& in = f.insns[i];
        std::size_t section = f.section;
        long long target = static_cast<long long>(f.first + i) + in.imm + 1;
        const auto r = relocs_.find({f.section, (f.first + i) * sizeof(bpf_insn)});
        if (r != relocs_.end()) {
            if (r->second >= syms_.size()) return -1;
            const Elf64_Sym& sym = syms_[r->second];
            section = sym.st_shndx;
            target = static_cast<long long>(sym.st_value / sizeof(bpf_insn)) + in.imm + 1;
        }
        for (std::size_t k = 0; k < funcs_.size(); ++k)
            if (funcs_[k].section == section && static_cast<long long>(funcs_[k].first) == target)
                return static_cast<int>(k);
        return -1;
    }

   private:
    // Sections, symbols, relocations, and each function's instructions.
    void load(const char* path) {
        std::ifstream in(path, std::ios::binary);
        bytes_.assign(std::istreambuf_iterator<char>(in), {});
        Elf64_Ehdr eh{};
        if (!read(0, eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 ||
            eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB ||
            eh.e_machine != EM_BPF) {
            error_ = std::string("not a little-endian BPF ELF object: ") + path;
            return;
        }
        std::vector<Elf64_Shdr> sh(eh.e_shnum);
        for (std::size_t i = 0; i < sh.size(); ++i)
            if (!read(eh.e_shoff + i * sizeof(Elf64_Shdr), sh[i])) return fail("section headers");
        const Elf64_Shdr* symtab = nullptr;
        for (const auto& s : sh)
            if (s.sh_type == SHT_SYMTAB) symtab = &s;
        if (!symtab || symtab->sh_link >= sh.size()) return fail("no symbol table");
        const Elf64_Shdr& strtab = sh[symtab->sh_link];
        for (std::size_t off = 0; off + sizeof(Elf64_Sym) <= symtab->sh_size;
             off += sizeof(Elf64_Sym)) {
            Elf64_Sym sym{};
            if (!read(symtab->sh_offset + off, sym)) return fail("symbols");
            syms_.push_back(sym);
        }
        for (std::size_t i = 0; i < sh.size(); ++i) {
            if (sh[i].sh_type != SHT_REL || sh[i].sh_info >= sh.size()) continue;
            for (std::size_t off = 0; off + sizeof(Elf64_Rel) <= sh[i].sh_size;
                 off += sizeof(Elf64_Rel)) {
                Elf64_Rel r{};
                if (!read(sh[i].sh_offset + off, r)) return fail("relocations");
                relocs_[{sh[i].sh_info, r.r_offset}] = ELF64_R_SYM(r.r_info);
            }
        }
        for (const Elf64_Sym& sym : syms_) {
            if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx >= sh.size()) continue;
            const Elf64_Shdr& sec = sh[sym.st_shndx];
            if (!(sec.sh_flags & SHF_EXECINSTR) || sym.st_value % sizeof(bpf_insn) ||
                sym.st_size % sizeof(bpf_insn) || sym.st_value + sym.st_size > sec.sh_size)
                return fail("function symbol");
            Function f;
            f.name = str(strtab, sym.st_name);
            f.section = sym.st_shndx;
            f.first = sym.st_value / sizeof(bpf_insn);
            f.insns.resize(sym.st_size / sizeof(bpf_insn));
            if (!read_n(sec.sh_offset + sym.st_value, f.insns.data(), sym.st_size))
                return fail("instructions");
            funcs_.push_back(std::move(f));
        }
    }

    template <typename T>
    bool read(std::size_t off, T& out) const {
        return read_n(off, &out, sizeof(T));
    }
    bool read_n(std::size_t off, void* out, std::size_t n) const {
        if (off > bytes_.size() || n > bytes_.size() - off) return false;
        std::memcpy(out, bytes_.data() + off, n);
        return true;
    }
    std::string str(const Elf64_Shdr& strtab, std::size_t at) const {
        if (at >= strtab.sh_size || strtab.sh_offset + strtab.sh_size > bytes_.size()) return "";
        const char* p = bytes_.data() + strtab.sh_offset + at;
        return std::string(p, strnlen(p, strtab.sh_size - at));
    }
    void fail(const char* what) { error_ = std::string("malformed ELF object: ") + what; }

    std::vector<char> bytes_;
    std::vector<Elf64_Sym> syms_;
    std::map<std::pair<std::size_t, std::size_t>, std::size_t>
        relocs_;  // (section, offset) -> symbol
    std::vector<Function> funcs_;
    std::string error_;
};

// One program checked through every subprogram it reaches.
struct Walk {
    std::set<std::string> reached;  // the program and its subprograms
    std::set<int> helpers;
    std::vector<std::string> violations;
};

Walk walk(const ElfObject& elf, const std::string& program, const ReleaseLimits& lim) {
    Walk w;
    const int start = elf.find(program);
    if (start < 0) {
        w.violations.push_back("program '" + program + "' is not a function of the object");
        return w;
    }
    std::vector<int> todo{start};
    while (!todo.empty()) {
        const Function& f = elf.functions()[todo.back()];
        todo.pop_back();
        if (!w.reached.insert(f.name).second) continue;
        const std::string name = f.name == program ? program : program + " -> " + f.name;
        for (auto& v : check_insns(name, f.insns.data(), f.insns.size(), lim))
            w.violations.push_back(std::move(v));
        for (std::size_t i = 0; i < f.insns.size(); ++i) {
            const bpf_insn& in = f.insns[i];
            if (in.code != (BPF_JMP | BPF_CALL)) continue;
            if (in.src_reg == 0) w.helpers.insert(in.imm);
            if (in.src_reg != BPF_PSEUDO_CALL) continue;
            const int c = elf.callee(f, i);
            if (c < 0)
                w.violations.push_back(name + ": call at insn " + std::to_string(i) +
                                       " lands on no function (this test cannot follow it)");
            else
                todo.push_back(c);
        }
    }
    return w;
}

struct Object {
    bpf_object* obj = bpf_object__open_file(TCPTRACK_BPF_OBJECT, nullptr);
    ~Object() { bpf_object__close(obj); }
};

TEST(KernelFloor, EveryProgramUsesOnlyWhatItsFloorKernelHas) {
    Object o;
    ASSERT_NE(o.obj, nullptr) << "cannot open " << TCPTRACK_BPF_OBJECT;
    const ElfObject elf(TCPTRACK_BPF_OBJECT);
    ASSERT_EQ(elf.error(), "");

    std::set<std::string> programs, reached;
    bpf_program* prog;
    bpf_object__for_each_program(prog, o.obj) {
        const std::string name = bpf_program__name(prog);
        programs.insert(name);
        const auto floor = kProgramFloor.find(name);
        ASSERT_NE(floor, kProgramFloor.end())
            << "program '" << name << "' has no declared kernel floor: add it to kProgramFloor";
        // The ELF reader sees the same program libbpf does.
        const int f = elf.find(name);
        ASSERT_GE(f, 0) << name;
        const auto& insns = elf.functions()[f].insns;
        ASSERT_EQ(insns.size(), bpf_program__insn_cnt(prog)) << name;
        EXPECT_EQ(
            std::memcmp(insns.data(), bpf_program__insns(prog), insns.size() * sizeof(bpf_insn)), 0)
            << name;

        const Walk w = walk(elf, name, limits(floor->second));
        for (const auto& v : w.violations) ADD_FAILURE() << v;
        reached.insert(w.reached.begin(), w.reached.end());
    }
    std::set<std::string> declared;
    for (const auto& [name, floor] : kProgramFloor) declared.insert(name);
    EXPECT_EQ(programs, declared) << "ingress/egress with and without L2, and the eviction program";

    // Nothing in the object escapes the check: every function is a program or
    // reached from one (so held to that program's floor).
    for (const Function& f : elf.functions())
        EXPECT_TRUE(reached.count(f.name)) << "function '" << f.name << "' was not checked";

    // Every map is created on every kernel: held to the floor.
    const ReleaseLimits& floor = limits(tcptrack::kKernelFloor);
    bpf_map* map;
    int maps = 0;
    bpf_object__for_each_map(map, o.obj) {
        ++maps;
        for (const auto& v : check_map(bpf_map__name(map), static_cast<int>(bpf_map__type(map)),
                                       bpf_map__map_flags(map), floor))
            ADD_FAILURE() << v;
    }
    EXPECT_GT(maps, 0);
}

// The store's shape is part of the floor: user space reads `slots` by mmap
// (BPF_F_MMAPABLE arrays: 5.5) and recycles slots through a queue (4.20).
TEST(KernelFloor, StoreMapsAreTheTypesThe510FloorHas) {
    Object o;
    ASSERT_NE(o.obj, nullptr);
    const bpf_map* slots = bpf_object__find_map_by_name(o.obj, "slots");
    ASSERT_NE(slots, nullptr);
    EXPECT_EQ(bpf_map__type(slots), BPF_MAP_TYPE_ARRAY);
    EXPECT_TRUE(bpf_map__map_flags(slots) & BPF_F_MMAPABLE);
    const bpf_map* free_slots = bpf_object__find_map_by_name(o.obj, "free_slots");
    ASSERT_NE(free_slots, nullptr);
    EXPECT_EQ(bpf_map__type(free_slots), BPF_MAP_TYPE_QUEUE);
    const bpf_map* ring = bpf_object__find_map_by_name(o.obj, "closed_events");
    ASSERT_NE(ring, nullptr);
    EXPECT_EQ(bpf_map__type(ring), BPF_MAP_TYPE_RINGBUF);
}

// The walk follows subprogram calls: the classifiers reach the slow path's
// subprograms, whose helpers (free queue, spin locks, ring buffer, clock) are
// then checked against the classifiers' floor.
TEST(KernelFloor, SubprogramsAreCheckedWithTheirCallers) {
    const ElfObject elf(TCPTRACK_BPF_OBJECT);
    ASSERT_EQ(elf.error(), "");
    for (const char* name : {"tcptrack_in", "tcptrack_eg", "tcptrack_in_l3", "tcptrack_eg_l3"}) {
        const Walk w = walk(elf, name, limits(tcptrack::kKernelFloor));
        SCOPED_TRACE(name);
        EXPECT_TRUE(w.violations.empty());
        EXPECT_GT(w.reached.size(), 1u) << "no subprogram reached";
        for (int h : {int{BPF_FUNC_map_lookup_elem}, int{BPF_FUNC_ktime_get_ns},
                      int{BPF_FUNC_map_push_elem}, int{BPF_FUNC_map_pop_elem},
                      int{BPF_FUNC_spin_lock}, int{BPF_FUNC_spin_unlock}})
            EXPECT_TRUE(w.helpers.count(h)) << "helper #" << h;
        // Close events: bpf_ringbuf_output, or reserve/submit (5.8).
        EXPECT_TRUE(w.helpers.count(kHelperRingbufOutput) || w.helpers.count(kHelperRingbufReserve))
            << "no ring buffer helper reached";
        // Some of them only through subprograms: without the walk they would go unchecked.
        const Function& own = elf.functions()[elf.find(name)];
        std::set<int> direct;
        for (const bpf_insn& in : own.insns)
            if (in.code == (BPF_JMP | BPF_CALL) && in.src_reg == 0) direct.insert(in.imm);
        EXPECT_LT(direct.size(), w.helpers.size());
    }
    const Walk evict = walk(elf, "tcptrack_evict", limits(tcptrack::kKernelFloor));
    EXPECT_TRUE(evict.helpers.count(BPF_FUNC_spin_lock));
    EXPECT_TRUE(evict.violations.empty());
}

// ---- the check must bite: fed what a too-new kernel feature looks like ----

bpf_insn call(int helper) { return bpf_insn{BPF_JMP | BPF_CALL, 0, 0, 0, helper}; }
bpf_insn atomic(int op) {
    return bpf_insn{BPF_STX | BPF_DW | BPF_ATOMIC, BPF_REG_1, BPF_REG_2, 0, op};
}
bpf_insn exit_insn() { return bpf_insn{BPF_JMP | BPF_EXIT, 0, 0, 0, 0}; }

TEST(KernelFloor, CatchesAHelperNewerThanTheFloor) {
    const ReleaseLimits& at510 = limits(tcptrack::kKernelFloor);
    const ReleaseLimits& at519 = limits({5, 19, 0});
    // bpf_map_lookup_percpu_elem (5.19) refused at 5.10, accepted at 5.19.
    const bpf_insn newer[] = {call(BPF_FUNC_map_lookup_elem), call(kHelperMapLookupPercpuElem),
                              exit_insn()};
    const auto v = check_insns("p", newer, 3, at510);
    ASSERT_EQ(v.size(), 1u);
    EXPECT_NE(v[0].find("helper #195 at insn 1"), std::string::npos) << v[0];
    EXPECT_TRUE(check_insns("p", newer, 3, at519).empty());
    // The boundary: the last helper 5.10 has passes.
    const bpf_insn last[] = {call(at510.last_helper), call(at510.last_helper + 1), exit_insn()};
    const auto b = check_insns("p", last, 3, at510);
    ASSERT_EQ(b.size(), 1u);
    EXPECT_NE(b[0].find("at insn 1"), std::string::npos) << b[0];
    // A kernel-function call is newer than 5.10 whatever it calls.
    const bpf_insn kfunc[] = {bpf_insn{BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, 7},
                              exit_insn()};
    EXPECT_EQ(check_insns("p", kfunc, 2, at510).size(), 1u);
}

TEST(KernelFloor, CatchesAtomicFetchAndCmpxchgBefore512) {
    const ReleaseLimits& at510 = limits(tcptrack::kKernelFloor);
    const bpf_insn plain[] = {atomic(BPF_ADD), exit_insn()};
    EXPECT_TRUE(check_insns("p", plain, 2, at510).empty());
    for (int op : {BPF_ADD | BPF_FETCH, BPF_XCHG, BPF_CMPXCHG, BPF_OR, BPF_AND | BPF_FETCH}) {
        const bpf_insn bad[] = {atomic(BPF_ADD), atomic(op), exit_insn()};
        const auto v = check_insns("p", bad, 3, at510);
        ASSERT_EQ(v.size(), 1u) << "op " << op;
        EXPECT_NE(v[0].find("at insn 1"), std::string::npos) << v[0];
        EXPECT_TRUE(check_insns("p", bad, 3, limits({5, 19, 0})).empty()) << "op " << op;
    }
}

TEST(KernelFloor, CatchesMapTypesAndFlagsNewerThanTheFloor) {
    const ReleaseLimits& at510 = limits(tcptrack::kKernelFloor);
    // What the store uses passes.
    EXPECT_TRUE(check_map("m", BPF_MAP_TYPE_ARRAY, BPF_F_MMAPABLE, at510).empty());
    EXPECT_TRUE(check_map("m", BPF_MAP_TYPE_QUEUE, 0, at510).empty());
    EXPECT_TRUE(check_map("m", BPF_MAP_TYPE_RINGBUF, 0, at510).empty());
    EXPECT_TRUE(check_map("m", BPF_MAP_TYPE_INODE_STORAGE, BPF_F_INNER_MAP, at510).empty());
    // Task storage (5.11), bloom filter (5.16), and a flag after INNER_MAP do not.
    EXPECT_EQ(check_map("m", BPF_MAP_TYPE_INODE_STORAGE + 1, 0, at510).size(), 1u);
    EXPECT_EQ(check_map("m", BPF_MAP_TYPE_BLOOM_FILTER, 0, at510).size(), 1u);
    EXPECT_TRUE(check_map("m", BPF_MAP_TYPE_BLOOM_FILTER, 0, limits({5, 19, 0})).empty());
    const auto v = check_map("m", BPF_MAP_TYPE_ARRAY, BPF_F_MMAPABLE | (1u << 13), at510);
    ASSERT_EQ(v.size(), 1u);
    EXPECT_NE(v[0].find("map 'm' has flags"), std::string::npos) << v[0];
}

// On the real object: a too-new helper slipped into a subprogram is reported
// against every program that reaches it, naming the path.
TEST(KernelFloor, CatchesAHelperNewerThanTheFloorInsideASubprogram) {
    ElfObject elf(TCPTRACK_BPF_OBJECT);
    ASSERT_EQ(elf.error(), "");
    const Walk before = walk(elf, "tcptrack_eg", limits(tcptrack::kKernelFloor));
    ASSERT_TRUE(before.violations.empty());
    // A subprogram of the classifier (not the program itself) with a helper call.
    Function* sub = nullptr;
    std::size_t at = 0;
    for (Function& f : elf.functions()) {
        if (f.name == "tcptrack_eg" || !before.reached.count(f.name) || sub) continue;
        for (std::size_t i = 0; i < f.insns.size() && !sub; ++i)
            if (f.insns[i].code == (BPF_JMP | BPF_CALL) && f.insns[i].src_reg == 0)
                sub = &f, at = i;
    }
    ASSERT_NE(sub, nullptr) << "tcptrack_eg reaches no subprogram that calls a helper";
    sub->insns[at].imm = kHelperMapLookupPercpuElem;

    const Walk w = walk(elf, "tcptrack_eg", limits(tcptrack::kKernelFloor));
    ASSERT_EQ(w.violations.size(), 1u);
    EXPECT_NE(w.violations[0].find("tcptrack_eg -> " + sub->name), std::string::npos)
        << w.violations[0];
    EXPECT_NE(w.violations[0].find("helper #195 at insn " + std::to_string(at)), std::string::npos)
        << w.violations[0];
}

}  // namespace
