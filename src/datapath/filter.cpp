// SPDX-License-Identifier: MIT
// The filter expression: tokenise, parse (recursive descent, tcpdump's
// precedence: not > and > or), and emit the postfix program of tcptrack/filter_vm.h.
#include "datapath/filter.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <optional>
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

}  // namespace

tt_filter compile_filter(std::string_view expr) {
    tt_filter f{};
    auto toks = tokenise(expr);
    if (toks.empty()) return f;
    Parser parser(std::move(toks));
    std::vector<tt_filter_op> prog = parser.parse();
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
    return f;
}

bool filter_matches(const tt_filter& f, const tt_flow_key& key) {
    return tt_filter_match(&f, &key) != 0;
}

}  // namespace tcptrack
