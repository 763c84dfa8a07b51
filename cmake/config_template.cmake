# cmake -DDATAPUMPD=<datapumpd> -DOUT=<file> -P config_template.cmake
# /etc/datapump/datapumpd.toml: every key commented out with its default and its help line,
# printed by the built daemon from its own option table (so it cannot drift from --help).
execute_process(COMMAND ${DATAPUMPD} --print-config-template
                OUTPUT_VARIABLE template ERROR_VARIABLE error RESULT_VARIABLE status)
if(status EQUAL 0 AND NOT template STREQUAL "")
  file(WRITE ${OUT} "${template}")
else()
  message(FATAL_ERROR "datapumpd --print-config-template failed (${status}): ${error}")
endif()
