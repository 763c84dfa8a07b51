# `cmake --install`: libdatapump.so.0 with its headers, a CMake package (find_package(datapump)),
# a pkg-config file, and the two programs. The static part libraries are not installed.
# Components, one Debian package each (cmake/package.cmake): lib (libdatapump.so.0), dev (headers,
# the libdatapump.so link, CMake and pkg-config files), runtime (the programs and the service).
include(CMakePackageConfigHelpers)

# find_package(datapump) offers the same per-part names the tree has (datapump::fs,
# datapump::loan, ...), so that a CMakeLists.txt works in the tree and against the installed
# package alike; installed, each is the whole shared library.
set(datapump_exported_parts base buffer cache io ipc fs rt rt_transport loan ingest stream http http_proto http_views)
set(datapump_part_targets)
foreach(part IN LISTS datapump_exported_parts)
  add_library(datapump_installed_${part} INTERFACE)
  set_target_properties(datapump_installed_${part} PROPERTIES EXPORT_NAME ${part})
  target_link_libraries(datapump_installed_${part} INTERFACE datapump_shared)
  list(APPEND datapump_part_targets datapump_installed_${part})
endforeach()

install(TARGETS datapump_shared ${datapump_part_targets} EXPORT datapumpTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT lib NAMELINK_COMPONENT dev
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS datapump RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT runtime)
install(TARGETS datapumpd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR} COMPONENT runtime)
# The public headers; */internal/ holds what only the library's sources and tests include.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/datapump DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        COMPONENT dev FILES_MATCHING PATTERN "*.hpp" PATTERN "internal" EXCLUDE)

set(datapump_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/datapump)
install(EXPORT datapumpTargets NAMESPACE datapump:: DESTINATION ${datapump_cmake_dir} COMPONENT dev)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/datapumpConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/datapumpConfig.cmake
                              INSTALL_DESTINATION ${datapump_cmake_dir})
# 0.x: a minor release may break the API (semantic versioning's rule for 0.y.z), so 0.2 accepts
# 0.2.z only; SameMajorVersion would let a program asking for 0.2 build against 0.3.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/datapumpConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/datapumpConfig.cmake ${PROJECT_BINARY_DIR}/datapumpConfigVersion.cmake
        DESTINATION ${datapump_cmake_dir} COMPONENT dev)

# datapump.pc, relocatable: its prefix is found from where the file lies (${pcfiledir}), so that
# `cmake --install --prefix <dir>` and DESTDIR give a working file.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  message(FATAL_ERROR "datapump.pc: CMAKE_INSTALL_LIBDIR must be relative to the prefix")
endif()
file(RELATIVE_PATH datapump_pc_to_prefix "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
string(REGEX REPLACE "/$" "" datapump_pc_to_prefix "${datapump_pc_to_prefix}")
configure_file(${PROJECT_SOURCE_DIR}/cmake/datapump.pc.in ${PROJECT_BINARY_DIR}/datapump.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/datapump.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig COMPONENT dev)
