// SPDX-License-Identifier: MIT
// The filter expression: tokenise, parse (recursive descent, tcpdump's
// precedence: not > and > or), emit the postfix program of tcptrack/filter_vm.h,
// and lower it into the tables the classifiers look up (atoms, truth table).
#include "datapath/filter.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <tuple>
#include <vector>

namespace tcptrack {
namespace {

std::vector<std::string> tokenise(std::string_view s) {
    std::vector<std::string> out;
    std::size_t i = 0;
    while (i < s.size()) {
        const char c = s[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            ++i;
        } else if (c == '(' || c == ')' || c == '!') {
            out.emplace_back(1, c);
            ++i;
        } else if ((c == '&' || c == '|') && i + 1 < s.size() && s[i + 1] == c) {
            out.emplace_back(2, c);
            i += 2;
        } else {
            std::size_t j = i;
            while (j < s.size() && !std::strchr(" \t\n()!", s[j]) &&
                   !((s[j] == '&' || s[j] == '|') && j + 1 < s.size() && s[j + 1] == s[j]))
                ++j;
            out.emplace_back(s.substr(i, j - i));
            i = j;
        }
    }
    return out;
}

enum class Kind { Host, Net, Port, PortRange };

struct Qualifier {
    std::uint8_t side = TT_FSIDE_A | TT_FSIDE_B;  // src = a, dst = b; neither = either end
    Kind kind = Kind::Host;
};

[[noreturn]] void fail(const std::string& token, const std::string& why) {
    throw FilterError(token.empty() ? why : "'" + token + "': " + why);
}

std::optional<std::uint32_t> number(const std::string& s, std::uint32_t max) {
    std::uint32_t v = 0;
    if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size() || v > max) return std::nullopt;
    return v;
}

// ADDR or ADDR/LEN into a masked (net, mask) leaf.
tt_filter_op addr_leaf(const std::string& tok, bool cidr) {
    tt_filter_op op{};
    op.code = TT_FOP_ADDR;
    std::string addr = tok;
    std::optional<std::uint32_t> len;
    if (const auto slash = tok.find('/'); slash != std::string::npos) {
        if (!cidr) fail(tok, "host takes an address without a prefix length (use net)");
        addr = tok.substr(0, slash);
        len = number(tok.substr(slash + 1), 128);
        if (!len) fail(tok, "bad prefix length");
    }
    std::uint8_t bytes[16] = {};
    unsigned bits;
    if (inet_pton(AF_INET, addr.c_str(), bytes) == 1) {
        op.family = TT_FAMILY_INET;
        bits = 32;
    } else if (inet_pton(AF_INET6, addr.c_str(), bytes) == 1) {
        op.family = TT_FAMILY_INET6;
        bits = 128;
    } else {
        fail(tok, cidr ? "not an IPv4 or IPv6 network (ADDR/LEN)" : "not an IPv4 or IPv6 address");
    }
    const unsigned prefix = len ? *len : bits;
    if (prefix > bits) fail(tok, "prefix length longer than the address");
    std::uint8_t mask[16] = {};
    for (unsigned i = 0; i < prefix; ++i) mask[i / 8] |= static_cast<std::uint8_t>(0x80 >> (i % 8));
    for (int i = 0; i < 16; ++i) bytes[i] &= mask[i];
    std::memcpy(op.net, bytes, sizeof(op.net));
    std::memcpy(op.mask, mask, sizeof(op.mask));
    return op;
}

tt_filter_op port_leaf(const std::string& tok, bool range) {
    tt_filter_op op{};
    op.code = TT_FOP_PORT;
    if (!range) {
        const auto p = number(tok, 65535);
        if (!p) fail(tok, "not a port number (0-65535)");
        op.lo = op.hi = static_cast<std::uint16_t>(*p);
        return op;
    }
    const auto dash = tok.find('-');
    const auto lo = dash == std::string::npos ? std::nullopt : number(tok.substr(0, dash), 65535);
    const auto hi = dash == std::string::npos ? std::nullopt : number(tok.substr(dash + 1), 65535);
    if (!lo || !hi) fail(tok, "not a port range (A-B)");
    if (*lo > *hi) fail(tok, "port range runs backwards");
    op.lo = static_cast<std::uint16_t>(*lo);
    op.hi = static_cast<std::uint16_t>(*hi);
    return op;
}

// Parses into a postfix list of ops; `directional` says whether any leaf used src/dst.
class Parser {
   public:
    explicit Parser(std::vector<std::string> toks) : t_(std::move(toks)) {}

    std::vector<tt_filter_op> parse() {
        expr();
        if (pos_ < t_.size()) fail(t_[pos_], "expected 'and', 'or' or the end of the filter");
        return out_;
    }
    bool directional() const { return directional_; }

