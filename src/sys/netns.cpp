// SPDX-License-Identifier: MIT
#include "sys/netns.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "sys/error.hpp"

namespace tcptrack {

namespace {

// "'ctr1' (tried as a name: /run/netns/ctr1)": what the user typed and what it meant.
std::string tried(const NetnsTarget& t) {
    switch (t.form) {
        case NetnsForm::Name:
            return fmt::format("'{}' (tried as a name: {})", t.arg, t.path);
        case NetnsForm::Pid:
            return fmt::format("'{}' (tried as a pid: {})", t.arg, t.path);
        case NetnsForm::Path:
            break;
    }
    return fmt::format("'{}' (tried as a path)", t.arg);
}

}  // namespace

NetnsTarget netns_target(const std::string& arg) {
    NetnsTarget t;
    t.arg = arg;
    const bool digits = !arg.empty() && std::all_of(arg.begin(), arg.end(), [](unsigned char c) {
        return std::isdigit(c) != 0;
    });
    if (digits) {
        t.form = NetnsForm::Pid;
        t.path = "/proc/" + arg + "/ns/net";
    } else if (arg.find('/') != std::string::npos) {
        t.form = NetnsForm::Path;
        t.path = arg;
    } else {
        t.form = NetnsForm::Name;
        t.path = "/run/netns/" + arg;
    }
    return t;
}

std::string netns_label(const NetnsTarget& t) {
    return t.form == NetnsForm::Pid ? "netns pid " + t.arg : "netns " + t.arg;
}

std::string netns_error(const NetnsTarget& t, int err) {
    switch (err) {
        case 0:
        case EINVAL:  // setns: the file is a namespace, but not a network one
            return fmt::format("{} is not a network namespace", tried(t));
        case ENOENT:
        case ENOTDIR:
        case ESRCH:
            return fmt::format("network namespace {} does not exist{}", tried(t),
                               t.form == NetnsForm::Pid ? ": no such process" : "");
        case EPERM:
        case EACCES:
            return fmt::format(
                "cannot enter network namespace {}: permission denied (needs root: "
                "CAP_SYS_ADMIN)",
                tried(t));
        default:
            return fmt::format("cannot enter network namespace {}: {}", tried(t),
                               std::strerror(err));
    }
}

Fd open_netns(const NetnsTarget& t) {
    Fd fd(open(t.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw Error(netns_error(t, errno));
    // nsfs files only: a regular file or directory given by mistake says so,
    // rather than failing later with setns's bare EINVAL.
    struct statfs sfs {};
    if (fstatfs(fd.get(), &sfs) != 0 || sfs.f_type != NSFS_MAGIC ||
        ioctl(fd.get(), NS_GET_NSTYPE) != CLONE_NEWNET)
        throw Error(netns_error(t, 0));
    return fd;
}

void enter_netns(const std::string& arg) {
    const NetnsTarget t = netns_target(arg);
    const Fd fd = open_netns(t);
    if (setns(fd.get(), CLONE_NEWNET) != 0) throw Error(netns_error(t, errno));
}

int socket_in_netns(int nsfd, int domain, int type, int protocol) {
    struct stat there {
    }, here{};
    if (nsfd < 0 || ::fstat(nsfd, &there) != 0 || ::stat("/proc/thread-self/ns/net", &here) != 0 ||
        (there.st_ino == here.st_ino && there.st_dev == here.st_dev))
        return ::socket(domain, type, protocol);
    const Fd cur(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!cur || ::setns(nsfd, CLONE_NEWNET) != 0) return -1;
    const int fd = ::socket(domain, type, protocol);
    ::setns(cur.get(), CLONE_NEWNET);
    return fd;
}

unsigned long long netns_inode(int nsfd) {
    struct stat st {};
    return nsfd >= 0 && ::fstat(nsfd, &st) == 0 ? static_cast<unsigned long long>(st.st_ino) : 0;
}

HomeNetns::HomeNetns() : ns_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {}

int HomeNetns::socket(int domain, int type, int protocol) const {
    return socket_in_netns(ns_.get(), domain, type, protocol);
}

}  // namespace tcptrack
