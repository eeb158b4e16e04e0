# SPDX-License-Identifier: MIT
# Install rules and the Debian package (CPack), included last from the top-level
# CMakeLists.txt:
#   cmake --install build [--prefix /usr/local]   binary, man page, completion, example unit
#   cmake --build build --target package           build/tcptrack-ebpf_<version>_<arch>.deb
#
# The package is named tcptrack-ebpf, not tcptrack: Debian ships an unrelated
# pcap tool "tcptrack" (1.4) with a different command line. Same name would
# make apt see Debian's 1.4.3 as an upgrade of our 0.x and replace it. The two
# share the command name, so the package Conflicts with and Replaces Debian's:
# installing one removes the other (README "Install").

include(GNUInstallDirs)

set(TCPTRACK_DEB_NAME tcptrack-ebpf)

# Linking libbpf statically: the datapath is built against libbpf >= 1.3 (TCX)
# from bookworm-backports, and a .deb depending on that would not install on
# a plain Debian 12 (bookworm has libbpf 1.1). libbpf.a is in libbpf-dev; its
# own deps (libelf, zlib) are in bookworm. The libbpf 1.1 compat build already
# links libbpf.a (tests/compat), so both versions build this way.
option(TCPTRACK_STATIC_LIBBPF "Link libbpf statically (the .deb then needs nothing from backports)" ON)
if(TCPTRACK_STATIC_LIBBPF AND LIBBPF_LIBRARY MATCHES "\\.so")
  get_filename_component(_libbpf_dir "${LIBBPF_LIBRARY}" DIRECTORY)
  if(EXISTS "${_libbpf_dir}/libbpf.a")
    set_target_properties(LibBpf::LibBpf PROPERTIES IMPORTED_LOCATION "${_libbpf_dir}/libbpf.a")
    message(STATUS "libbpf: static (${_libbpf_dir}/libbpf.a)")
  endif()
endif()

# sbin and section 8: tcptrack needs CAP_BPF/CAP_NET_ADMIN, a system
# administration command like iftop(8) and nethogs(8), which Debian puts in /usr/sbin.
install(TARGETS tcptrack RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})

# The man page's version and date come from the project; gzip -n keeps the
# compressed file reproducible (Debian policy 12.1: man pages are compressed).
string(TIMESTAMP TCPTRACK_MAN_DATE "%Y-%m-%d" UTC)
configure_file(${PROJECT_SOURCE_DIR}/doc/tcptrack.8 ${PROJECT_BINARY_DIR}/doc/tcptrack.8 @ONLY)
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/doc/tcptrack.8.gz
                   COMMAND gzip -9nf -k ${PROJECT_BINARY_DIR}/doc/tcptrack.8
                   DEPENDS ${PROJECT_BINARY_DIR}/doc/tcptrack.8
                   COMMENT "Compressing tcptrack.8")
add_custom_target(tcptrack_man ALL DEPENDS ${PROJECT_BINARY_DIR}/doc/tcptrack.8.gz)
install(FILES ${PROJECT_BINARY_DIR}/doc/tcptrack.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)

# bash-completion loads completions/<command> on first use.
install(FILES ${PROJECT_SOURCE_DIR}/scripts/completion/tcptrack.bash
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/bash-completion/completions RENAME tcptrack)

# Documentation under the package's name (Debian: /usr/share/doc/<package>).
# The systemd unit is an example: installed as documentation, never enabled.
set(TCPTRACK_DOC_DIR ${CMAKE_INSTALL_DATAROOTDIR}/doc/${TCPTRACK_DEB_NAME})
install(FILES ${PROJECT_SOURCE_DIR}/packaging/tcptrack-flowlog@.service
        DESTINATION ${TCPTRACK_DOC_DIR}/examples)
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${TCPTRACK_DOC_DIR} RENAME copyright)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${TCPTRACK_DOC_DIR})

# CPack: one .deb, installed under /usr.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ${TCPTRACK_DEB_NAME})
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "tcptrack maintainers <tcptrack@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "TCP connections per interface, counted in the kernel with eBPF")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # <name>_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_NAME ${TCPTRACK_DEB_NAME})
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# CPack writes the summary as the first line and indents this body itself.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
    "tcptrack attaches two eBPF classifiers to an interface's TC hooks (TCX or
clsact), counts every TCP segment into its connection and prints a report
every interval: state, exact bytes, packets and payload each way, rates,
handshake RTT, age and owning process. Filters run in the kernel; output as
a table, an interactive view, JSON or CSV.

This is not the pcap-based tcptrack 1.4 (Debian package tcptrack), which it
conflicts with: both install a command named tcptrack.")
# Real dependencies from the linked libraries (dpkg-shlibdeps, in dpkg-dev).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONFLICTS tcptrack)
set(CPACK_DEBIAN_PACKAGE_REPLACES tcptrack)
set(CPACK_DEBIAN_PACKAGE_SUGGESTS bash-completion)
include(CPack)