   private:
    const std::string* peek() const { return pos_ < t_.size() ? &t_[pos_] : nullptr; }
    bool accept(std::initializer_list<const char*> words) {
        const std::string* p = peek();
        if (!p) return false;
        for (const char* w : words)
            if (*p == w) {
                ++pos_;
                return true;
            }
        return false;
    }
    void emit(std::uint8_t code) {
        tt_filter_op op{};
        op.code = code;
        out_.push_back(op);
    }

    void expr() {
        term();
        while (accept({"or", "||"})) {
            term();
            emit(TT_FOP_OR);
        }
    }
    void term() {
        factor();
        while (accept({"and", "&&"})) {
            factor();
            emit(TT_FOP_AND);
        }
    }
    void factor() {
        if (accept({"not", "!"})) {
            factor();
            emit(TT_FOP_NOT);
            return;
        }
        if (accept({"("})) {
            expr();
            if (!accept({")"})) peek() ? fail(*peek(), "expected ')'") : at_end("missing ')'");
            return;
        }
        primitive();
    }
    void primitive() {
        const std::string* p = peek();
        if (!p) at_end("expected host, net, port or portrange");
        Qualifier q;
        bool qualified = false;
        if (*p == "src" || *p == "dst") {
            q.side = *p == "src" ? TT_FSIDE_A : TT_FSIDE_B;
            directional_ = true;
            qualified = true;
            ++pos_;
            p = peek();
            if (!p) at_end("expected host, net, port or portrange");
        }
        static constexpr std::pair<const char*, Kind> kinds[] = {{"host", Kind::Host},
                                                                 {"net", Kind::Net},
                                                                 {"port", Kind::Port},
                                                                 {"portrange", Kind::PortRange}};
        const auto k = std::find_if(std::begin(kinds), std::end(kinds),
                                    [&](const auto& e) { return *p == e.first; });
        if (k != std::end(kinds)) {
            q.kind = k->second;
            ++pos_;
        } else if (!qualified && last_ && looks_like_value(*p)) {
            q = *last_;  // "port 80 or 443": the previous qualifiers again
        } else {
            fail(*p, "expected host, net, port or portrange");
        }
        const std::string* v = peek();
        if (!v) at_end("expected a value");
        if (*v == "(" || *v == ")" || *v == "and" || *v == "or" || *v == "not")
            fail(*v, "expected a value");
        tt_filter_op op = q.kind == Kind::Host   ? addr_leaf(*v, false)
                          : q.kind == Kind::Net  ? addr_leaf(*v, true)
                          : q.kind == Kind::Port ? port_leaf(*v, false)
                                                 : port_leaf(*v, true);
        op.side = q.side;
        ++pos_;
        out_.push_back(op);
        last_ = q;
    }
    // The expression stopped short: name the last token it had.
    [[noreturn]] void at_end(const char* what) const {
        throw FilterError("ends after '" + t_.back() + "': " + what);
    }
    static bool looks_like_value(const std::string& s) {
        return !s.empty() && (std::isxdigit(static_cast<unsigned char>(s[0])) || s[0] == ':');
    }

    std::vector<std::string> t_;
    std::size_t pos_ = 0;
    std::vector<tt_filter_op> out_;
    std::optional<Qualifier> last_;
    bool directional_ = false;
};

// ---- Lowering the postfix program into the tables (tcptrack/filter_vm.h) ----

// The expression as a tree: n-ary AND/OR, NOT, and leaves; leaves OR-ed (or
// negated and AND-ed) together of one kind on one side become one set atom.
struct Node {
    enum Type { Leaf, And, Or, Not, Atom } type = Leaf;
    std::vector<int> kids;
    tt_filter_op leaf{};
    int atom = -1;
};

// What an atom tests: one kind (address or port) on one side, a set of leaves.
struct AtomKey {
    bool port = false;
    std::uint8_t side = 0;
    std::vector<std::vector<std::uint8_t>> members;  // leaves' bytes, sorted, unique
    bool operator<(const AtomKey& o) const {
        return std::tie(port, side, members) < std::tie(o.port, o.side, o.members);
    }
};

class Lowering {
   public:
    explicit Lowering(const std::vector<tt_filter_op>& prog) {
        std::vector<int> st;
        for (const tt_filter_op& op : prog) {
            Node n;
            if (op.code == TT_FOP_ADDR || op.code == TT_FOP_PORT) {
                n.leaf = op;
            } else if (op.code == TT_FOP_NOT) {
                n.type = Node::Not;
                n.kids = {st.back()};
                st.pop_back();
            } else {
                n.type = op.code == TT_FOP_AND ? Node::And : Node::Or;
                n.kids = {st[st.size() - 2], st.back()};
                st.resize(st.size() - 2);
            }
            st.push_back(add(n));
        }
        root_ = fold(st.back());
    }

