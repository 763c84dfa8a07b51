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

# clang 16 implements P0848 (conditionally trivial special members) but still reports
# __cpp_concepts as 201907L, and libstdc++ 12 hides <expected> behind 202002L.
# Raising the macro exposes libstdc++'s std::expected, which clang 16 compiles correctly.
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 19)
  add_compile_options(-Wno-macro-redefined -D__cpp_concepts=202002L)
endif()
