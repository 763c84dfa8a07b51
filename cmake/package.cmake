# The Debian packages (CPack's DEB generator) of the build at hand: `cpack -G DEB` in a Release
# build directory makes datapump_<version>-1_<arch>.deb (the programs, man pages,
# /etc/datapump/datapumpd.toml, the systemd units), libdatapump0_... (the shared library) and
# libdatapump-dev_... (headers, CMake and pkg-config files); docs/daemon.md, "As a service".
# What is generated here is also what `cmake --install` installs.

# Man pages, from the programs' own --help and --version (help2man, a kept tool): they cannot
# drift from the flags. Without help2man there are none, and the package check says so.
find_program(HELP2MAN help2man)
set(datapump_generated ${PROJECT_BINARY_DIR}/packaging)
file(MAKE_DIRECTORY ${datapump_generated})
if(HELP2MAN)
  set(man_pages)
  foreach(page datapumpd:8:zero-copy\ HTTP\ streaming\ daemon datapump:1:datapump\ engine\ command-line\ tool)
    string(REPLACE ":" ";" page "${page}")
    list(GET page 0 program)
    list(GET page 1 section)
    list(GET page 2 name)
    set(out ${datapump_generated}/${program}.${section}.gz)
    add_custom_command(
      OUTPUT ${out}
      COMMAND bash -o pipefail -c "'${HELP2MAN}' --no-info --no-discard-stderr --section=${section} --name='${name}' \
--source='datapump ${PROJECT_VERSION}' --include='${PROJECT_SOURCE_DIR}/packaging/man/${program}.h2m' '$<TARGET_FILE:${program}>' | gzip -9n > '${out}'"
      DEPENDS ${program} ${PROJECT_SOURCE_DIR}/packaging/man/${program}.h2m
      COMMENT "man page ${program}(${section}) from ${program} --help (help2man)"
      VERBATIM)
    list(APPEND man_pages ${out})
    install(FILES ${out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section} COMPONENT runtime)
  endforeach()
  add_custom_target(datapump_man_pages ALL DEPENDS ${man_pages})
else()
  message(STATUS "help2man not found: no man pages (scripts/deps.sh installs it)")
endif()

# datapumpd.toml, printed by the built daemon (cmake/config_template.cmake).
set(datapump_config_template ${datapump_generated}/datapumpd.toml)
add_custom_command(
  OUTPUT ${datapump_config_template}
  COMMAND ${CMAKE_COMMAND} -DDATAPUMPD=$<TARGET_FILE:datapumpd> -DOUT=${datapump_config_template}
          -P ${PROJECT_SOURCE_DIR}/cmake/config_template.cmake
  DEPENDS datapumpd ${PROJECT_SOURCE_DIR}/cmake/config_template.cmake
  COMMENT "datapumpd.toml from datapumpd --print-config-template"
  VERBATIM)
add_custom_target(datapump_config_template ALL DEPENDS ${datapump_config_template})