    // Fills f's tables; false when the expression does not fit them.
    bool fill(tt_filter& f) const {
        if (atoms_.size() > TT_FILTER_MAX_ATOMS) return false;
        for (std::size_t j = 0; j < atoms_.size(); ++j) {
            const AtomKey& a = atoms_[j];
            const auto bit = static_cast<std::uint16_t>(1u << j);
            if (a.side & TT_FSIDE_A) f.side_a |= bit;
            if (a.side & TT_FSIDE_B) f.side_b |= bit;
            if (!a.port) continue;
            for (const auto& m : a.members) {
                tt_filter_op op;
                std::memcpy(&op, m.data(), sizeof(op));
                for (std::uint32_t p = op.lo; p <= op.hi; ++p)
                    f.port[htons(static_cast<std::uint16_t>(p))] |= bit;
            }
        }
        if (!fill_addresses(f)) return false;
        truth(f);
        f.table = 1;
        return true;
    }

   private:
    int add(const Node& n) {
        nodes_.push_back(n);
        return static_cast<int>(nodes_.size() - 1);
    }
    static std::vector<std::uint8_t> bytes_of(tt_filter_op op) {
        op.side = 0;
        std::vector<std::uint8_t> b(sizeof(op));
        std::memcpy(b.data(), &op, sizeof(op));
        return b;
    }
    int atom(bool port, std::uint8_t side, std::vector<std::vector<std::uint8_t>> members) {
        std::sort(members.begin(), members.end());
        members.erase(std::unique(members.begin(), members.end()), members.end());
        AtomKey k{port, side, std::move(members)};
        auto [it, fresh] = index_.try_emplace(k, static_cast<int>(atoms_.size()));
        if (fresh) atoms_.push_back(k);
        Node n;
        n.type = Node::Atom;
        n.atom = it->second;
        return add(n);
    }
    // The kids of nested nodes of one type, flattened: a or (b or c) = a or b or c.
    void flatten(int i, Node::Type t, std::vector<int>& out) const {
        const Node& n = nodes_[i];
        if (n.type == t)
            for (int k : n.kids) flatten(k, t, out);
        else
            out.push_back(i);
    }
    int fold(int i) {
        const Node n = nodes_[i];
        if (n.type == Node::Leaf)
            return atom(n.leaf.code == TT_FOP_PORT, n.leaf.side, {bytes_of(n.leaf)});
        if (n.type == Node::Not) {
            Node out;
            out.type = Node::Not;
            out.kids = {fold(n.kids[0])};
            return add(out);
        }
        // OR: leaves of one kind and side make one set. AND: so do negated
        // leaves (not a and not b = not (a or b)).
        std::vector<int> kids;
        flatten(i, n.type, kids);
        const bool negated = n.type == Node::And;
        std::map<std::pair<bool, std::uint8_t>, std::vector<std::vector<std::uint8_t>>> sets;
        Node out;
        out.type = n.type;
        for (int k : kids) {
            const Node& kid = nodes_[k];
            const Node* leaf =
                negated ? (kid.type == Node::Not ? &nodes_[kid.kids[0]] : nullptr) : &kid;
            if (leaf && leaf->type == Node::Leaf)
                sets[{leaf->leaf.code == TT_FOP_PORT, leaf->leaf.side}].push_back(
                    bytes_of(leaf->leaf));
            else
                out.kids.push_back(fold(k));
        }
        for (auto& [what, members] : sets) {
            int a = atom(what.first, what.second, std::move(members));
            if (negated) {
                Node no;
                no.type = Node::Not;
                no.kids = {a};
                a = add(no);
            }
            out.kids.push_back(a);
        }
        return add(out);
    }

