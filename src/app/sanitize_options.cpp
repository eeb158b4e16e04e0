// SPDX-License-Identifier: MIT
// Sanitizer defaults of the tcptrack binary built with -DTCPTRACK_SANITIZE=ON (build-asan): linked
// into that binary only, read by the ASan/UBSan runtimes before main(). $ASAN_OPTIONS and
// $UBSAN_OPTIONS still override them.
//
// Every report ends the process with a nonzero status (ASan and LeakSanitizer: 1 and 23; UBSan is
// compiled with -fno-sanitize-recover, halt_on_error says it again), so an e2e test that checks
// tcptrack's exit status fails on one; the report itself goes to stderr, which the tests scan too
// (tests/e2e/netns.py). Leaks are checked at exit: tcptrack frees what it allocated, so a leak is a
// bug. A crash (SIGSEGV, SIGBUS, SIGFPE) is reported with its stack like any other error.

extern "C" {

__attribute__((used, visibility("default"))) const char* __asan_default_options() {
    return "detect_leaks=1:check_initialization_order=1:strict_init_order=1:"
           "detect_stack_use_after_return=1:strict_string_checks=1:print_summary=1:"
           "handle_segv=1:handle_sigbus=1:handle_sigfpe=1:print_suppressions=0";
}

__attribute__((used, visibility("default"))) const char* __ubsan_default_options() {
    return "halt_on_error=1:print_stacktrace=1:print_summary=1";
}

// Leaks that are not ours to free: ncurses' newterm() failing for an unknown $TERM (the view's
// fallback to the plain table) loses its "prescreen" (new_prescr in libtinfo), and nothing in
// the ncurses API frees it. Only that allocation site is excused.
__attribute__((used, visibility("default"))) const char* __lsan_default_suppressions() {
    return "leak:new_prescr\n";
}

}  // extern "C"
