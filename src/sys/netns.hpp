// SPDX-License-Identifier: MIT
// --netns NAME|PATH|PID: watch an interface that lives in another network
// namespace (a container's eth0 seen from the host), like `ip -n` and `ss -N`.
//
// run() enters the namespace with setns(CLONE_NEWNET) before anything touches
// interfaces, netlink, tc, BPF links, lock files or sock_diag. setns changes
// the calling thread only: threads started later inherit the namespace, threads
// started earlier keep theirs (the -r resolver starts before on purpose, so DNS
// goes through our own namespace's resolver; see resolver.hpp).
#pragma once

#include <string>

#include "sys/fd.hpp"

namespace tcptrack {

enum class NetnsForm { Name, Path, Pid };

// Where a --netns argument points, decided by its form alone: all digits is a
// pid (/proc/PID/ns/net), anything with a '/' a path (any nsfs file or bind
// mount of one), anything else a name made by `ip netns add` (/run/netns/NAME).
struct NetnsTarget {
    NetnsForm form = NetnsForm::Name;
    std::string arg;   // as given
    std::string path;  // the file opened
};

NetnsTarget netns_target(const std::string& arg);

// For the report header ("eth0@netns ctr1") and messages:
// "netns ctr1", "netns pid 1234", "netns /proc/1234/ns/net".
std::string netns_label(const NetnsTarget& t);

// The one-line error for a namespace that could not be opened or entered:
// err is the errno of open()/setns(), or 0 for "that file is not a network
// namespace". Names the form that was tried and the path behind it.
std::string netns_error(const NetnsTarget& t, int err);

// Opens the namespace file and checks it is a network namespace (nsfs, type
// CLONE_NEWNET); throws Error(netns_error(...)) otherwise. Needs no privilege.
Fd open_netns(const NetnsTarget& t);

// Opens and enters it on the calling thread (CAP_SYS_ADMIN); throws Error.
void enter_netns(const std::string& arg);

// socket(2) in the network namespace open at `nsfd`: in place while the
// calling thread is already there, else entered for the call and left again
// (CAP_SYS_ADMIN). A socket keeps the namespace it was made in. -1 on failure.
int socket_in_netns(int nsfd, int domain, int type, int protocol);

// The nsfs inode of the namespace open at `nsfd` (what `ls -iL /proc/PID/ns/net`
// and the rows' `netns` show); 0 when it cannot be read.
unsigned long long netns_inode(int nsfd);

// The namespace the calling thread is in when this is made (tcptrack's own,
// before --netns), kept so sockets made later still belong there.
class HomeNetns {
   public:
    HomeNetns();  // never fails: without the file, socket() makes them in place
    // socket_in_netns() of the home namespace.
    int socket(int domain, int type, int protocol) const;

   private:
    Fd ns_;
};

}  // namespace tcptrack
