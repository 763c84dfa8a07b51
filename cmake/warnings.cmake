# Project-wide warnings, applied to every datapump target via datapump_target_defaults().
function(datapump_target_defaults target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion
    -Wnon-virtual-dtor -Wold-style-cast -Wcast-align
    -Wimplicit-fallthrough)
  if(DATAPUMP_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# clang 16 with libstdc++ 12 gets std::expected through include/datapump/base/expected.hpp.
