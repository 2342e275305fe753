# The seccomp allow-lists, compiled to BPF at build time: the host tool
# tools/seccomp_policy.c builds each list with libseccomp and writes
# seccomp_filters.c, which src/seccomp.c installs. libseccomp is therefore a
# build dependency only. Sets KVMC_SECCOMP_FILTERS_C to the generated file;
# included by core/ and by the fuzz build (tests/fuzz).
find_package(PkgConfig REQUIRED)
pkg_check_modules(SECCOMP REQUIRED IMPORTED_TARGET libseccomp)
add_executable(kvmc_seccomp_policy ${CMAKE_CURRENT_LIST_DIR}/tools/seccomp_policy.c)
target_compile_options(kvmc_seccomp_policy PRIVATE ${KVMC_WARNINGS})
target_compile_definitions(kvmc_seccomp_policy PRIVATE _GNU_SOURCE)
target_link_libraries(kvmc_seccomp_policy PRIVATE PkgConfig::SECCOMP)

set(KVMC_SECCOMP_FILTERS_C ${PROJECT_BINARY_DIR}/core/seccomp_filters.c)
add_custom_command(OUTPUT ${KVMC_SECCOMP_FILTERS_C}
  COMMAND kvmc_seccomp_policy ${KVMC_SECCOMP_FILTERS_C}
  DEPENDS kvmc_seccomp_policy
  COMMENT "Compiling the seccomp allow-lists to BPF")
# -iquote: the generated file finds src/seccomp_filters.h without putting
# src/ on the <> path, where its seccomp.h and error.h would shadow the
# system's.
set_source_files_properties(${KVMC_SECCOMP_FILTERS_C} PROPERTIES
  COMPILE_OPTIONS "-iquote;${CMAKE_CURRENT_LIST_DIR}/src")
