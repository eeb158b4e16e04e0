// SPDX-License-Identifier: MIT
// sys/netns: --netns argument forms, their errors, the checks on opening one,
// and sockets made in the home namespace or one open at an fd. No root needed
// (nothing here enters one).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "sys/error.hpp"
#include "sys/netns.hpp"

using namespace tcptrack;

namespace {

// The message open_netns() throws, or "" when it opened a network namespace.
std::string open_error(const std::string& arg) {
    try {
        open_netns(netns_target(arg));
        return "";
    } catch (const Error& e) {
        return e.what();
    }
}

// ------------------------------------------------------------------ --netns forms

TEST(Netns, FormIsDecidedByShape) {
    NetnsTarget t = netns_target("1234");
    EXPECT_EQ(t.form, NetnsForm::Pid);
    EXPECT_EQ(t.path, "/proc/1234/ns/net");
    EXPECT_EQ(netns_label(t), "netns pid 1234");

    t = netns_target("/proc/1/ns/net");
    EXPECT_EQ(t.form, NetnsForm::Path);
    EXPECT_EQ(t.path, "/proc/1/ns/net");
    EXPECT_EQ(netns_label(t), "netns /proc/1/ns/net");

    t = netns_target("./ctr1");  // a '/' makes it a path, even relative
    EXPECT_EQ(t.form, NetnsForm::Path);
    EXPECT_EQ(t.path, "./ctr1");

    t = netns_target("ctr1");
    EXPECT_EQ(t.form, NetnsForm::Name);
    EXPECT_EQ(t.path, "/run/netns/ctr1");
    EXPECT_EQ(netns_label(t), "netns ctr1");

    t = netns_target("ctr1-2");  // digits and more: a name
    EXPECT_EQ(t.form, NetnsForm::Name);
    EXPECT_EQ(netns_target("12a").form, NetnsForm::Name);
}

TEST(Netns, ErrorTextsNameTheFormTried) {
    EXPECT_EQ(netns_error(netns_target("ctr1"), ENOENT),
              "network namespace 'ctr1' (tried as a name: /run/netns/ctr1) does not exist");
    EXPECT_EQ(netns_error(netns_target("99999999"), ENOENT),
              "network namespace '99999999' (tried as a pid: /proc/99999999/ns/net) does not "
              "exist: no such process");
    EXPECT_EQ(netns_error(netns_target("/x/y"), ENOENT),
              "network namespace '/x/y' (tried as a path) does not exist");
    EXPECT_EQ(netns_error(netns_target("/etc/hostname"), 0),
              "'/etc/hostname' (tried as a path) is not a network namespace");
    EXPECT_EQ(netns_error(netns_target("ctr1"), EINVAL),
              "'ctr1' (tried as a name: /run/netns/ctr1) is not a network namespace");
    EXPECT_EQ(netns_error(netns_target("42"), EPERM),
              "cannot enter network namespace '42' (tried as a pid: /proc/42/ns/net): "
              "permission denied (needs root: CAP_SYS_ADMIN)");
    EXPECT_EQ(netns_error(netns_target("42"), EACCES), netns_error(netns_target("42"), EPERM));
    for (int err : {0, ENOENT, EPERM, EMFILE})  // one line each
        EXPECT_EQ(netns_error(netns_target("a"), err).find('\n'), std::string::npos);
}

TEST(Netns, OpenChecksTheFileIsANetworkNamespace) {
    // Our own namespace, by path and by pid: opening needs no privilege.
    EXPECT_EQ(open_error("/proc/self/ns/net"), "");
    EXPECT_EQ(open_error(std::to_string(getpid())), "");
    // A namespace, but not a network one; a plain file; a directory.
    EXPECT_EQ(open_error("/proc/self/ns/uts"),
              "'/proc/self/ns/uts' (tried as a path) is not a network namespace");
    char tmpl[] = "/tmp/tt-ns-unit-XXXXXX";
    const int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    EXPECT_EQ(open_error(tmpl),
              std::string("'") + tmpl + "' (tried as a path) is not a network namespace");
    unlink(tmpl);
    EXPECT_EQ(open_error("/proc/self/ns"),
              "'/proc/self/ns' (tried as a path) is not a network namespace");
    // Missing ones, in each form.
    EXPECT_EQ(open_error("tt-ns-unit-no-such-namespace"),
              "network namespace 'tt-ns-unit-no-such-namespace' (tried as a name: "
              "/run/netns/tt-ns-unit-no-such-namespace) does not exist");
    EXPECT_EQ(open_error("/nonexistent/tt-ns/net"),
              "network namespace '/nonexistent/tt-ns/net' (tried as a path) does not exist");
    EXPECT_EQ(open_error("4194305"),  // above PID_MAX_LIMIT: never a process
              "network namespace '4194305' (tried as a pid: /proc/4194305/ns/net) does not "
              "exist: no such process");
}

// ------------------------------------------------------------------ home namespace

TEST(Netns, HomeSocketIsMadeInPlaceWhileStillHome) {
    const HomeNetns home;
    const int fd = home.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(fd, 0) << std::strerror(errno);
    close(fd);
}

TEST(Netns, SocketInTheNamespaceAlreadyInIsMadeInPlace) {
    const Fd own(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(own);
    for (const int nsfd : {own.get(), -1}) {  // -1: no namespace given, here
        const int fd = socket_in_netns(nsfd, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        ASSERT_GE(fd, 0) << std::strerror(errno);
        close(fd);
    }
}

TEST(Netns, InodeOfAnOpenNamespace) {
    const Fd own(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(own);
    struct stat st {};
    ASSERT_EQ(stat("/proc/self/ns/net", &st), 0);
    EXPECT_EQ(netns_inode(own.get()), static_cast<unsigned long long>(st.st_ino));
    EXPECT_EQ(netns_inode(-1), 0u);
}

}  // namespace