# /etc is decided when installing: with the prefix /usr the configuration is in /etc, as
# GNUInstallDirs puts it, and so beside any <dir>/usr (CPack's staging folder); under any other
# prefix, in <prefix>/etc.
set(datapump_packaging ${PROJECT_SOURCE_DIR}/packaging)
configure_file(${datapump_packaging}/debian/logrotate ${datapump_generated}/logrotate.d/datapump COPYONLY)
install(CODE "
  if(CMAKE_INSTALL_PREFIX MATCHES \"^(.*)/usr/?$\")
    set(sysconfdir \"\${CMAKE_MATCH_1}/etc\")
  else()
    set(sysconfdir \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SYSCONFDIR}\")
  endif()
  set(SBINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SBINDIR}\")
  set(SYSCONFDIR \"\${sysconfdir}\")
  configure_file(${datapump_packaging}/systemd/datapumpd.service.in ${datapump_generated}/datapumpd.service @ONLY)
  file(INSTALL ${datapump_config_template} DESTINATION \"\${sysconfdir}/datapump\" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  file(INSTALL ${datapump_generated}/logrotate.d/datapump DESTINATION \"\${sysconfdir}/logrotate.d\"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  file(INSTALL ${datapump_generated}/datapumpd.service ${datapump_packaging}/systemd/datapumpd.socket
       DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\" PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
" COMPONENT runtime)
install(FILES ${datapump_packaging}/systemd/datapump.sysusers DESTINATION lib/sysusers.d RENAME datapump.conf
        COMPONENT runtime)
# What Debian requires of every package's doc folder.
set(datapump_maintainer "datapump maintainers <maintainers@users.noreply.h-seed-8f7686d6.example>")
file(READ ${datapump_packaging}/debian/changelog.in changelog_text)
string(REPLACE "@VERSION@" "${PROJECT_VERSION}" changelog_text "${changelog_text}")
string(REPLACE "@MAINTAINER@" "${datapump_maintainer}" changelog_text "${changelog_text}")
file(WRITE ${datapump_generated}/changelog.Debian "${changelog_text}")
add_custom_command(OUTPUT ${datapump_generated}/changelog.Debian.gz
                   COMMAND gzip -9n -c ${datapump_generated}/changelog.Debian > ${datapump_generated}/changelog.Debian.gz
                   DEPENDS ${datapump_packaging}/debian/changelog.in VERBATIM)
add_custom_target(datapump_changelog ALL DEPENDS ${datapump_generated}/changelog.Debian.gz)
# Each package's own doc folder: /usr/share/doc/<package>.
foreach(component_package runtime:datapump lib:libdatapump0 dev:libdatapump-dev)
  string(REPLACE ":" ";" component_package "${component_package}")
  list(GET component_package 0 component)
  list(GET component_package 1 package)
  install(FILES ${datapump_packaging}/debian/copyright ${datapump_generated}/changelog.Debian.gz
          DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${package} COMPONENT ${component})
endforeach()

# Three packages, as Debian splits a library: datapump (the programs, which link the parts
# statically, and the service), libdatapump0 (the shared library, named by its soname) and
# libdatapump-dev (what builds against it).
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime lib dev)
set(CPACK_PACKAGE_NAME datapump)
set(CPACK_PACKAGE_VENDOR datapump)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${datapump_maintainer}")
# (No CPACK_PACKAGE_DESCRIPTION_SUMMARY: each description's first line is its package's synopsis.)
# (Lines under 80 columns: the control files' extended descriptions.)
set(datapump_about "datapump moves bytes between storage, the network and applications
without copying them through user space, and paces every stream to the rate
its client asked for.")
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION "zero-copy HTTP streaming daemon and command-line tool
${datapump_about}
This package has datapumpd, the io_uring HTTP/1.1 streaming daemon, with its
systemd service and socket units and man page, and the datapump tool.")
set(CPACK_COMPONENT_LIB_DESCRIPTION "zero-copy data-path engine - shared library
${datapump_about}
This package has the shared library libdatapump.so.0.")
set(CPACK_COMPONENT_DEV_DESCRIPTION "zero-copy data-path engine - development files
${datapump_about}
This package has the headers, the CMake package (find_package(datapump)) and
the pkg-config file to build programs against libdatapump.")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME datapump)
set(CPACK_DEBIAN_LIB_PACKAGE_NAME libdatapump0)
set(CPACK_DEBIAN_DEV_PACKAGE_NAME libdatapump-dev)
# DESTDIR staging with the real prefix, so that the unit's ExecStart says /usr/sbin/datapumpd.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION net)
set(CPACK_DEBIAN_LIB_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://datapump.invalid/")
# The shared libraries' packages (liburing2, libssl3, libsystemd0, ...) from dpkg-shlibdeps.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# adduser without systemd-sysusers (deb-systemd-invoke's init-system-helpers is essential).
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "adduser")
# /etc/mime.types, datapumpd's default --mime-types-file (without it the built-in table serves alone).
set(CPACK_DEBIAN_RUNTIME_PACKAGE_RECOMMENDS "media-types")
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libdatapump0 (= ${PROJECT_VERSION}-1)")
# libdatapump.so.0's shlibs file: 0.x promises no ABI across minor versions, so a program built
# against this package depends on this very version.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY "=")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
    ${datapump_packaging}/debian/postinst ${datapump_packaging}/debian/prerm
    ${datapump_packaging}/debian/postrm ${datapump_packaging}/debian/conffiles)
set(CPACK_DEBIAN_LIB_PACKAGE_CONTROL_EXTRA ${datapump_packaging}/debian/lib/triggers
    ${datapump_packaging}/debian/lib/postinst ${datapump_packaging}/debian/lib/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
include(CPack)
