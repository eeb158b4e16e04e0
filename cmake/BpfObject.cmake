# SPDX-License-Identifier: MIT
# bpf_object(<name> <source.bpf.c> DEPENDS <headers...> [INCLUDES <dirs...>] [DEFINES <defs...>])
# Compiles a CO-RE BPF object with clang -target bpf against the checked-in
# vmlinux.h, generates its skeleton with bpftool, and exposes an INTERFACE
# target <name>_skel whose include path holds <name>.skel.h.
# A function (not a macro) so nothing leaks between calls; rebuilds when any
# listed header changes.

find_program(BPF_CLANG NAMES clang clang-14 REQUIRED)
find_program(BPFTOOL NAMES bpftool PATHS /usr/sbin /usr/local/sbin REQUIRED)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64")
  set(BPF_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(BPF_ARCH arm64)
else()
  message(FATAL_ERROR "tcptrack: no vmlinux.h for ${CMAKE_SYSTEM_PROCESSOR}")
endif()

function(bpf_object name src)
  cmake_parse_arguments(ARG "" "" "DEPENDS;INCLUDES;DEFINES" ${ARGN})
  set(out_dir ${CMAKE_CURRENT_BINARY_DIR}/bpf)
  set(obj ${out_dir}/${name}.bpf.o)
  set(skel ${out_dir}/${name}.skel.h)
  set(vmlinux_dir ${PROJECT_SOURCE_DIR}/vmlinux/${BPF_ARCH})
  set(inc_flags -I${vmlinux_dir})
  foreach(inc IN LISTS ARG_INCLUDES)
    list(APPEND inc_flags -I${inc})
  endforeach()
  foreach(def IN LISTS ARG_DEFINES)
    list(APPEND inc_flags -D${def})
  endforeach()
  file(MAKE_DIRECTORY ${out_dir})
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${BPF_CLANG} -g -O2 -Wall -Werror -target bpf -D__TARGET_ARCH_${BPF_ARCH}
            ${inc_flags} -c ${src} -o ${obj}
    DEPENDS ${src} ${ARG_DEPENDS} ${vmlinux_dir}/vmlinux.h
    COMMENT "BPF ${name}.bpf.c"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL} gen skeleton ${obj} name ${name}_bpf > ${skel}
    DEPENDS ${obj}
    COMMENT "Skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${skel})
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${out_dir})
endfunction()
