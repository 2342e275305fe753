# The seccomp allow-lists, compiled to BPF at build time: the host tool
# tools/seccomp_policy.c builds each list with libseccomp and writes
# seccomp_filters.c, which src/seccomp.c installs. libseccomp is therefore a
# build dependency only. Sets KVMC_SECCOMP_FILTERS_C to the generated file;
# included by core/ and by the fuzz build (tests/fuzz).
#
# With KVMC_OPTIONAL_DEPS (the Python wheel's build, which must work on a
# machine with only a C compiler), a missing pkg-config or libseccomp gives
# a library without filters instead of a failed build: seccomp.c then
# refuses kvmc_vm_set_seccomp(vm, 1) with KVMC_ENOTSUP (Python never
# confines its threads anyway).
set(KVMC_SECCOMP_FILTERS_C ${PROJECT_BINARY_DIR}/core/seccomp_filters.c)
if(KVMC_OPTIONAL_DEPS)
  find_package(PkgConfig)
  if(PKG_CONFIG_FOUND)
    pkg_check_modules(SECCOMP IMPORTED_TARGET libseccomp)
  endif()
else()
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(SECCOMP REQUIRED IMPORTED_TARGET libseccomp)
endif()
if(SECCOMP_FOUND)
  add_executable(kvmc_seccomp_policy ${CMAKE_CURRENT_LIST_DIR}/tools/seccomp_policy.c)
  target_compile_options(kvmc_seccomp_policy PRIVATE ${KVMC_WARNINGS})
  target_compile_definitions(kvmc_seccomp_policy PRIVATE _GNU_SOURCE)
  target_link_libraries(kvmc_seccomp_policy PRIVATE PkgConfig::SECCOMP)
  add_custom_command(OUTPUT ${KVMC_SECCOMP_FILTERS_C}
    COMMAND kvmc_seccomp_policy ${KVMC_SECCOMP_FILTERS_C}
    DEPENDS kvmc_seccomp_policy
    COMMENT "Compiling the seccomp allow-lists to BPF")
else()
  message(WARNING "libseccomp (or pkg-config) not found: this libkvmc has no seccomp "
                  "filters (kvmc_vm_set_seccomp fails with KVMC_ENOTSUP)")
  file(WRITE ${KVMC_SECCOMP_FILTERS_C}
       "/* Built without libseccomp: no filters (seccomp.c refuses to confine). */\n"
       "#include \"seccomp_filters.h\"\n"
       "const struct seccomp_filter_code seccomp_filters[SECCOMP_FILTER_COUNT];\n")
endif()
# -iquote: the generated file finds src/seccomp_filters.h without putting
# src/ on the <> path, where its seccomp.h and error.h would shadow the
# system's.
set_source_files_properties(${KVMC_SECCOMP_FILTERS_C} PROPERTIES
  COMPILE_OPTIONS "-iquote;${CMAKE_CURRENT_LIST_DIR}/src")