    // addr[]: every (class, network) of the address atoms in a slot of its own.
    bool fill_addresses(tt_filter& f) const {
        struct Net {
            std::uint8_t cls;
            __u32 net[4];
            std::uint16_t atoms;
        };
        std::vector<Net> nets;
        for (std::size_t j = 0; j < atoms_.size(); ++j) {
            if (atoms_[j].port) continue;
            for (const auto& m : atoms_[j].members) {
                tt_filter_op op;
                std::memcpy(&op, m.data(), sizeof(op));
                std::uint32_t c = 0;
                while (c < f.ncls && !(f.cls[c].family == op.family &&
                                       std::memcmp(f.cls[c].mask, op.mask, sizeof(op.mask)) == 0))
                    ++c;
                if (c == f.ncls) {
                    if (c == TT_FILTER_MAX_CLASSES) return false;
                    f.cls[c].family = op.family;
                    std::memcpy(f.cls[c].mask, op.mask, sizeof(op.mask));
                    ++f.ncls;
                }
                auto same = std::find_if(nets.begin(), nets.end(), [&](const Net& n) {
                    return n.cls == c && std::memcmp(n.net, op.net, sizeof(op.net)) == 0;
                });
                if (same == nets.end()) {
                    nets.push_back(Net{static_cast<std::uint8_t>(c), {}, 0});
                    std::memcpy(nets.back().net, op.net, sizeof(op.net));
                    same = nets.end() - 1;
                }
                same->atoms |= static_cast<std::uint16_t>(1u << j);
            }
        }
        // Multipliers with no two networks in one slot: with at most 32 of
        // them in 128 slots, about one draw in 50 (fixed seed: the same
        // expression gives the same tables).
        std::mt19937 rng(20);
        for (int attempt = 0; attempt < 100000; ++attempt) {
            for (auto& m : f.mul) m = rng() | 1;
            for (std::uint32_t c = 0; c < f.ncls; ++c) f.cls[c].salt = rng();
            std::uint64_t used[TT_FILTER_ADDR_SLOTS / 64] = {};
            bool clash = false;
            for (const Net& n : nets) {
                const std::uint32_t s = tt_filter_addr_slot(&f, &f.cls[n.cls], n.net);
                clash = clash || (used[s / 64] >> (s % 64) & 1);
                used[s / 64] |= 1ull << (s % 64);
            }
            if (clash) continue;
            for (auto& e : f.addr) e.cls = TT_FILTER_NO_CLASS;
            for (const Net& n : nets) {
                tt_filter_addr& e = f.addr[tt_filter_addr_slot(&f, &f.cls[n.cls], n.net)];
                std::memcpy(e.net, n.net, sizeof(e.net));
                e.cls = n.cls;
                e.atoms = n.atoms;
            }
            return true;
        }
        return false;
    }

    // truth[]: the tree evaluated for 64 assignments of the atoms at a time.
    void truth(tt_filter& f) const {
        static constexpr std::uint64_t low[6] = {0xaaaaaaaaaaaaaaaaull, 0xccccccccccccccccull,
                                                 0xf0f0f0f0f0f0f0f0ull, 0xff00ff00ff00ff00ull,
                                                 0xffff0000ffff0000ull, 0xffffffff00000000ull};
        for (std::uint32_t w = 0; w < std::size(f.truth); ++w) {
            auto eval = [&](auto& self, int i) -> std::uint64_t {
                const Node& n = nodes_[i];
                switch (n.type) {
                    case Node::Atom:
                        return n.atom < 6 ? low[n.atom] : (w >> (n.atom - 6) & 1) ? ~0ull : 0;
                    case Node::Not:
                        return ~self(self, n.kids[0]);
                    case Node::And: {
                        std::uint64_t v = ~0ull;
                        for (int k : n.kids) v &= self(self, k);
                        return v;
                    }
                    case Node::Or: {
                        std::uint64_t v = 0;
                        for (int k : n.kids) v |= self(self, k);
                        return v;
                    }
                    case Node::Leaf:
                        break;
                }
                return 0;  // folded away: never reached
            };
            f.truth[w] = eval(eval, root_);
        }
    }

    std::vector<Node> nodes_;
    std::vector<AtomKey> atoms_;
    std::map<AtomKey, int> index_;
    int root_ = -1;
};

}  // namespace

tt_filter compile_filter(std::string_view expr) {
    tt_filter f{};
    auto toks = tokenise(expr);
    if (toks.empty()) return f;
    Parser parser(std::move(toks));
    std::vector<tt_filter_op> prog = parser.parse();
    const Lowering lowering(prog);
    // src/dst name the ends of one direction; a connection passes when either
    // of its directions does, so both see the same verdict: E or E(a<->b).
    if (parser.directional()) {
        std::vector<tt_filter_op> swapped = prog;
        for (auto& op : swapped)
            if (op.side == TT_FSIDE_A || op.side == TT_FSIDE_B) op.side ^= TT_FSIDE_A | TT_FSIDE_B;
        prog.insert(prog.end(), swapped.begin(), swapped.end());
        tt_filter_op either{};
        either.code = TT_FOP_OR;
        prog.push_back(either);
    }
    if (prog.size() > TT_FILTER_MAX_OPS)
        throw FilterError("too long: at most " + std::to_string(TT_FILTER_MAX_OPS) +
                          " terms and operators (src/dst count twice)");
    std::copy(prog.begin(), prog.end(), f.op);
    f.n = static_cast<std::uint32_t>(prog.size());
    // The tables hold the expression as parsed (they look src/dst up both
    // ways themselves); one that does not fit them runs in the interpreter.
    auto tables = std::make_unique<tt_filter>(f);
    if (lowering.fill(*tables)) f = *tables;
    return f;
}

bool filter_matches(const tt_filter& f, const tt_flow_key& key) {
    return tt_filter_match(&f, &key) != 0;
}

}  // namespace tcptrack
