# init_size = the guest's whole memory footprint (end of .bss - 1 MiB).
execute_process(COMMAND readelf -lW ${ELF} OUTPUT_VARIABLE phdrs COMMAND_ERROR_IS_FATAL ANY)
string(REGEX MATCH "LOAD +0x[0-9a-f]+ 0x[0-9a-f]+ 0x[0-9a-f]+ 0x[0-9a-f]+ (0x[0-9a-f]+)" _ "${phdrs}")
set(memsz ${CMAKE_MATCH_1})
if(NOT memsz)
  message(FATAL_ERROR "cannot read the LOAD segment size of ${ELF}")
endif()
execute_process(COMMAND ${MKBZIMAGE} ${FLAT} ${memsz} ${OUT} COMMAND_ERROR_IS_FATAL ANY)
