# SPDX-License-Identifier: MIT
# Finds libbpf and parses its version from libbpf_version.h (as bpftrace does),
# so features such as TCX links compile only where libbpf has them.
find_path(LIBBPF_INCLUDE_DIR NAMES bpf/libbpf.h)
find_library(LIBBPF_LIBRARY NAMES bpf)
if(LIBBPF_INCLUDE_DIR AND EXISTS ${LIBBPF_INCLUDE_DIR}/bpf/libbpf_version.h)
  file(STRINGS ${LIBBPF_INCLUDE_DIR}/bpf/libbpf_version.h _maj REGEX "#define LIBBPF_MAJOR_VERSION")
  file(STRINGS ${LIBBPF_INCLUDE_DIR}/bpf/libbpf_version.h _min REGEX "#define LIBBPF_MINOR_VERSION")
  string(REGEX MATCH "[0-9]+" LIBBPF_VERSION_MAJOR "${_maj}")
  string(REGEX MATCH "[0-9]+" LIBBPF_VERSION_MINOR "${_min}")
  set(LIBBPF_VERSION "${LIBBPF_VERSION_MAJOR}.${LIBBPF_VERSION_MINOR}")
endif()
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(LibBpf REQUIRED_VARS LIBBPF_LIBRARY LIBBPF_INCLUDE_DIR
                                  VERSION_VAR LIBBPF_VERSION)
if(LibBpf_FOUND AND NOT TARGET LibBpf::LibBpf)
  add_library(LibBpf::LibBpf UNKNOWN IMPORTED)
  set_target_properties(LibBpf::LibBpf PROPERTIES IMPORTED_LOCATION ${LIBBPF_LIBRARY}
                        INTERFACE_INCLUDE_DIRECTORIES ${LIBBPF_INCLUDE_DIR})
  find_library(ELF_LIBRARY NAMES elf)
  find_library(Z_LIBRARY NAMES z)
  set_property(TARGET LibBpf::LibBpf APPEND PROPERTY INTERFACE_LINK_LIBRARIES ${ELF_LIBRARY} ${Z_LIBRARY})
endif()
